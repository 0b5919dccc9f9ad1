"""add — sum or difference of two tensors with broadcasting (TFLM's quantized add and sub)

- inputs `[a, b]` of the output's rank, each dim equal to the output's or 1 (a per-channel
  (C, 1, 1) or per-sample (1, 1, 1) operand broadcasts; see ``ops/_broadcast.py``);
  attrs: `a_zero_point`, `b_zero_point`, `left_shift` (see below),
  `a_multiplier`, `a_shift`, `b_multiplier`, `b_shift`, `output_multiplier`, `output_shift`,
  `output_zero_point`, `act_min`, `act_max`, `rounding` ("double"|"single"; pow2 models use
  "double").
- math (int32 throughout, as TFLM):
  `a' = mbqm((a − a_zp) << left_shift, a_multiplier, a_shift)`, `b'` likewise,
  `out = clamp(mbqm(a' + b', output_multiplier, output_shift) + output_zero_point, act_min,
  act_max)`,
  where mbqm is the double- or single-rounding function per `rounding` (`"double"|"single"`).
  Subtraction (TFLM's sub) is this op with a negative `b_multiplier`:
  `b' = −mbqm((b − b_zp) << left_shift, −b_multiplier, b_shift)` — the sign is applied after
  the rounding, exactly as TFLM's sub subtracts the rounded `b'` (a negative multiplier inside
  mbqm would round ties the other way).
  Validation requires `a_shift, b_shift ≤ 0` (TFLM's `QuantizeMultiplierSmallerThanOneExp`:
  the real input multipliers are ≤ 1/2) and `max|x − z|·2^left_shift ≤ 2^30` for both inputs, so
  `(x − z) << left_shift` and `a' + b'` fit int32 (int16 inputs need z = 0 with left_shift 15).
  TFLM applies the output multiplier with `MultiplyByQuantizedMultiplierSmallerThanOneExp`,
  which equals mbqm whenever `output_shift ≤ 0` (the output multiplier below is < 1 unless
  s_out is over 2^(left_shift − 1) times finer than the larger input scale).
  Offline: `left_shift` is TFLM's for the output width (20 up to 8 bits, 15 above), lowered
  to the largest shift both inputs' `max|x − z|` allow: inputs of mixed widths (an int16
  residual branch added to an int8 one, or summed into an int8 output) take the wide input's
  bound (15 for a zero-point-0 int16), and all-int8 / all-int16 adds keep TFLM's constants.
  `twice_max = 2·max(s_a, s_b)`; real multipliers `s_a/twice_max`, `s_b/twice_max`,
  `twice_max / (2^left_shift · s_out)`.
"""

from __future__ import annotations

import numpy as np

from ..codegen.c_syntax import requant_mode
from ..intgraph.check import OpCheck, arity, max_abs_offset
from ..intgraph.types import M_LIMIT, Op, TensorInfo
from ..numerics import apply_multiplier, saturate
from ._broadcast import check_broadcast, emit_walk, same_shape
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


def largest_left_shift(max_offset: int) -> int:
    """The largest s with max_offset·2^s ≤ 2^30 (max_offset ≥ 1): the shifted operand fits
    int32, and so does the sum of two of them after the input multipliers (≤ ½ each)."""
    return 30 - (max_offset - 1).bit_length()


def add_left_shift(a: TensorInfo, za: int, b: TensorInfo, zb: int, out_bits: int) -> int:
    """TFLM's left shift for the output width (20 up to 8 bits, 15 above: what TFLM uses when
    all three tensors share it), capped by what the widest input allows."""
    tflm = 20 if out_bits <= 8 else 15
    return min(tflm, largest_left_shift(max_abs_offset(a, za)),
               largest_left_shift(max_abs_offset(b, zb)))


def _check_shifted_operand(chk: OpCheck, key: str, t: TensorInfo, z: int, left_shift: int):
    """(x − z) << left_shift, and a sum of two rescaled ones, must fit int32 (TFLM's add)."""
    offset = max_abs_offset(t, z)
    if offset << left_shift > 2**30:
        raise chk.fail(
            f"attr 'left_shift' = {left_shift} makes ({key} − zero_point) << left_shift exceed "
            f"2^30 (int32 overflow in the sum); {t.dtype} {key} with zero point {z} allows at "
            f"most {largest_left_shift(offset)}"
        )


