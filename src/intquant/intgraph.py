"""IntGraph: the integer-only model every back end consumes, its validation and its file format.

The op contract lives in ``docs/intgraph.md``; this module holds the data structures, checks
that a graph obeys the contract (so the interpreter and the C kernels may assume it), and
reads/writes ``.iqm`` files (a NumPy ``.npz`` without pickles plus a JSON manifest).

Validation is strict on purpose: the C runtime does int32 arithmetic without overflow checks,
so every bound it relies on (accumulator width, shifted add operands, table sizes, windows that
touch at least one input element) is proved here, once, from the actual constants.

NumPy only (never torch): a deployable graph can be inspected and run without PyTorch.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMAT_NAME = "intquant.intgraph"
FORMAT_VERSION = 1
MANIFEST_KEY = "__manifest__"

ACTIVATION_DTYPES: dict[str, tuple[int, int]] = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
}
OP_KINDS = (
    "conv",
    "fully_connected",
    "add",
    "rescale",
    "max_pool",
    "avg_pool",
    "concat",
    "pad",
    "reshape",
    "transpose",
    "clamp",
    "lut",
    "softmax",
    "lrn",
)
ROUNDINGS = ("double", "single", "pow2")

_INT32_MAX = 2**31 - 1
_M_LIMIT = 2**31  # multipliers live in [0, 2^31)
_SHIFT_RANGE = (-31, 30)
_SHIFT_MAX_16X8 = 7  # TFLM's int64 MultiplyByQuantizedMultiplier asserts shift < 8
_ACC_LIMIT = {32: 2**31, 64: 2**47}
_LUT_VALUE_LIMIT = 2**23  # (t[i+1] - t[i]) * 127 + 64 must fit int32 in C
_LRN_TABLE_MAX = 2**30  # Q30 factor: SRDHM never saturates, (t[i+1] - t[i]) * r fits int64
_LRN_SIZE_MAX = 2**16
_LRN_LUT_SHIFT_MAX = 32


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
    """One integer op: ``kind`` selects the semantics in docs/intgraph.md."""

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

    def validate(self) -> IntGraph:
        """Check the whole contract; raise IntGraphError naming the offending field."""
        _validate_graph(self)
        return self

    def op_by_name(self, name: str) -> Op:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(f"no op named {name!r}")


# ----------------------------------------------------------------------------------------------
# Size and cost helpers
# ----------------------------------------------------------------------------------------------


def tensor_nbytes(info: TensorInfo) -> int:
    """Bytes of one sample of the tensor (no batch dimension)."""
    return math.prod(info.shape) * np.dtype(info.dtype).itemsize


def op_macs(op: Op, graph: IntGraph) -> int:
    """Multiply-accumulates per inference (batch 1) of a conv / fully_connected op, else 0."""
    if op.kind == "conv":
        cout, cin_g, kh, kw = op.consts["weight"].shape
        spatial = math.prod(graph.tensors[op.output].shape[1:])
        return cout * spatial * cin_g * kh * kw
    if op.kind == "fully_connected":
        return int(op.consts["weight"].size)
    return 0


def weight_bytes(graph: IntGraph) -> int:
    """Bytes of all constants (weights, biases, multipliers, shifts, tables): the flash data."""
    return sum(int(c.nbytes) for op in graph.ops for c in op.consts.values())


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


class _OpCheck:
    """Error context for one op: every message starts ``op i 'name' (kind):``."""

    def __init__(self, graph: IntGraph, index: int, op: Op) -> None:
        self.graph = graph
        self.index = index
        self.op = op

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

    def list_attr(self, key: str, length: int | None = None, lo: int | None = None) -> list[int]:
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
        return self.int_attr(key, 0, _M_LIMIT - 1)

    def shift_attr(self, key: str, hi: int = _SHIFT_RANGE[1]) -> int:
        return self.int_attr(key, _SHIFT_RANGE[0], hi)

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


def _validate_graph(g: IntGraph) -> None:
    if not isinstance(g.tensors, dict) or not isinstance(g.ops, list):
        raise IntGraphError("IntGraph.tensors must be a dict and IntGraph.ops a list")
    for key, t in g.tensors.items():
        _validate_tensor(key, t)
    for role, name in (("input", g.input), ("output", g.output)):
        if name not in g.tensors:
            raise IntGraphError(f"graph {role} tensor {name!r} is not in tensors")
    produced: set[str] = {g.input}
    names: set[str] = set()
    for i, op in enumerate(g.ops):
        chk = _OpCheck(g, i, op)
        if op.kind not in OP_KINDS:
            raise chk.fail(f"unknown op kind {op.kind!r}; expected one of {list(OP_KINDS)}")
        if op.name in names:
            raise chk.fail(f"op name {op.name!r} is not unique")
        names.add(op.name)
        for t in [*op.inputs, op.output]:
            if t not in g.tensors:
                raise chk.fail(f"tensor {t!r} is not in graph.tensors")
        for t in op.inputs:
            if t not in produced:
                raise chk.fail(
                    f"input tensor {t!r} is not produced by an earlier op (ops must be in "
                    "topological order)"
                )
        if op.output in produced:
            raise chk.fail(f"output tensor {op.output!r} is already produced by an earlier op")
        _CHECKERS[op.kind](chk)
        produced.add(op.output)
    if g.output not in produced:
        raise IntGraphError(f"graph output tensor {g.output!r} is not produced by any op")
    try:
        json.dumps(g.meta)
    except (TypeError, ValueError) as e:
        raise IntGraphError(f"graph meta must be JSON-serialisable: {e}") from e


def _validate_tensor(key: str, t: TensorInfo) -> None:
    where = f"tensor {key!r}"
    if not isinstance(t, TensorInfo):
        raise IntGraphError(f"{where}: expected TensorInfo, got {type(t).__name__}")
    if t.name != key:
        raise IntGraphError(f"{where}: TensorInfo.name is {t.name!r}, must equal its key")
    if t.dtype not in ACTIVATION_DTYPES:
        raise IntGraphError(
            f"{where}: dtype {t.dtype!r}, expected one of {list(ACTIVATION_DTYPES)}"
        )
    if len(t.shape) == 0 or any(s <= 0 for s in t.shape):
        raise IntGraphError(f"{where}: shape {t.shape} must be non-empty with positive sizes")
    if not (isinstance(t.scale, float | int) and math.isfinite(t.scale) and t.scale > 0):
        raise IntGraphError(f"{where}: scale {t.scale!r} must be a finite float > 0")
    lo, hi = ACTIVATION_DTYPES[t.dtype]
    if isinstance(t.zero_point, bool) or not isinstance(t.zero_point, int | np.integer):
        raise IntGraphError(f"{where}: zero_point {t.zero_point!r} must be an integer")
    if not lo <= t.zero_point <= hi:
        raise IntGraphError(f"{where}: zero_point {t.zero_point} outside {t.dtype} [{lo}, {hi}]")


def _max_abs_offset(t: TensorInfo, zero_point: int) -> int:
    """max |x − z| over the dtype range: the worst case input magnitude of an accumulation."""
    lo, hi = ACTIVATION_DTYPES[t.dtype]
    return max(zero_point - lo, hi - zero_point)


def _spatial(chk: _OpCheck, shape: tuple[int, ...], what: str) -> tuple[int, int, int]:
    """(C, H, W) of a (C, L) or (C, H, W) tensor; 1-D runs as 2-D with H = 1."""
    if len(shape) == 2:
        return shape[0], 1, shape[1]
    if len(shape) == 3:
        return shape
    raise chk.fail(f"{what} must have shape (C, L) or (C, H, W), got {shape}")


def _window_attrs(chk: _OpCheck, x: TensorInfo, *, kernel_from: str | None, dilation: bool):
    """Read stride/padding/(dilation)/(kernel) and enforce the 1-D conventions."""
    stride = chk.list_attr("stride", 2, lo=1)
    padding = chk.list_attr("padding", 4, lo=0)
    dil = chk.list_attr("dilation", 2, lo=1) if dilation else [1, 1]
    kernel = chk.list_attr(kernel_from, 2, lo=1) if kernel_from else None
    if len(x.shape) == 2:
        if stride[0] != 1 or dil[0] != 1 or padding[0] != 0 or padding[2] != 0:
            raise chk.fail(
                "1-D op (input (C, L)) must have stride[0] = dilation[0] = 1 and padding "
                f"top = bottom = 0; got stride {stride}, dilation {dil}, padding {padding}"
            )
        if kernel is not None and kernel[0] != 1:
            raise chk.fail(f"1-D op must have kernel[0] = 1, got kernel {kernel}")
    return stride, padding, dil, kernel


def _out_len(size: int, before: int, after: int, k: int, s: int, d: int) -> int:
    """floor((size + before + after − d·(k − 1) − 1) / s) + 1, PyTorch's output length."""
    return (size + before + after - d * (k - 1) - 1) // s + 1


