"""Run a float Graph with PyTorch functional ops.

Used for calibration (record every node's output), for shape inference after capture, and as
the ``forward`` of graphs imported from ONNX. It is the float reference the integer model is
compared against: each op is the plain PyTorch definition, kept in its op module
(``intquant.ops.<kind>``, ``FloatOpDef.run``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..ops import float_op
from .ir import Graph, Node

Tensor = torch.Tensor


def apply_act(node: Node, y: Tensor) -> Tensor:
    """Fused activation bounds (lo, hi) in real units."""
    if node.act is None:
        return y
    lo, hi = node.act
    return torch.clamp(y, lo, hi)


def run_node(node: Node, inputs: list[Tensor]) -> Tensor:
    """The node's float semantics (its op module's ``FloatOpDef.run``), then fused bounds."""
    return apply_act(node, float_op(node.op).run(node, inputs))


@torch.no_grad()
def run_graph(
    graph: Graph, x: Tensor | np.ndarray, *, record: bool = False
) -> Tensor | dict[str, Tensor]:
    """Run the float graph on a batch; with ``record`` return every node's output by name."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)) if isinstance(x, np.ndarray) else x
    values: dict[str, Tensor] = {}
    for node in graph.nodes:
        if node.op == "input":
            values[node.name] = x.float()
            continue
        try:
            values[node.name] = run_node(node, [values[i] for i in node.inputs])
        except Exception as e:  # name the node: a shape error deep in torch says nothing useful
            raise ValueError(
                f"node {node.name!r} ({node.op}) failed on input shapes "
                f"{[tuple(values[i].shape) for i in node.inputs]}: {e}"
            ) from e
    return values if record else values[graph.output]


def infer_shapes(graph: Graph, input_shape: tuple[int, ...]) -> None:
    """Fill ``node.shape`` (non-batch) by running a zero batch of one through the graph."""
    values = run_graph(graph, torch.zeros((1,) + tuple(input_shape)), record=True)
    for node in graph.nodes:
        node.shape = tuple(values[node.name].shape[1:])


class GraphModule(torch.nn.Module):
    """A float Graph as an nn.Module (what ``from_onnx`` returns); ``intquant.quantize`` takes
    its graph directly instead of re-capturing it."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph

    def forward(self, x: Tensor | np.ndarray) -> Tensor:  # noqa: D401
        return run_graph(self.graph, x)
