"""unpack_bits — a packed ±1 tensor as int8 values, for an op that does not read bits

- inputs `[x]` a "bit" tensor (any shape); output int8 of the same shape, same scale, zero
  point 0: `out = x` (−1 or +1).

Inserted by lowering in front of any op that cannot consume packed bits (e.g. an average
pool, an add, or an 8-bit-weight layer reading sign activations) and at the graph output.
"""

from __future__ import annotations

import math

import numpy as np

from ..intgraph.check import OpCheck, arity
from ..intgraph.types import BIT, Op, TensorInfo
from .registry import OpDef, register


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    if x.dtype != BIT:
        raise chk.fail(f"input '{x.name}' must be a 'bit' tensor, got {x.dtype}")
    if chk.out.dtype != "int8" or chk.out.zero_point != 0:
        raise chk.fail(f"output '{chk.out.name}' must be int8 with zero_point 0")
    if not math.isclose(x.scale, chk.out.scale, rel_tol=1e-6):
        raise chk.fail(f"output scale {chk.out.scale} must equal input scale {x.scale}")
    chk.expect_output_shape(x.shape)


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """The ±1 values, unchanged, as int8."""
    return inputs[0].astype(np.int8)


def emit_c(em, i: int, op: Op, p: str) -> None:
    from ..codegen.c_syntax import spatial

    x = em.g.tensors[op.inputs[0]]
    shape = (x.shape[0], 1) if len(x.shape) == 1 else x.shape
    c, h, w = spatial(shape)
    em.calls.append(
        f"    iq_unpack_bits((const uint32_t*){em.ptr(op.inputs[0], True)}, {c}, {h * w}, "
        f"(int8_t*){em.ptr(op.output, False)});"
    )


def to_onnx(ex, op: Op) -> None:
    """The int8 ±1 values are ONNX's form of a "bit" tensor already."""
    ex.node("Identity", [op.inputs[0]], op.name, out=ex.oname(op))


register(
    OpDef(
        kind="unpack_bits",
        summary="packed ±1 → int8 ±1 (in front of an op that does not read bits)",
        attrs=frozenset(),
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        to_onnx=to_onnx,
        c_files=("iq_bits.c", "iq_bits.h", "iq_binary.h", "iq_pool.h"),
        c_header="iq_bits.h",
        dtypes=("bit", "int8"),
    ),
)
