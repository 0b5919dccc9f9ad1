"""Cross-layer equalization and bias absorption (Nagel et al., "Data-Free Quantization", 2019).

For two layers y = W₂ f(W₁ x + b₁) + b₂ with f positively homogeneous per channel (ReLU,
identity, max/avg pooling: f(s·z) = s·f(z) for s > 0), scaling output channel i of layer 1 by
1/sᵢ and input channel i of layer 2 by sᵢ leaves the function unchanged. Nagel's choice
sᵢ = √(r₁ᵢ / r₂ᵢ), with r₁ᵢ = max|W₁[i, :]| and r₂ᵢ = max|W₂[:, i]|, gives both the range
√(r₁ᵢ r₂ᵢ): channels whose weights are tiny next to their neighbours' (typical after BatchNorm
folding into depthwise convolutions) stop wasting the shared grid. Chains of pairs are
iterated until the scales settle.

Bias absorption then moves a constant out of a ReLU: if the pre-activation zᵢ = (W₁x + b₁)ᵢ
never falls below cᵢ ≥ 0, relu(z) = relu(z − c) + c, so b₁ −= c and b₂ += W₂ c, and the
activation range shrinks by c. cᵢ is the smallest zᵢ seen on the calibration data, so the
rewrite is exact on those inputs (Nagel use β − 3γ of the BatchNorm, a guess of the same
bound).

Valid pairs only: layer 1 (conv or linear) feeds layer 2 (conv of any grouping or linear)
alone, through nothing but per-channel positively homogeneous ops — max_pool, avg_pool,
global_avg_pool, zero padding, and a flatten right before a linear layer — and its fused
activation has no upper bound (ReLU6 and clamps are not homogeneous: a per-tensor bound cannot
become per-channel). Absorption additionally needs the ops between to commute with a
per-channel shift (no padding, no avg_pool with padding) and layer 2 without zero padding (its
border would see −c). Everything is a float-graph rewrite, before calibration.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..graph.execute import run_graph, run_node
from ..graph.ir import VIEWS, WEIGHTED, Graph, Node
from ..ops import FLOAT_OPS

ITERATIONS = 20
TOLERANCE = 1e-4
MIN_RANGE = 1e-12


@dataclass
class Pair:
    """Layer ``first`` feeds ``second`` through ``between`` (channel-preserving ops)."""

    first: Node
    second: Node
    between: list[Node]
    repeat: int  # inputs of ``second`` per channel of ``first`` (a flatten of C×L gives L)


def homogeneous_act(node: Node) -> bool:
    """Fused activation f with f(s·z) = s·f(z) for s > 0: none, or a ReLU (lower bound 0)."""
    if node.act is None:
        return True
    lo, hi = node.act
    return hi is None and (lo is None or lo == 0.0)


def _channel_preserving(node: Node) -> bool:
    """A positive per-channel scale passes through the op (registry: ``channel_scaling``)."""
    scaling = FLOAT_OPS[node.op].channel_scaling if node.op in FLOAT_OPS else None
    return scaling is not None and scaling(node) and homogeneous_act(node)


def _pads(node: Node) -> bool:
    """The op reads zeros outside its input (registry: ``pads``)."""
    pads = FLOAT_OPS[node.op].pads if node.op in FLOAT_OPS else None
    return pads is not None and pads(node)


def _is_conv(node: Node) -> bool:
    """A weighted layer with a spatial kernel ([Cout, Cin/groups, (kh,) kw] weights)."""
    return np.ndim(node.params["weight"]) > 2


def find_pairs(graph: Graph) -> list[Pair]:
    """Every (layer, next layer) pair equalization may rescale."""
    pairs = []
    for first in graph.nodes:
        if first.op not in WEIGHTED or not homogeneous_act(first):
            continue
        between: list[Node] = []
        current = first
        while True:
            users = graph.consumers(current.name)
            if len(users) != 1 or current.name == graph.output:
                break
            nxt = users[0]
            if nxt.op in WEIGHTED:
                repeat = _repeat(first, between, nxt)
                if repeat is not None:
                    pairs.append(Pair(first, nxt, between, repeat))
                break
            if not _channel_preserving(nxt):
                break
            between.append(nxt)
            current = nxt
    return pairs


def _repeat(first: Node, between: list[Node], second: Node) -> int | None:
    """Inputs of ``second`` per output channel of ``first``, or None if they do not line up."""
    channels = first.params["weight"].shape[0]
    reshapes = [n for n in between if n.op in VIEWS]  # flattens (channel_scaling views)
    if _is_conv(second):
        if reshapes or second.params["weight"].shape[1] * second.attrs["groups"] != channels:
            return None
        return 1
    fan_in = second.params["weight"].shape[1]
    if reshapes and (len(reshapes) > 1 or between[-1] is not reshapes[0]):
        return None  # only a flatten right before the linear layer
    if fan_in % channels or (fan_in != channels and not reshapes):
        return None
    return fan_in // channels


def output_ranges(node: Node) -> np.ndarray:
    w = np.asarray(node.params["weight"], dtype=np.float64)
    return np.abs(w.reshape(w.shape[0], -1)).max(axis=1)


def input_ranges(pair: Pair) -> np.ndarray:
    """max |W₂| over everything that multiplies channel i of layer 1's output."""
    w = np.asarray(pair.second.params["weight"], dtype=np.float64)
    channels = pair.first.params["weight"].shape[0]
    if pair.second.op == "linear":
        return np.abs(w).reshape(w.shape[0], channels, pair.repeat).max(axis=(0, 2))
    groups = pair.second.attrs["groups"]
    cout, cin_g = w.shape[0], w.shape[1]
    per_group = np.abs(w).reshape(groups, cout // groups, cin_g, -1).max(axis=(1, 3))
    return per_group.reshape(channels)


def scale_pair(pair: Pair, s: np.ndarray) -> None:
    """Layer 1's output channel i divided by sᵢ, layer 2's input channel i multiplied by sᵢ."""
    first, second = pair.first, pair.second
    w1 = np.asarray(first.params["weight"], dtype=np.float64)
    first.params["weight"] = (w1 / s.reshape((-1,) + (1,) * (w1.ndim - 1))).astype(np.float32)
    if first.params.get("bias") is not None:
        first.params["bias"] = (first.params["bias"] / s).astype(np.float32)
    w2 = np.asarray(second.params["weight"], dtype=np.float64)
    if second.op == "linear":
        factor = np.repeat(s, pair.repeat).reshape(1, -1)
    else:
        groups = second.attrs["groups"]
        cout, cin_g = w2.shape[0], w2.shape[1]
        per_row = s.reshape(groups, 1, cin_g).repeat(cout // groups, axis=1).reshape(cout, cin_g)
        factor = per_row.reshape((cout, cin_g) + (1,) * (w2.ndim - 2))
    second.params["weight"] = (w2 * factor).astype(np.float32)


def equalize_scales(pair: Pair) -> np.ndarray:
    """Nagel's sᵢ = √(r₁ᵢ / r₂ᵢ); 1 for channels with a zero range on either side."""
    r1, r2 = output_ranges(pair.first), input_ranges(pair)
    ok = (r1 > MIN_RANGE) & (r2 > MIN_RANGE)
    return np.where(ok, np.sqrt(np.where(ok, r1, 1.0) / np.where(ok, r2, 1.0)), 1.0)


def equalize(graph: Graph, iterations: int = ITERATIONS) -> tuple[Graph, int]:
    """A copy of ``graph`` with every valid pair equalized; returns (graph, number of pairs)."""
    graph = copy.deepcopy(graph)
    pairs = find_pairs(graph)
    for _ in range(iterations):
        worst = 0.0
        for pair in pairs:
            s = equalize_scales(pair)
            scale_pair(pair, s)
            worst = max(worst, float(np.max(np.abs(np.log(s)))) if s.size else 0.0)
        if worst < TOLERANCE:
            break
    return graph, len(pairs)


def absorbable(pair: Pair) -> bool:
    """Bias absorption is exact: ReLU on layer 1, shift-commuting ops between, no padding."""
    if pair.first.act is None or pair.first.act[0] != 0.0:
        return False
    return not any(_pads(node) for node in [*pair.between, pair.second])


def pre_activation_minima(graph: Graph, nodes: list[Node],
                          batches: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Smallest pre-activation value of each output channel of each node over the data."""
    lows: dict[str, np.ndarray] = {}
    for x in batches:
        values = run_graph(graph, x, record=True)
        for node in nodes:
            bare = copy.copy(node)
            bare.act = None
            z = run_node(bare, [values[node.inputs[0]]])
            m = torch.amin(z, dim=[0] + list(range(2, z.dim()))).double().numpy()
            lows[node.name] = np.minimum(lows[node.name], m) if node.name in lows else m
    return lows


def absorb_biases(graph: Graph, batches: list[np.ndarray]) -> tuple[Graph, int]:
    """Move cᵢ = max(0, min zᵢ) out of each absorbable pair's ReLU; returns (graph, count).

    The minima are measured once on the graph as given: absorbing a pair leaves layer 2's
    pre-activation unchanged on the calibration data, so the next pair's bound still holds.
    """
    graph = copy.deepcopy(graph)
    pairs = [p for p in find_pairs(graph) if absorbable(p)]
    lows = pre_activation_minima(graph, [p.first for p in pairs], batches)
    count = 0
    for pair in pairs:
        c = np.maximum(lows[pair.first.name], 0.0)
        if not np.any(c > 0):
            continue
        first, second = pair.first, pair.second
        b1 = first.params.get("bias")
        b1 = np.zeros(c.shape) if b1 is None else np.asarray(b1, dtype=np.float64)
        first.params["bias"] = (b1 - c).astype(np.float32)
        w2 = np.asarray(second.params["weight"], dtype=np.float64)
        b2 = second.params.get("bias")
        b2 = np.zeros(w2.shape[0]) if b2 is None else np.asarray(b2, dtype=np.float64)
        second.params["bias"] = (b2 + _through_second(pair, w2, c)).astype(np.float32)
        count += 1
    return graph, count


def _through_second(pair: Pair, w2: np.ndarray, c: np.ndarray) -> np.ndarray:
    """W₂ applied to the constant input c (per channel of layer 1), without padding."""
    if pair.second.op == "linear":
        return w2 @ np.repeat(c, pair.repeat)
    groups = pair.second.attrs["groups"]
    cout, cin_g = w2.shape[0], w2.shape[1]
    per_tap = w2.reshape(cout, cin_g, -1).sum(axis=2)  # constant input: every tap sees c
    c_in = c.reshape(groups, 1, cin_g).repeat(cout // groups, axis=1).reshape(cout, cin_g)
    return (per_tap * c_in).sum(axis=1)
