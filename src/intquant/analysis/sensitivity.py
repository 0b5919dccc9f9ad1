"""Which layer hurts: the output when only some layers are quantized (fake-quant, float arithmetic).

The integer model quantizes everything at once, so its accuracy loss cannot be attributed to a
layer. Here the float graph is run with *chosen* layers replaced by their quantized version —
weights as the plan rounded them (learned codes and corrected biases included), output
activation rounded to its format — and everything else in float. One layer at a time gives the
per-layer sensitivity; a whole bit assignment gives the cheap accuracy estimate the
mixed-precision search optimises (the final choice is then measured on the real integer model).

Accuracy on a small test set moves in steps of 1/N and reads "0.00" for most layers, so the
primary measures are continuous: the KL divergence of the output distribution (softmax of the
logits) from the float one, and the logit SQNR, with only that layer quantized.

Runs are cached: the float values of every node are computed once, and a simulation restarts
from the first node it changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..graph import Graph, run_graph
from ..graph.execute import run_node
from ..graph.ir import KEEPS_GRID
from ..numerics import QParams, dequantize, quantize

# Weight-quantization methods compared in the "accuracy vs bit width" sweep: name -> Config
# fields. The first is the textbook recipe (one max-abs scale per tensor).
SWEEP_METHODS: dict[str, dict[str, Any]] = {
    "textbook (per-tensor max-abs)": {"granularity": "per_tensor",
                                      "weight_calibration": "maxabs"},
    "per-tensor MSE": {"granularity": "per_tensor", "weight_calibration": "mse"},
    "per-channel max-abs": {"granularity": "per_channel", "weight_calibration": "maxabs"},
    "per-channel MSE": {"granularity": "per_channel", "weight_calibration": "mse"},
}


@dataclass
class FloatCache:
    """The float graph, an evaluation batch, and every node's float output on it."""

    graph: Graph
    x: np.ndarray
    values: dict[str, torch.Tensor]
    order: dict[str, int]


def float_cache(graph: Graph, x: np.ndarray,
                values: Mapping[str, Any] | None = None) -> FloatCache:
    """Run the float graph once (or reuse ``values``) so later simulations can start midway."""
    if values is None:
        recorded = run_graph(graph, x, record=True)
    else:
        recorded = {k: torch.as_tensor(np.asarray(v)) for k, v in values.items()}
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    return FloatCache(graph, np.asarray(x, dtype=np.float32), recorded, order)


def fake_quantize_weight(w: np.ndarray, qp: QParams) -> np.ndarray:
    """The real values the integer kernel multiplies by: dequantize(quantize(w))."""
    return dequantize(quantize(w, qp), qp).astype(np.float32)


def fake_quantize_act(y: torch.Tensor, qp: QParams) -> torch.Tensor:
    """Round an activation to its (per-tensor) integer grid and back, saturating."""
    s, z = float(qp.scale[0]), int(qp.zero_point[0])
    q = torch.div(y, s).round_().add_(z).clamp_(qp.qmin, qp.qmax)  # in place: big tensors
    return q.sub_(z).mul_(s)


