"""slice — every step-th element of one axis from start (x[:, -1], x[:, -1:], y[:, :, a:b:s])

- attrs `axis` (non-batch axis), `start` >= 0, `step` >= 1; the output has the input's shape
  except `out.shape[axis] = count` >= 1, and `out[..., j, ...] = x[..., start + j·step, ...]`
  for j < count. Validation: `start + step·(count − 1) < in.shape[axis]`. Raw values are
  copied; same qparams in and out.

Float op lowered here: ``slice`` (aten.select / slice / narrow, ONNX Slice / Gather with one
index; ``keepdim`` false drops the axis with a reshape, which costs nothing).
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
    axis = chk.int_attr("axis", 0, len(x.shape) - 1)
    start = chk.int_attr("start", 0, x.shape[axis] - 1)
    step = chk.int_attr("step", 1, chk.limits.max_window)
    chk.expect_same_qparams(x, chk.out)
    if len(chk.out.shape) != len(x.shape):
        raise chk.fail(f"output tensor '{chk.out.name}' has rank {len(chk.out.shape)}, "
                       f"expected {len(x.shape)}")
    count = chk.out.shape[axis]
    if start + step * (count - 1) >= x.shape[axis]:
        raise chk.fail(f"attrs 'start' = {start}, 'step' = {step}: {count} elements reach "
                       f"past the end of axis {axis} (size {x.shape[axis]})")
    expected = list(x.shape)
    expected[axis] = count
    chk.expect_output_shape(tuple(expected))


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """x[..., start : start + step·count : step, ...] along ``axis`` (raw values)."""
    a = op.attrs
    count = out.shape[a["axis"]]
    index = [slice(None)] * inputs[0].ndim
    index[a["axis"] + 1] = slice(a["start"], a["start"] + a["step"] * (count - 1) + 1, a["step"])
    return to_out(np.ascontiguousarray(inputs[0][tuple(index)]), out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    a = op.attrs
    x = op.inputs[0]
    shape = em.g.tensors[x].shape
    axis = a["axis"]
    prm = em.params(
        "iq_slice_params_t",
        f"{p}_params",
        {
            "outer": math.prod(shape[:axis]),
            "in_len": shape[axis],
            "inner": math.prod(shape[axis + 1:]),
            "start": a["start"],
            "step": a["step"],
            "count": em.g.tensors[op.output].shape[axis],
            "elem_size": np.dtype(em.g.tensors[x].dtype).itemsize,
        },
    )
    em.calls.append(f"    iq_slice(&{prm}, {em.ptr(x, True)}, {em.ptr(op.output, False)});")


def to_onnx(ex, op: Op) -> None:
    a = op.attrs
    count = ex.g.tensors[op.output].shape[a["axis"]]
    h = op.name
    ex.node("Slice", [op.inputs[0], ex.i64(h + "_starts", [a["start"]]),
                      ex.i64(h + "_ends", [a["start"] + a["step"] * (count - 1) + 1]),
                      ex.i64(h + "_axes", [a["axis"] + 1]), ex.i64(h + "_steps", [a["step"]])],
            h, out=ex.oname(op))


def run_float(node, inputs):
    a = node.attrs
    index = [slice(None)] * inputs[0].dim()
    index[a["axis"] + 1] = slice(a["start"], a["stop"], a["step"])
    y = inputs[0][tuple(index)]
    return y if a["keepdim"] else y.squeeze(a["axis"] + 1)


def lower(lw, node, inputs: list[str]) -> str:
    a = node.attrs
    qp = lw.fmt[inputs[0]]
    shape = list(lw.tensors[inputs[0]].shape)
    shape[a["axis"]] = len(range(a["start"], a["stop"], a["step"]))
    attrs = {"axis": a["axis"], "start": a["start"], "step": a["step"]}
    if a["keepdim"]:
        return lw.emit(node.name, "slice", inputs, shape, qp, attrs)
    y = lw.emit(node.name + ".slice", "slice", inputs, shape, qp, attrs)
    return lw.emit(node.name, "reshape", [y], node.shape, qp, {"shape": list(node.shape)})


register(
    OpDef(
        kind="slice",
        summary="every step-th element of one axis from start (select / slice / narrow)",
        attrs=frozenset({"axis", "start", "step"}),
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_slice.c", "iq_slice.h"),
        c_header="iq_slice.h",
        to_onnx=to_onnx,
    ),
    FloatOpDef(
        name="slice",
        summary="x[..., start:stop:step, ...] along one non-batch axis; attrs axis, start, "
                "stop, step, keepdim (false: select, the axis is dropped)",
        run=run_float,
        lower=lower,
        lowers_to=("slice", "reshape"),
        same_format=True,
    ),
)
