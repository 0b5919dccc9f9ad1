"""max_pool — MaxPool1d/2d

- attrs `kernel [kh, kw]`, `stride [sh, sw]`, `padding [t, l, b, r]`, `dilation [dh, dw]`,
  `act_min`, `act_max`.
- max of the raw values over the valid (in-bounds) part of the window, then clamp. Same qparams
  in and out.
- Output size (all windowed ops, conv included): `H' = floor((H + top + bottom − dh·(kh − 1) −
  1) / sh) + 1`
  (PyTorch's formula; ceil_mode must be expressed as extra bottom/right padding). 1-D ops
  (input `(C, L)`) need kernel[0] = stride[0] = dilation[0] = 1 and top = bottom = 0.
- Validation requires every window to contain at least one in-bounds element (PyTorch's
  `padding ≤ kernel/2` guarantees it), so the max (and avg_pool's count) is never empty.
"""

from __future__ import annotations

import numpy as np

from ..intgraph.check import OpCheck
from ..intgraph.types import Op, TensorInfo
from ..numerics import saturate
from . import _pool
from ._reference import as_nchw, from_nchw, pad_hw, to_out, windows
from .registry import FloatOpDef, OpDef, register


def check(chk: OpCheck) -> None:
    _pool.check_pool(chk, dilation=True)


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Max of raw values over the in-bounds part of each window, then clamp.

    Padding holds a value below every representable input, so it never wins; validation
    guarantees each window touches at least one real element.
    """
    a = op.attrs
    x = inputs[0]
    below_min = np.int32(np.iinfo(x.dtype).min) - 1
    xp = pad_hw(as_nchw(x).astype(np.int32), a["padding"], int(below_min))
    m = windows(xp, a["kernel"], a["stride"], a["dilation"]).max(axis=(4, 5))
    y = saturate(m, a["act_min"], a["act_max"])
    return to_out(from_nchw(y, x.ndim == 3), out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    _pool.emit_pool(em, op, p, "iq_max_pool", op.attrs["dilation"])


def run_float(node, inputs):
    import torch.nn.functional as F

    from .conv import pad_input

    a = node.attrs
    x = pad_input(inputs[0], a["padding"], a["dims"], value=-float("inf"))
    if a["dims"] == 1:
        return F.max_pool1d(x, a["kernel"][1], a["stride"][1], 0, a["dilation"][1])
    return F.max_pool2d(x, a["kernel"], a["stride"], 0, a["dilation"])


def lower(lw, node, inputs: list[str]) -> str:
    attrs = dict(_pool.pool_geometry(node), dilation=list(node.attrs.get("dilation", [1, 1])),
                 act_min=0, act_max=0)
    if lw.tensors[inputs[0]].dtype == "bit":  # packed ±1: binary_max_pool, no clamp
        from ..lower import LoweringError

        if node.act is not None:
            raise LoweringError("an activation fused after max pooling of sign (±1) values")
        del attrs["act_min"], attrs["act_max"]
        return lw.same_format(node, inputs, "binary_max_pool", attrs)
    return lw.same_format(node, inputs, "max_pool", attrs)


register(
    OpDef(
        kind="max_pool",
        summary="MaxPool1d/2d over raw values (same qparams in and out)",
        attrs=frozenset({"kernel", "stride", "padding", "dilation", "act_min", "act_max"}),
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_max_pool.c", "iq_max_pool.h", *_pool.C_FILES),
        c_header="iq_max_pool.h",
        to_onnx=_pool.to_onnx_pool,
    ),
    FloatOpDef(
        name="max_pool",
        summary="MaxPool1d/2d; attrs kernel, stride, padding, dilation",
        run=run_float,
        lower=lower,
        lowers_to=("max_pool", "binary_max_pool"),
        same_format=True,
        keeps_grid=True,
        channel_scaling=lambda node: True,
        fuse_into=True,
        bits_in=True,
    ),
)
