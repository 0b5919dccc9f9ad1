"""Fake-quant simulation of a QuantPlan in PyTorch: fast evaluation and fine-tuning.

Weights are float parameters quantized on the fly to the plan's grid; every tensor whose format
the plan sets is rounded to it; gradients pass straight through the rounding (STE). It mirrors
the integer graph up to rounding-tie and double-rounding differences, which tests measure.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .graph.execute import apply_act, run_node
from .graph.ir import SAME_FORMAT, Graph, Node
from .lower import QuantPlan
from .numerics import QParams


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
    """The float graph with the plan's quantization applied at every tensor."""

    def __init__(self, graph: Graph, plan: QuantPlan):
        super().__init__()
        self.graph = graph
        self.plan = plan
        self.weights = torch.nn.ParameterDict()
        self.biases = torch.nn.ParameterDict()
        for node in graph.nodes:
            if node.op in ("conv", "linear"):
                key = self._key(node.name)
                self.weights[key] = torch.nn.Parameter(torch.as_tensor(node.params["weight"]))
                b = node.params.get("bias")
                b = np.zeros(node.params["weight"].shape[0], np.float32) if b is None else b
                self.biases[key] = torch.nn.Parameter(torch.as_tensor(b))

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "_").replace(":", "_")

    def _weighted(self, node: Node, x: torch.Tensor, in_qp: QParams) -> torch.Tensor:
        key = self._key(node.name)
        w_qp = self.plan.weights[node.name]
        w = fake_quant(self.weights[key], w_qp, axis=0)
        w_scale = torch.as_tensor(np.broadcast_to(w_qp.scale, (w.shape[0],)).copy(),
                                  dtype=w.dtype)
        b_scale = float(in_qp.scale[0]) * w_scale
        b = self.biases[key]
        b = b + (torch.round(b / b_scale) * b_scale - b).detach()
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
        values: dict[str, torch.Tensor] = {}
        acts = self.plan.acts
        for node in self.graph.nodes:
            if node.op == "input":
                values[node.name] = fake_quant(torch.as_tensor(x, dtype=torch.float32),
                                               acts[node.name])
                continue
            ins = [values[i] for i in node.inputs]
            if node.op in ("conv", "linear"):
                y = apply_act(node, self._weighted(node, ins[0], acts[node.inputs[0]]))
            else:
                y = run_node(node, ins)
            if node.op not in SAME_FORMAT:
                y = fake_quant(y, acts[node.name])
            values[node.name] = y
        return values[self.graph.output]
