"""Block reconstruction: learn weight rounding and activation steps per block against the float
block's output (BRECQ, Li et al., ICLR 2021), with QDrop's random dropping of activation
quantization during the optimisation (Wei et al., ICLR 2022).

Layer-wise rounding (AdaRound, GPTQ) ignores that a layer's error is seen through the layers
after it. BRECQ optimises a *block* — a residual block, or a layer with its pooling — at once:

    min over V (rounding of every weight in the block) and s (every activation step in it)
        mean over samples ||f_float(x) − f_quant(x̂; V, s)||²  +  λ Σ_layers reg(h(V))

with AdaRound's soft rounding h(V) and annealed regulariser (``adaround.py``), and LSQ's
straight-through gradient for the steps (learned as s = s₀·e^u). The block input x̂ comes from
the already reconstructed blocks upstream, the target from the float network. QDrop replaces,
element by element with probability p, every quantized activation the block sees (its input
and its inner activations) by its float value while optimising: the solution then stays good
for the flatter range of perturbations the later blocks will add (p = 0 is plain BRECQ).

Blocks are cut where the graph has a single live tensor (so a residual block is one block) and
hold at least one conv/linear layer. Zero points stay; only the scales move. Layers whose grid
a Config override fixes (QAT, per-block) and fixed formats (softmax, the input) are left alone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
import torch

from ..graph.execute import apply_act, run_node
from ..graph.ir import WEIGHTED, Graph, Node
from ..numerics import QParams, qrange, quantize
from .adaround import annealed_beta, inverse_rectified_sigmoid, rectified_sigmoid
from .walk import Values, weighted_output

BATCH = 32
WEIGHT_LR = 1e-2
STEP_LR = 1e-3
REG_WEIGHT = 10.0  # × mean rounding penalty, vs the loss relative to its start (measured)
WARMUP = 0.2
BETA_RANGE = (20.0, 2.0)


def blocks(graph: Graph) -> list[list[str]]:
    """Units for reconstruction: graph order cut where one tensor alone is live, each unit with
    at least one conv/linear layer (nodes after the last one join the last unit)."""
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    last_use = dict(order)
    for n in graph.nodes:
        for src in n.inputs:
            last_use[src] = max(last_use[src], order[n.name])
    last_use[graph.output] = len(graph.nodes)
    units: list[list[str]] = []
    current: list[str] = []
    weighted = False
    for i, node in enumerate(graph.nodes):
        if node.op == "input":  # its format is fixed: nothing to learn
            units.append([node.name])
            continue
        current.append(node.name)
        weighted |= node.op in WEIGHTED
        live = sum(1 for n in graph.nodes[:i + 1] if last_use[n.name] > i)
        if weighted and live <= 1:
            units.append(current)
            current, weighted = [], False
    if current:
        if units:
            units[-1] += current
        else:
            units.append(current)
    return units


def replace_format(acts: dict[str, QParams], old: QParams, new: QParams) -> None:
    """Give ``new`` to every tensor that shares the format ``old`` (pooling, reshapes, …)."""
    for name, qp in list(acts.items()):
        if qp is old:
            acts[name] = new


def fake_quant_ste(y: torch.Tensor, scale: torch.Tensor, qp: QParams) -> torch.Tensor:
    """Round y to the grid of step ``scale`` (zero point and range of ``qp``); the gradient
    passes straight through the rounding (LSQ's gradient for the step)."""
    z = float(qp.zero_point[0])
    v = y / scale
    q = v + (torch.round(v) - v).detach()
    return (torch.clamp(q + z, qp.qmin, qp.qmax) - z) * scale


class BlockQuantizer(torch.nn.Module):
    """One block of the quantized network with learnable rounding and activation steps."""

    def __init__(self, nodes: list[Node], acts: Mapping[str, QParams],
                 weights: Mapping[str, QParams], free_weights: set[str],
                 free_acts: set[str]) -> None:
        super().__init__()
        self.nodes = nodes
        self.acts = acts
        self.names = {n.name for n in nodes}
        self.v = torch.nn.ParameterDict()
        self.floor: dict[str, torch.Tensor] = {}
        self.scale: dict[str, torch.Tensor] = {}
        self.bounds: dict[str, tuple[int, int]] = {}
        self.fixed_weight: dict[str, torch.Tensor] = {}
        for node in nodes:
            if node.op not in WEIGHTED:
                continue
            w = np.asarray(node.params["weight"], dtype=np.float64)
            qp = weights[node.name]
            s, _ = qp.broadcast(w.shape)
            if node.name in free_weights:
                key = _key(node.name)
                ratio = w / s
                floor = np.floor(ratio)
                self.floor[key] = torch.as_tensor(floor, dtype=torch.float32)
                self.scale[key] = torch.as_tensor(np.broadcast_to(s, w.shape).copy(),
                                                  dtype=torch.float32)
                self.bounds[key] = qrange(qp.bits, signed=True, narrow=True)
                frac = torch.as_tensor(ratio - floor, dtype=torch.float32)
                self.v[key] = torch.nn.Parameter(inverse_rectified_sigmoid(frac))
            else:  # a fixed grid: its round-to-nearest codes
                codes = quantize(w, qp).astype(np.int64)
                self.fixed_weight[node.name] = torch.as_tensor(codes * s, dtype=torch.float32)
        # learned steps, one per format object (tensors that share a format share its step)
        self.learned: dict[int, str] = {}
        self.u = torch.nn.ParameterDict()
        for node in nodes:
            qp = acts[node.name]
            if node.name in free_acts and id(qp) not in self.learned:
                self.learned[id(qp)] = _key(node.name)
                self.u[_key(node.name)] = torch.nn.Parameter(torch.zeros(()))

    def soft_weight(self, name: str) -> torch.Tensor:
        key = _key(name)
        lo, hi = self.bounds[key]
        h = rectified_sigmoid(self.v[key])
        return self.scale[key] * torch.clamp(self.floor[key] + h, lo, hi)

    def hard_codes(self, name: str) -> np.ndarray:
        key = _key(name)
        lo, hi = self.bounds[key]
        with torch.no_grad():
            up = (rectified_sigmoid(self.v[key]) >= 0.5).to(torch.float32)
        return np.clip((self.floor[key] + up).numpy(), lo, hi).astype(np.int64)

    def step(self, name: str) -> torch.Tensor | None:
        key = self.learned.get(id(self.acts[name]))
        if key is None:
            return None
        return float(self.acts[name].scale[0]) * torch.exp(self.u[key])

    def rounding_penalty(self, beta: float) -> torch.Tensor:
        total = torch.zeros(())
        for key in self.v:
            h = rectified_sigmoid(self.v[key])
            total = total + (1.0 - (2.0 * h - 1.0).abs().pow(beta)).sum()
        return total

    def forward(self, inputs: Values, float_values: Values | None, drop: float,
                generator: torch.Generator | None) -> Values:
        """Values of the block's nodes; with ``float_values`` (the float network's values of
        the same tensors), each quantized activation is replaced by its float value with
        probability ``drop`` (QDrop)."""
        values = dict(inputs)
        for node in self.nodes:
            ins = [values[i] for i in node.inputs]
            if node.op in WEIGHTED:
                w = (self.soft_weight(node.name) if _key(node.name) in self.v
                     else self.fixed_weight[node.name])
                y = apply_act(node, weighted_output(node, ins[0], w))
            else:
                y = run_node(node, ins)
            step = self.step(node.name)
            qp = self.acts[node.name]
            y_q = fake_quant_ste(y, step if step is not None else
                                 torch.tensor(float(qp.scale[0])), qp)
            if float_values is not None and drop > 0 and node.name in float_values:
                keep_float = torch.rand(y.shape, generator=generator) < drop
                y_q = torch.where(keep_float, float_values[node.name], y_q)
            values[node.name] = y_q
        return values


def _key(name: str) -> str:
    return name.replace(".", "_").replace(":", "_").replace("#", "_")


def reconstruct_block(nodes: list[Node], float_values: Values, quant_values: Values,
                      targets: Values, outputs: list[str], acts: dict[str, QParams],
                      weights: Mapping[str, QParams], free_weights: set[str],
                      free_acts: set[str], *, iters: int, drop: float,
                      seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, QParams]]:
    """Learn one block. ``float_values`` / ``quant_values``: the block's external inputs in the
    float and the quantized network; ``targets``: the float network's values of the block's
    nodes; ``outputs``: those whose error is minimised (the block's results; the others are
    the inner activations QDrop may keep in float). Returns (codes per free layer, the new
    format of every learned tensor)."""
    with torch.enable_grad():  # the walk runs under no_grad
        return _reconstruct(nodes, float_values, quant_values, targets, outputs, acts, weights,
                            free_weights, free_acts, iters, drop, seed)


