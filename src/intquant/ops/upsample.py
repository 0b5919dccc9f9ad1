"""upsample — integer-factor upsampling: nearest, bilinear (align_corners=False)

- input `x` `(C, L)` or `(C, H, W)`; attrs `mode` ∈ {"nearest", "bilinear"} and
  `factor [fh, fw]` (1-D: fh = 1), each in [1, 16] (bilinear: [1, 8]). Same dtype, scale and
  zero point in and out.
- Along each axis of input length n and factor f, output index o reads two taps
  `(i0, w0), (i1, w1)` with weights over the denominator `D_axis`:
  - nearest: `i0 = o div f`, w = (1, 0), D = 1 — output length n·f (PyTorch's 'nearest' and
    ONNX Resize nearest for integer factors);
  - bilinear: `t = max(2o + 1 − f, 0)`, `i0 = t div 2f`, `i1 = min(i0 + 1, n − 1)`,
    `w1 = t mod 2f`, `w0 = 2f − w1`, D = 2f — exactly PyTorch's source coordinate
    `max((o + ½)/f − ½, 0)` in units of 1/2f; output length n·f.
- `y = floor((Σ_taps wy·wx·x + D/2) / D)` with `D = Dy·Dx` (a no-op for nearest: raw values
  are copied). Interpolation weights sum to D, so it commutes with the zero point.
  Error vs float: 0 for nearest; at most ½ LSB for bilinear (one rounding, ties up).
  Bound: D·32768 < 2^24 (the C kernel's int32 sum, the ONNX export's float-free int64 path).
"""

from __future__ import annotations

import numpy as np

from ..intgraph.check import OpCheck, arity
from ..intgraph.check import spatial as checked_spatial
from ..intgraph.types import IntGraph, Op, TensorInfo
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register

MODES = ("nearest", "bilinear")
MAX_FACTOR = {"nearest": 16, "bilinear": 8}
_C_MODE = {"nearest": 0, "bilinear": 1}


def axis_taps(n: int, f: int, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                   np.ndarray, int]:
    """(i0, i1, w0, w1, D) per output index."""
    o = np.arange(n * f, dtype=np.int64)
    if mode == "bilinear":
        t = np.maximum(2 * o + 1 - f, 0)
        i0 = t // (2 * f)
        w1 = t % (2 * f)
        return i0, np.minimum(i0 + 1, n - 1), 2 * f - w1, w1, 2 * f
    i0 = o // f
    return i0, i0, np.ones_like(o), np.zeros_like(o), 1


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    _, h, w = checked_spatial(chk, x.shape, f"input '{x.name}'")
    mode = chk.op.attrs.get("mode")
    if mode not in MODES:
        raise chk.fail(f"attr 'mode' must be one of {list(MODES)}, got {mode!r}")
    fh, fw = chk.list_attr("factor", 2, lo=1, hi=MAX_FACTOR[mode])
    if len(x.shape) == 2 and fh != 1:
        raise chk.fail(f"1-D input '{x.name}' needs attr 'factor' [1, fw], got {[fh, fw]}")
    chk.expect_same_qparams(x, chk.out)
    ho, wo = h * fh, w * fw
    chk.expect_output_shape((x.shape[0], wo) if len(x.shape) == 2 else (x.shape[0], ho, wo))