def check(chk: OpCheck) -> None:
    arity(chk, 2)
    a, b = chk.ins()
    check_broadcast(chk, a, b)
    za = chk.zero_point_attr("a_zero_point", a)
    zb = chk.zero_point_attr("b_zero_point", b)
    chk.zero_point_attr("output_zero_point", chk.out)
    ls = chk.int_attr("left_shift", 0, 30)
    _check_shifted_operand(chk, "a", a, za, ls)
    _check_shifted_operand(chk, "b", b, zb, ls)
    chk.multiplier_attr("a_multiplier")
    chk.int_attr("b_multiplier", 1 - M_LIMIT, M_LIMIT - 1)  # < 0: subtract b
    for p in ("a", "b"):
        # TFLM: QuantizeMultiplierSmallerThanOneExp — the input multipliers are <= 1/2.
        chk.shift_attr(f"{p}_shift", hi=0)
    chk.multiplier_attr("output_multiplier")
    chk.shift_attr("output_shift")
    chk.act_range()
    chk.rounding(("double", "single"))


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Rescale both inputs to a common finer scale, add (or subtract b), requantize.

    All intermediate values fit int32 (checked by validation), so int64 arithmetic is exact.
    The batched arrays broadcast against each other as the op's shapes do.
    """
    a = op.attrs
    rounding = a.get("rounding", "double")
    ls = a["left_shift"]
    a_shifted = (inputs[0].astype(np.int64) - a["a_zero_point"]) << ls
    b_shifted = (inputs[1].astype(np.int64) - a["b_zero_point"]) << ls
    a_scaled = apply_multiplier(a_shifted, a["a_multiplier"], a["a_shift"], rounding)
    b_scaled = apply_multiplier(b_shifted, abs(a["b_multiplier"]), a["b_shift"], rounding)
    if a["b_multiplier"] < 0:
        b_scaled = -b_scaled
    total = apply_multiplier(
        a_scaled + b_scaled, a["output_multiplier"], a["output_shift"], rounding
    )
    y = saturate(total + a["output_zero_point"], a["act_min"], a["act_max"])
    return to_out(y, out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    """Same shapes: one contiguous run (``iq_add``); else the broadcasting walk."""
    a = op.attrs
    prm = em.params(
        "iq_add_params_t", f"{p}_params", {**{k: a[k] for k in _ATTRS}, "mode": requant_mode(op)}
    )
    ta, tb = op.inputs
    args = (f"&{prm}, {em.ptr(ta, True)}, {em.code(ta)}, {em.ptr(tb, True)}, {em.code(tb)}, "
            f"{em.ptr(op.output, False)}, {em.code(op.output)}")
    ia, ib, io = em.g.tensors[ta], em.g.tensors[tb], em.g.tensors[op.output]
    if same_shape(ia, ib, io):
        em.calls.append(f"    iq_add({args}, {em.size(op.output)});")
    else:
        walk = emit_walk(em, f"{p}_walk", ia, ib, io)
        em.calls.append(f"    iq_add_broadcast({args}, &{walk});")


def to_onnx(ex, op: Op) -> None:
    """DQ(a), DQ(b) at the effective scales the multipliers give, Add (Sub), Clip, Q."""
    from ..onnx_export import real_multiplier

    a = op.attrs
    out = ex.g.tensors[op.output]
    mo = real_multiplier(a["output_multiplier"], a["output_shift"])
    scale_of = {
        "a": float(real_multiplier(a["a_multiplier"], a["a_shift"]) * mo
                   * 2.0 ** a["left_shift"] * out.scale),
        "b": float(real_multiplier(abs(a["b_multiplier"]), a["b_shift"]) * mo
                   * 2.0 ** a["left_shift"] * out.scale),
    }
    xa = ex.dq(op.inputs[0], scale_of["a"], a["a_zero_point"],
               ex.g.tensors[op.inputs[0]].dtype, op.name + "_a")
    xb = ex.dq(op.inputs[1], scale_of["b"], a["b_zero_point"],
               ex.g.tensors[op.inputs[1]].dtype, op.name + "_b")
    ex.clip_and_q(ex.node(_onnx_op(op), [xa, xb], op.name), op, out)


def _onnx_op(op: Op) -> str:
    return "Sub" if op.attrs["b_multiplier"] < 0 else "Add"


def to_onnx_int(ex, op: Op) -> None:
    """Integer: rescale (x − z)·2^ls by each input multiplier, add (subtract), requantize."""
    from onnx import TensorProto

    a = op.attrs
    rounding = a.get("rounding", "double")
    scaled = []
    for x, k in zip(op.inputs, ("a", "b"), strict=True):
        h = f"{op.name}_{k}"
        v = ex.node("Sub", [ex.cast(x, TensorProto.INT64, h),
                            ex.i64(h + "_zp", a[f"{k}_zero_point"])], h + "_sub")
        v = ex.node("Mul", [v, ex.i64(h + "_ls", 1 << a["left_shift"])], h + "_shl")
        scaled.append(ex.apply_multiplier_int(v, abs(a[f"{k}_multiplier"]), a[f"{k}_shift"],
                                              rounding, 32, h + "_mbqm"))
    total = ex.node(_onnx_op(op), scaled, op.name + "_sum")
    y = ex.apply_multiplier_int(total, a["output_multiplier"], a["output_shift"], rounding,
                                32, op.name + "_mbqm")
    ex.finish_int(y, op, a["output_zero_point"])


def run_float(node, inputs):
    return inputs[0] + inputs[1]


def run_float_sub(node, inputs):
    return inputs[0] - inputs[1]


def lower(lw, node, inputs: list[str]) -> str:
    """TFLM's add/sub constants: both inputs to a common scale 2·max(s_a, s_b) / 2^ls."""
    from ..lower import act_bounds, scalar_qparams
    from ..numerics import quantize_multiplier

    qa, qb = lw.fmt[inputs[0]], lw.fmt[inputs[1]]
    out_qp = lw.plan.acts[node.name]
    sa, za = scalar_qparams(qa)
    sb, zb = scalar_qparams(qb)
    so, zo = scalar_qparams(out_qp)
    left_shift = add_left_shift(lw.tensors[inputs[0]], za, lw.tensors[inputs[1]], zb,
                                out_qp.bits)
    twice_max = 2 * max(sa, sb)
    am, ash = quantize_multiplier(sa / twice_max)
    bm, bsh = quantize_multiplier(sb / twice_max)
    om, osh = quantize_multiplier(twice_max / (2**left_shift * so))
    lo, hi = act_bounds(node, out_qp)
    rounding = "double" if lw.rounding() == "pow2" else lw.rounding()
    attrs = dict(a_zero_point=za, b_zero_point=zb, left_shift=left_shift, a_multiplier=am,
                 a_shift=ash, b_multiplier=-bm if node.op == "sub" else bm, b_shift=bsh,
                 output_multiplier=om, output_shift=osh, output_zero_point=zo, act_min=lo,
                 act_max=hi, rounding=rounding)
    return lw.emit(node.name, "add", inputs, node.shape, out_qp, attrs)


register(
    OpDef(
        kind="add",
        summary="sum or difference (negative b multiplier) of two tensors with broadcasting, "
                "TFLM's quantized add / sub",
        attrs=frozenset(_ATTRS) | {"rounding"},
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_add.c", "iq_add.h", "iq_dot.h", "iq_dot_avr.h", "iq_broadcast.h"),
        c_header="iq_add.h",
        to_onnx=to_onnx,
        to_onnx_int=to_onnx_int,
        in_place=True,
    ),
    FloatOpDef(
        name="add",
        summary="a + b of two activations (broadcasting: same rank, dims equal or 1)",
        run=run_float,
        lower=lower,
        lowers_to=("add",),
        fuse_into=True,
    ),
    FloatOpDef(
        name="sub",
        summary="a − b of two activations (broadcasting: same rank, dims equal or 1)",
        run=run_float_sub,
        lower=lower,
        lowers_to=("add",),
        fuse_into=True,
    ),
)
