"""concat

- inputs `[t0, t1, ...]` all with the output's dtype, scale and zero point (lower inserts
  `rescale`); attr `axis` (in the
  non-batch shape; 0 = channels). Raw values are copied.
"""

from __future__ import annotations

import math

import numpy as np

from ..intgraph.check import OpCheck
from ..intgraph.types import Op, TensorInfo
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register


def check(chk: OpCheck) -> None:
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


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Raw values copied along ``axis`` (of the non-batch shape); qparams already aligned."""
    return to_out(np.concatenate(inputs, axis=op.attrs["axis"] + 1), out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    axis = op.attrs["axis"]
    out_shape = em.g.tensors[op.output].shape
    outer = math.prod(out_shape[:axis])
    inner_y = math.prod(out_shape[axis:])
    es = np.dtype(em.g.tensors[op.output].dtype).itemsize
    offset = 0
    for x in op.inputs:
        inner_x = math.prod(em.g.tensors[x].shape[axis:])
        em.calls.append(
            f"    iq_concat_part({em.ptr(op.output, False)}, {em.ptr(x, True)}, {outer}, "
            f"{inner_x}, {inner_y}, {offset}, {es});"
        )
        offset += inner_x


def to_onnx(ex, op: Op) -> None:
    ex.node("Concat", list(op.inputs), op.name, out=ex.oname(op), axis=op.attrs["axis"] + 1)


def run_float(node, inputs):
    import torch

    return torch.cat(inputs, dim=node.attrs["axis"] + 1)


def lower(lw, node, inputs: list[str]) -> str:
    out_qp = lw.plan.acts[node.name]
    aligned = [lw.rescale(t, out_qp, f"{node.name}.in{i}") for i, t in enumerate(inputs)]
    return lw.emit(node.name, "concat", aligned, node.shape, out_qp, {"axis": node.attrs["axis"]})


register(
    OpDef(
        kind="concat",
        summary="join tensors along an axis (raw copy, qparams aligned by lowering)",
        attrs=frozenset({"axis"}),
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_concat.c", "iq_concat.h"),
        c_header="iq_concat.h",
        to_onnx=to_onnx,
    ),
    FloatOpDef(
        name="concat",
        summary="concatenation; attr axis (non-batch)",
        run=run_float,
        lower=lower,
        lowers_to=("concat", "rescale"),
    ),
)