def _check_out_len(chk: _OpCheck, axis: str, n: int) -> None:
    if n < 1:
        raise chk.fail(f"window larger than the padded input along {axis}: output size {n}")


def _check_windows_touch_input(
    chk: _OpCheck, axis: str, size: int, out: int, before: int, k: int, s: int, d: int
) -> None:
    """Every pooling window must cover at least one real element (else max/avg are undefined)."""
    for o in range(out):
        taps = [o * s - before + j * d for j in range(k)]
        if not any(0 <= t < size for t in taps):
            raise chk.fail(
                f"pooling window {o} along {axis} lies entirely in the padding (padding too "
                "large for the kernel)"
            )


def _check_requant_consts(chk: _OpCheck, cout: int, acc_bits: int, rounding: str) -> None:
    bias_dtype = "int32" if acc_bits == 32 else "int64"
    for key, dt in (("bias", bias_dtype), ("multiplier", "int32"), ("shift", "int32")):
        a = chk.const(key, (dt,), 1)
        if a.shape[0] != cout:
            raise chk.fail(f"const '{key}' has {a.shape[0]} entries, expected Cout = {cout}")
    m = chk.op.consts["multiplier"].astype(np.int64)
    s = chk.op.consts["shift"].astype(np.int64)
    if np.any(m < 0) or np.any(m >= _M_LIMIT):
        raise chk.fail(f"const 'multiplier' values must be in [0, 2^31), got min {m.min()}")
    shift_hi = _SHIFT_MAX_16X8 if (acc_bits == 64 and rounding != "pow2") else _SHIFT_RANGE[1]
    if np.any(s < _SHIFT_RANGE[0]) or np.any(s > shift_hi):
        raise chk.fail(
            f"const 'shift' values must be in [{_SHIFT_RANGE[0]}, {shift_hi}], got "
            f"[{s.min()}, {s.max()}]"
        )
    if rounding == "pow2" and np.any(m != 2**30):
        raise chk.fail("rounding 'pow2' needs every const 'multiplier' = 2^30 (real 2^(shift-1))")


