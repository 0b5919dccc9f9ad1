"""IntGraph data structures: tensors, ops, the graph, and the size helpers every back end uses.

The semantics of each op kind live in its module under ``intquant.ops``; this module only holds
the containers (and the constants of the integer contract that validation and ops share).

NumPy only (never torch): a deployable graph can be inspected and run without PyTorch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .limits import Limits

ACTIVATION_DTYPES: dict[str, tuple[int, int]] = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "bit": (-1, 1),
}
# "bit": a binary (BNN / XNOR-Net) activation whose values are -1 and +1 (real = scale·value,
# zero point 0). The interpreter holds the values as int8; the C back end stores them packed,
# one bit per value (``packed_bit_bytes``: each pixel's channels in whole 32-bit words, bit set
# for -1). Only ops whose ``OpDef.dtypes`` name "bit" read or write such tensors, and the graph
# input and output are never packed (the C API keeps one element per byte).
BIT = "bit"
BIT_WORD = 32  # values per storage word
ROUNDINGS = ("double", "single", "pow2")

INT32_MAX = 2**31 - 1
M_LIMIT = 2**31  # multipliers live in [0, 2^31)
SHIFT_RANGE = (-31, 30)
SHIFT_MAX_16X8 = 7  # TFLM's int64 MultiplyByQuantizedMultiplier asserts shift < 8
ACC_LIMIT = {32: 2**31, 64: 2**47}


class IntGraphError(ValueError):
    """An IntGraph (or .iqm file) breaks the contract; the message names op, index and field."""


@dataclass
class TensorInfo:
    """One activation tensor: shape without batch (PyTorch layout), storage dtype, qparams.

    ``scale`` is metadata for the host edges only; no op reads it.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)


@dataclass(eq=False)
class Op:
    """One integer op: ``kind`` selects the semantics (``intquant.ops.<kind>``)."""

    name: str
    kind: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    consts: dict[str, np.ndarray] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        # Arrays compare element-wise, so the dataclass default (== on dicts of arrays) would
        # raise; equal means same fields and consts equal in dtype, shape and every value.
        if not isinstance(other, Op):
            return NotImplemented
        if (self.name, self.kind, list(self.inputs), self.output, self.attrs) != (
            other.name,
            other.kind,
            list(other.inputs),
            other.output,
            other.attrs,
        ):
            return False
        if self.consts.keys() != other.consts.keys():
            return False
        return all(
            self.consts[k].dtype == other.consts[k].dtype
            and np.array_equal(self.consts[k], other.consts[k])
            for k in self.consts
        )


@dataclass
class IntGraph:
    """Tensors, ops in topological order, one input and one output, and host-edge ``meta``."""

    tensors: dict[str, TensorInfo]
    ops: list[Op]
    input: str
    output: str
    meta: dict[str, Any] = field(default_factory=dict)

    def validate(self, limits: Limits | None = None) -> IntGraph:
        """Check the whole contract and the resource ``limits`` (default: ``DEFAULT_LIMITS``);
        raise IntGraphError naming the offending field."""
        from .validate import validate_graph  # validation dispatches through the op registry

        validate_graph(self, limits)
        return self

    def op_by_name(self, name: str) -> Op:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(f"no op named {name!r}")


def value_dtype(dtype: str) -> np.dtype:
    """NumPy dtype of the interpreter's values of a tensor dtype ("bit" values are int8 ±1)."""
    return np.dtype(np.int8) if dtype == BIT else np.dtype(dtype)


def bit_words_per_pixel(channels: int) -> int:
    """Storage words of one pixel of a packed "bit" tensor with ``channels`` channels."""
    return -(-channels // BIT_WORD)


def packed_bit_bytes(shape: tuple[int, ...]) -> int:
    """Bytes of a packed "bit" tensor: (C,) is one pixel, (C, L) L pixels, (C, H, W) H·W."""
    pixels = math.prod(shape[1:])
    return pixels * bit_words_per_pixel(shape[0]) * (BIT_WORD // 8)


def tensor_nbytes(info: TensorInfo) -> int:
    """Bytes of one sample of the tensor as the C back end stores it (no batch dimension)."""
    if info.dtype == BIT:
        return packed_bit_bytes(info.shape)
    return math.prod(info.shape) * np.dtype(info.dtype).itemsize


def op_macs(op: Op, graph: IntGraph) -> int:
    """Multiply-accumulates per inference (batch 1) of one op (0 for ops without products)."""
    from ..ops import op_def

    return op_def(op.kind).macs(op, graph)


def weight_bytes(graph: IntGraph) -> int:
    """Bytes of all constants (weights, biases, multipliers, shifts, tables): the flash data."""
    return sum(int(c.nbytes) for op in graph.ops for c in op.consts.values())
