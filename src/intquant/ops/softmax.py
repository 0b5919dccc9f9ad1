"""softmax — over one axis of the tensor (the last by default: classes, attention scores)

- consts `exp_table` int32 `[T + 1]`, `exp_table[i] ≈ 2^30 · exp(−i · 2^lut_shift · s_in)` (last
  entry 0).
- attrs `lut_shift` (0 for int8 input), `output_zero_point`, `output_range` (256 for int8 output
  with
  s = 1/256, z = −128; 32768 for int16 output with s = 1/32768, z = 0), `act_min`, `act_max`.
- per row: `d = max(x) − x` (≥ 0); `i = d >> lut_shift`, `f = d & (2^lut_shift − 1)`;
  `e = i >= T ? 0 : exp_table[i] + (((exp_table[i+1] − exp_table[i])·f) >> lut_shift)` (int64,
  floor shift);
  `sum = Σ e` (int64, > 0 since the max element has e = 2^30);
  `out = clamp((2·e·output_range + sum) / (2·sum) + output_zero_point, act_min, act_max)`
  (non-negative, floor division).
- `T = len(exp_table) − 1`; for `i < T` the entries `i` and `i + 1` are used (the last entry, 0,
  makes the final segment decay to 0). Validation: `exp_table[0] = 2^30` (so `sum ≥ 2^30 > 0`),
  entries non-negative and non-increasing, last entry 0, `lut_shift` in [0, 15],
  `output_range` in [1, 2^16]. Products are int64 (`2·e·output_range < 2^47`).
"""

from __future__ import annotations

import math

import numpy as np

from ..intgraph.check import OpCheck, arity
from ..intgraph.types import Op, TensorInfo
from ..numerics import saturate, unit_interval_format
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    chk.expect_output_shape(x.shape)
    if "axis" in chk.op.attrs:
        chk.int_attr("axis", 0, len(x.shape) - 1)
    chk.int_attr("lut_shift", 0, 15)
    chk.zero_point_attr("output_zero_point", chk.out)
    chk.int_attr("output_range", 1, 2**16)
    chk.act_range()
    table = chk.const("exp_table", ("int32",), 1)
    t = table.astype(np.int64)
    if t.shape[0] < 2:
        raise chk.fail("const 'exp_table' needs at least 2 entries")
    if t[0] != 2**30 or t[-1] != 0:
        raise chk.fail(
            f"const 'exp_table' must start at 2^30 (exp(0)) and end with 0, got {t[0]}, {t[-1]}"
        )
    if np.any(t < 0) or np.any(np.diff(t) > 0):
        raise chk.fail("const 'exp_table' must be non-negative and non-increasing")


