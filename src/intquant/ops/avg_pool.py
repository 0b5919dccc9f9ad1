"""avg_pool — AvgPool1d/2d and global average pooling (AdaptiveAvgPool to 1)

- attrs `kernel`, `stride`, `padding` as max_pool, `count_include_pad` (0|1), `zero_point`
  (input = output), `act_min`, `act_max`.
- `sum` = Σ raw values over the valid part of the window (int32); `count` = number of valid
  positions,
  or, if count_include_pad, kh·kw and `sum += (kh·kw − valid)·zero_point` (padded positions hold
  real 0).
  `out = clamp(sum > 0 ? (sum + count/2) / count : (sum − count/2) / count, act_min, act_max)`
  with C
  division truncating toward zero (round half away from zero). Same qparams in and out.
- No dilation attr (PyTorch has none). Validation checks `kh·kw·max|x| < 2^31` so the sum fits
  int32. count_include_pad = 0 is TFLM's AveragePool exactly; 1 is PyTorch's default.

Float ops lowered here: ``avg_pool``, ``global_avg_pool`` (one window over the whole map) and
``mean`` over adjacent non-batch axes (x.mean(dim=1) of a (N, T, C) token sequence): the input
viewed as (outer, length, inner) by a free reshape, one (length, 1) window per output. Over
every non-batch axis without keepdim (x.mean(dim=1) of (N, C)) the result is a rank-0 tensor,
one scalar per sample, reached by a second free reshape.
"""

from __future__ import annotations

import numpy as np

from ..intgraph.check import OpCheck
from ..intgraph.types import ACTIVATION_DTYPES, INT32_MAX, Op, TensorInfo
from ..numerics import saturate
from . import _pool
from ._reference import as_nchw, divide_round_half_away, from_nchw, pad_hw, to_out, windows
from .registry import FloatOpDef, OpDef, register


