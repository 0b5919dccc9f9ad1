"""binary_max_pool — MaxPool1d/2d on a packed "bit" tensor: an AND of words

- inputs `[x]` "bit" `(C, L)` / `(C, H, W)`; output "bit" `(C, L')` / `(C, H', W')`, same scale.
- attrs `kernel`, `stride`, `padding [t, l, b, r]`, `dilation` (as max_pool; every window must
  touch the input).
- math: the max of ±1 values over the in-bounds taps of each window (padding never wins):
  −1 only if every tap is −1. With −1 stored as a set bit that is the AND of the taps' words,
  32 channels per instruction.

Lowered from ``max_pool`` when its input is packed.
"""

from __future__ import annotations

import math

import numpy as np

from ..codegen.c_syntax import spatial, window_fields
from ..intgraph.check import (
    OpCheck,
    arity,
    check_out_len,
    check_windows_touch_input,
    out_len,
    window_attrs,
)
from ..intgraph.check import spatial as checked_spatial
from ..intgraph.types import BIT, Op, TensorInfo
from ._reference import as_nchw, from_nchw, pad_hw, windows
from .registry import OpDef, register


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    if x.dtype != BIT or chk.out.dtype != BIT:
        raise chk.fail("input and output must be 'bit' tensors (max_pool pools 8/16-bit ones)")
    if not math.isclose(x.scale, chk.out.scale, rel_tol=1e-6):
        raise chk.fail(f"output scale {chk.out.scale} must equal input scale {x.scale}")
    c, h, w = checked_spatial(chk, x.shape, f"input '{x.name}'")
    stride, padding, dil, kernel = window_attrs(chk, x, kernel_from="kernel", dilation=True)
    ho = out_len(h, padding[0], padding[2], kernel[0], stride[0], dil[0])
    wo = out_len(w, padding[1], padding[3], kernel[1], stride[1], dil[1])
    check_out_len(chk, "H", ho)
    check_out_len(chk, "W", wo)
    check_windows_touch_input(chk, "H", h, ho, padding[0], kernel[0], stride[0], dil[0])
    check_windows_touch_input(chk, "W", w, wo, padding[1], kernel[1], stride[1], dil[1])
    chk.expect_output_shape((c, wo) if len(x.shape) == 2 else (c, ho, wo))


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Max of the ±1 values over the in-bounds taps (padding below every value)."""
    a = op.attrs
    x = inputs[0]
    xp = pad_hw(as_nchw(x).astype(np.int8), a["padding"], -2)
    m = windows(xp, a["kernel"], a["stride"], a["dilation"]).max(axis=(4, 5))
    return from_nchw(m.astype(np.int8), x.ndim == 3)


def emit_c(em, i: int, op: Op, p: str) -> None:
    a = op.attrs
    c, h, w = spatial(em.g.tensors[op.inputs[0]].shape)
    _, ho, wo = spatial(em.g.tensors[op.output].shape)
    prm = em.params(
        "iq_pool_params_t",
        f"{p}_params",
        {
            "channels": c,
            "in_h": h,
            "in_w": w,
            "out_h": ho,
            "out_w": wo,
            **window_fields(a["kernel"], a, a["dilation"]),
        },
    )
    em.calls.append(
        f"    iq_binary_max_pool(&{prm}, (const uint32_t*){em.ptr(op.inputs[0], True)}, "
        f"(uint32_t*){em.ptr(op.output, False)});"
    )


def to_onnx(ex, op: Op) -> None:
    """MaxPool on the int8 ±1 values (ONNX's padding never wins, as here)."""
    a = op.attrs
    t, left, bottom, r = a["padding"]
    one_d = len(ex.g.tensors[op.inputs[0]].shape) == 2
    ex.node("MaxPool", [op.inputs[0]], op.name, out=ex.oname(op),
            kernel_shape=a["kernel"][1:] if one_d else a["kernel"],
            strides=a["stride"][1:] if one_d else a["stride"],
            pads=[left, r] if one_d else [t, left, bottom, r],
            dilations=a["dilation"][1:] if one_d else a["dilation"])


register(
    OpDef(
        kind="binary_max_pool",
        summary="MaxPool1d/2d on packed bits: AND of the window's words (−1 = set bit)",
        attrs=frozenset({"kernel", "stride", "padding", "dilation"}),
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        to_onnx=to_onnx,
        c_files=("iq_bits.c", "iq_bits.h", "iq_binary.h", "iq_pool.h"),
        c_header="iq_bits.h",
        dtypes=("bit",),
    ),
)
