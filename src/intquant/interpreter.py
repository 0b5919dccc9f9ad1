"""The NumPy integer reference interpreter: THE specification the C kernels must match bit for bit.

One function per op kind, each a direct transcription of docs/intgraph.md. Every array in the
run path is an integer array (accumulators are int64, exact; the graph's validation guarantees
they also fit the int32/int64 accumulators the C kernels use), so there is no float anywhere
between the integer input and the integer output. Requantization is delegated to
``intquant.numerics`` so that exactly one implementation of the TFLM rounding exists.

Arrays carry a leading batch dimension: ``(N, *tensor.shape)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .intgraph import IntGraph, Op, TensorInfo
from .numerics import (
    apply_multiplier,
    multiply_by_quantized_multiplier,
    requantize,
    saturate,
    saturating_rounding_doubling_high_mul,
)

# Conv im2col buffers are built per batch chunk so memory stays bounded (int64 patches).
_IM2COL_CHUNK_BYTES = 64 * 2**20
# The whole graph runs on batch chunks whose largest tensor has about this many elements.
_CHUNK_ELEMENTS = 2**20

OpRunner = Callable[[Op, list[np.ndarray], TensorInfo], np.ndarray]


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
        values[op.output] = OP_RUNNERS[op.kind](op, [values[n] for n in op.inputs], out_info)
    return values


def _check_input(info: TensorInfo, x: np.ndarray) -> None:
    if not isinstance(x, np.ndarray):
        raise InterpreterError(f"input must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.dtype(info.dtype):
        raise InterpreterError(
            f"input '{info.name}' must have dtype {info.dtype}, got {x.dtype}; quantize it first "
            f"(numerics.quantize with scale {info.scale} and zero_point {info.zero_point})"
        )
    if x.ndim != len(info.shape) + 1 or tuple(x.shape[1:]) != tuple(info.shape):
        raise InterpreterError(
            f"input '{info.name}' must have shape (N, {', '.join(map(str, info.shape))}), "
            f"got {x.shape} (the leading batch dimension is required)"
        )


def _to_out(y: np.ndarray, out: TensorInfo) -> np.ndarray:
    """Store in the tensor's dtype; every caller has already clamped into its range."""
    return y.astype(out.dtype)


def _as_nchw(x: np.ndarray) -> np.ndarray:
    """(N, C, L) → (N, C, 1, L): 1-D ops run as 2-D with H = 1."""
    return x[:, :, None, :] if x.ndim == 3 else x


def _from_nchw(y: np.ndarray, one_d: bool) -> np.ndarray:
    return y[:, :, 0, :] if one_d else y


def _windows(
    x: np.ndarray, kernel: list[int], stride: list[int], dilation: list[int]
) -> np.ndarray:
    """View (N, C, Ho, Wo, kh, kw) of the windows of a padded (N, C, Hp, Wp) array."""
    kh, kw = kernel
    (sh, sw), (dh, dw) = stride, dilation
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    v = sliding_window_view(x, span, axis=(2, 3))
    return v[:, :, ::sh, ::sw, ::dh, ::dw]


def _pad_hw(x: np.ndarray, padding: list[int], value: int) -> np.ndarray:
    top, left, bottom, right = padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


# ----------------------------------------------------------------------------------------------
# Weight layers
# ----------------------------------------------------------------------------------------------


def _acc_dtype(op: Op) -> type[np.signedinteger]:
    """int32 for acc_bits 32, else int64: both exact.

    Validation proved max_c(Σ|w_c|·max|x − z| + |b_c|) < 2^31 for acc_bits 32, which bounds
    every partial sum too, so int32 accumulation cannot wrap — exactly the C kernel's
    assumption. (NumPy's int32 einsum is ~2.5x faster than int64 matmul.)
    """
    return np.int32 if op.attrs["acc_bits"] == 32 else np.int64