def _along(x: np.ndarray, axis: int, n: int, f: int, mode: str):
    """Σ over the two taps along ``axis`` (int64) and that axis' denominator."""
    i0, i1, w0, w1, d = axis_taps(n, f, mode)
    shape = [1] * x.ndim
    shape[axis] = -1
    y = w0.reshape(shape) * np.take(x, i0, axis=axis) + w1.reshape(shape) * np.take(x, i1,
                                                                                   axis=axis)
    return y, d


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Two taps per axis, weights over D; floor((acc + D/2)/D) (exact copy for D = 1)."""
    x = inputs[0].astype(np.int64)
    one_d = x.ndim == 3
    x4 = x[:, :, None, :] if one_d else x
    mode = op.attrs["mode"]
    fh, fw = op.attrs["factor"]
    y, dy = _along(x4, 2, x4.shape[2], fh, mode)
    y, dx = _along(y, 3, x4.shape[3], fw, mode)
    d = dy * dx
    y = (y + d // 2) // d
    return to_out(y[:, :, 0, :] if one_d else y, out)


def macs(op: Op, graph: IntGraph) -> int:
    """Bilinear: four multiply-adds per output element; nearest copies."""
    if op.attrs["mode"] != "bilinear":
        return 0
    return 4 * int(np.prod(graph.tensors[op.output].shape))


def emit_c(em, i: int, op: Op, p: str) -> None:
    x = op.inputs[0]
    shape = em.g.tensors[x].shape
    c, h, w = (shape[0], 1, shape[1]) if len(shape) == 2 else shape
    fh, fw = op.attrs["factor"]
    em.calls.append(
        f"    iq_upsample({em.ptr(x, True)}, {em.ptr(op.output, False)}, {c}, {h}, {w}, {fh}, "
        f"{fw}, {_C_MODE[op.attrs['mode']]}, {em.code(x)});"
    )


def to_onnx(ex, op: Op) -> None:
    """Exact: int64 Gathers of the two taps per axis, integer weights, floor division by D."""
    from onnx import TensorProto

    xi = ex.g.tensors[op.inputs[0]]
    mode = op.attrs["mode"]
    fh, fw = op.attrs["factor"]
    hint = op.name
    x = ex.cast(op.inputs[0], TensorProto.INT64, hint + "_x")
    one_d = len(xi.shape) == 2
    axes = [(2, xi.shape[1], fw)] if one_d else [(2, xi.shape[1], fh), (3, xi.shape[2], fw)]
    d = 1
    for axis, n, f in axes:
        i0, i1, w0, w1, da = axis_taps(n, f, mode)
        rank = 3 if one_d else 4
        shape = [1] * rank
        shape[axis] = -1
        taps = []
        for idx, wt in ((i0, w0), (i1, w1)):
            g = ex.node("Gather", [x, ex.i64(hint + "_i", idx)], hint + "_g", axis=axis)
            taps.append(ex.node("Mul", [g, ex.i64(hint + "_w", wt.reshape(shape))], hint + "_m"))
        x = ex.node("Add", taps, hint + "_sum")
        d *= da
    if d > 1:
        # floor((acc + D/2) / D) on a non-negative numerator (acc >= D·min, shifted by D·32768).
        off = d * 32768
        num = ex.node("Add", [x, ex.i64(hint + "_off", off + d // 2)], hint + "_num")
        q = ex.node("Div", [num, ex.i64(hint + "_d", d)], hint + "_q")
        x = ex.node("Sub", [q, ex.i64(hint + "_b", 32768)], hint + "_y")
    out = ex.g.tensors[op.output]
    from ..onnx_export.integer_math import ONNX_DTYPE

    ex.cast(x, ONNX_DTYPE[out.dtype], hint + "_out", out=ex.oname(op))


def run_float(node, inputs):
    """F.interpolate for nearest / bilinear (align_corners=False)."""
    import torch.nn.functional as F

    x = inputs[0]
    mode = node.attrs["mode"]
    fh, fw = node.attrs["factor"]
    one_d = x.dim() == 3
    size = [x.shape[2] * fw] if one_d else [x.shape[2] * fh, x.shape[3] * fw]
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode="linear" if one_d else "bilinear",
                         align_corners=False)


def lower(lw, node, inputs: list[str]) -> str:
    return lw.emit(node.name, "upsample", inputs, node.shape, lw.fmt[inputs[0]],
                   {"mode": node.attrs["mode"], "factor": list(node.attrs["factor"])})


register(
    OpDef(
        kind="upsample",
        summary="integer-factor upsampling: nearest (exact), bilinear align_corners=False "
        "(<= 1/2 LSB)",
        attrs=frozenset({"mode", "factor"}),
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_upsample.c", "iq_upsample.h"),
        c_header="iq_upsample.h",
        to_onnx=to_onnx,
        macs=macs,
    ),
    FloatOpDef(
        name="upsample",
        summary="nn.Upsample / F.interpolate / ONNX Resize with integer factors (nearest, "
        "bilinear align_corners=False); attrs mode, factor [fh, fw]",
        run=run_float,
        lower=lower,
        lowers_to=("upsample",),
        same_format=True,
        channel_scaling=lambda node: True,  # linear per channel: f(s·x) = s·f(x)
    ),
)
