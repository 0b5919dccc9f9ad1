"""Graph passes run before calibration: fold BatchNorm, fuse activations.

Both are exact rewrites of the float function (up to float rounding), so that the integer
model has fewer requantization steps: a BatchNorm folded into its conv costs nothing at run
time, and a ReLU fused into its producer is just a tighter clamp bound.
"""

from __future__ import annotations

import numpy as np

from ..ops import float_op
from ..ops._recurrent import MAX_LAYERS as MAX_RECURRENT_LAYERS
from ..ops.matmul import fold_scalars_into_matmul
from .ir import Graph, Node


def bn_scale_shift(bn: Node) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm as y = a·x + b per channel: a = γ/√(σ²+ε), b = β − a·μ."""
    p = bn.params
    a = p["weight"].astype(np.float64) / np.sqrt(p["var"].astype(np.float64) + bn.attrs["eps"])
    b = p["bias"].astype(np.float64) - a * p["mean"].astype(np.float64)
    return a, b


def _replace_uses(graph: Graph, old: str, new: str) -> None:
    for n in graph.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
    if graph.output == old:
        graph.output = new


def _remove(graph: Graph, node: Node, replacement: str) -> None:
    _replace_uses(graph, node.name, replacement)
    graph.nodes.remove(node)
    graph.reindex()


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold each BatchNorm into the conv/linear that alone feeds it: W' = a·W, b' = a·b + shift."""
    for bn in [n for n in graph.nodes if n.op == "batchnorm"]:
        prod = graph.node(bn.inputs[0])
        if prod.op == "input" or not float_op(prod.op).weighted or prod.act is not None:
            continue
        if len(graph.consumers(prod.name)) != 1 or prod.name == graph.output:
            continue
        a, shift = bn_scale_shift(bn)
        w = prod.params["weight"].astype(np.float64)
        w = w * a.reshape((-1,) + (1,) * (w.ndim - 1))
        b = prod.params.get("bias")
        b = np.zeros(w.shape[0]) if b is None else b.astype(np.float64)
        prod.params["weight"] = w.astype(np.float32)
        prod.params["bias"] = (a * b + shift).astype(np.float32)
        prod.source += f" + folded {bn.name}"
        _remove(graph, bn, prod.name)
    return graph


def _intersect(a, b):
    lo = [v for v in (a[0], b[0]) if v is not None]
    hi = [v for v in (a[1], b[1]) if v is not None]
    return (max(lo) if lo else None, min(hi) if hi else None)


def fuse_activations(graph: Graph) -> Graph:
    """Fuse ReLU / ReLU6 / Hardtanh / clamp into a producer that has no other consumer."""
    changed = True
    while changed:
        changed = False
        acts = [n for n in graph.nodes if n.op != "input" and float_op(n.op).fusable]
        for act in acts:
            prod = graph.node(act.inputs[0])
            if prod.op == "input" or not float_op(prod.op).fuse_into:
                continue
            if len(graph.consumers(prod.name)) != 1 or prod.name == graph.output:
                continue
            bounds = float_op(act.op).act_bounds(act)
            prod.act = bounds if prod.act is None else _intersect(prod.act, bounds)
            prod.source += f" + fused {act.name}"
            _remove(graph, act, prod.name)
            changed = True
            break
    return graph


def stack_recurrent_layers(graph: Graph) -> Graph:
    """Merge a recurrent layer whose whole output sequence only feeds another layer of the same
    kind into it (one node of ``layers`` + 1 layers): exact in float, and the integer op then
    passes its 16-bit state between the layers instead of an 8-bit sequence in the arena
    (two nn.GRU modules in a row, stacked cell loops, an ONNX model's one node per layer)."""
    from ..ops import FLOAT_OPS

    def recurrent(n) -> bool:  # an op with inner gate matrices and a sequence output mode
        d = FLOAT_OPS.get(n.op)
        return d is not None and d.weight_tensors is not None and "sequence" in n.attrs

    for second in [n for n in graph.nodes if recurrent(n)]:
        first = graph.node(second.inputs[0])
        if first.op != second.op or not first.attrs["sequence"] or first.act is not None:
            continue
        if len(graph.consumers(first.name)) != 1 or first.name == graph.output:
            continue
        if first.attrs["layers"] + second.attrs["layers"] > MAX_RECURRENT_LAYERS:
            continue
        keys = [k[:-1] for k in second.params if k.endswith("0")]
        below = first.attrs["layers"]
        params = dict(first.params)
        for layer in range(second.attrs["layers"]):
            params.update({f"{k}{below + layer}": second.params[f"{k}{layer}"] for k in keys})
        second.params = params
        second.attrs = {**second.attrs, "layers": below + second.attrs["layers"]}
        second.source += f" + stacked {first.name}"
        second.stacked_below = [*first.stacked_below, first.name, *second.stacked_below]
        _remove(graph, first, first.inputs[0])
    return graph


def optimize(graph: Graph) -> Graph:
    """The standard pipeline: fuse activation decompositions (SiLU, Hardswish, GELU written
    out as products), fold BatchNorm, fuse activations, fold scalars into matmuls, stack
    recurrent layers."""
    from .activation_patterns import fuse_activation_patterns

    fuse_activation_patterns(graph)
    fold_batchnorm(graph)
    fuse_activations(graph)
    fold_scalars_into_matmul(graph)
    stack_recurrent_layers(graph)
    graph.validate()
    return graph
