"""mul — product of two activations with broadcasting (TFLM's quantized mul)

- inputs `[a, b]` of the output's rank, each dim equal to the output's or 1: same shapes, a
  per-channel gate (C, 1, 1) times (C, H, W) (squeeze-excitation), a per-sample scalar
  (1, 1, 1) or (1,) times the tensor (``ops/_broadcast.py``).
- attrs `a_zero_point`, `b_zero_point`, `output_multiplier`, `output_shift`,
  `output_zero_point`, `act_min`, `act_max`, `rounding` ("double" | "single" | "pow2").
- math, as TFLM's int8 / int16 MUL:
  `out = clamp(mbqm((a − a_zp)·(b − b_zp), output_multiplier, output_shift) +
  output_zero_point, act_min, act_max)`; the product is exact in int32 (validation: `max|a −
  a_zp|·max|b − b_zp| < 2^31`, e.g. 255·255 for int8, 32768·32768 for int16 with z = 0).
  Offline: the one real multiplier `s_a·s_b / s_out`. The output is within 0.5 LSB (plus
  2^(output_shift−1) from double rounding's first step and the multiplier's 2^-31 relative
  error) of the exact product of the two dequantized inputs.
- In-place safe for an operand of the output's shape.
"""

from __future__ import annotations

import numpy as np

from ..codegen.c_syntax import requant_mode
from ..intgraph.check import OpCheck, arity, max_abs_offset
from ..intgraph.types import INT32_MAX, Op, TensorInfo
from ..numerics import apply_multiplier, saturate
from ._broadcast import check_broadcast, emit_walk
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register

_ATTRS = (
    "a_zero_point",
    "b_zero_point",
    "output_multiplier",
    "output_shift",
    "output_zero_point",
    "act_min",
    "act_max",
)


def check(chk: OpCheck) -> None:
    arity(chk, 2)
    a, b = chk.ins()
    check_broadcast(chk, a, b)
    za = chk.zero_point_attr("a_zero_point", a)
    zb = chk.zero_point_attr("b_zero_point", b)
    if max_abs_offset(a, za) * max_abs_offset(b, zb) > INT32_MAX:
        raise chk.fail("(a − a_zero_point)·(b − b_zero_point) can exceed int32; int16 operands "
                       "need zero point 0")
    chk.zero_point_attr("output_zero_point", chk.out)
    chk.multiplier_attr("output_multiplier")
    chk.shift_attr("output_shift")
    chk.act_range()
    chk.rounding()


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Exact product of the zero-point-free operands, one requantization (int64 holds it)."""
    a = op.attrs
    prod = (inputs[0].astype(np.int64) - a["a_zero_point"]) * (
        inputs[1].astype(np.int64) - a["b_zero_point"])
    r = apply_multiplier(prod, a["output_multiplier"], a["output_shift"],
                         a.get("rounding", "double"))
    return to_out(saturate(r + a["output_zero_point"], a["act_min"], a["act_max"]), out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    a = op.attrs
    prm = em.params("iq_mul_params_t", f"{p}_params",
                    {**{k: a[k] for k in _ATTRS}, "mode": requant_mode(op)})
    ta, tb = op.inputs
    ia, ib, io = em.g.tensors[ta], em.g.tensors[tb], em.g.tensors[op.output]
    walk = emit_walk(em, f"{p}_walk", ia, ib, io)
    em.calls.append(
        f"    iq_mul(&{prm}, {em.ptr(ta, True)}, {em.code(ta)}, {em.ptr(tb, True)}, "
        f"{em.code(tb)}, {em.ptr(op.output, False)}, {em.code(op.output)}, &{walk});"
    )


def to_onnx(ex, op: Op) -> None:
    """DQ(a) at the effective scale m·s_out (m = the real multiplier), DQ(b) at scale 1, Mul,
    Clip, Q(s_out): round(m·(a − z_a)·(b − z_b)) in float (within 1 LSB of the integer op)."""
    from ..onnx_export import real_multiplier

    a = op.attrs
    out = ex.g.tensors[op.output]
    m = float(real_multiplier(a["output_multiplier"], a["output_shift"]))
    if a.get("rounding") == "pow2":
        m = 2.0 ** (a["output_shift"] - 1)
    ta, tb = (ex.g.tensors[t] for t in op.inputs)
    xa = ex.dq(op.inputs[0], m * out.scale, a["a_zero_point"], ta.dtype, op.name + "_a")
    xb = ex.dq(op.inputs[1], 1.0, a["b_zero_point"], tb.dtype, op.name + "_b")
    ex.clip_and_q(ex.node("Mul", [xa, xb], op.name), op, out)


def to_onnx_int(ex, op: Op) -> None:
    """Integer: (a − z_a)·(b − z_b) in int64, the multiplier, + z_out, clamp."""
    from onnx import TensorProto

    a = op.attrs
    diffs = []
    for x, k in zip(op.inputs, ("a", "b"), strict=True):
        h = f"{op.name}_{k}"
        diffs.append(ex.node("Sub", [ex.cast(x, TensorProto.INT64, h),
                                     ex.i64(h + "_zp", a[f"{k}_zero_point"])], h + "_sub"))
    prod = ex.node("Mul", diffs, op.name + "_prod")
    y = ex.apply_multiplier_int(prod, a["output_multiplier"], a["output_shift"],
                                a.get("rounding", "double"), 32, op.name + "_mbqm")
    ex.finish_int(y, op, a["output_zero_point"])


def run_float(node, inputs):
    return inputs[0] * inputs[1]


def lower(lw, node, inputs: list[str]) -> str:
    """One real multiplier s_a·s_b/s_out; power-of-two plans keep a shift-only requantization
    when that multiplier is an exact power of two."""
    from ..lower import LoweringError, act_bounds, scalar_qparams
    from ..numerics import quantize_multiplier

    sa, za = scalar_qparams(lw.fmt[inputs[0]])
    sb, zb = scalar_qparams(lw.fmt[inputs[1]])
    out_qp = lw.plan.acts[node.name]
    so, zo = scalar_qparams(out_qp)
    real = sa * sb / so
    if real >= 2.0**30:
        raise LoweringError(f"output scale {so:.3g} is {real:.3g} times finer than the product "
                            "of the input scales (the integer multiplier holds < 2^30)")
    m, sh = quantize_multiplier(real)
    rounding = lw.rounding()
    if rounding == "pow2" and m != 2**30:
        rounding = "double"
    lo, hi = act_bounds(node, out_qp)
    attrs = dict(a_zero_point=za, b_zero_point=zb, output_multiplier=m, output_shift=sh,
                 output_zero_point=zo, act_min=lo, act_max=hi, rounding=rounding)
    return lw.emit(node.name, "mul", inputs, node.shape, out_qp, attrs)


register(
    OpDef(
        kind="mul",
        summary="product of two tensors with broadcasting, TFLM's quantized mul (one "
                "multiplier s_a·s_b/s_out; within 0.5 LSB of the exact product)",
        attrs=frozenset(_ATTRS) | {"rounding"},
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_mul.c", "iq_mul.h", "iq_dot.h", "iq_dot_avr.h", "iq_broadcast.h"),
        c_header="iq_mul.h",
        to_onnx=to_onnx,
        to_onnx_int=to_onnx_int,
        in_place=True,
    ),
    FloatOpDef(
        name="mul",
        summary="a · b of two activations (broadcasting: same rank, dims equal or 1), e.g. "
                "squeeze-excitation's x · gate",
        run=run_float,
        lower=lower,
        lowers_to=("mul",),
        fuse_into=True,
    ),
)