def _conv_acc(xz: np.ndarray, weight: np.ndarray, op: Op) -> np.ndarray:
    """Σ w·(x − z) for one batch chunk via im2col + batched int64 matmul over the groups.

    ``xz`` is the (N, C, Hp, Wp) padded input with the zero point already subtracted, so
    padding with 0 is padding with the input zero point (TFLM semantics). Its dtype is the
    accumulator's (see ``_acc_dtype``).
    """
    a = op.attrs
    groups = a["groups"]
    cout, cin_g, kh, kw = weight.shape
    n = xz.shape[0]
    win = _windows(xz, [kh, kw], a["stride"], a["dilation"])  # (N, C, Ho, Wo, kh, kw)
    ho, wo = win.shape[2], win.shape[3]
    win = win.reshape(n, groups, cin_g, ho, wo, kh, kw)
    cols = win.transpose(1, 0, 3, 4, 2, 5, 6).reshape(groups, n * ho * wo, cin_g * kh * kw)
    w = weight.astype(xz.dtype).reshape(groups, cout // groups, cin_g * kh * kw)
    acc = np.einsum("gmk,gok->gmo", cols, w)  # (G, N·Ho·Wo, Cout/G); einsum: fastest int path
    acc = acc.reshape(groups, n, ho, wo, cout // groups).transpose(1, 0, 4, 2, 3)
    return acc.reshape(n, cout, ho, wo)


def run_conv(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Conv1d/2d/depthwise/grouped: acc = bias + Σ w·(x − z_in); requantize per channel."""
    a = op.attrs
    x = inputs[0]
    one_d = x.ndim == 3
    weight = op.consts["weight"]
    _, cin_g, kh, kw = weight.shape
    acc_dtype = _acc_dtype(op)
    xz = _pad_hw(_as_nchw(x).astype(acc_dtype) - acc_dtype(a["input_zero_point"]), a["padding"], 0)
    per_sample = xz[0].size * kh * kw * xz.itemsize // max(1, a["stride"][0] * a["stride"][1])
    chunk = max(1, _IM2COL_CHUNK_BYTES // max(1, per_sample))
    acc = np.concatenate(
        [_conv_acc(xz[i : i + chunk], weight, op) for i in range(0, x.shape[0], chunk)]
    )
    acc = acc.astype(np.int64) + op.consts["bias"].astype(np.int64)[None, :, None, None]
    y = _requantize_per_channel(acc, op, axis=1)
    return _to_out(_from_nchw(y, one_d), out)


def run_fully_connected(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Linear: acc = bias + Σ w·(x − z_in); requantize per output channel."""
    acc_dtype = _acc_dtype(op)
    xz = inputs[0].astype(acc_dtype) - acc_dtype(op.attrs["input_zero_point"])
    acc = np.einsum("nk,ok->no", xz, op.consts["weight"].astype(acc_dtype))
    acc = acc.astype(np.int64) + op.consts["bias"].astype(np.int64)
    return _to_out(_requantize_per_channel(acc, op, axis=1), out)


def _requantize_per_channel(acc: np.ndarray, op: Op, axis: int) -> np.ndarray:
    a = op.attrs
    return requantize(
        acc,
        op.consts["multiplier"],
        op.consts["shift"],
        a["output_zero_point"],
        a["act_min"],
        a["act_max"],
        rounding=a.get("rounding", "double"),
        acc_bits=a["acc_bits"],
        axis=axis,
    )


# ----------------------------------------------------------------------------------------------
# Elementwise requantizing ops
# ----------------------------------------------------------------------------------------------


def run_add(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """TFLM quantized add: rescale both inputs to a common finer scale, sum, requantize.

    All intermediate values fit int32 (checked by validation), so int64 arithmetic is exact.
    """
    a = op.attrs
    rounding = a.get("rounding", "double")
    ls = a["left_shift"]
    a_shifted = (inputs[0].astype(np.int64) - a["a_zero_point"]) << ls
    b_shifted = (inputs[1].astype(np.int64) - a["b_zero_point"]) << ls
    a_scaled = apply_multiplier(a_shifted, a["a_multiplier"], a["a_shift"], rounding)
    b_scaled = apply_multiplier(b_shifted, a["b_multiplier"], a["b_shift"], rounding)
    total = apply_multiplier(
        a_scaled + b_scaled, a["output_multiplier"], a["output_shift"], rounding
    )
    y = saturate(total + a["output_zero_point"], a["act_min"], a["act_max"])
    return _to_out(y, out)


def run_rescale(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Change of qparams: mbqm((x << ls) − round(z_in·2^ls), M, shift) + z_out, clamped."""
    a = op.attrs
    shifted = (inputs[0].astype(np.int64) << a["left_shift"]) - a["input_zero_point_shifted"]
    scaled = apply_multiplier(shifted, a["multiplier"], a["shift"], a.get("rounding", "double"))
    y = saturate(scaled + a["output_zero_point"], a["act_min"], a["act_max"])
    return _to_out(y, out)


# ----------------------------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------------------------


def run_max_pool(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Max of raw values over the in-bounds part of each window, then clamp.

    Padding holds a value below every representable input, so it never wins; validation
    guarantees each window touches at least one real element.
    """
    a = op.attrs
    x = inputs[0]
    below_min = np.int32(np.iinfo(x.dtype).min) - 1
    xp = _pad_hw(_as_nchw(x).astype(np.int32), a["padding"], int(below_min))
    m = _windows(xp, a["kernel"], a["stride"], a["dilation"]).max(axis=(4, 5))
    y = saturate(m, a["act_min"], a["act_max"])
    return _to_out(_from_nchw(y, x.ndim == 3), out)


def divide_round_half_away(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """(num ± den/2) / den with C truncating division: round half away from zero (TFLM)."""
    half = den // 2
    pos = (num + half) // den  # num > 0: floor == truncation
    neg = -((-num + half) // den)  # num <= 0: truncate toward zero
    return np.where(num > 0, pos, neg)


def run_avg_pool(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Window sum over valid positions, divided (round half away) by the valid count.

    With count_include_pad the divisor is kh·kw and padded positions add the zero point
    (they hold real zero), matching PyTorch's count_include_pad=True.
    """
    a = op.attrs
    x = inputs[0]
    kh, kw = a["kernel"]
    nchw = _as_nchw(x)
    dil = [1, 1]
    sums = _windows(
        _pad_hw(nchw.astype(np.int64), a["padding"], 0), a["kernel"], a["stride"], dil
    ).sum(axis=(4, 5))
    ones = np.ones((1, 1) + nchw.shape[2:], dtype=np.int64)
    valid = _windows(_pad_hw(ones, a["padding"], 0), a["kernel"], a["stride"], dil).sum(axis=(4, 5))
    if a["count_include_pad"]:
        sums = sums + (kh * kw - valid) * a["zero_point"]
        count = np.full_like(valid, kh * kw)
    else:
        count = valid
    y = saturate(divide_round_half_away(sums, count), a["act_min"], a["act_max"])
    return _to_out(_from_nchw(y, x.ndim == 3), out)


# ----------------------------------------------------------------------------------------------
# Data movement
# ----------------------------------------------------------------------------------------------


def run_concat(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Raw values copied along ``axis`` (of the non-batch shape); qparams already aligned."""
    return _to_out(np.concatenate(inputs, axis=op.attrs["axis"] + 1), out)


def run_pad(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Constant pad with the quantized ``value`` (the zero point for zero padding)."""
    p = op.attrs["pads"]
    widths = [(0, 0)] + [(p[2 * d], p[2 * d + 1]) for d in range(len(p) // 2)]
    return _to_out(np.pad(inputs[0], widths, constant_values=op.attrs["value"]), out)


def run_reshape(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """C-order reshape of the non-batch dims; raw values unchanged."""
    x = inputs[0]
    return _to_out(x.reshape((x.shape[0], *op.attrs["shape"])), out)


def run_transpose(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """out[n, i_perm[0], ...] = x permuted by ``perm`` over the non-batch dims (C-contiguous)."""
    perm = [0] + [p + 1 for p in op.attrs["perm"]]
    return _to_out(np.ascontiguousarray(inputs[0].transpose(perm)), out)


# ----------------------------------------------------------------------------------------------
# Activations
# ----------------------------------------------------------------------------------------------


def run_clamp(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Standalone ReLU / ReLU6 / Hardtanh: clamp raw values to [act_min, act_max]."""
    return _to_out(saturate(inputs[0], op.attrs["act_min"], op.attrs["act_max"]), out)


def run_lut(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Table lookup: direct for 8-bit inputs, 513-entry linear interpolation for int16."""
    x = inputs[0].astype(np.int64)
    table = op.consts["table"].astype(np.int64)
    if table.shape[0] == 256:
        y = table[x + 128] if inputs[0].dtype == np.int8 else table[x]
    else:
        y = interpolate_table_513(table, x)
    return _to_out(saturate(y, op.attrs["act_min"], op.attrs["act_max"]), out)


def interpolate_table_513(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """u = x + 32768; t[u >> 7] + ((t[(u >> 7) + 1] − t[u >> 7])·(u & 127) + 64 >> 7)."""
    u = x + 32768
    i = u >> 7
    f = u & 127
    return table[i] + (((table[i + 1] - table[i]) * f + 64) >> 7)


def run_softmax(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Integer softmax over the last axis from an offline exp table (see docs/intgraph.md)."""
    a = op.attrs
    x = inputs[0].astype(np.int64)
    table = op.consts["exp_table"].astype(np.int64)
    e = exp_from_table(x.max(axis=-1, keepdims=True) - x, table, a["lut_shift"])
    total = e.sum(axis=-1, keepdims=True)  # >= 2^30: the max element has e = exp_table[0]
    rng = a["output_range"]
    y = (2 * e * rng + total) // (2 * total) + a["output_zero_point"]
    return _to_out(saturate(y, a["act_min"], a["act_max"]), out)


def exp_from_table(d: np.ndarray, table: np.ndarray, lut_shift: int) -> np.ndarray:
    """≈ 2^30·exp(−d·s_in) for d >= 0, linear interpolation between 2^lut_shift-spaced entries."""
    last = table.shape[0] - 1  # T: entries 0..T-1 interpolate, i >= T gives 0
    i = d >> lut_shift
    f = d & ((1 << lut_shift) - 1)
    idx = np.minimum(i, last - 1)
    e = table[idx] + (((table[idx + 1] - table[idx]) * f) >> lut_shift)
    return np.where(i >= last, 0, e)


def run_lrn(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Local response normalization across channels (docs/intgraph.md, ``lrn``).

    S = Σ d² over the channel window, the Q30 factor f(S) interpolated from the 513-knot table,
    g = SRDHM(d·2^left_shift, f) keeps ~30 bits of d·f, one final requantization.
    """
    a = op.attrs
    x = inputs[0]
    d = x.reshape(x.shape[0], x.shape[1], -1).astype(np.int64) - a["input_zero_point"]
    s = channel_window_sum(d * d, a["size"])
    f = interpolate_table_pot(op.consts["table"].astype(np.int64), s, a["lut_shift"])
    g = saturating_rounding_doubling_high_mul(d << a["left_shift"], f)
    r = multiply_by_quantized_multiplier(g, a["multiplier"], a["shift"])
    y = saturate(r + a["output_zero_point"], a["act_min"], a["act_max"])
    return _to_out(y.reshape(x.shape), out)


def channel_window_sum(v: np.ndarray, size: int) -> np.ndarray:
    """Σ v[j] over j in [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉] ∩ [0, C), axis 1 of (N, C, P).

    A difference of prefix sums over the zero-padded channels (int64, exact).
    """
    before, after = (size - 1) // 2, size // 2
    padded = np.pad(v, ((0, 0), (before + 1, after), (0, 0)))
    prefix = np.cumsum(padded, axis=1)
    channels = v.shape[1]
    return prefix[:, size : size + channels] - prefix[:, :channels]


def interpolate_table_pot(table: np.ndarray, s: np.ndarray, shift: int) -> np.ndarray:
    """t[s >> shift] + ((t[(s >> shift) + 1] − t[s >> shift])·(s mod 2^shift) >> shift), s >= 0."""
    i = s >> shift
    r = s & ((1 << shift) - 1)
    return table[i] + (((table[i + 1] - table[i]) * r) >> shift)


OP_RUNNERS: dict[str, OpRunner] = {
    "conv": run_conv,
    "fully_connected": run_fully_connected,
    "add": run_add,
    "rescale": run_rescale,
    "max_pool": run_max_pool,
    "avg_pool": run_avg_pool,
    "concat": run_concat,
    "pad": run_pad,
    "reshape": run_reshape,
    "transpose": run_transpose,
    "clamp": run_clamp,
    "lut": run_lut,
    "softmax": run_softmax,
    "lrn": run_lrn,
}