def check(chk: OpCheck) -> None:
    x, kernel = _pool.check_pool(chk, dilation=False)
    chk.int_attr("count_include_pad", 0, 1)
    z = chk.zero_point_attr("zero_point", x)
    lo, hi = ACTIVATION_DTYPES[x.dtype]
    if kernel[0] * kernel[1] * max(abs(lo), abs(hi), abs(z)) > INT32_MAX:
        raise chk.fail(f"attr 'kernel' {kernel}: the window sum can overflow int32")


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Window sum over valid positions, divided (round half away) by the valid count.

    With count_include_pad the divisor is kh·kw and padded positions add the zero point
    (they hold real zero), matching PyTorch's count_include_pad=True.
    """
    a = op.attrs
    x = inputs[0]
    kh, kw = a["kernel"]
    nchw = as_nchw(x)
    dil = [1, 1]
    sums = windows(
        pad_hw(nchw.astype(np.int64), a["padding"], 0), a["kernel"], a["stride"], dil
    ).sum(axis=(4, 5))
    ones = np.ones((1, 1) + nchw.shape[2:], dtype=np.int64)
    valid = windows(pad_hw(ones, a["padding"], 0), a["kernel"], a["stride"], dil).sum(axis=(4, 5))
    if a["count_include_pad"]:
        sums = sums + (kh * kw - valid) * a["zero_point"]
        count = np.full_like(valid, kh * kw)
    else:
        count = valid
    y = saturate(divide_round_half_away(sums, count), a["act_min"], a["act_max"])
    return to_out(from_nchw(y, x.ndim == 3), out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    _pool.emit_pool(em, op, p, "iq_avg_pool", [1, 1])


def to_onnx_int(ex, op: Op) -> None:
    """Window sums by a float depthwise Conv with a ones kernel (exact: every partial sum is an
    integer below 2^24), then the interpreter's round-half-away division by the count."""
    from onnx import TensorProto

    from ..onnx_export import ONNX_DTYPE

    a = op.attrs
    x_info = ex.g.tensors[op.inputs[0]]
    kh, kw = a["kernel"]
    bound = kh * kw * max(abs(v) for v in ACTIVATION_DTYPES[x_info.dtype])
    if bound >= 2**24:
        raise ValueError(
            f"op {op.name!r} (avg_pool): window sums up to {bound} are not exact in float32 "
            "(needs kh·kw·max|x| < 2^24); export with requant='float'")
    one_d = len(x_info.shape) == 2
    t, left, bottom, r = a["padding"]
    ch = x_info.shape[0]
    x = ex.cast(op.inputs[0], TensorProto.FLOAT, op.name + "_f")
    ones = np.ones((ch, 1, kw) if one_d else (ch, 1, kh, kw), np.float32)
    kwargs = (dict(kernel_shape=[kw], strides=a["stride"][1:], pads=[left, r]) if one_d else
              dict(kernel_shape=[kh, kw], strides=a["stride"], pads=[t, left, bottom, r]))
    s = ex.node("Conv", [x, ex.const(op.name + "_ones", ones)], op.name + "_sum",
                group=ch, **kwargs)
    s = ex.cast(s, TensorProto.INT64, op.name + "_si")
    valid = _valid_counts(x_info.shape, a)
    if a["count_include_pad"]:
        pad_sum = (kh * kw - valid) * a["zero_point"]  # padded positions hold real zero
        s = ex.node("Add", [s, ex.i64(op.name + "_padz", pad_sum)], op.name + "_pz")
        count = np.full_like(valid, kh * kw)
    else:
        count = valid
    num = ex.node("Add", [ex.node("Abs", [s], op.name + "_abs"),
                          ex.i64(op.name + "_half", count // 2)], op.name + "_num")
    q = ex.node("Div", [num, ex.i64(op.name + "_cnt", count)], op.name + "_q")
    y = ex.node("Mul", [ex.node("Sign", [s], op.name + "_sg"), q], op.name + "_avg")
    y = ex.saturate_int(y, a["act_min"], a["act_max"], op.name + "_act")
    ex.cast(y, ONNX_DTYPE[ex.g.tensors[op.output].dtype], op.name, out=ex.oname(op))


def _valid_counts(shape: tuple[int, ...], attrs: dict) -> np.ndarray:
    """In-bounds positions of every pooling window, shaped like the output's spatial dims
    ((H', W') for 2-D, (L',) for 1-D), from the per-axis counts (windows are rectangles)."""
    one_d = len(shape) == 2
    sizes = (1, shape[1]) if one_d else shape[1:]
    t, left, bottom, r = attrs["padding"]
    per_axis = []
    for size, k, s, lo, hi in zip(sizes, attrs["kernel"], attrs["stride"], (t, left),
                                  (bottom, r), strict=True):
        n_out = (size + lo + hi - k) // s + 1
        start = np.arange(n_out) * s - lo
        per_axis.append(np.minimum(start + k, size) - np.maximum(start, 0))
    counts = np.outer(per_axis[0], per_axis[1]).astype(np.int64)
    return counts[0] if one_d else counts


def run_float_avg_pool(node, inputs):
    """Sum over the window (zero padding), divided by the valid count or the full window."""
    import torch
    import torch.nn.functional as F

    x = inputs[0]
    a = node.attrs
    t, left, b, r = a["padding"]
    cip = bool(a.get("count_include_pad", True))
    x2 = x.unsqueeze(2) if a["dims"] == 1 else x
    kh, kw = a["kernel"]
    sh, sw = a["stride"]
    padded = F.pad(x2, (left, r, t, b))
    ones = F.pad(torch.ones_like(x2[:, :1]), (left, r, t, b))
    s = F.avg_pool2d(padded, (kh, kw), (sh, sw)) * (kh * kw)
    if cip:
        out = s / (kh * kw)
    else:
        cnt = F.avg_pool2d(ones, (kh, kw), (sh, sw)) * (kh * kw)
        out = s / cnt
    return out.squeeze(2) if a["dims"] == 1 else out


def run_float_global_avg_pool(node, inputs):
    x = inputs[0]
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def lower_avg_pool(lw, node, inputs: list[str]) -> str:
    attrs = dict(_pool.pool_geometry(node), count_include_pad=int(node.attrs["count_include_pad"]),
                 zero_point=int(lw.fmt[inputs[0]].zero_point[0]), act_min=0, act_max=0)
    return lw.same_format(node, inputs, "avg_pool", attrs)


def lower_global_avg_pool(lw, node, inputs: list[str]) -> str:
    x = inputs[0]
    spatial = list(lw.tensors[x].shape[1:])
    kernel = [1] + spatial if len(spatial) == 1 else spatial
    attrs = dict(kernel=kernel, stride=kernel, padding=[0, 0, 0, 0], count_include_pad=0,
                 zero_point=int(lw.fmt[x].zero_point[0]), act_min=0, act_max=0)
    return lw.same_format(node, inputs, "avg_pool", attrs)


def run_float_mean(node, inputs):
    x = inputs[0]
    return x.mean(dim=[a + 1 for a in node.attrs["axes"]], keepdim=bool(node.attrs["keepdim"]))


def lower_mean(lw, node, inputs: list[str]) -> str:
    """Mean over adjacent axes: reshape to (outer, length, inner), a (length, 1) window."""
    import math

    from ..lower import LoweringError

    x = inputs[0]
    qp = lw.fmt[x]
    shape = tuple(lw.tensors[x].shape)
    axes = sorted(node.attrs["axes"])
    if axes != list(range(axes[0], axes[-1] + 1)):
        raise LoweringError(f"mean over the non-adjacent dims {[a + 1 for a in axes]} (batch "
                            "first); only adjacent dims (take the mean over each run in turn)")
    rows = (math.prod(shape[:axes[0]]), math.prod(shape[axes[0]:axes[-1] + 1]),
            math.prod(shape[axes[-1] + 1:]))
    if rows != shape:
        x = lw.emit(node.name + ".rows", "reshape", [x], rows, qp, {"shape": list(rows)})
    attrs = dict(kernel=[rows[1], 1], stride=[1, 1], padding=[0, 0, 0, 0], count_include_pad=0,
                 zero_point=int(qp.zero_point[0]), act_min=qp.qmin, act_max=qp.qmax)
    out = (rows[0], 1, rows[2])
    if out == tuple(node.shape):
        return lw.emit(node.name, "avg_pool", [x], out, qp, attrs)
    y = lw.emit(node.name + ".mean", "avg_pool", [x], out, qp, attrs)
    return lw.emit(node.name, "reshape", [y], node.shape, qp, {"shape": list(node.shape)})


register(
    OpDef(
        kind="avg_pool",
        summary="AvgPool1d/2d and global average pool, rounding half away from zero",
        attrs=frozenset({"kernel", "stride", "padding", "count_include_pad", "zero_point",
                         "act_min", "act_max"}),
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_avg_pool.c", "iq_avg_pool.h", *_pool.C_FILES),
        c_header="iq_avg_pool.h",
        to_onnx=_pool.to_onnx_pool,
        to_onnx_int=to_onnx_int,
    ),
    FloatOpDef(
        name="avg_pool",
        summary="AvgPool1d/2d; attrs kernel, stride, padding, count_include_pad",
        run=run_float_avg_pool,
        lower=lower_avg_pool,
        lowers_to=("avg_pool",),
        same_format=True,
        channel_scaling=lambda node: True,
        pads=lambda node: any(node.attrs["padding"]),
        fuse_into=True,
    ),
    FloatOpDef(
        name="global_avg_pool",
        summary="AdaptiveAvgPool to 1 / GlobalAveragePool",
        run=run_float_global_avg_pool,
        lower=lower_global_avg_pool,
        lowers_to=("avg_pool",),
        same_format=True,
        channel_scaling=lambda node: True,
        fuse_into=True,
    ),
    FloatOpDef(
        name="mean",
        summary="mean over adjacent non-batch axes; attrs axes, keepdim",
        run=run_float_mean,
        lower=lower_mean,
        lowers_to=("reshape", "avg_pool"),
        same_format=True,
    ),
)