def _check_accumulator_bound(
    chk: _OpCheck, weight: np.ndarray, x: TensorInfo, zx: int, acc_bits: int, rounding: str
) -> None:
    """max_c(Σ|w_c|·max|x − z| + |b_c|) must fit the declared accumulator."""
    w_abs = np.abs(weight.astype(np.int64)).reshape(weight.shape[0], -1).sum(axis=1)
    bias = np.abs(chk.op.consts["bias"].astype(np.int64))
    bound = int((w_abs * _max_abs_offset(x, zx) + bias).max())
    limit = _ACC_LIMIT[acc_bits]
    if bound >= limit:
        hint = "use acc_bits 64" if acc_bits == 32 else "reduce the weight/bias range"
        raise chk.fail(
            f"accumulator bound {bound} >= 2^{int(math.log2(limit))} for acc_bits {acc_bits}; "
            f"{hint}"
        )
    if rounding == "pow2":
        e = int(chk.op.consts["shift"].astype(np.int64).max()) - 1
        if e > 0 and bound << e >= 2**62:
            raise chk.fail(f"pow2 left shift {e} of accumulator bound {bound} overflows int64")


def _check_weight_layer(chk: _OpCheck, x: TensorInfo) -> tuple[int, str]:
    """Attrs shared by conv and fully_connected: zero points, act range, acc_bits, rounding."""
    chk.zero_point_attr("input_zero_point", x)
    chk.zero_point_attr("output_zero_point", chk.out)
    chk.act_range()
    acc_bits = chk.int_attr("acc_bits")
    if acc_bits not in (32, 64):
        raise chk.fail(f"attr 'acc_bits' = {acc_bits}, expected 32 or 64")
    return acc_bits, chk.rounding()


def _arity(chk: _OpCheck, n: int) -> None:
    if len(chk.op.inputs) != n:
        raise chk.fail(f"expects {n} input(s), got {len(chk.op.inputs)}: {chk.op.inputs}")


