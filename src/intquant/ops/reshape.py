"""reshape — Flatten / Reshape / Unflatten / view

- attr `shape` (non-batch). Raw values unchanged (C: a copy or an alias in the memory plan).
"""

from __future__ import annotations

import math

import numpy as np

from ..intgraph.check import OpCheck, arity
from ..intgraph.types import Op, TensorInfo
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    shape = chk.list_attr("shape", lo=1)
    if math.prod(shape) != math.prod(x.shape):
        raise chk.fail(f"attr 'shape' {shape} has a different element count than {x.shape}")
    chk.expect_same_qparams(x, chk.out)
    chk.expect_output_shape(tuple(shape))


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """C-order reshape of the non-batch dims; raw values unchanged."""
    x = inputs[0]
    return to_out(x.reshape((x.shape[0], *op.attrs["shape"])), out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    if i in em.plan.copies or em.plan.locations[op.inputs[0]] != em.plan.locations[op.output]:
        nbytes = em.size(op.output) * np.dtype(em.g.tensors[op.output].dtype).itemsize
        em.calls.append(
            f"    memmove({em.ptr(op.output, False)}, {em.ptr(op.inputs[0], True)}, "
            f"{nbytes});"
        )
    else:
        em.calls.append("    /* alias: same bytes, nothing to do */")


def to_onnx(ex, op: Op) -> None:
    shape = np.array([-1, *op.attrs["shape"]], np.int64)
    ex.node("Reshape", [op.inputs[0], ex.const(op.name + "_shape", shape)], op.name,
            out=ex.oname(op))


def run_float(node, inputs):
    x = inputs[0]
    return x.reshape((x.shape[0],) + tuple(node.attrs["shape"]))


def lower(lw, node, inputs: list[str]) -> str:
    return lw.emit(node.name, "reshape", inputs, node.shape, lw.fmt[inputs[0]],
                   {"shape": list(node.shape)})


register(
    OpDef(
        kind="reshape",
        summary="same bytes, another shape (an alias in C)",
        attrs=frozenset({"shape"}),
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        to_onnx=to_onnx,
        alias=True,
    ),
    FloatOpDef(
        name="reshape",
        summary="Flatten / view / reshape / Unflatten; attr shape (non-batch)",
        run=run_float,
        lower=lower,
        lowers_to=("reshape",),
        same_format=True,
        keeps_grid=True,
        view=True,
        channel_scaling=lambda node: True,
    ),
)
