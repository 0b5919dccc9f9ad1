"""add — elementwise sum of two tensors of the same shape (TFLM's quantized add)

- inputs `[a, b]`; attrs: `a_zero_point`, `b_zero_point`, `left_shift` (20 for int8, 15 for
  int16),
  `a_multiplier`, `a_shift`, `b_multiplier`, `b_shift`, `output_multiplier`, `output_shift`,
  `output_zero_point`, `act_min`, `act_max`, `rounding` ("double"|"single"; pow2 models use
  "double").
- math (int32 throughout, as TFLM):
  `a' = mbqm((a − a_zp) << left_shift, a_multiplier, a_shift)`, `b'` likewise,
  `out = clamp(mbqm(a' + b', output_multiplier, output_shift) + output_zero_point, act_min,
  act_max)`,
  where mbqm is the double- or single-rounding function per `rounding` (`"double"|"single"`).
  Validation requires `a_shift, b_shift ≤ 0` (TFLM's `QuantizeMultiplierSmallerThanOneExp`:
  the real input multipliers are ≤ 1/2) and `max|x − z|·2^left_shift ≤ 2^30` for both inputs, so
  `(x − z) << left_shift` and `a' + b'` fit int32 (int16 inputs need z = 0 with left_shift 15).
  TFLM applies the output multiplier with `MultiplyByQuantizedMultiplierSmallerThanOneExp`,
  which equals mbqm whenever `output_shift ≤ 0` (always the case for left_shift 20/15).
  Offline: `twice_max = 2·max(s_a, s_b)`; real multipliers `s_a/twice_max`, `s_b/twice_max`,
  `twice_max / (2^left_shift · s_out)`.
"""

from __future__ import annotations

import numpy as np

from ..codegen.c_syntax import requant_mode
from ..intgraph.check import OpCheck, arity, max_abs_offset
from ..intgraph.types import Op, TensorInfo
from ..numerics import apply_multiplier, saturate
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register

_ATTRS = (
    "a_zero_point",
    "b_zero_point",
    "left_shift",
    "a_multiplier",
    "a_shift",
    "b_multiplier",
    "b_shift",
    "output_multiplier",
    "output_shift",
    "output_zero_point",
    "act_min",
    "act_max",
)


def _check_shifted_operand(chk: OpCheck, key: str, t: TensorInfo, z: int, left_shift: int):
    """(x − z) << left_shift, and a sum of two rescaled ones, must fit int32 (TFLM's add)."""
    if max_abs_offset(t, z) << left_shift > 2**30:
        raise chk.fail(
            f"attr 'left_shift' = {left_shift} makes ({key} − zero_point) << left_shift exceed "
            "2^30 (int32 overflow in the sum); use 20 for int8, 15 for int16"
        )


