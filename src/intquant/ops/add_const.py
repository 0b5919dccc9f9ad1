"""add_const — an activation plus a constant tensor of its shape (learned positional embeddings)

- inputs `[x]`; const `addend` int32 with x's shape: the constant on the grid s_in / 2^left_shift;
  attrs `input_zero_point`, `left_shift`, `multiplier`, `shift`, `output_zero_point`, `act_min`,
  `act_max`, `rounding` ("double" | "single").
- `out = clamp(apply_multiplier((x − input_zero_point)·2^left_shift + addend, multiplier,
  shift) + output_zero_point, act_min, act_max)`: the exact sum on a fine grid, rounded once.
- Offline: `addend = round(P·2^left_shift / s_in)`, real multiplier `s_in / (2^left_shift ·
  s_out)`; `left_shift` is the largest <= 20 that keeps the sum in int32. Validation:
  `max|x − z|·2^left_shift + max|addend| <= 2^31 − 1`.

Error vs float: one rounding of the output (0.5 LSB) plus the constant's rounding on the fine
grid (2^-left_shift input LSB) and the multiplier's < 2^-30 relative.

Float op lowered here: ``add_const`` (x + P for a constant P that is neither a scalar nor one
value per channel; those are ``mul_const``).
"""

from __future__ import annotations

import numpy as np

from ..codegen.c_syntax import requant_mode
from ..intgraph.check import OpCheck, arity, max_abs_offset
from ..intgraph.types import INT32_MAX, Op, TensorInfo
from ..numerics import apply_multiplier, saturate
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register

_ATTRS = ("input_zero_point", "left_shift", "multiplier", "shift", "output_zero_point",
          "act_min", "act_max", "rounding")
MAX_LEFT_SHIFT = 20


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    chk.expect_output_shape(x.shape)
    z = chk.zero_point_attr("input_zero_point", x)
    ls = chk.int_attr("left_shift", 0, MAX_LEFT_SHIFT)
    chk.multiplier_attr("multiplier")
    chk.shift_attr("shift")
    chk.zero_point_attr("output_zero_point", chk.out)
    chk.act_range()
    chk.rounding(("double", "single"))
    addend = chk.const("addend", ("int32",), len(x.shape))
    if tuple(addend.shape) != tuple(x.shape):
        raise chk.fail(f"const 'addend' has shape {addend.shape}, expected {x.shape}")
    worst = (max_abs_offset(x, z) << ls) + int(np.abs(addend.astype(np.int64)).max(initial=0))
    if worst > INT32_MAX:
        raise chk.fail(f"attr 'left_shift' = {ls} and const 'addend' let the sum reach {worst}, "
                       "beyond int32")


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """(x − z)·2^ls + addend (exact in int32), requantized once."""
    a = op.attrs
    acc = ((inputs[0].astype(np.int64) - a["input_zero_point"]) << a["left_shift"]) \
        + op.consts["addend"].astype(np.int64)
    y = apply_multiplier(acc, a["multiplier"], a["shift"], a["rounding"])
    return to_out(saturate(y + a["output_zero_point"], a["act_min"], a["act_max"]), out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    a = op.attrs
    x = op.inputs[0]
    addend = em.const_array(f"{p}_addend", "int32_t", op.consts["addend"])
    prm = em.params(
        "iq_add_const_params_t",
        f"{p}_params",
        {**{k: a[k] for k in _ATTRS if k != "rounding"}, "mode": requant_mode(op)},
    )
    em.calls.append(
        f"    iq_add_const(&{prm}, {addend}, {em.ptr(x, True)}, {em.code(x)}, "
        f"{em.ptr(op.output, False)}, {em.code(op.output)}, {em.size(x)});"
    )


def to_onnx(ex, op: Op) -> None:
    """DQ(x) + the constant in real units (read back from the integers), Clip, Q."""
    a = op.attrs
    x_info, out = ex.g.tensors[op.inputs[0]], ex.g.tensors[op.output]
    value = op.consts["addend"].astype(np.float64) * x_info.scale / 2.0 ** a["left_shift"]
    y = ex.node("Add", [ex.dq_tensor(op.inputs[0], op.name),
                        ex.const(op.name + "_p", value.astype(np.float32)[None])], op.name)
    ex.clip_and_q(y, op, out)


def to_onnx_int(ex, op: Op) -> None:
    from onnx import TensorProto

    a, h = op.attrs, op.name
    x = ex.node("Sub", [ex.cast(op.inputs[0], TensorProto.INT64, h),
                        ex.i64(h + "_zp", a["input_zero_point"])], h + "_x")
    acc = ex.node("Add", [ex.node("Mul", [x, ex.i64(h + "_ls", 1 << a["left_shift"])],
                                  h + "_shl"),
                          ex.i64(h + "_addend", op.consts["addend"][None])], h + "_acc")
    y = ex.apply_multiplier_int(acc, a["multiplier"], a["shift"], a["rounding"], 32,
                                h + "_mbqm")
    ex.finish_int(y, op, a["output_zero_point"])


def lower(lw, node, inputs: list[str]) -> str:
    from ..lower import act_bounds, scalar_qparams
    from ..numerics import quantize_multiplier

    x = inputs[0]
    in_qp, out_qp = lw.fmt[x], lw.plan.acts[node.name]
    s_in, z_in = scalar_qparams(in_qp)
    s_out, z_out = scalar_qparams(out_qp)
    value = np.broadcast_to(np.asarray(node.params["value"], np.float64), node.shape)
    span = max_abs_offset(lw.tensors[x], z_in)
    ls = MAX_LEFT_SHIFT
    while ls > 0 and (span << ls) + np.abs(value).max(initial=0) * 2.0**ls / s_in > INT32_MAX:
        ls -= 1
    addend = np.clip(np.rint(value * 2.0**ls / s_in), -(INT32_MAX - (span << ls)),
                     INT32_MAX - (span << ls))
    m, sh = quantize_multiplier(s_in / (2.0**ls * s_out))
    lo, hi = act_bounds(node, out_qp)
    attrs = dict(input_zero_point=z_in, left_shift=ls, multiplier=m, shift=sh,
                 output_zero_point=z_out, act_min=lo, act_max=hi,
                 rounding="double" if lw.rounding() == "pow2" else lw.rounding())
    return lw.emit(node.name, "add_const", inputs, node.shape, out_qp, attrs,
                   {"addend": addend.astype(np.int32)})


def run_float(node, inputs):
    import torch

    return inputs[0] + torch.as_tensor(np.asarray(node.params["value"], np.float32))


register(
    OpDef(
        kind="add_const",
        summary="activation + a constant tensor of its shape (positional embedding), one "
                "rounding",
        attrs=frozenset(_ATTRS),
        consts=frozenset({"addend"}),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_add_const.c", "iq_add_const.h"),
        c_header="iq_add_const.h",
        to_onnx=to_onnx,
        to_onnx_int=to_onnx_int,
        in_place=True,
    ),
    FloatOpDef(
        name="add_const",
        summary="x + a constant tensor broadcast to x's (non-batch) shape; param value",
        run=run_float,
        lower=lower,
        lowers_to=("add_const",),
        fuse_into=True,
    ),
)
