"""prelu — PReLU with one slope per channel (TFLM's PRELU / LEAKY_RELU arithmetic)

- input `x` (C, ...) (channels on the first non-batch axis, as nn.PReLU); attrs
  `input_zero_point`, `left_shift`, `output_zero_point`, `pos_multiplier`, `pos_shift`,
  `act_min`, `act_max`, `rounding` ("double" | "single"); consts `neg_multiplier`,
  `neg_shift` (int32, C entries or 1 for a shared slope).
- math: `d = (x − input_zero_point) << left_shift`;
  `r = mbqm(d, pos_multiplier, pos_shift)` for d >= 0, else
  `r = sign(neg_multiplier[c])·mbqm(d, |neg_multiplier[c]|, neg_shift[c])`;
  `out = clamp(r + output_zero_point, act_min, act_max)`. Validation: `max|x − z| << left_shift
  <= 2^30` (int32).
  Offline: `s_in/(2^ls·s_out)` and `|α_c|·s_in/(2^ls·s_out)`, the sign of a negative slope α_c
  on the multiplier (applied after the rounding, as ``add``'s subtraction). Like TFLM's
  PRELU / LEAKY_RELU but with two refinements: the slopes keep 31-bit precision (TFLM
  quantizes α to int8 first), and the left shift (20 for 8-bit inputs, 15 for int16, as
  ``add``) gives the first rounding of the double-rounding requantization 2^ls times finer
  (without it, ``round(round(d·m·2^e)/2^e)`` on a small d is off by up to 0.75 LSB). The
  output is within 0.5 LSB (+ ~2^-ls) of PReLU of the dequantized input at 8 and 16 bits.
- In-place safe.
"""

from __future__ import annotations

import numpy as np

from ..codegen.c_syntax import requant_mode
from ..intgraph.check import OpCheck, arity, max_abs_offset
from ..intgraph.types import M_LIMIT, SHIFT_RANGE, Op, TensorInfo
from ..numerics import apply_multiplier, saturate
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register

