"""Fuse the decompositions exporters write for modern activations into one activation node.

ONNX exporters spell SiLU as ``x · Sigmoid(x)``, Hardswish (opset < 14) as
``x · HardSigmoid(x)``, and GELU (opset < 20) as ``0.5 · x · (1 + Erf(x / √2))`` or
``0.5 · x · (1 + Tanh(√(2/π) · (x + 0.044715 · x³)))``; people write the same by hand in
PyTorch. Quantized op by op, each of those intermediate tensors would be rounded to 8 bits —
the product ``x · sigmoid(x)`` of two rounded tensors is far worse than one table of SiLU.
This pass finds the patterns in the float Graph (after capture or ONNX import, before
BatchNorm folding and activation fusion) and replaces them by one ``silu`` / ``hardswish`` /
``gelu`` node: an exact rewrite of the float function up to float32 rounding.

A pattern matches only when every intermediate node has no other consumer (it is removed) and
its constants equal the formula's within float32 precision. The product of the pattern may be
associated in any order (``(0.5·x)·A``, ``0.5·(x·A)``, ``x·(A·0.5)``) and scalar factors may be
``mul_const`` nodes or scalar affine BatchNorms (what the ONNX importer makes of ``Add(t, 1)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .ir import Graph, Node
from .passes import bn_scale_shift


@dataclass
class _Match:
    """What replaces the root: the op, its attrs, the input, and the nodes that go away."""

    op: str
    x: str
    attrs: dict = field(default_factory=dict)
    internal: list[str] = field(default_factory=list)


def _close(v: float, want: float) -> bool:
    return math.isclose(v, want, rel_tol=1e-5, abs_tol=1e-7)


def _private(g: Graph, name: str) -> bool:
    """A node this pattern alone consumes (so it can be removed) and that fuses nothing."""
    node = g.node(name)
    return (node.op != "input" and node.act is None and name != g.output
            and len(g.consumers(name)) == 1)


def _scalar_affine(node: Node) -> tuple[float, float] | None:
    """(a, b) if the node computes a·x + b with the same a, b on every channel."""
    if node.act is not None:
        return None
    if node.op == "mul_const":
        a = np.asarray(node.params["value"], np.float64).reshape(-1)
        b = np.asarray(node.params.get("bias", np.zeros(1)), np.float64).reshape(-1)
    elif node.op == "batchnorm":
        a, b = bn_scale_shift(node)
    else:
        return None
    if a.size == 0 or np.ptp(a) != 0 or np.ptp(b) != 0:
        return None
    return float(a[0]), float(b[0])


def _affine_of(g: Graph, name: str) -> tuple[str, float, float, list[str]]:
    """Follow private scalar-affine nodes down from ``name``: (source, a, b, nodes passed)
    with value(name) = a·value(source) + b."""
    a_tot, b_tot, passed = 1.0, 0.0, []
    while _private(g, name):
        node = g.node(name)
        ab = _scalar_affine(node)
        if ab is None:
            break
        a_tot, b_tot = a_tot * ab[0], b_tot + a_tot * ab[1]
        passed.append(name)
        name = node.inputs[0]
    return name, a_tot, b_tot, passed


def _product(g: Graph, name: str, root: bool = False) -> tuple[list[str], float, list[str]]:
    """value(name) = coef · Π factors, expanding private ``mul`` and bias-free scalar
    ``mul_const`` nodes (the root is expanded whatever its consumers): (factors, coef, nodes)."""
    node = g.node(name)
    if (root and node.act is None) or _private(g, name):
        if node.op == "mul":
            f1, c1, n1 = _product(g, node.inputs[0])
            f2, c2, n2 = _product(g, node.inputs[1])
            return f1 + f2, c1 * c2, n1 + n2 + [name]
        ab = _scalar_affine(node)
        if ab is not None and ab[1] == 0.0:
            f, c, n = _product(g, node.inputs[0])
            return f, c * ab[0], n + [name]
    return [name], 1.0, []


def _one_plus(g: Graph, name: str, op: str) -> tuple[str, list[str]] | None:
    """``1 + op(t)``: (t, nodes) if ``name`` is that, with private nodes."""
    src, a, b, passed = _affine_of(g, name)
    if not passed or not (_close(a, 1.0) and _close(b, 1.0)) or not _private(g, src):
        return None
    node = g.node(src)
    if node.op != op:
        return None
    return node.inputs[0], passed + [src]


def _match_gelu_erf(g: Graph, x: str, other: str, coef: float) -> _Match | None:
    """0.5 · x · (1 + erf(x / √2))."""
    if not _close(coef, 0.5):
        return None
    found = _one_plus(g, other, "erf")
    if found is None:
        return None
    inner, nodes = found
    src, a, b, passed = _affine_of(g, inner)
    if src != x or not _close(a, 1 / math.sqrt(2.0)) or b != 0.0:
        return None
    return _Match("gelu", x, {"approximate": "none"}, nodes + passed)


def _match_gelu_tanh(g: Graph, x: str, other: str, coef: float) -> _Match | None:
    """0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))."""
    if not _close(coef, 0.5):
        return None
    found = _one_plus(g, other, "tanh")
    if found is None:
        return None
    inner, nodes = found
    src, a, b, passed = _affine_of(g, inner)
    if not _close(a, math.sqrt(2.0 / math.pi)) or b != 0.0 or not _private(g, src):
        return None
    add = g.node(src)
    if add.op != "add" or x not in add.inputs:
        return None
    cube = add.inputs[1] if add.inputs[0] == x else add.inputs[0]
    if not _private(g, cube):
        return None
    factors, c, cube_nodes = _product(g, cube)
    if factors != [x, x, x] or not _close(c, 0.044715):
        return None
    return _Match("gelu", x, {"approximate": "tanh"}, nodes + passed + [src] + cube_nodes)


def _match_silu(g: Graph, x: str, other: str, coef: float) -> _Match | None:
    """x · sigmoid(x)."""
    node = g.node(other)
    if _close(coef, 1.0) and _private(g, other) and node.op == "sigmoid" and \
            node.inputs == [x]:
        return _Match("silu", x, {}, [other])
    return None


def _match_hardswish(g: Graph, x: str, other: str, coef: float) -> _Match | None:
    """x · hardsigmoid(x) (α = 1/6, β = 1/2), or x · relu6(x + 3) · (1/6)."""
    node = g.node(other)
    if not _private(g, other):
        return None
    if node.op == "hardsigmoid" and node.inputs == [x] and _close(coef, 1.0) and \
            _close(node.attrs.get("alpha", 1 / 6), 1 / 6) and \
            _close(node.attrs.get("beta", 0.5), 0.5):
        return _Match("hardswish", x, {}, [other])
    if node.op == "clamp" and _close(coef, 1 / 6) and node.attrs.get("min") == 0.0 and \
            node.attrs.get("max") == 6.0:
        src, a, b, passed = _affine_of(g, node.inputs[0])
        if src == x and _close(a, 1.0) and _close(b, 3.0) and passed:
            return _Match("hardswish", x, {}, [other] + passed)
    return None


_MATCHERS = (_match_gelu_erf, _match_gelu_tanh, _match_silu, _match_hardswish)


def _match(g: Graph, root: Node) -> _Match | None:
    """A pattern rooted at ``root``, a product of x and one activation-shaped factor."""
    if root.op not in ("mul", "mul_const") or root.act is not None:
        return None
    factors, coef, nodes = _product(g, root.name, root=True)
    if len(factors) != 2:
        return None
    for x, other in (factors, factors[::-1]):
        if g.node(x).shape != root.shape:
            continue
        for matcher in _MATCHERS:
            m = matcher(g, x, other, coef)
            if m is not None:
                m.internal += [n for n in nodes if n != root.name]
                return m
    return None


def fuse_activation_patterns(graph: Graph) -> Graph:
    """Replace every SiLU / Hardswish / GELU decomposition by one node (see module doc)."""
    changed = True
    while changed:
        changed = False
        for root in list(graph.nodes):
            m = _match(graph, root)
            if m is None:
                continue
            root.op, root.inputs, root.attrs, root.params = m.op, [m.x], m.attrs, {}
            root.source += f" + fused {m.op} pattern ({', '.join(m.internal)})"
            gone = set(m.internal)
            graph.nodes = [n for n in graph.nodes if n.name not in gone]
            graph.reindex()
            changed = True
            break
    return graph