def _check_conv(chk: _OpCheck) -> None:
    _arity(chk, 1)
    x = chk.ins()[0]
    cin, h, w = _spatial(chk, x.shape, f"input '{x.name}'")
    acc_bits, rounding = _check_weight_layer(chk, x)
    stride, padding, dil, _ = _window_attrs(chk, x, kernel_from=None, dilation=True)
    groups = chk.int_attr("groups", 1)
    weight = chk.const("weight", ("int8", "int16"), 4)
    cout, cin_g, kh, kw = weight.shape
    if cin % groups or cout % groups:
        raise chk.fail(f"attr 'groups' = {groups} must divide Cin = {cin} and Cout = {cout}")
    if cin_g != cin // groups:
        raise chk.fail(
            f"const 'weight' shape {weight.shape}: dim 1 must be Cin/groups = {cin // groups}"
        )
    if len(x.shape) == 2 and kh != 1:
        raise chk.fail(f"1-D conv needs const 'weight' with kh = 1, got shape {weight.shape}")
    _check_requant_consts(chk, cout, acc_bits, rounding)
    ho = _out_len(h, padding[0], padding[2], kh, stride[0], dil[0])
    wo = _out_len(w, padding[1], padding[3], kw, stride[1], dil[1])
    _check_out_len(chk, "H", ho)
    _check_out_len(chk, "W", wo)
    chk.expect_output_shape((cout, wo) if len(x.shape) == 2 else (cout, ho, wo))
    _check_accumulator_bound(chk, weight, x, x.zero_point, acc_bits, rounding)


def _check_fully_connected(chk: _OpCheck) -> None:
    _arity(chk, 1)
    x = chk.ins()[0]
    if len(x.shape) != 1:
        raise chk.fail(f"input '{x.name}' must have shape (Cin,), got {x.shape}; add a reshape")
    acc_bits, rounding = _check_weight_layer(chk, x)
    weight = chk.const("weight", ("int8", "int16"), 2)
    if weight.shape[1] != x.shape[0]:
        raise chk.fail(f"const 'weight' shape {weight.shape}: dim 1 must be Cin = {x.shape[0]}")
    _check_requant_consts(chk, weight.shape[0], acc_bits, rounding)
    chk.expect_output_shape((weight.shape[0],))
    _check_accumulator_bound(chk, weight, x, x.zero_point, acc_bits, rounding)


def _check_shifted_operand(chk: _OpCheck, key: str, t: TensorInfo, z: int, left_shift: int):
    """(x − z) << left_shift, and a sum of two rescaled ones, must fit int32 (TFLM's add)."""
    if _max_abs_offset(t, z) << left_shift > 2**30:
        raise chk.fail(
            f"attr 'left_shift' = {left_shift} makes ({key} − zero_point) << left_shift exceed "
            "2^30 (int32 overflow in the sum); use 20 for int8, 15 for int16"
        )


def _check_add(chk: _OpCheck) -> None:
    _arity(chk, 2)
    a, b = chk.ins()
    if a.shape != b.shape:
        raise chk.fail(f"inputs must have the same shape, got {a.shape} and {b.shape}")
    chk.expect_output_shape(a.shape)
    za = chk.zero_point_attr("a_zero_point", a)
    zb = chk.zero_point_attr("b_zero_point", b)
    chk.zero_point_attr("output_zero_point", chk.out)
    ls = chk.int_attr("left_shift", 0, 30)
    _check_shifted_operand(chk, "a", a, za, ls)
    _check_shifted_operand(chk, "b", b, zb, ls)
    for p in ("a", "b"):
        chk.multiplier_attr(f"{p}_multiplier")
        # TFLM: QuantizeMultiplierSmallerThanOneExp — the input multipliers are <= 1/2.
        chk.shift_attr(f"{p}_shift", hi=0)
    chk.multiplier_attr("output_multiplier")
    chk.shift_attr("output_shift")
    chk.act_range()
    chk.rounding(("double", "single"))


def _check_rescale(chk: _OpCheck) -> None:
    _arity(chk, 1)
    x = chk.ins()[0]
    chk.expect_output_shape(x.shape)
    ls = chk.int_attr("left_shift", 0, 30)
    zps = chk.int_attr("input_zero_point_shifted")
    lo, hi = ACTIVATION_DTYPES[x.dtype]
    worst = max(abs((lo << ls) - zps), abs((hi << ls) - zps))
    if worst > _INT32_MAX:
        raise chk.fail(
            f"attrs 'left_shift' = {ls} / 'input_zero_point_shifted' = {zps}: "
            f"(x << left_shift) − input_zero_point_shifted reaches {worst}, exceeding int32"
        )
    chk.multiplier_attr("multiplier")
    chk.shift_attr("shift")
    chk.zero_point_attr("output_zero_point", chk.out)
    chk.act_range()
    chk.rounding(("double", "single"))