@torch.no_grad()
def simulate(cache: FloatCache, weights: Mapping[str, QParams] | None = None,
             acts: Mapping[str, QParams] | None = None,
             params: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> np.ndarray:
    """Output of the float graph with the given layers' weights / activations fake-quantized.

    ``weights``: layer -> weight format; ``acts``: node -> output format (the graph input
    included); ``params``: layer -> parameters to use instead of the float graph's (e.g. the
    plan's weights on their grid and corrected bias). Nodes before the first changed one are
    taken from the cache.
    """
    weights, acts, params = dict(weights or {}), dict(acts or {}), dict(params or {})
    graph = cache.graph
    changed = [cache.order[n] for n in list(weights) + list(acts) if n in cache.order]
    if not changed:
        return cache.values[graph.output].numpy()
    start = min(changed)
    values = dict(cache.values)
    own = {n: {**graph.node(n).params, **params.get(n, {})} for n in weights}
    qweights = {n: fake_quantize_weight(own[n]["weight"], qp) for n, qp in weights.items()}
    for node in graph.nodes[start:]:
        if node.op == "input":
            y = torch.as_tensor(cache.x)
        else:
            run = node
            if node.name in qweights:
                run = dataclasses.replace(node, params={**own[node.name],
                                                        "weight": qweights[node.name]})
            y = run_node(run, [values[i] for i in node.inputs])
        if node.name in acts and not _keeps_grid(node, acts):
            y = fake_quantize_act(y, acts[node.name])
        values[node.name] = y
    return values[graph.output].numpy()


def _keeps_grid(node: Any, acts: Mapping[str, QParams]) -> bool:
    """Pooling / reshapes / clamps of a value already on the same grid leave it on the grid."""
    if node.op not in KEEPS_GRID or not node.inputs:
        return False
    src = acts.get(node.inputs[0])
    return src is not None and src is acts[node.name]


def accuracy(logits: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(np.asarray(logits).reshape(len(targets), -1).argmax(1) == targets))


@dataclass
class LayerEffect:
    """The output with only one layer quantized, against the float output."""

    kl: float  # mean KL(softmax(float logits) || softmax(these logits)), nats
    sqnr_db: float  # logit SQNR, dB
    accuracy: float


def softmax_kl(reference: np.ndarray, logits: np.ndarray) -> float:
    """Mean over samples of KL(p || q), p and q the softmax of each sample's logits (float64)."""
    p_log = torch.log_softmax(torch.as_tensor(reference, dtype=torch.float64), dim=1)
    q_log = torch.log_softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1)
    return float((p_log.exp() * (p_log - q_log)).sum(dim=1).mean().clamp_min(0.0))


def layer_effect(cache: FloatCache, plan: Any, layer: str, targets: np.ndarray,
                 weight_qp: QParams | None = None) -> LayerEffect:
    """KL, logit SQNR and accuracy with only ``layer`` quantized (weights and output).

    At the plan's own format the layer's weights are the plan's (learned rounding and
    corrected bias included); with another ``weight_qp`` the float weights are rounded to it.
    """
    from .stats import sqnr_db

    qp = plan.weights[layer] if weight_qp is None else weight_qp
    acts = {layer: plan.acts[layer]} if layer in plan.acts else {}
    params = None
    if weight_qp is None and layer in {n.name for n in plan.graph.nodes}:
        params = {layer: plan.graph.node(layer).params}
    logits = simulate(cache, {layer: qp}, acts, params).reshape(len(targets), -1)
    reference = cache.values[cache.graph.output].numpy().reshape(len(targets), -1)
    return LayerEffect(kl=softmax_kl(reference, logits), sqnr_db=sqnr_db(reference, logits),
                       accuracy=accuracy(logits, targets))


def weight_format(graph: Graph, layer: str, config: Any, **changes: Any) -> QParams:
    """The weight format PTQ would choose for ``layer`` under ``config`` with ``changes``."""
    from ..ptq import weight_qparams

    node = graph.node(layer)
    cfg = config.for_layer(layer)
    cfg.update(changes)
    cfg["weight_qparams"] = None
    return weight_qparams(layer, node.params["weight"], cfg)


def weight_method_sweep(cache: FloatCache, plan: Any, config: Any, targets: np.ndarray,
                        bits: tuple[int, ...] = (2, 3, 4, 5, 6, 8),
                        methods: Mapping[str, Mapping[str, Any]] | None = None,
                        ) -> dict[str, dict[int, float]]:
    """Accuracy vs weight bit width (all weighted layers at once) for each method.

    Activations stay at the plan's formats, so the curves isolate the weight grid.
    """
    methods = SWEEP_METHODS if methods is None else methods
    layers = list(plan.weights)
    result: dict[str, dict[int, float]] = {}
    for method, fields in methods.items():
        result[method] = {}
        for b in bits:
            formats = {n: weight_format(cache.graph, n, config, weight_bits=b, **fields)
                       for n in layers}
            result[method][int(b)] = accuracy(simulate(cache, formats, plan.acts), targets)
    return result
