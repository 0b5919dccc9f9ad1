"""Run a float Graph with PyTorch functional ops.

Used for calibration (record every node's output), for shape inference after capture, and as
the ``forward`` of graphs imported from ONNX. It is the float reference the integer model is
compared against, so each op is the plain PyTorch definition.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .ir import Graph, Node

Tensor = torch.Tensor


def _p(node: Node, key: str) -> Tensor | None:
    v = node.params.get(key)
    return None if v is None else torch.as_tensor(np.asarray(v, dtype=np.float32))


def _pad_input(x: Tensor, padding: list[int], dims: int, value: float = 0.0) -> Tensor:
    """Apply [top, left, bottom, right] padding (1-D uses left/right only)."""
    t, left, b, r = padding
    if dims == 1:
        return F.pad(x, (left, r), value=value) if (left or r) else x
    return F.pad(x, (left, r, t, b), value=value) if (t or left or b or r) else x


def run_conv(node: Node, x: Tensor) -> Tensor:
    a = node.attrs
    dims = a["dims"]
    x = _pad_input(x, a["padding"], dims)
    w, b = _p(node, "weight"), _p(node, "bias")
    if dims == 1:
        return F.conv1d(x, w, b, a["stride"][1], 0, a["dilation"][1], a["groups"])
    return F.conv2d(x, w, b, a["stride"], 0, a["dilation"], a["groups"])


def run_linear(node: Node, x: Tensor) -> Tensor:
    return F.linear(x, _p(node, "weight"), _p(node, "bias"))


def run_batchnorm(node: Node, x: Tensor) -> Tensor:
    return F.batch_norm(
        x, _p(node, "mean"), _p(node, "var"), _p(node, "weight"), _p(node, "bias"),
        False, 0.0, node.attrs.get("eps", 1e-5),
    )


def run_max_pool(node: Node, x: Tensor) -> Tensor:
    a = node.attrs
    x = _pad_input(x, a["padding"], a["dims"], value=-float("inf"))
    if a["dims"] == 1:
        return F.max_pool1d(x, a["kernel"][1], a["stride"][1], 0, a["dilation"][1])
    return F.max_pool2d(x, a["kernel"], a["stride"], 0, a["dilation"])


def run_avg_pool(node: Node, x: Tensor) -> Tensor:
    a = node.attrs
    t, left, b, r = a["padding"]
    cip = bool(a.get("count_include_pad", True))
    if a["dims"] == 1:
        x2 = x.unsqueeze(2)
    else:
        x2 = x
    kh, kw = a["kernel"]
    sh, sw = a["stride"]
    # Sum over the window (zero padding), divided by the valid count or the full window.
    padded = F.pad(x2, (left, r, t, b))
    ones = F.pad(torch.ones_like(x2[:, :1]), (left, r, t, b))
    s = F.avg_pool2d(padded, (kh, kw), (sh, sw)) * (kh * kw)
    if cip:
        out = s / (kh * kw)
    else:
        cnt = F.avg_pool2d(ones, (kh, kw), (sh, sw)) * (kh * kw)
        out = s / cnt
    return out.squeeze(2) if a["dims"] == 1 else out


def run_global_avg_pool(node: Node, x: Tensor) -> Tensor:
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def run_clamp(node: Node, x: Tensor) -> Tensor:
    return torch.clamp(x, node.attrs.get("min"), node.attrs.get("max"))


def run_pad(node: Node, x: Tensor) -> Tensor:
    pads = node.attrs["pads"]
    # F.pad wants pairs for the last dim first.
    torch_pads: list[int] = []
    for d in reversed(range(len(pads) // 2)):
        torch_pads += [pads[2 * d], pads[2 * d + 1]]
    return F.pad(x, torch_pads, value=float(node.attrs.get("value", 0.0)))


def run_mul_const(node: Node, x: Tensor) -> Tensor:
    v = _p(node, "value")
    if v.dim() == 1 and x.dim() > 1 and v.numel() == x.shape[1] and v.numel() > 1:
        v = v.reshape((1, -1) + (1,) * (x.dim() - 2))
    b = _p(node, "bias")
    if b is None:
        return x * v
    if b.dim() == 1 and x.dim() > 1 and b.numel() == x.shape[1] and b.numel() > 1:
        b = b.reshape((1, -1) + (1,) * (x.dim() - 2))
    return x * v + b


def run_lrn(node: Node, x: Tensor) -> Tensor:
    """ONNX LRN: x / (bias + alpha/size · Σ x²)^beta, the sum over channels
    c − ⌊(size−1)/2⌋ .. c + ⌈(size−1)/2⌉ (zero outside)."""
    a = node.attrs
    size = a["size"]
    sq = (x * x).reshape(x.shape[0], 1, x.shape[1], -1)  # pool over C as a spatial axis
    sq = F.pad(sq, (0, 0, (size - 1) // 2, size // 2))
    s = F.avg_pool2d(sq, (size, 1), stride=1).squeeze(1).reshape(x.shape) * size
    return x / (a["bias"] + a["alpha"] / size * s) ** a["beta"]


UNARY: dict[str, Callable[[Node, Tensor], Tensor]] = {
    "conv": run_conv,
    "linear": run_linear,
    "batchnorm": run_batchnorm,
    "relu": lambda n, x: F.relu(x),
    "clamp": run_clamp,
    "leaky_relu": lambda n, x: F.leaky_relu(x, n.attrs["negative_slope"]),
    "sigmoid": lambda n, x: torch.sigmoid(x),
    "tanh": lambda n, x: torch.tanh(x),
    "softmax": lambda n, x: torch.softmax(x, dim=-1),
    "max_pool": run_max_pool,
    "avg_pool": run_avg_pool,
    "global_avg_pool": run_global_avg_pool,
    "reshape": lambda n, x: x.reshape((x.shape[0],) + tuple(n.attrs["shape"])),
    "transpose": lambda n, x: x.permute(0, *[p + 1 for p in n.attrs["perm"]]),
    "pad": run_pad,
    "mul_const": run_mul_const,
    "lrn": run_lrn,
}


def apply_act(node: Node, y: Tensor) -> Tensor:
    """Fused activation bounds (lo, hi) in real units."""
    if node.act is None:
        return y
    lo, hi = node.act
    return torch.clamp(y, lo, hi)


def run_node(node: Node, inputs: list[Tensor]) -> Tensor:
    if node.op == "add":
        y = inputs[0] + inputs[1]
    elif node.op == "concat":
        y = torch.cat(inputs, dim=node.attrs["axis"] + 1)
    else:
        y = UNARY[node.op](node, inputs[0])
    return apply_act(node, y)


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