_ATTRS = ("input_zero_point", "left_shift", "output_zero_point", "pos_multiplier",
          "pos_shift", "act_min", "act_max")


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    if not x.shape:
        raise chk.fail("input must have a channel axis, got a scalar shape")
    chk.expect_output_shape(x.shape)
    z = chk.zero_point_attr("input_zero_point", x)
    ls = chk.int_attr("left_shift", 0, 30)
    if max_abs_offset(x, z) << ls > 2**30:
        raise chk.fail(f"attr 'left_shift' = {ls} makes (x − zero_point) << left_shift exceed "
                       "2^30; use 20 for 8-bit inputs, 15 for int16")
    chk.zero_point_attr("output_zero_point", chk.out)
    chk.multiplier_attr("pos_multiplier")
    chk.shift_attr("pos_shift")
    chk.act_range()
    chk.rounding(("double", "single"))
    m = chk.const("neg_multiplier", ("int32",), 1)
    sh = chk.const("neg_shift", ("int32",), 1)
    if m.shape[0] not in (1, x.shape[0]) or sh.shape != m.shape:
        raise chk.fail(f"consts 'neg_multiplier' {m.shape} and 'neg_shift' {sh.shape} must "
                       f"both have {x.shape[0]} (channels) or 1 entries")
    if np.any(m.astype(np.int64) <= -M_LIMIT):
        raise chk.fail("const 'neg_multiplier' must lie in (-2^31, 2^31)")
    if np.any(sh < SHIFT_RANGE[0]) or np.any(sh > SHIFT_RANGE[1]):
        raise chk.fail(f"const 'neg_shift' entries must lie in {list(SHIFT_RANGE)}")


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """(C,) → (1, C, 1, ...) against a batched (N, C, ...) array."""
    return v.astype(np.int64).reshape((1, -1) + (1,) * (ndim - 2))


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Two requantizations, chosen by the sign of x − z (the slope's sign after rounding)."""
    a = op.attrs
    rounding = a.get("rounding", "double")
    d = (inputs[0].astype(np.int64) - a["input_zero_point"]) << a["left_shift"]
    m = _per_channel(op.consts["neg_multiplier"], d.ndim)
    sh = _per_channel(op.consts["neg_shift"], d.ndim)
    pos = apply_multiplier(d, a["pos_multiplier"], a["pos_shift"], rounding)
    neg = np.sign(m) * apply_multiplier(d, np.abs(m), sh, rounding)
    r = np.where(d >= 0, pos, neg)
    return to_out(saturate(r + a["output_zero_point"], a["act_min"], a["act_max"]), out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    a = op.attrs
    x = op.inputs[0]
    shape = em.g.tensors[x].shape
    m = em.const_array(f"{p}_neg_multiplier", "int32_t", op.consts["neg_multiplier"])
    sh = em.const_array(f"{p}_neg_shift", "int32_t", op.consts["neg_shift"])
    n_slopes = int(op.consts["neg_multiplier"].shape[0])
    prm = em.params("iq_prelu_params_t", f"{p}_params",
                    {**{k: a[k] for k in _ATTRS}, "mode": requant_mode(op),
                     "channels": int(shape[0]), "inner": em.size(x) // int(shape[0]),
                     "shared_slope": int(n_slopes == 1)})
    em.calls.append(
        f"    iq_prelu(&{prm}, {em.ptr(x, True)}, {em.code(x)}, {m}, {sh}, "
        f"{em.ptr(op.output, False)}, {em.code(op.output)});"
    )


def _slopes(op: Op, x: TensorInfo) -> np.ndarray:
    """The real slope of each channel the multipliers stand for (for the QDQ form)."""
    from ..onnx_export import real_multiplier

    a = op.attrs
    m = op.consts["neg_multiplier"].astype(np.int64)
    neg = np.sign(m) * real_multiplier(np.abs(m), op.consts["neg_shift"])
    return neg / real_multiplier(a["pos_multiplier"], a["pos_shift"])


def to_onnx(ex, op: Op) -> None:
    """DQ(x) at the effective scale 2^ls·m_pos·s_out, PRelu with the effective slopes, Clip,
    Q."""
    from ..onnx_export import real_multiplier

    a = op.attrs
    x, out = ex.g.tensors[op.inputs[0]], ex.g.tensors[op.output]
    s = float(real_multiplier(a["pos_multiplier"], a["pos_shift"])) * out.scale * \
        2.0 ** a["left_shift"]
    xd = ex.dq(op.inputs[0], s, a["input_zero_point"], x.dtype, op.name + "_x")
    slope = _slopes(op, x).astype(np.float32).reshape((-1,) + (1,) * (len(x.shape) - 1))
    y = ex.node("PRelu", [xd, ex.const(op.name + "_slope", slope)], op.name)
    ex.clip_and_q(y, op, out)


def to_onnx_int(ex, op: Op) -> None:
    """Integer: both requantizations of d = x − z, Where(d >= 0)."""
    from onnx import TensorProto

    a = op.attrs
    rounding = a.get("rounding", "double")
    nd = len(ex.g.tensors[op.inputs[0]].shape) + 1
    d = ex.node("Sub", [ex.cast(op.inputs[0], TensorProto.INT64, op.name + "_x"),
                        ex.i64(op.name + "_zp", a["input_zero_point"])], op.name + "_d")
    d = ex.node("Mul", [d, ex.i64(op.name + "_ls", 1 << a["left_shift"])], op.name + "_shl")
    pos = ex.apply_multiplier_int(d, a["pos_multiplier"], a["pos_shift"], rounding, 32,
                                  op.name + "_pos")
    m = _per_channel(op.consts["neg_multiplier"], nd)[0]
    sh = _per_channel(op.consts["neg_shift"], nd)[0]
    neg = ex.apply_multiplier_int(d, np.abs(m), sh, rounding, 32, op.name + "_neg")
    neg = ex.node("Mul", [neg, ex.i64(op.name + "_sign", np.sign(m))], op.name + "_signed")
    cond = ex.node("GreaterOrEqual", [d, ex.i64(op.name + "_0", 0)], op.name + "_ge")
    ex.finish_int(ex.node("Where", [cond, pos, neg], op.name + "_where"), op,
                  a["output_zero_point"])


def run_float(node, inputs):
    import torch
    import torch.nn.functional as F

    x = inputs[0]
    w = torch.as_tensor(node.params["weight"], dtype=x.dtype).reshape(-1)
    return F.prelu(x, w)


def lower(lw, node, inputs: list[str]) -> str:
    """s_in/(2^ls·s_out) for x >= z, |α_c|·s_in/(2^ls·s_out) with α_c's sign for x < z."""
    from ..lower import act_bounds, scalar_qparams
    from ..numerics import quantize_multiplier

    in_qp = lw.fmt[inputs[0]]
    s_in, z_in = scalar_qparams(in_qp)
    out_qp = lw.plan.acts[node.name]
    s_out, z_out = scalar_qparams(out_qp)
    ls = 20 if in_qp.bits <= 8 else 15
    base = s_in / (2**ls * s_out)
    slopes = np.asarray(node.params["weight"], np.float64).reshape(-1)
    pm, psh = quantize_multiplier(base)
    pairs = [quantize_multiplier(abs(v) * base) for v in slopes]
    neg_m = np.array([-m if v < 0 else m for (m, _), v in zip(pairs, slopes, strict=True)],
                     np.int32)
    neg_sh = np.array([sh for _, sh in pairs], np.int32)
    lo, hi = act_bounds(node, out_qp)
    attrs = dict(input_zero_point=z_in, left_shift=ls, output_zero_point=z_out, pos_multiplier=pm,
                 pos_shift=psh, act_min=lo, act_max=hi,
                 rounding="double" if lw.rounding() == "pow2" else lw.rounding())
    return lw.emit(node.name, "prelu", inputs, node.shape, out_qp, attrs,
                   {"neg_multiplier": neg_m, "neg_shift": neg_sh})


register(
    OpDef(
        kind="prelu",
        summary="PReLU, one slope per channel as its own multiplier (within 0.5 LSB of PReLU "
                "of the dequantized input)",
        attrs=frozenset(_ATTRS) | {"rounding"},
        consts=frozenset({"neg_multiplier", "neg_shift"}),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_prelu.c", "iq_prelu.h"),
        c_header="iq_prelu.h",
        to_onnx=to_onnx,
        to_onnx_int=to_onnx_int,
        in_place=True,
    ),
    FloatOpDef(
        name="prelu",
        summary="PReLU; param weight (one slope per channel, or one shared)",
        run=run_float,
        lower=lower,
        lowers_to=("prelu",),
    ),
)
