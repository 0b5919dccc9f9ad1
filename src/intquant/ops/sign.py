"""sign — the binary activation (BNN): +1 / −1, packed into bits

- inputs `[x]` int8 / uint8 / int16 (any shape); output a "bit" tensor of the same shape.
- attr `threshold`: `out = +1 if x ≥ threshold else −1` on raw values. Lowering sets
  threshold = input zero point, i.e. the sign of the real value with sign(0) = +1.

A layer followed by a sign becomes binary_conv / sign_conv with the threshold folded in; this
op packs anything else (e.g. a sign after a pooling or an add, or a graph's first tensor).

Float op lowered here: ``sign`` — +1 for x ≥ 0, −1 for x < 0 (the BNN convention of Hubara et
al.; ``torch.sign`` would give 0 at exactly 0). Captured from ``torch.sign``.
"""

from __future__ import annotations

import numpy as np

from ..intgraph.check import OpCheck, arity
from ..intgraph.types import ACTIVATION_DTYPES, BIT, Op, TensorInfo
from ..numerics import QParams
from .registry import FloatOpDef, OpDef, register

SIGN_FORMAT_SCALE = 1.0  # ±1 real values: scale 1, zero point 0


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    if x.dtype == BIT:
        raise chk.fail(f"input '{x.name}' is already a 'bit' tensor")
    if chk.out.dtype != BIT:
        raise chk.fail(f"output '{chk.out.name}' must be a 'bit' tensor, got {chk.out.dtype}")
    lo, hi = ACTIVATION_DTYPES[x.dtype]
    chk.int_attr("threshold", lo, hi + 1)
    chk.expect_output_shape(x.shape)


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """+1 where x ≥ threshold, −1 elsewhere (int8 values of the packed tensor)."""
    return np.where(inputs[0].astype(np.int32) >= op.attrs["threshold"], 1, -1).astype(np.int8)


def emit_c(em, i: int, op: Op, p: str) -> None:
    from ..codegen.c_syntax import spatial

    x = em.g.tensors[op.inputs[0]]
    shape = (x.shape[0], 1) if len(x.shape) == 1 else x.shape
    c, h, w = spatial(shape)
    em.calls.append(
        f"    iq_sign({em.ptr(op.inputs[0], True)}, {em.code(op.inputs[0])}, {c}, {h * w}, "
        f"{op.attrs['threshold']}, (uint32_t*){em.ptr(op.output, False)});"
    )


def to_onnx(ex, op: Op) -> None:
    """Where(x ≥ threshold, 1, −1) on the raw integers (int8 ±1: ONNX's form of "bit")."""
    from onnx import TensorProto

    from ._binary import ex_sign

    x = ex.cast(op.inputs[0], TensorProto.INT32, op.name + "_x")
    thr = ex.const(op.name + "_thr", np.int32(op.attrs["threshold"]))
    ex_sign(ex, ex.node("GreaterOrEqual", [x, thr], op.name + "_ge"), op)


def run_float(node, inputs):
    import torch

    x = inputs[0]
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def sign_format(name: str) -> QParams:
    """The format of a sign's output: values ±1, scale 1 — a "bit" tensor."""
    return QParams(scale=[SIGN_FORMAT_SCALE], zero_point=[0], bits=1, signed=True, name=name)


def lower(lw, node, inputs: list[str]) -> str:
    """A packed ±1 input with scale 1 is its own sign; anything else is compared with its zero
    point (real ≥ 0) and packed."""
    x = inputs[0]
    info = lw.tensors[x]
    if info.dtype == BIT and info.scale == SIGN_FORMAT_SCALE:
        return x
    if info.dtype == BIT:
        x = lw.unpacked(x)
        info = lw.tensors[x]
    return lw.emit(node.name, "sign", [x], node.shape, sign_format(node.name),
                   {"threshold": int(info.zero_point)})


register(
    OpDef(
        kind="sign",
        summary="+1 where x ≥ threshold else −1, packed into bits (a sign not folded into a "
        "layer)",
        attrs=frozenset({"threshold"}),
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        to_onnx=to_onnx,
        c_files=("iq_bits.c", "iq_bits.h", "iq_binary.h", "iq_pool.h"),
        c_header="iq_bits.h",
        dtypes=("int8", "uint8", "int16", "bit"),
    ),
    FloatOpDef(
        name="sign",
        summary="BNN sign: +1 for x ≥ 0, −1 below (torch.sign, with sign(0) = +1)",
        run=run_float,
        lower=lower,
        lowers_to=("sign",),
        bits_in=True,
        fixed_format=lambda bits, name: sign_format(name),
    ),
)