def _check_pool(chk: _OpCheck, dilation: bool) -> tuple[TensorInfo, list[int]]:
    _arity(chk, 1)
    x = chk.ins()[0]
    c, h, w = _spatial(chk, x.shape, f"input '{x.name}'")
    stride, padding, dil, kernel = _window_attrs(chk, x, kernel_from="kernel", dilation=dilation)
    ho = _out_len(h, padding[0], padding[2], kernel[0], stride[0], dil[0])
    wo = _out_len(w, padding[1], padding[3], kernel[1], stride[1], dil[1])
    _check_out_len(chk, "H", ho)
    _check_out_len(chk, "W", wo)
    _check_windows_touch_input(chk, "H", h, ho, padding[0], kernel[0], stride[0], dil[0])
    _check_windows_touch_input(chk, "W", w, wo, padding[1], kernel[1], stride[1], dil[1])
    chk.expect_output_shape((c, wo) if len(x.shape) == 2 else (c, ho, wo))
    chk.expect_same_qparams(x, chk.out)
    chk.act_range()
    return x, kernel


def _check_max_pool(chk: _OpCheck) -> None:
    _check_pool(chk, dilation=True)


def _check_avg_pool(chk: _OpCheck) -> None:
    x, kernel = _check_pool(chk, dilation=False)
    chk.int_attr("count_include_pad", 0, 1)
    z = chk.zero_point_attr("zero_point", x)
    lo, hi = ACTIVATION_DTYPES[x.dtype]
    if kernel[0] * kernel[1] * max(abs(lo), abs(hi), abs(z)) > _INT32_MAX:
        raise chk.fail(f"attr 'kernel' {kernel}: the window sum can overflow int32")


def _check_concat(chk: _OpCheck) -> None:
    if not chk.op.inputs:
        raise chk.fail("expects at least one input")
    ins = chk.ins()
    nd = len(ins[0].shape)
    axis = chk.int_attr("axis", 0, nd - 1)
    for t in ins:
        if len(t.shape) != nd or any(t.shape[d] != ins[0].shape[d] for d in range(nd) if d != axis):
            raise chk.fail(
                f"input '{t.name}' shape {t.shape} does not match {ins[0].shape} off axis {axis}"
            )
        chk.expect_same_qparams(t, chk.out)
    shape = list(ins[0].shape)
    shape[axis] = sum(t.shape[axis] for t in ins)
    chk.expect_output_shape(tuple(shape))


def _check_pad(chk: _OpCheck) -> None:
    _arity(chk, 1)
    x = chk.ins()[0]
    pads = chk.list_attr("pads", 2 * len(x.shape), lo=0)
    lo, hi = ACTIVATION_DTYPES[x.dtype]
    chk.int_attr("value", lo, hi)
    chk.expect_same_qparams(x, chk.out)
    chk.expect_output_shape(tuple(s + pads[2 * d] + pads[2 * d + 1] for d, s in enumerate(x.shape)))


def _check_reshape(chk: _OpCheck) -> None:
    _arity(chk, 1)
    x = chk.ins()[0]
    shape = chk.list_attr("shape", lo=1)
    if math.prod(shape) != math.prod(x.shape):
        raise chk.fail(f"attr 'shape' {shape} has a different element count than {x.shape}")
    chk.expect_same_qparams(x, chk.out)
    chk.expect_output_shape(tuple(shape))


def _check_transpose(chk: _OpCheck) -> None:
    _arity(chk, 1)
    x = chk.ins()[0]
    perm = chk.list_attr("perm", len(x.shape))
    if sorted(perm) != list(range(len(x.shape))):
        raise chk.fail(f"attr 'perm' {perm} is not a permutation of 0..{len(x.shape) - 1}")
    chk.expect_same_qparams(x, chk.out)
    chk.expect_output_shape(tuple(x.shape[p] for p in perm))


def _check_clamp(chk: _OpCheck) -> None:
    _arity(chk, 1)
    x = chk.ins()[0]
    chk.expect_same_qparams(x, chk.out)
    chk.expect_output_shape(x.shape)
    chk.act_range()


