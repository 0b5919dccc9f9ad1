"""The quantized network beside the float one, unit by unit: what data-driven PTQ methods see.

Rounding a layer well needs its real inputs. The float network gives the *target* (what the
layer should output); the network quantized so far — weights on their integer grids, every
tensor rounded to its activation format — gives the inputs the integer layer will really
receive. :func:`walk` runs both on the same samples in graph order, one *unit* at a time (a
weighted layer, or a block of nodes for block reconstruction), and calls a visitor before each
unit's quantized output is computed, so the visitor can choose that unit's integer weights,
bias and activation formats from the errors that arrive from upstream. Nothing is stored
beyond the tensors still needed downstream.

This is a fake-quant simulation in float32 (activations rounded to their grids, weights equal
to code · scale); the integer graph differs from it only by requantization rounding details.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..graph.execute import run_node
from ..graph.ir import Graph, Node
from ..numerics import QParams
from ..ops import float_op

Values = dict[str, torch.Tensor]
Visitor = Callable[[list[Node], Values, Values], None]

MEMORY_BUDGET = 1 << 30  # bytes of live float + quantized tensors the walk may hold


def round_to_format(y: torch.Tensor, qp: QParams) -> torch.Tensor:
    """y rounded to a per-tensor activation grid (half to even, saturating), in real units."""
    s, z = float(qp.scale[0]), float(qp.zero_point[0])
    return (torch.clamp(torch.round(y / s) + z, qp.qmin, qp.qmax) - z) * s


def weighted_output(node: Node, x: torch.Tensor, weight: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None) -> torch.Tensor:
    """Pre-activation output of a conv/linear node (the graph's padding semantics), with
    ``weight``/``bias`` in place of the node's own when given (they may require grad)."""
    w = torch.as_tensor(np.asarray(node.params["weight"], np.float32)) if weight is None \
        else weight
    if bias is None and node.params.get("bias") is not None:
        bias = torch.as_tensor(np.asarray(node.params["bias"], np.float32))
    forward = float_op(node.op).weighted_forward
    if forward is not None:
        return forward(node, x, w, bias)
    if node.op == "linear":
        return F.linear(x, w, bias)
    a = node.attrs
    top, left, bottom, right = a["padding"]
    if a["dims"] == 1:
        x = F.pad(x, (left, right)) if (left or right) else x
        return F.conv1d(x, w, bias, a["stride"][1], 0, a["dilation"][1], a["groups"])
    x = F.pad(x, (left, right, top, bottom)) if (top or left or bottom or right) else x
    return F.conv2d(x, w, bias, a["stride"], 0, a["dilation"], a["groups"])


def quantized_output(node: Node, inputs: list[torch.Tensor],
                     acts: Mapping[str, QParams]) -> torch.Tensor:
    """The node run on quantized inputs, its output rounded to its activation format."""
    return round_to_format(run_node(node, inputs), acts[node.name])


def snap(codes: np.ndarray, qp: QParams) -> np.ndarray:
    """Float64 weights equal to code · scale: lowering's round(w / s) gives back ``codes``
    exactly (|w/s − code| is a few ulps of the code, far below 1/2)."""
    scale, _ = qp.broadcast(codes.shape)
    return codes.astype(np.float64) * scale


def units_of(graph: Graph) -> list[list[str]]:
    """One node per unit (layer-wise methods)."""
    return [[n.name] for n in graph.nodes]


def peak_bytes_per_sample(graph: Graph) -> int:
    """Bytes per sample of the largest set of tensors alive at once (float + quantized)."""
    last_use = {n.name: i for i, n in enumerate(graph.nodes)}
    for i, n in enumerate(graph.nodes):
        for src in n.inputs:
            last_use[src] = max(last_use[src], i)
    last_use[graph.output] = len(graph.nodes)
    peak = 0
    for i in range(len(graph.nodes)):
        live = sum(int(np.prod(n.shape)) for j, n in enumerate(graph.nodes)
                   if j <= i <= last_use[n.name])
        peak = max(peak, live)
    return 2 * 4 * peak


def sample_count(graph: Graph, wanted: int) -> int:
    """How many samples the walk holds: ``wanted``, fewer if the tensors would not fit."""
    return int(max(1, min(wanted, MEMORY_BUDGET // max(peak_bytes_per_sample(graph), 1))))


@torch.no_grad()
def walk(float_graph: Graph, graph: Graph, acts: Mapping[str, QParams], x: np.ndarray,
         visit: Visitor, units: list[list[str]] | None = None) -> torch.Tensor:
    """Run the float network (``float_graph``) and the quantized one (``graph``, whose weights
    the visitor sets) side by side on ``x``, unit by unit.

    ``visit(nodes, float_values, quant_values)`` is called before each unit's quantized outputs
    are computed; the value dicts hold every tensor computed so far and still needed (float
    network / quantized network). It may edit the unit's nodes of ``graph`` and ``acts`` in
    place. Returns the quantized network's output.
    """
    units = units_of(graph) if units is None else units
    consumers = {n.name: 0 for n in graph.nodes}
    for n in graph.nodes:
        for src in n.inputs:
            consumers[src] += 1
    vf: Values = {}
    vq: Values = {}
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    for unit in units:
        nodes = [graph.node(name) for name in unit]
        visit(nodes, vf, vq)
        for node in nodes:
            if node.op == "input":
                vf[node.name] = xt
                vq[node.name] = round_to_format(xt, acts[node.name])
                continue
            vf[node.name] = run_node(float_graph.node(node.name), [vf[i] for i in node.inputs])
            vq[node.name] = quantized_output(node, [vq[i] for i in node.inputs], acts)
            for src in node.inputs:
                consumers[src] -= 1
                if consumers[src] == 0 and src != graph.output:
                    del vf[src], vq[src]
    return vq[graph.output]
