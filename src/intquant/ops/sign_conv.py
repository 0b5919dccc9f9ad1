"""sign_conv — 8/16-bit Conv1d / Conv2d / Linear whose output is a sign: packed bits

The first layer of a binary network: integer input and weights, BatchNorm + sign folded into
one integer threshold per output channel, output a packed "bit" tensor the next binary layer
reads directly (no requantization at all).

- inputs `[x]`, x int8 / uint8 / int16 of shape `(Cin,)`, `(Cin, L)` or `(Cin, H, W)`; output a
  "bit" tensor `(Cout,)`, `(Cout, L')` or `(Cout, H', W')`. A `(Cin,)` input is a Linear layer
  (a 1x1 map: kernel, stride and dilation 1, no padding).
- consts: `weight` int8 / int16 `[Cout, Cin/groups, kh, kw]`, `threshold` int32 `[Cout]`.
- attrs: `stride`, `padding [top, left, bottom, right]`, `dilation`, `groups` (depthwise:
  groups = Cin; a `(Cin,)` input has groups 1), `input_zero_point`.
- math: `acc[co, oy, ox] = Σ_{ci in co's group, ky, kx} weight[co, ci, ky, kx] ·
  (x[g·Cin/groups + ci, iy, ix] − input_zero_point)` over the in-bounds taps (padding holds the
  zero point: real 0, as conv); `out = +1 if acc ≥ threshold[co] else −1`. Validation bounds
  Σ|w|·max|x − z| < 2^31.

Lowered from ``conv`` / ``linear`` whose output format is 1 bit and whose input is not packed
(a grouped / depthwise conv reading sign activations gets them unpacked first).
"""

from __future__ import annotations

import math

import numpy as np

from ..codegen.c_syntax import C_TYPE, spatial, window_fields
from ..intgraph.check import (
    OpCheck,
    arity,
    check_out_len,
    max_abs_offset,
    out_len,
    window_attrs,
)
from ..intgraph.check import spatial as checked_spatial
from ..intgraph.types import BIT, IntGraph, Op, TensorInfo
from . import _binary
from ._reference import as_nchw, from_nchw, pad_hw, windows
from .registry import OpDef, register

_CHUNK_VALUES = 2**23