def _check_lut(chk: _OpCheck) -> None:
    _arity(chk, 1)
    x = chk.ins()[0]
    chk.expect_output_shape(x.shape)
    amin, amax = chk.act_range()
    if x.dtype in ("int8", "uint8"):
        table = chk.const("table", (chk.out.dtype,), 1)
        if table.shape[0] != 256:
            raise chk.fail(f"const 'table' has {table.shape[0]} entries, expected 256")
    else:
        table = chk.const("table", ("int32",), 1)
        if table.shape[0] != 513:
            raise chk.fail(f"const 'table' has {table.shape[0]} entries, expected 513")
        if np.any(np.abs(table.astype(np.int64)) >= _LUT_VALUE_LIMIT):
            raise chk.fail("const 'table' values must satisfy |t| < 2^23 (int32 interpolation)")


def _check_softmax(chk: _OpCheck) -> None:
    _arity(chk, 1)
    x = chk.ins()[0]
    chk.expect_output_shape(x.shape)
    chk.int_attr("lut_shift", 0, 15)
    chk.zero_point_attr("output_zero_point", chk.out)
    chk.int_attr("output_range", 1, 2**16)
    chk.act_range()
    table = chk.const("exp_table", ("int32",), 1)
    t = table.astype(np.int64)
    if t.shape[0] < 2:
        raise chk.fail("const 'exp_table' needs at least 2 entries")
    if t[0] != 2**30 or t[-1] != 0:
        raise chk.fail(
            f"const 'exp_table' must start at 2^30 (exp(0)) and end with 0, got {t[0]}, {t[-1]}"
        )
    if np.any(t < 0) or np.any(np.diff(t) > 0):
        raise chk.fail("const 'exp_table' must be non-negative and non-increasing")


def _check_lrn(chk: _OpCheck) -> None:
    """Every input indexes inside the 513-knot table and d·2^left_shift fits int32."""
    _arity(chk, 1)
    x = chk.ins()[0]
    chk.expect_output_shape(x.shape)
    size = chk.int_attr("size", 1, _LRN_SIZE_MAX)
    z = chk.zero_point_attr("input_zero_point", x)
    lut_shift = chk.int_attr("lut_shift", 0, _LRN_LUT_SHIFT_MAX)
    left_shift = chk.int_attr("left_shift", 0, 30)
    chk.multiplier_attr("multiplier")
    chk.shift_attr("shift")
    chk.zero_point_attr("output_zero_point", chk.out)
    chk.act_range()
    lo, hi = ACTIVATION_DTYPES[x.dtype]
    d_max = max(hi - z, z - lo)
    s_max = size * d_max * d_max
    if s_max >> lut_shift > 511:
        raise chk.fail(
            f"attr 'lut_shift' = {lut_shift} is too small: the largest sum of squares "
            f"{s_max} (size {size}, |x − z| <= {d_max}) would index past the 513-entry table; "
            f"need S_max >> lut_shift <= 511"
        )
    if d_max << left_shift >= 2**31:
        raise chk.fail(
            f"attr 'left_shift' = {left_shift}: |x − z|·2^left_shift reaches "
            f"{d_max << left_shift} >= 2^31 (int32 overflow)"
        )
    table = chk.const("table", ("int32",), 1)
    if table.shape[0] != 513:
        raise chk.fail(f"const 'table' has {table.shape[0]} entries, expected 513")
    if np.any(table < 0) or np.any(table.astype(np.int64) > _LRN_TABLE_MAX):
        raise chk.fail("const 'table' entries must lie in [0, 2^30] (a Q30 factor)")


_KIND_CHECKERS = {
    "conv": _check_conv,
    "fully_connected": _check_fully_connected,
    "add": _check_add,
    "rescale": _check_rescale,
    "max_pool": _check_max_pool,
    "avg_pool": _check_avg_pool,
    "concat": _check_concat,
    "pad": _check_pad,
    "reshape": _check_reshape,
    "transpose": _check_transpose,
    "clamp": _check_clamp,
    "lut": _check_lut,
    "softmax": _check_softmax,
    "lrn": _check_lrn,
}