def check(chk: OpCheck) -> None:
    arity(chk, 2)
    a, b = chk.ins()
    if a.shape != b.shape:
        raise chk.fail(f"inputs must have the same shape, got {a.shape} and {b.shape}")
    chk.expect_output_shape(a.shape)
    za = chk.zero_point_attr("a_zero_point", a)
    zb = chk.zero_point_attr("b_zero_point", b)
    chk.zero_point_attr("output_zero_point", chk.out)
    ls = chk.int_attr("left_shift", 0, 30)
    _check_shifted_operand(chk, "a", a, za, ls)
    _check_shifted_operand(chk, "b", b, zb, ls)
    for p in ("a", "b"):
        chk.multiplier_attr(f"{p}_multiplier")
        # TFLM: QuantizeMultiplierSmallerThanOneExp — the input multipliers are <= 1/2.
        chk.shift_attr(f"{p}_shift", hi=0)
    chk.multiplier_attr("output_multiplier")
    chk.shift_attr("output_shift")
    chk.act_range()
    chk.rounding(("double", "single"))


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Rescale both inputs to a common finer scale, sum, requantize.

    All intermediate values fit int32 (checked by validation), so int64 arithmetic is exact.
    """
    a = op.attrs
    rounding = a.get("rounding", "double")
    ls = a["left_shift"]
    a_shifted = (inputs[0].astype(np.int64) - a["a_zero_point"]) << ls
    b_shifted = (inputs[1].astype(np.int64) - a["b_zero_point"]) << ls
    a_scaled = apply_multiplier(a_shifted, a["a_multiplier"], a["a_shift"], rounding)
    b_scaled = apply_multiplier(b_shifted, a["b_multiplier"], a["b_shift"], rounding)
    total = apply_multiplier(
        a_scaled + b_scaled, a["output_multiplier"], a["output_shift"], rounding
    )
    y = saturate(total + a["output_zero_point"], a["act_min"], a["act_max"])
    return to_out(y, out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    a = op.attrs
    prm = em.params(
        "iq_add_params_t", f"{p}_params", {**{k: a[k] for k in _ATTRS}, "mode": requant_mode(op)}
    )
    ta, tb = op.inputs
    em.calls.append(
        f"    iq_add(&{prm}, {em.ptr(ta, True)}, {em.code(ta)}, {em.ptr(tb, True)}, "
        f"{em.code(tb)}, {em.ptr(op.output, False)}, {em.code(op.output)}, "
        f"{em.size(op.output)});"
    )


def to_onnx(ex, op: Op) -> None:
    """DQ(a), DQ(b) at the effective scales the multipliers give, Add, Clip, Q."""
    from ..onnx_export import real_multiplier

    a = op.attrs
    out = ex.g.tensors[op.output]
    mo = real_multiplier(a["output_multiplier"], a["output_shift"])
    scale_of = {
        "a": float(real_multiplier(a["a_multiplier"], a["a_shift"]) * mo
                   * 2.0 ** a["left_shift"] * out.scale),
        "b": float(real_multiplier(a["b_multiplier"], a["b_shift"]) * mo
                   * 2.0 ** a["left_shift"] * out.scale),
    }
    xa = ex.dq(op.inputs[0], scale_of["a"], a["a_zero_point"],
               ex.g.tensors[op.inputs[0]].dtype, op.name + "_a")
    xb = ex.dq(op.inputs[1], scale_of["b"], a["b_zero_point"],
               ex.g.tensors[op.inputs[1]].dtype, op.name + "_b")
    ex.clip_and_q(ex.node("Add", [xa, xb], op.name), op, out)


def to_onnx_int(ex, op: Op) -> None:
    """Integer: rescale (x − z)·2^ls by each input multiplier, sum, requantize."""
    from onnx import TensorProto

    a = op.attrs
    rounding = a.get("rounding", "double")
    scaled = []
    for x, k in zip(op.inputs, ("a", "b"), strict=True):
        h = f"{op.name}_{k}"
        v = ex.node("Sub", [ex.cast(x, TensorProto.INT64, h),
                            ex.i64(h + "_zp", a[f"{k}_zero_point"])], h + "_sub")
        v = ex.node("Mul", [v, ex.i64(h + "_ls", 1 << a["left_shift"])], h + "_shl")
        scaled.append(ex.apply_multiplier_int(v, a[f"{k}_multiplier"], a[f"{k}_shift"],
                                              rounding, 32, h + "_mbqm"))
    total = ex.node("Add", scaled, op.name + "_sum")
    y = ex.apply_multiplier_int(total, a["output_multiplier"], a["output_shift"], rounding,
                                32, op.name + "_mbqm")
    ex.finish_int(y, op, a["output_zero_point"])


def run_float(node, inputs):
    return inputs[0] + inputs[1]


def lower(lw, node, inputs: list[str]) -> str:
    from ..lower import act_bounds, scalar_qparams
    from ..numerics import quantize_multiplier

    qa, qb = lw.fmt[inputs[0]], lw.fmt[inputs[1]]
    out_qp = lw.plan.acts[node.name]
    sa, za = scalar_qparams(qa)
    sb, zb = scalar_qparams(qb)
    so, zo = scalar_qparams(out_qp)
    left_shift = 20 if out_qp.bits <= 8 else 15
    twice_max = 2 * max(sa, sb)
    am, ash = quantize_multiplier(sa / twice_max)
    bm, bsh = quantize_multiplier(sb / twice_max)
    om, osh = quantize_multiplier(twice_max / (2**left_shift * so))
    lo, hi = act_bounds(node, out_qp)
    rounding = "double" if lw.rounding() == "pow2" else lw.rounding()
    attrs = dict(a_zero_point=za, b_zero_point=zb, left_shift=left_shift, a_multiplier=am,
                 a_shift=ash, b_multiplier=bm, b_shift=bsh, output_multiplier=om,
                 output_shift=osh, output_zero_point=zo, act_min=lo, act_max=hi,
                 rounding=rounding)
    return lw.emit(node.name, "add", inputs, node.shape, out_qp, attrs)


register(
    OpDef(
        kind="add",
        summary="sum of two tensors, TFLM's quantized add",
        attrs=frozenset(_ATTRS) | {"rounding"},
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_add.c", "iq_add.h", "iq_dot.h", "iq_dot_avr.h"),
        c_header="iq_add.h",
        to_onnx=to_onnx,
        to_onnx_int=to_onnx_int,
        in_place=True,
    ),
    FloatOpDef(
        name="add",
        summary="elementwise sum of two tensors of the same shape",
        run=run_float,
        lower=lower,
        lowers_to=("add",),
        fuse_into=True,
    ),
)
