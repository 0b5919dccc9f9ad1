"""The NumPy integer reference interpreter: THE specification the C kernels must match bit for bit.

Each op kind's reference lives in its module (``intquant.ops.<kind>``, ``run``); this module
runs a graph through them, in batch chunks. Every array in the run path is an integer array
(accumulators are exact; the graph's validation guarantees they also fit the int32/int64
accumulators the C kernels use), so there is no float anywhere between the integer input and
the integer output. Requantization is delegated to
``intquant.numerics`` so that exactly one implementation of the TFLM rounding exists.

Arrays carry a leading batch dimension: ``(N, *tensor.shape)``.
"""

from __future__ import annotations

import math

import numpy as np

from .intgraph import IntGraph, TensorInfo
from .intgraph.types import value_dtype
from .ops import OPS

# The whole graph runs on batch chunks whose largest tensor has about this many elements.
_CHUNK_ELEMENTS = 2**20


class InterpreterError(ValueError):
    """The input given to ``run`` does not fit the graph."""


def run(
    graph: IntGraph, x: np.ndarray, *, return_all: bool = False, validate: bool = True
) -> np.ndarray | dict[str, np.ndarray]:
    """Run ``graph`` on the integer batch ``x`` of shape ``(N, *input.shape)``.

    ``x`` must already be in the input tensor's dtype (quantize on the host first, e.g. with
    ``numerics.quantize``); nothing is converted silently. Returns the output tensor, or with
    ``return_all`` every tensor by name (the input included), each in its own dtype.
    ``validate=False`` skips the graph check for callers that validated once already.
    """
    if validate:
        graph.validate()
    info = graph.tensors[graph.input]
    _check_input(info, x)
    step = _batch_chunk(graph)
    if x.shape[0] <= step:
        values = _run_batch(graph, x)
        return values if return_all else values[graph.output]
    parts = [_run_batch(graph, x[i : i + step]) for i in range(0, x.shape[0], step)]
    if not return_all:
        return np.concatenate([p[graph.output] for p in parts])
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _batch_chunk(graph: IntGraph) -> int:
    """Samples per chunk so the largest tensor stays around 2^20 elements.

    Bounds the memory of big batches (conv patches and requantization temporaries are int64);
    results do not depend on the chunking since every op works per sample.
    """
    largest = max(math.prod(t.shape) for t in graph.tensors.values())
    return max(1, _CHUNK_ELEMENTS // largest)


def _run_batch(graph: IntGraph, x: np.ndarray) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {graph.input: x}
    for op in graph.ops:
        out_info = graph.tensors[op.output]
        values[op.output] = OPS[op.kind].run(op, [values[n] for n in op.inputs], out_info)
    return values


def _check_input(info: TensorInfo, x: np.ndarray) -> None:
    if not isinstance(x, np.ndarray):
        raise InterpreterError(f"input must be a numpy array, got {type(x).__name__}")
    if x.dtype != value_dtype(info.dtype):
        raise InterpreterError(
            f"input '{info.name}' must have dtype {info.dtype}, got {x.dtype}; quantize it first "
            f"(numerics.quantize with scale {info.scale} and zero_point {info.zero_point})"
        )
    if x.ndim != len(info.shape) + 1 or tuple(x.shape[1:]) != tuple(info.shape):
        raise InterpreterError(
            f"input '{info.name}' must have shape (N, {', '.join(map(str, info.shape))}), "
            f"got {x.shape} (the leading batch dimension is required)"
        )
