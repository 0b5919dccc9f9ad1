"""A torch module of a QuantPlan: exact integer evaluation, fake-quant fine-tuning.

Training mode is the fake-quant simulation: weights are float parameters quantized on the fly
to the plan's grid, every tensor whose format the plan sets is rounded to it, and gradients
pass straight through the rounding (STE). It follows the integer graph up to rounding ties,
double rounding and the CPU's float rounding, so it is for fine-tuning, not for measuring.

Eval mode is the integer model itself: the plan, with the current weights and biases, is
lowered to an IntGraph (rebuilt only when a parameter changes) and run by the NumPy
interpreter; the output is the dequantized integer result as a float32 tensor. Before any
fine-tuning it equals ``QuantizedModel.predict`` logit for logit, on every machine.
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from .graph.execute import apply_act, run_node
from .graph.ir import SAME_FORMAT, WEIGHTED, Graph, Node
from .lower import QuantPlan, lower
from .numerics import QParams
from .ops import float_op


def fake_quant(x: torch.Tensor, qp: QParams, axis: int | None = None) -> torch.Tensor:
    """round(x/s) + z, clamped, back to real units; straight-through gradient."""
    scale = torch.as_tensor(qp.scale, dtype=x.dtype)
    zp = torch.as_tensor(qp.zero_point, dtype=x.dtype)
    if axis is not None and scale.numel() > 1:
        view = [1] * x.dim()
        view[axis] = -1
        scale, zp = scale.reshape(view), zp.reshape(view)
    else:
        scale, zp = scale.reshape(()), zp.reshape(())
    q = torch.clamp(torch.round(x / scale) + zp, qp.qmin, qp.qmax)
    return x + ((q - zp) * scale - x).detach()


class SimulatedModel(torch.nn.Module):
    """The plan's graph with its quantization applied at every tensor (see the module doc).

    The parameters start from ``plan.graph``'s weights and biases — the float values that were
    lowered (after bias correction or per-block rounding) — so eval mode starts out equal to
    the integer model the plan produced.
    """

    def __init__(self, plan: QuantPlan):
        super().__init__()
        self.graph: Graph = plan.graph
        self.plan = plan
        self.weights = torch.nn.ParameterDict()
        self.biases = torch.nn.ParameterDict()
        for node in self.graph.nodes:
            if node.op in WEIGHTED:
                key = self._key(node.name)
                self.weights[key] = torch.nn.Parameter(torch.as_tensor(node.params["weight"]))
                b = node.params.get("bias")
                b = np.zeros(node.params["weight"].shape[0], np.float32) if b is None else b
                self.biases[key] = torch.nn.Parameter(torch.as_tensor(b))
        self._lowered: tuple[bytes, object] | None = None

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "_").replace(":", "_")

    # -- eval: the integer model ----------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if not self.training:
            return self.integer_forward(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def integer_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dequantized output of the integer model of the current parameters (float32)."""
        qmodel = self.integer_model()
        xs = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        y = qmodel.predict(xs)
        out = torch.from_numpy(np.asarray(y, dtype=np.float32))
        return out.to(x.device) if isinstance(x, torch.Tensor) else out

    def integer_model(self):
        """The ``QuantizedModel`` lowered from the plan with the current weights (cached)."""
        from .qmodel import QuantizedModel

        fingerprint = self._fingerprint()
        if self._lowered is None or self._lowered[0] != fingerprint:
            plan = self._plan_with_parameters()
            self._lowered = (fingerprint, QuantizedModel(lower(plan), float_graph=plan.graph,
                                                         plan=plan))
        return self._lowered[1]

    def _fingerprint(self) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        for name, p in self.named_parameters():
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        return h.digest()

    def _plan_with_parameters(self) -> QuantPlan:
        graph = copy.deepcopy(self.graph)
        for node in graph.nodes:
            if node.op in WEIGHTED:
                key = self._key(node.name)
                node.params["weight"] = self.weights[key].detach().cpu().numpy().copy()
                node.params["bias"] = self.biases[key].detach().cpu().numpy().copy()
        plan = self.plan
        return QuantPlan(graph, plan.acts, plan.weights, plan.rounding, plan.input_raw)

    # -- training: fake quantization ------------------------------------------------------
    def _weighted(self, node: Node, x: torch.Tensor, in_qp: QParams) -> torch.Tensor:
        key = self._key(node.name)
        w_qp = self.plan.weights[node.name]
        w = fake_quant(self.weights[key], w_qp, axis=0)
        w_scale = torch.as_tensor(np.broadcast_to(w_qp.scale, (w.shape[0],)).copy(),
                                  dtype=w.dtype)
        b_scale = float(in_qp.scale[0]) * w_scale
        b = self.biases[key]
        b = b + (torch.round(b / b_scale) * b_scale - b).detach()
        w, b = w.to(x.dtype), b.to(x.dtype)  # per-block plans keep float64 weights
        forward = float_op(node.op).weighted_forward
        if forward is not None:
            return forward(node, x, w, b)
        if node.op == "linear":
            return F.linear(x, w, b)
        a = node.attrs
        t, left, bot, r = a["padding"]
        if a["dims"] == 1:
            x = F.pad(x, (left, r))
            return F.conv1d(x, w, b, a["stride"][1], 0, a["dilation"][1], a["groups"])
        x = F.pad(x, (left, r, t, bot))
        return F.conv2d(x, w, b, a["stride"], 0, a["dilation"], a["groups"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The fake-quant forward (what training differentiates)."""
        values: dict[str, torch.Tensor] = {}
        acts = self.plan.acts
        for node in self.graph.nodes:
            if node.op == "input":
                values[node.name] = fake_quant(torch.as_tensor(x, dtype=torch.float32),
                                               acts[node.name])
                continue
            ins = [values[i] for i in node.inputs]
            if node.op in WEIGHTED:
                y = apply_act(node, self._weighted(node, ins[0], acts[node.inputs[0]]))
            else:
                y = run_node(node, ins)
            if node.op not in SAME_FORMAT:
                y = fake_quant(y, acts[node.name])
            values[node.name] = y
        return values[self.graph.output]