def _as_map(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(C,) runs as the 1-D map (C, 1)."""
    return (shape[0], 1) if len(shape) == 1 else shape


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    if x.dtype == BIT:
        raise chk.fail(f"input '{x.name}' is packed bits; a binary layer is binary_conv")
    if chk.out.dtype != BIT:
        raise chk.fail(f"output '{chk.out.name}' must be a 'bit' tensor, got {chk.out.dtype}")
    chk.zero_point_attr("input_zero_point", x)
    shape = _as_map(x.shape)
    cin, h, w = checked_spatial(chk, shape, f"input '{x.name}'")
    probe = TensorInfo(x.name, shape, x.dtype, x.scale, x.zero_point)
    stride, padding, dil, _ = window_attrs(chk, probe, kernel_from=None, dilation=True)
    groups = chk.int_attr("groups", 1)
    weight = chk.const("weight", ("int8", "int16"), 4)
    cout, wcin, kh, kw = weight.shape
    if cin % groups or cout % groups:
        raise chk.fail(f"attr 'groups' = {groups} must divide Cin = {cin} and Cout = {cout}")
    if wcin != cin // groups:
        raise chk.fail(f"const 'weight' shape {weight.shape}: dim 1 must be Cin/groups = "
                       f"{cin // groups}")
    if len(x.shape) < 3 and kh != 1:
        raise chk.fail(f"1-D input needs const 'weight' with kh = 1, got shape {weight.shape}")
    if len(x.shape) == 1 and (kw, stride, padding, dil, groups) != (1, [1, 1], [0] * 4, [1, 1],
                                                                    1):
        raise chk.fail("a (Cin,) input is a Linear layer: kernel 1x1, stride and dilation 1, "
                       "no padding, groups 1")
    ho = out_len(h, padding[0], padding[2], kh, stride[0], dil[0])
    wo = out_len(w, padding[1], padding[3], kw, stride[1], dil[1])
    check_out_len(chk, "H", ho)
    check_out_len(chk, "W", wo)
    expected = {1: (cout,), 2: (cout, wo), 3: (cout, ho, wo)}[len(x.shape)]
    chk.expect_output_shape(expected)
    w_abs = np.abs(weight.astype(np.int64)).reshape(cout, -1).sum(axis=1)
    bound = int(w_abs.max()) * max_abs_offset(x, x.zero_point)
    if bound >= _binary.ACC_LIMIT:
        raise chk.fail(f"accumulator bound {bound} >= 2^31; use smaller weights")
    _binary.check_output_stage(chk, cout, bound)


def accumulate(xz: np.ndarray, weight: np.ndarray, attrs: dict) -> np.ndarray:
    """Σ w·(x − z) for a padded batch chunk (N, Cin, Hp, Wp) of x − z (int64), per group."""
    groups = attrs.get("groups", 1)
    cout, cin_g, kh, kw = weight.shape
    cout_g = cout // groups
    win = windows(xz, [kh, kw], attrs["stride"], attrs["dilation"])  # (N, C, Ho, Wo, kh, kw)
    n, _, ho, wo = win.shape[:4]
    parts = []
    for g in range(groups):
        cols = win[:, g * cin_g : (g + 1) * cin_g].transpose(0, 2, 3, 1, 4, 5)
        w = weight[g * cout_g : (g + 1) * cout_g].reshape(cout_g, -1).astype(np.int64)
        parts.append(cols.reshape(n * ho * wo, -1) @ w.T)
    acc = np.concatenate(parts, axis=1)
    return acc.reshape(n, ho, wo, cout).transpose(0, 3, 1, 2)


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """acc = Σ w·(x − z_in) (padding = z_in); +1 where acc ≥ threshold, else −1."""
    a = op.attrs
    x = inputs[0]
    vector = x.ndim == 2
    xn = as_nchw(x[:, :, None] if vector else x)
    weight = op.consts["weight"]
    xz = pad_hw(xn.astype(np.int64) - a["input_zero_point"], a["padding"], 0)
    per_sample = max(1, xn[0].size * weight.shape[2] * weight.shape[3])
    chunk = max(1, _CHUNK_VALUES // per_sample)
    acc = np.concatenate(
        [accumulate(xz[i : i + chunk], weight, a) for i in range(0, xz.shape[0], chunk)]
    )
    y = _binary.output_stage(acc, op, out, axis=1)
    if vector:
        return y[:, :, 0, 0]
    return from_nchw(y, x.ndim == 3)


def macs(op: Op, graph: IntGraph) -> int:
    cout, cin_g, kh, kw = op.consts["weight"].shape
    return cout * math.prod(graph.tensors[op.output].shape[1:]) * cin_g * kh * kw


def scratch_bytes(graph: IntGraph, op: Op) -> int:
    """One group's receptive field of x − z as int32 values (bytes: fast8)."""
    _, cin_g, kh, kw = op.consts["weight"].shape
    return cin_g * kh * kw * (1 if is_fast8(graph, op) else 4)


def fast8_layout(op: Op, x_dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Offset-binary weights (iq_dot.h) and thresholds with the channel constants folded in.

    acc = Σ wu·xu − 128·Σxu + C_c with xu = x + xoff, wu = w + 128 and
    C_c = −xoff·Σwu_c + 128·xoff·K − z·Σw_c; the bit is then (Σ wu·xu − 128·Σxu) < thr − C_c.
    That difference lies within ±K·255·255 < 2^31 (K < 2^15), so clamping thr − C_c to int32
    changes no comparison.
    """
    from ._weighted import offset_binary_layout

    w2 = op.consts["weight"].reshape(op.consts["weight"].shape[0], -1).astype(np.int64)
    z = int(op.attrs["input_zero_point"])
    xoff = 128 if x_dtype == "int8" else 0
    k = w2.shape[1]
    layout, _ = offset_binary_layout(w2, np.zeros(w2.shape[0], np.int64), op, xoff)
    c = -xoff * (w2 + 128).sum(axis=1) + 128 * xoff * k - z * w2.sum(axis=1)
    thr = op.consts["threshold"].astype(np.int64) - c
    return layout, np.clip(thr, -(2**31), 2**31 - 1).astype(np.int32)


def is_fast8(graph: IntGraph, op: Op) -> bool:
    w = op.consts["weight"]
    return (graph.tensors[op.inputs[0]].dtype in ("int8", "uint8") and w.dtype == np.int8
            and w[0].size < 2**15)


def emit_c(em, i: int, op: Op, p: str) -> None:
    a = op.attrs
    x_info = em.g.tensors[op.inputs[0]]
    cin, h, w = spatial(_as_map(x_info.shape))
    cout, ho, wo = spatial(_as_map(em.g.tensors[op.output].shape))
    weight = op.consts["weight"]
    fast8 = is_fast8(em.g, op)
    if fast8:
        layout, thr = fast8_layout(op, x_info.dtype)
        w_arr = em.const_array(f"{p}_weight", "uint8_t", layout)
        threshold = em.const_array(f"{p}_threshold", "int32_t", thr)
    else:
        w_arr = em.const_array(f"{p}_weight", C_TYPE[str(weight.dtype)], weight)
        threshold = em.const_array(f"{p}_threshold", "int32_t", op.consts["threshold"])
    prm = em.params(
        "iq_sign_conv_params_t",
        f"{p}_params",
        {
            "in_c": cin,
            "in_h": h,
            "in_w": w,
            "out_c": cout,
            "out_h": ho,
            "out_w": wo,
            **window_fields(weight.shape[2:], a, a["dilation"]),
            "groups": a["groups"],
            "input_zero_point": a["input_zero_point"],
            "in_dtype": em.code(op.inputs[0]),
            "w16": int(weight.dtype == np.int16),
            "fast8": int(fast8),
        },
    )
    out = em.params("iq_binary_out_t", f"{p}_out", {"bits": 1, "threshold": threshold})
    scratch = f"(void*)(IQ_ARENA + {em.plan.scratch[i][0]})"
    args = ", ".join([f"&{prm}", em.ptr(op.inputs[0], True), f"(const void*){w_arr}", f"&{out}",
                      f"(uint32_t*){em.ptr(op.output, False)}", scratch])
    em.calls.append(f"    iq_sign_conv({args});")


register(
    OpDef(
        kind="sign_conv",
        summary="8/16-bit Conv1d/2d or Linear whose output is sign(acc − threshold) as packed "
        "bits (a BNN's first layer: BatchNorm + sign folded into the threshold)",
        attrs=frozenset({"stride", "padding", "dilation", "groups", "input_zero_point"}),
        consts=frozenset({"weight", "threshold"}),
        check=check,
        run=run,
        emit_c=emit_c,
        to_onnx=_binary.to_onnx_layer,
        c_files=("iq_sign_conv.c", "iq_sign_conv.h", "iq_binary.h", "iq_dot.h"),
        c_header="iq_sign_conv.h",
        macs=macs,
        scratch_bytes=scratch_bytes,
        dtypes=("int8", "uint8", "int16", "bit"),
    ),
)