def softmax_axis(op: Op, rank: int) -> int:
    """The non-batch axis of the rows (attr ``axis``, else the last)."""
    return int(op.attrs.get("axis", rank - 1))


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Integer softmax along ``axis`` from an offline exp table."""
    a = op.attrs
    x = inputs[0].astype(np.int64)
    axis = softmax_axis(op, x.ndim - 1) + 1
    table = op.consts["exp_table"].astype(np.int64)
    e = exp_from_table(x.max(axis=axis, keepdims=True) - x, table, a["lut_shift"])
    total = e.sum(axis=axis, keepdims=True)  # >= 2^30: the max element has e = exp_table[0]
    rng = a["output_range"]
    y = (2 * e * rng + total) // (2 * total) + a["output_zero_point"]
    return to_out(saturate(y, a["act_min"], a["act_max"]), out)


def exp_from_table(d: np.ndarray, table: np.ndarray, lut_shift: int) -> np.ndarray:
    """≈ 2^30·exp(−d·s_in) for d >= 0, linear interpolation between 2^lut_shift-spaced entries."""
    last = table.shape[0] - 1  # T: entries 0..T-1 interpolate, i >= T gives 0
    i = d >> lut_shift
    f = d & ((1 << lut_shift) - 1)
    idx = np.minimum(i, last - 1)
    e = table[idx] + (((table[idx + 1] - table[idx]) * f) >> lut_shift)
    return np.where(i >= last, 0, e)


def emit_c(em, i: int, op: Op, p: str) -> None:
    a = op.attrs
    x = op.inputs[0]
    shape = em.g.tensors[x].shape
    table = op.consts["exp_table"]
    axis = softmax_axis(op, len(shape))
    t = em.const_array(f"{p}_exp_table", "int32_t", table)
    prm = em.params(
        "iq_softmax_params_t",
        f"{p}_params",
        {
            "rows": math.prod(shape[:axis]),
            "row_len": shape[axis],
            "inner": math.prod(shape[axis + 1:]),
            "lut_shift": a["lut_shift"],
            "table_len": table.shape[0],
            "output_range": a["output_range"],
            "output_zero_point": a["output_zero_point"],
            "act_min": a["act_min"],
            "act_max": a["act_max"],
        },
    )
    em.calls.append(
        f"    iq_softmax(&{prm}, {t}, {em.ptr(x, True)}, {em.code(x)}, "
        f"{em.ptr(op.output, False)}, {em.code(op.output)});"
    )


def to_onnx(ex, op: Op) -> None:
    x = ex.dq_tensor(op.inputs[0], op.name)
    rank = len(ex.g.tensors[op.inputs[0]].shape)
    y = ex.node("Softmax", [x], op.name, axis=softmax_axis(op, rank) + 1)
    ex.clip_and_q(y, op, ex.g.tensors[op.output])


def to_onnx_int(ex, op: Op) -> None:
    """The interpreter's integer softmax: exp from the table by d = max − x, then
    (2·e·R + Σe) div (2·Σe) + z (every quotient non-negative, so Div's truncation is floor)."""
    from onnx import TensorProto

    a = op.attrs
    h = op.name
    table = op.consts["exp_table"].astype(np.int64)
    last = table.shape[0] - 1  # T: d >> lut_shift >= T gives 0
    step = 1 << a["lut_shift"]
    axes = ex.i64(h + "_axes", [softmax_axis(op, len(ex.g.tensors[op.inputs[0]].shape)) + 1])
    x = ex.cast(op.inputs[0], TensorProto.INT64, h + "_x")
    d = ex.node("Sub", [ex.node("ReduceMax", [x, axes], h + "_max", keepdims=1), x], h + "_d")
    i = ex.node("Div", [d, ex.i64(h + "_step", step)], h + "_i")
    f = ex.node("Mod", [d, ex.i64(h + "_stepm", step)], h + "_f")
    idx = ex.node("Min", [i, ex.i64(h + "_tm1", last - 1)], h + "_idx")
    tab = ex.i64(h + "_table", table)
    t0 = ex.node("Gather", [tab, idx], h + "_t0", axis=0)
    t1 = ex.node("Gather", [tab, ex.node("Add", [idx, ex.i64(h + "_1", 1)], h + "_i1")],
                 h + "_t1", axis=0)
    slope = ex.node("Mul", [ex.node("Sub", [t1, t0], h + "_dt"), f], h + "_df")
    e = ex.node("Add", [t0, ex.floor_shift_int(slope, np.int64(a["lut_shift"]), h)], h + "_e")
    beyond = ex.node("GreaterOrEqual", [i, ex.i64(h + "_T", last)], h + "_beyond")
    e = ex.node("Where", [beyond, ex.i64(h + "_0", 0), e], h + "_e0")
    total = ex.node("ReduceSum", [e, axes], h + "_sum", keepdims=1)
    num = ex.node("Add", [ex.node("Mul", [e, ex.i64(h + "_2r", 2 * a["output_range"])],
                                  h + "_2er"), total], h + "_num")
    q = ex.node("Div", [num, ex.node("Add", [total, total], h + "_2s")], h + "_q")
    ex.finish_int(q, op, a["output_zero_point"])


def softmax_exp_table(s_in: float, in_bits: int) -> tuple[np.ndarray, int]:
    """exp(−d·s_in) in Q30 for d = i·2^lut_shift, cut where it falls below 2^-31, last entry 0."""
    dmax = 255 if in_bits <= 8 else 65535
    lut_shift = 0
    cutoff = 22.0  # exp(-22) < 2^-31: entries beyond are 0 in Q30
    while math.ceil(min(dmax, cutoff / s_in) / 2**lut_shift) + 1 > 512:
        lut_shift += 1
    n = int(math.ceil(min(dmax, cutoff / s_in) / 2**lut_shift)) + 1
    d = np.arange(n, dtype=np.float64) * 2**lut_shift
    table = np.rint(2.0**30 * np.exp(-d * s_in)).astype(np.int64)
    table = np.append(table, 0)
    return table.astype(np.int32), lut_shift


def lower(lw, node, inputs: list[str]) -> str:
    from ..lower import scalar_qparams

    in_qp = lw.fmt[inputs[0]]
    out_qp = lw.plan.acts[node.name]
    table, lut_shift = softmax_exp_table(float(in_qp.scale[0]), in_qp.bits)
    s_out, z_out = scalar_qparams(out_qp)
    output_range = int(round(1.0 / s_out))
    attrs = dict(lut_shift=lut_shift, output_zero_point=z_out, output_range=output_range,
                 act_min=out_qp.qmin, act_max=out_qp.qmax,
                 axis=int(node.attrs.get("axis", len(node.shape) - 1)))
    return lw.emit(node.name, "softmax", inputs, node.shape, out_qp, attrs, {"exp_table": table})


def run_float(node, inputs):
    import torch

    return torch.softmax(inputs[0], dim=int(node.attrs.get("axis", inputs[0].dim() - 2)) + 1)


register(
    OpDef(
        kind="softmax",
        summary="integer softmax along any axis (offline exp table)",
        attrs=frozenset({"lut_shift", "output_zero_point", "output_range", "act_min",
                         "act_max", "axis"}),
        consts=frozenset({"exp_table"}),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_softmax.c", "iq_softmax.h"),
        c_header="iq_softmax.h",
        to_onnx=to_onnx,
        to_onnx_int=to_onnx_int,
    ),
    FloatOpDef(
        name="softmax",
        summary="Softmax along one non-batch axis; attr axis (default the last)",
        run=run_float,
        lower=lower,
        lowers_to=("softmax",),
        fixed_format=unit_interval_format,
        exponentiates_input=True,
    ),
)