def _reconstruct(nodes, float_values, quant_values, targets, outputs, acts, weights,
                 free_weights, free_acts, iters, drop, seed):
    model = BlockQuantizer(nodes, acts, weights, free_weights, free_acts)
    params = [{"params": list(model.v.values()), "lr": WEIGHT_LR},
              {"params": list(model.u.values()), "lr": STEP_LR}]
    params = [p for p in params if p["params"]]
    weight_count = sum(int(v.numel()) for v in model.v.values())
    if params:
        reference = _output_error(model, quant_values, targets, outputs)
        optimiser = torch.optim.Adam(params)
        generator = torch.Generator().manual_seed(seed)
        n = next(iter(quant_values.values())).shape[0]
        for it in range(iters):
            idx = torch.randint(0, n, (min(BATCH, n),), generator=generator)
            ins = {k: _mix(quant_values[k][idx], float_values[k][idx], drop, generator)
                   for k in quant_values}
            target = {k: v[idx] for k, v in targets.items()}
            inner = {k: v for k, v in target.items() if k not in outputs}
            got = model(ins, inner, drop, generator)
            loss = sum(((got[k] - target[k]) ** 2).flatten(1).sum(1).mean()
                       for k in outputs) / reference
            if it >= WARMUP * iters and weight_count:
                beta = annealed_beta(it, iters, WARMUP, BETA_RANGE)
                loss = loss + REG_WEIGHT * model.rounding_penalty(beta) / weight_count
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    codes = {n.name: model.hard_codes(n.name) for n in nodes if _key(n.name) in model.v}
    formats: dict[str, QParams] = {}
    for node in nodes:
        step = model.step(node.name)
        if step is not None and node.name in free_acts:
            scale = np.float32(float(step.detach()))
            if math.isfinite(scale) and scale > 0:
                formats[node.name] = dataclasses.replace(acts[node.name], scale=[float(scale)])
    return codes, formats


@torch.no_grad()
def _output_error(model: BlockQuantizer, inputs: Values, targets: Values,
                  outputs: list[str]) -> float:
    """Mean squared error of the block at its starting point: the loss is measured relative to
    it, so that the rounding regulariser weighs the same whatever the activations' scale."""
    got = model(inputs, None, 0.0, None)
    err = sum(float(((got[k] - targets[k]) ** 2).flatten(1).sum(1).mean()) for k in outputs)
    return max(err, 1e-30)


def _mix(x_q: torch.Tensor, x_f: torch.Tensor, drop: float,
         generator: torch.Generator) -> torch.Tensor:
    if drop <= 0:
        return x_q
    return torch.where(torch.rand(x_q.shape, generator=generator) < drop, x_f, x_q)
