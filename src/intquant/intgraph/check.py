"""Validation vocabulary shared by every op module: error context, attr/const readers, windows.

Each op module under ``intquant.ops`` validates its own attrs and consts with these helpers, so
every message has the same shape (``op <index> '<name>' (<kind>): ...``) and names the field.
"""

from __future__ import annotations

import math

import numpy as np

from .limits import DEFAULT_LIMITS, Limits
from .types import (
    ACTIVATION_DTYPES,
    M_LIMIT,
    ROUNDINGS,
    SHIFT_RANGE,
    IntGraph,
    IntGraphError,
    Op,
    TensorInfo,
)


class OpCheck:
    """Error context for one op: every message starts ``op i 'name' (kind):``."""

    def __init__(
        self, graph: IntGraph, index: int, op: Op, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.graph = graph
        self.index = index
        self.op = op
        self.limits = limits

    def fail(self, msg: str) -> IntGraphError:
        return IntGraphError(f"op {self.index} {self.op.name!r} ({self.op.kind}): {msg}")

    # -- tensors -------------------------------------------------------------------------------
    def tensor(self, name: str) -> TensorInfo:
        return self.graph.tensors[name]

    @property
    def out(self) -> TensorInfo:
        return self.graph.tensors[self.op.output]

    def ins(self) -> list[TensorInfo]:
        return [self.graph.tensors[n] for n in self.op.inputs]

    # -- attrs ---------------------------------------------------------------------------------
    def int_attr(self, key: str, lo: int | None = None, hi: int | None = None) -> int:
        if key not in self.op.attrs:
            raise self.fail(f"missing attr '{key}'")
        v = self.op.attrs[key]
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise self.fail(f"attr '{key}' must be an integer, got {v!r}")
        v = int(v)
        if lo is not None and v < lo or hi is not None and v > hi:
            raise self.fail(f"attr '{key}' = {v} is out of range [{lo}, {hi}]")
        return v

    def list_attr(
        self, key: str, length: int | None = None, lo: int | None = None, hi: int | None = None
    ) -> list[int]:
        if key not in self.op.attrs:
            raise self.fail(f"missing attr '{key}'")
        v = self.op.attrs[key]
        if not isinstance(v, list | tuple) or any(
            isinstance(e, bool) or not isinstance(e, int | np.integer) for e in v
        ):
            raise self.fail(f"attr '{key}' must be a list of integers, got {v!r}")
        v = [int(e) for e in v]
        if length is not None and len(v) != length:
            raise self.fail(f"attr '{key}' must have {length} entries, got {len(v)}: {v}")
        if lo is not None and any(e < lo for e in v):
            raise self.fail(f"attr '{key}' entries must be >= {lo}, got {v}")
        if hi is not None and any(e > hi for e in v):
            raise self.fail(f"attr '{key}' entries must be <= {hi}, got {v}")
        return v

    def rounding(self, allowed: tuple[str, ...] = ROUNDINGS) -> str:
        v = self.op.attrs.get("rounding", "double")
        if v not in allowed:
            raise self.fail(f"attr 'rounding' = {v!r}, expected one of {list(allowed)}")
        return v

    def zero_point_attr(self, key: str, tensor: TensorInfo) -> int:
        lo, hi = ACTIVATION_DTYPES[tensor.dtype]
        z = self.int_attr(key, lo, hi)
        if z != tensor.zero_point:
            raise self.fail(
                f"attr '{key}' = {z} differs from tensor '{tensor.name}' zero_point "
                f"{tensor.zero_point}"
            )
        return z

    def act_range(self) -> tuple[int, int]:
        lo, hi = ACTIVATION_DTYPES[self.out.dtype]
        amin = self.int_attr("act_min", lo, hi)
        amax = self.int_attr("act_max", lo, hi)
        if amin > amax:
            raise self.fail(f"attr 'act_min' = {amin} > 'act_max' = {amax}")
        return amin, amax

    def multiplier_attr(self, key: str) -> int:
        return self.int_attr(key, 0, M_LIMIT - 1)

    def shift_attr(self, key: str, hi: int = SHIFT_RANGE[1]) -> int:
        return self.int_attr(key, SHIFT_RANGE[0], hi)

    # -- consts --------------------------------------------------------------------------------
    def const(self, key: str, dtypes: tuple[str, ...], ndim: int) -> np.ndarray:
        if key not in self.op.consts:
            raise self.fail(f"missing const '{key}'")
        a = self.op.consts[key]
        if not isinstance(a, np.ndarray):
            raise self.fail(f"const '{key}' must be a numpy array, got {type(a).__name__}")
        if a.dtype.name not in dtypes:
            expected = " or ".join(dtypes)
            raise self.fail(f"const '{key}' has dtype {a.dtype.name}, expected {expected}")
        if a.ndim != ndim:
            raise self.fail(f"const '{key}' must be {ndim}-D, got shape {a.shape}")
        return a

    def expect_output_shape(self, expected: tuple[int, ...]) -> None:
        if tuple(self.out.shape) != tuple(expected):
            raise self.fail(
                f"output tensor '{self.out.name}' has shape {self.out.shape}, expected "
                f"{tuple(expected)} from the input shape and attrs"
            )

    def expect_same_qparams(self, src: TensorInfo, dst: TensorInfo) -> None:
        """Ops that copy raw values need identical dtype, zero point and scale in and out."""
        if src.dtype != dst.dtype:
            raise self.fail(
                f"tensor '{dst.name}' dtype {dst.dtype} must equal '{src.name}' dtype {src.dtype}"
            )
        if src.zero_point != dst.zero_point:
            raise self.fail(
                f"tensor '{dst.name}' zero_point {dst.zero_point} must equal '{src.name}' "
                f"zero_point {src.zero_point} (this op copies raw values; insert a rescale)"
            )
        if not math.isclose(src.scale, dst.scale, rel_tol=1e-6):
            raise self.fail(
                f"tensor '{dst.name}' scale {dst.scale} must equal '{src.name}' scale {src.scale} "
                "(this op copies raw values; insert a rescale)"
            )


def max_abs_offset(t: TensorInfo, zero_point: int) -> int:
    """max |x − z| over the dtype range: the worst case input magnitude of an accumulation."""
    lo, hi = ACTIVATION_DTYPES[t.dtype]
    return max(zero_point - lo, hi - zero_point)


def spatial(chk: OpCheck, shape: tuple[int, ...], what: str) -> tuple[int, int, int]:
    """(C, H, W) of a (C, L) or (C, H, W) tensor; 1-D runs as 2-D with H = 1."""
    if len(shape) == 2:
        return shape[0], 1, shape[1]
    if len(shape) == 3:
        return shape
    raise chk.fail(f"{what} must have shape (C, L) or (C, H, W), got {shape}")


def window_attrs(chk: OpCheck, x: TensorInfo, *, kernel_from: str | None, dilation: bool):
    """Read stride/padding/(dilation)/(kernel) and enforce the 1-D conventions."""
    hi = chk.limits.max_window
    stride = chk.list_attr("stride", 2, lo=1, hi=hi)
    padding = chk.list_attr("padding", 4, lo=0, hi=hi)
    dil = chk.list_attr("dilation", 2, lo=1, hi=hi) if dilation else [1, 1]
    kernel = chk.list_attr(kernel_from, 2, lo=1, hi=hi) if kernel_from else None
    if len(x.shape) == 2:
        if stride[0] != 1 or dil[0] != 1 or padding[0] != 0 or padding[2] != 0:
            raise chk.fail(
                "1-D op (input (C, L)) must have stride[0] = dilation[0] = 1 and padding "
                f"top = bottom = 0; got stride {stride}, dilation {dil}, padding {padding}"
            )
        if kernel is not None and kernel[0] != 1:
            raise chk.fail(f"1-D op must have kernel[0] = 1, got kernel {kernel}")
    return stride, padding, dil, kernel


def out_len(size: int, before: int, after: int, k: int, s: int, d: int) -> int:
    """floor((size + before + after − d·(k − 1) − 1) / s) + 1, PyTorch's output length."""
    return (size + before + after - d * (k - 1) - 1) // s + 1


def check_out_len(chk: OpCheck, axis: str, n: int) -> None:
    if n < 1:
        raise chk.fail(f"window larger than the padded input along {axis}: output size {n}")


def check_windows_touch_input(
    chk: OpCheck, axis: str, size: int, out: int, before: int, k: int, s: int, d: int
) -> None:
    """Every pooling window must cover at least one real element (else max/avg are undefined).

    Window o has taps o·s − before + j·d, j in [0, k); it touches the input iff some j lies in
    [ceil((before − o·s)/d), floor((size − 1 + before − o·s)/d)] ∩ [0, k − 1]. Vectorized over
    o, so the cost is O(out) whatever k and the padding are.
    """
    start = np.arange(out, dtype=np.int64) * s - before
    j_lo = np.maximum(0, -(start // d))  # ceil(-start / d)
    j_hi = np.minimum(k - 1, (size - 1 - start) // d)
    empty = np.flatnonzero(j_lo > j_hi)
    if empty.size:
        raise chk.fail(
            f"pooling window {int(empty[0])} along {axis} lies entirely in the padding (padding "
            "too large for the kernel)"
        )


def arity(chk: OpCheck, n: int) -> None:
    if len(chk.op.inputs) != n:
        raise chk.fail(f"expects {n} input(s), got {len(chk.op.inputs)}: {chk.op.inputs}")