# Attrs each kind may carry (anything else is rejected: a typo would otherwise be ignored).
_ALLOWED_ATTRS: dict[str, set[str]] = {
    "conv": {
        "stride",
        "padding",
        "dilation",
        "groups",
        "input_zero_point",
        "output_zero_point",
        "act_min",
        "act_max",
        "acc_bits",
        "rounding",
    },
    "fully_connected": {
        "input_zero_point",
        "output_zero_point",
        "act_min",
        "act_max",
        "acc_bits",
        "rounding",
    },
    "add": {
        "a_zero_point",
        "b_zero_point",
        "left_shift",
        "a_multiplier",
        "a_shift",
        "b_multiplier",
        "b_shift",
        "output_multiplier",
        "output_shift",
        "output_zero_point",
        "act_min",
        "act_max",
        "rounding",
    },
    "rescale": {
        "input_zero_point_shifted",
        "left_shift",
        "multiplier",
        "shift",
        "output_zero_point",
        "act_min",
        "act_max",
        "rounding",
    },
    "max_pool": {"kernel", "stride", "padding", "dilation", "act_min", "act_max"},
    "avg_pool": {
        "kernel",
        "stride",
        "padding",
        "count_include_pad",
        "zero_point",
        "act_min",
        "act_max",
    },
    "concat": {"axis"},
    "pad": {"pads", "value"},
    "reshape": {"shape"},
    "transpose": {"perm"},
    "clamp": {"act_min", "act_max"},
    "lut": {"act_min", "act_max"},
    "softmax": {"lut_shift", "output_zero_point", "output_range", "act_min", "act_max"},
    "lrn": {
        "size",
        "input_zero_point",
        "lut_shift",
        "left_shift",
        "multiplier",
        "shift",
        "output_zero_point",
        "act_min",
        "act_max",
    },
}
_ALLOWED_CONSTS: dict[str, set[str]] = {
    "conv": {"weight", "bias", "multiplier", "shift"},
    "fully_connected": {"weight", "bias", "multiplier", "shift"},
    "lut": {"table"},
    "softmax": {"exp_table"},
    "lrn": {"table"},
}


def _wrap_with_unknown_field_check(kind: str, checker):
    def check(chk: _OpCheck) -> None:
        extra_attrs = set(chk.op.attrs) - _ALLOWED_ATTRS[kind]
        if extra_attrs:
            raise chk.fail(f"unknown attr(s) {sorted(extra_attrs)}")
        extra_consts = set(chk.op.consts) - _ALLOWED_CONSTS.get(kind, set())
        if extra_consts:
            raise chk.fail(f"unknown const(s) {sorted(extra_consts)}")
        checker(chk)

    return check


_CHECKERS = {k: _wrap_with_unknown_field_check(k, f) for k, f in _KIND_CHECKERS.items()}


# ----------------------------------------------------------------------------------------------
# .iqm files
# ----------------------------------------------------------------------------------------------


def _manifest(graph: IntGraph) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "tensors": [
            {
                "name": t.name,
                "shape": list(t.shape),
                "dtype": t.dtype,
                "scale": float(t.scale),
                "zero_point": int(t.zero_point),
            }
            for t in graph.tensors.values()
        ],
        "ops": [
            {
                "name": op.name,
                "kind": op.kind,
                "inputs": list(op.inputs),
                "output": op.output,
                "attrs": _jsonable_attrs(op.attrs),
                "consts": {
                    k: {"dtype": a.dtype.name, "shape": list(a.shape)} for k, a in op.consts.items()
                },
            }
            for op in graph.ops
        ],
        "input": graph.input,
        "output": graph.output,
        "meta": graph.meta,
    }


def _jsonable_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, list | tuple):
            out[k] = [int(e) for e in v]
        elif isinstance(v, np.integer):
            out[k] = int(v)
        else:
            out[k] = v
    return out


