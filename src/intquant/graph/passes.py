"""Graph passes run before calibration: fold BatchNorm, fuse activations.

Both are exact rewrites of the float function (up to float rounding), so that the integer
model has fewer requantization steps: a BatchNorm folded into its conv costs nothing at run
time, and a ReLU fused into its producer is just a tighter clamp bound.
"""

from __future__ import annotations

import numpy as np

from ..ops import float_op
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


def _scalar_mul(graph: Graph, node: Node) -> float | None:
    """The factor of a plain x·c node (c a scalar constant, no bias, no fused bounds)."""
    value = node.params.get("value")
    if (node.op != "mul_const" or value is None or np.size(value) != 1
            or node.params.get("bias") is not None or node.act is not None):
        return None
    return float(np.ravel(value)[0])


def fold_scalars_into_matmul(graph: Graph) -> Graph:
    """Fold x·c (c a scalar constant: attention's 1/√d, or √scale on q and on kᵀ as torch.onnx
    exports it) on a matmul's operand, or on its output, into the matmul's alpha:
    (a·c)@b = (a@b)·c, and alpha folds into the matmul's requantization for free. A transpose
    of the last two axes of b becomes the matmul's transpose_b (the kernel reads b
    transposed instead of a copy being made)."""
    changed = True
    while changed:
        changed = False
        for mm in [n for n in graph.nodes if n.op == "matmul"]:
            for k, name in enumerate(mm.inputs):
                mul = graph.node(name)
                c = _scalar_mul(graph, mul)
                if c is None or len(graph.consumers(mul.name)) != 1 or mul.name == graph.output:
                    continue
                mm.attrs["alpha"] = float(mm.attrs.get("alpha", 1.0)) * c
                mm.inputs[k] = mul.inputs[0]
                mm.source += f" + folded {mul.name}"
                graph.nodes.remove(mul)
                graph.reindex()
                changed = True
            t = graph.node(mm.inputs[1])
            rank = len(t.shape)
            if (t.op == "transpose" and rank >= 2 and t.act is None
                    and list(t.attrs["perm"]) == list(range(rank - 2)) + [rank - 1, rank - 2]
                    and len(graph.consumers(t.name)) == 1 and t.name != graph.output):
                # a @ bᵀ: the kernel reads b transposed, no copy
                mm.attrs["transpose_b"] = not mm.attrs.get("transpose_b", False)
                mm.inputs[1] = t.inputs[0]
                mm.source += f" + folded {t.name}"
                graph.nodes.remove(t)
                graph.reindex()
                changed = True
            users = graph.consumers(mm.name)
            if len(users) == 1 and mm.act is None and mm.name != graph.output:
                c = _scalar_mul(graph, users[0])
                if c is not None:
                    mm.attrs["alpha"] = float(mm.attrs.get("alpha", 1.0)) * c
                    mm.source += f" + folded {users[0].name}"
                    _remove(graph, users[0], mm.name)
                    changed = True
    return graph


def optimize(graph: Graph) -> Graph:
    """The standard pipeline: fold BatchNorm, fuse activations, fold scalars into matmuls."""
    fold_batchnorm(graph)
    fuse_activations(graph)
    fold_scalars_into_matmul(graph)
    graph.validate()
    return graph