def save(graph: IntGraph, path: str | os.PathLike) -> None:
    """Validate, then write ``graph`` to ``path`` atomically (temp file + os.replace)."""
    graph.validate()
    arrays: dict[str, np.ndarray] = {
        f"{i}/{k}": np.ascontiguousarray(a)
        for i, op in enumerate(graph.ops)
        for k, a in op.consts.items()
    }
    manifest = json.dumps(_manifest(graph), sort_keys=True).encode("utf-8")
    arrays[MANIFEST_KEY] = np.frombuffer(manifest, dtype=np.uint8)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".iqm", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike) -> IntGraph:
    """Read and validate an ``.iqm`` file; any malformation raises IntGraphError naming it."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise IntGraphError(
            f"{path}: not a readable .iqm file (truncated or not an npz archive): {e}"
        ) from e
    if MANIFEST_KEY not in arrays:
        raise IntGraphError(f"{path}: missing key '{MANIFEST_KEY}' (not an IntGraph file)")
    raw = arrays.pop(MANIFEST_KEY)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise IntGraphError(f"{path}: '{MANIFEST_KEY}' must be a 1-D uint8 array")
    try:
        manifest = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntGraphError(f"{path}: manifest is not valid UTF-8 JSON: {e}") from e
    graph = _graph_from_manifest(path, manifest, arrays)
    try:
        graph.validate()
    except IntGraphError as e:
        raise IntGraphError(f"{path}: {e}") from e
    return graph


def _field(where: str, obj: Any, key: str, types: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise IntGraphError(f"{where}: missing key '{key}'")
    v = obj[key]
    if not isinstance(v, types) or isinstance(v, bool):  # JSON true/false are not integers
        raise IntGraphError(f"{where}: key '{key}' has type {type(v).__name__}")
    return v


def _graph_from_manifest(path: str, m: Any, arrays: dict[str, np.ndarray]) -> IntGraph:
    where = f"{path}: manifest"
    if not isinstance(m, dict):
        raise IntGraphError(f"{where} must be a JSON object")
    if m.get("format") != FORMAT_NAME:
        raise IntGraphError(
            f"{where}: key 'format' must be {FORMAT_NAME!r}, got {m.get('format')!r}"
        )
    if m.get("version") != FORMAT_VERSION:
        raise IntGraphError(
            f"{where}: key 'version' = {m.get('version')!r}; this reader understands version "
            f"{FORMAT_VERSION}"
        )
    tensors: dict[str, TensorInfo] = {}
    for j, t in enumerate(_field(where, m, "tensors", list)):
        tw = f"{where} tensors[{j}]"
        name = _field(tw, t, "name", str)
        shape = _field(tw, t, "shape", list)
        if any(isinstance(s, bool) or not isinstance(s, int) for s in shape):
            raise IntGraphError(f"{tw}: key 'shape' must be a list of integers, got {shape}")
        scale = _field(tw, t, "scale", (float, int))
        if name in tensors:
            raise IntGraphError(f"{tw}: duplicate tensor name {name!r}")
        tensors[name] = TensorInfo(
            name=name,
            shape=tuple(shape),
            dtype=_field(tw, t, "dtype", str),
            scale=float(scale),
            zero_point=_field(tw, t, "zero_point", int),
        )
    ops: list[Op] = []
    used: set[str] = set()
    for i, o in enumerate(_field(where, m, "ops", list)):
        ow = f"{where} ops[{i}]"
        inputs = _field(ow, o, "inputs", list)
        if any(not isinstance(s, str) for s in inputs):
            raise IntGraphError(f"{ow}: key 'inputs' must be a list of tensor names")
        consts: dict[str, np.ndarray] = {}
        for cname, spec in _field(ow, o, "consts", dict).items():
            key = f"{i}/{cname}"
            if key not in arrays:
                raise IntGraphError(f"{ow}: const '{cname}' is missing from the archive ({key})")
            a = arrays[key]
            used.add(key)
            cw = f"{ow} const '{cname}'"
            if a.dtype.kind not in "iu":
                raise IntGraphError(f"{cw}: stored dtype {a.dtype.name}; consts must be integers")
            if _field(cw, spec, "dtype", str) != a.dtype.name or _field(
                cw, spec, "shape", list
            ) != list(a.shape):
                raise IntGraphError(
                    f"{cw}: stored array {a.dtype.name}{list(a.shape)} does not match the "
                    f"manifest {spec.get('dtype')}{spec.get('shape')} (hand-edited file?)"
                )
            consts[cname] = a
        ops.append(
            Op(
                name=_field(ow, o, "name", str),
                kind=_field(ow, o, "kind", str),
                inputs=list(inputs),
                output=_field(ow, o, "output", str),
                attrs=_field(ow, o, "attrs", dict),
                consts=consts,
            )
        )
    extra = sorted(set(arrays) - used)
    if extra:
        raise IntGraphError(f"{path}: archive holds arrays not named in the manifest: {extra}")
    meta = m.get("meta", {})
    if not isinstance(meta, dict):
        raise IntGraphError(f"{where}: key 'meta' must be an object")
    return IntGraph(
        tensors=tensors,
        ops=ops,
        input=_field(where, m, "input", str),
        output=_field(where, m, "output", str),
        meta=meta,
    )
