"""lut — Sigmoid, Tanh, LeakyReLU, Hardswish, Hardsigmoid, SiLU, GELU, ELU/SELU/CELU, erf: any
elementwise function of one activation

- consts `table`: for int8/uint8 input, 256 entries of the output dtype, `out = clamp(table[x −
  (−128)], act_min, act_max)`
  (`table[x]` for uint8); for int16 input, 513 int16/int32 entries (stored as int32), with
  `u = x + 32768`, `i = u >> 7`, `f = u & 127`, `out = clamp(table[i] + ((table[i+1] −
  table[i])·f + 64 >> 7), act_min, act_max)`
  (arithmetic shift, floor). attrs `act_min`, `act_max`. Tables are computed offline in `lower`.
  `table[i]` is the function at `x = 128·i − 32768`; entry 512 (x = 32768) only serves the
  interpolation of the last segment. The clamp applies in both cases (for a table already in
  range it is a no-op). Validation requires `|table| < 2^23` for the 513-entry form so the
  interpolation fits int32 in C.
- Error vs float (of the dequantized input), every activation lowered here: 8-bit inputs hold
  the rounded function at every code, |error| <= 0.5 output LSB; int16 inputs add linear
  interpolation between knots h = 128·s_in apart: <= 1 LSB + (h²/8·max|f''| + h/4·|jump of
  f'| at a kink not on a knot)/s_out (hardswish, hardsigmoid: kinks at ±3; ELU/SELU/CELU: kink
  at 0, a knot for symmetric int16). tests/ops/test_lut.py asserts exactly this bound through
  torch.export and ONNX capture. SQNR vs float alone (benchmarks/arch_elem.py, inputs over
  [-8, 8]): 42.7–50.4 dB at 8 bits, 79.6–89.4 dB at 16 bits (the input range with 2x
  headroom; sigmoid, tanh, GELU erf/tanh, hardswish, hardsigmoid, SiLU, ELU, LeakyReLU); see
  benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..codegen.c_syntax import C_TYPE, DTYPE_CODE
from ..intgraph.check import OpCheck, arity
from ..intgraph.types import Op, TensorInfo
from ..numerics import QParams, saturate, signed_unit_format, unit_interval_format
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register

_LUT_VALUE_LIMIT = 2**23  # (t[i+1] - t[i]) * 127 + 64 must fit int32 in C


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    chk.expect_output_shape(x.shape)
    amin, amax = chk.act_range()
    if x.dtype in ("int8", "uint8"):
        table = chk.const("table", (chk.out.dtype,), 1)
        if table.shape[0] != 256:
            raise chk.fail(f"const 'table' has {table.shape[0]} entries, expected 256")
    else:
        table = chk.const("table", ("int32",), 1)
        if table.shape[0] != 513:
            raise chk.fail(f"const 'table' has {table.shape[0]} entries, expected 513")
        if np.any(np.abs(table.astype(np.int64)) >= _LUT_VALUE_LIMIT):
            raise chk.fail("const 'table' values must satisfy |t| < 2^23 (int32 interpolation)")


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Table lookup: direct for 8-bit inputs, 513-entry linear interpolation for int16."""
    x = inputs[0].astype(np.int64)
    table = op.consts["table"].astype(np.int64)
    if table.shape[0] == 256:
        y = table[x + 128] if inputs[0].dtype == np.int8 else table[x]
    else:
        y = interpolate_table_513(table, x)
    return to_out(saturate(y, op.attrs["act_min"], op.attrs["act_max"]), out)


def interpolate_table_513(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """u = x + 32768; t[u >> 7] + ((t[(u >> 7) + 1] − t[u >> 7])·(u & 127) + 64 >> 7)."""
    u = x + 32768
    i = u >> 7
    f = u & 127
    return table[i] + (((table[i + 1] - table[i]) * f + 64) >> 7)


def emit_c(em, i: int, op: Op, p: str) -> None:
    x = op.inputs[0]
    table = op.consts["table"]
    xt = em.g.tensors[x].dtype
    amin, amax = op.attrs["act_min"], op.attrs["act_max"]
    if xt in ("int8", "uint8"):
        tdt = str(table.dtype)
        t = em.const_array(f"{p}_table", C_TYPE[tdt], table)
        em.calls.append(
            f"    iq_lut8({em.ptr(x, True)}, {em.code(x)}, {t}, {DTYPE_CODE[tdt]}, "
            f"{em.ptr(op.output, False)}, {em.code(op.output)}, {em.size(x)}, "
            f"{amin}, {amax});"
        )
    else:
        t = em.const_array(f"{p}_table", "int32_t", table)
        em.calls.append(
            f"    iq_lut16({em.typed(x, True)}, {t}, {em.ptr(op.output, False)}, "
            f"{em.code(op.output)}, {em.size(x)}, {amin}, {amax});"
        )


def to_onnx(ex, op: Op) -> None:
    """Integer Gather from the table (8-bit) or the 513-entry interpolation (int16): exact in
    both export modes."""
    from onnx import TensorProto

    from ..onnx_export import ONNX_DTYPE

    x_info, out = ex.g.tensors[op.inputs[0]], ex.g.tensors[op.output]
    table = op.consts["table"].astype(np.int32)
    x = ex.node("Cast", [op.inputs[0]], op.name + "_i", to=TensorProto.INT32)
    tab = ex.const(op.name + "_table", table)
    if table.shape[0] == 256:
        off = 128 if x_info.dtype == "int8" else 0
        idx = ex.node("Add", [x, ex.const(op.name + "_off", np.int32(off))], op.name)
        y = ex.node("Gather", [tab, idx], op.name + "_g", axis=0)
    else:
        y = _interpolate_513_onnx(ex, op, x, tab)
    y = ex.node("Clip", [y, ex.const(op.name + "_lo", np.int32(op.attrs["act_min"])),
                         ex.const(op.name + "_hi", np.int32(op.attrs["act_max"]))],
                op.name + "_clip")
    ex.node("Cast", [y], op.name + "_cast", out=ex.oname(op), to=ONNX_DTYPE[out.dtype])


def _interpolate_513_onnx(ex, op: Op, x: str, tab: str) -> str:
    """t[i] + floor(((t[i+1] − t[i])·f + 64) / 128), u = x + 32768, i = u // 128, f = u % 128
    (int32; floor division written as (v − v mod 128) / 128, exact for negative v)."""
    c = lambda v, h: ex.const(op.name + h, np.int32(v))  # noqa: E731
    u = ex.node("Add", [x, c(32768, "_32768")], op.name + "_u")
    i = ex.node("Div", [u, c(128, "_128")], op.name + "_i")
    f = ex.node("Mod", [u, c(128, "_128b")], op.name + "_f")
    i1 = ex.node("Add", [i, c(1, "_one")], op.name + "_i1")
    t0 = ex.node("Gather", [tab, i], op.name + "_t0", axis=0)
    t1 = ex.node("Gather", [tab, i1], op.name + "_t1", axis=0)
    d = ex.node("Sub", [t1, t0], op.name + "_d")
    v = ex.node("Add", [ex.node("Mul", [d, f], op.name + "_df"), c(64, "_64")], op.name + "_v")
    rem = ex.node("Mod", [v, c(128, "_128c")], op.name + "_rem")
    q = ex.node("Div", [ex.node("Sub", [v, rem], op.name + "_vr"), c(128, "_128d")],
                op.name + "_q")
    return ex.node("Add", [t0, q], op.name + "_y")


# ----------------------------------------------------------------------------------------------
# Lowering: the table from the float function
# ----------------------------------------------------------------------------------------------

def _erf(r: np.ndarray) -> np.ndarray:
    """erf in float64 (offline only: NumPy has no erf; math.erf is correctly rounded to ~1 ulp)."""
    return np.vectorize(math.erf, otypes=[np.float64])(r)


def _gelu(r: np.ndarray, node) -> np.ndarray:
    if node.attrs.get("approximate", "none") == "tanh":
        return 0.5 * r * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (r + 0.044715 * r**3)))
    return 0.5 * r * (1.0 + _erf(r / math.sqrt(2.0)))


def _elu(r: np.ndarray, node) -> np.ndarray:
    a = node.attrs
    alpha, scale, in_scale = a.get("alpha", 1.0), a.get("scale", 1.0), a.get("input_scale", 1.0)
    return scale * np.where(r > 0, r, alpha * np.expm1(np.minimum(r, 0.0) * in_scale))


def _sigmoid(r: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-r) = inf gives exactly 0
        return 1.0 / (1.0 + np.exp(-r))


def _hardsigmoid(r: np.ndarray, node) -> np.ndarray:
    return np.clip(node.attrs.get("alpha", 1 / 6) * r + node.attrs.get("beta", 0.5), 0.0, 1.0)


# The float64 function each float op's table samples (offline, in lowering).
ELEMENTWISE: dict[str, Callable[[np.ndarray, object], np.ndarray]] = {
    "sigmoid": lambda r, n: _sigmoid(r),
    "tanh": lambda r, n: np.tanh(r),
    "leaky_relu": lambda r, n: np.where(r >= 0, r, r * n.attrs["negative_slope"]),
    "hardswish": lambda r, n: r * np.clip(r + 3.0, 0.0, 6.0) / 6.0,
    "hardsigmoid": _hardsigmoid,
    "silu": lambda r, n: r * _sigmoid(r),
    "gelu": _gelu,
    "elu": _elu,
    "erf": lambda r, n: _erf(r),
}


def lut_table(fn: Callable[[np.ndarray], np.ndarray], in_qp: QParams,
              out_qp: QParams) -> np.ndarray:
    """Output code for each input code (int8: 256 entries; int16: 513 knots every 128 codes)."""
    from ..lower import scalar_qparams

    s_in, z_in = scalar_qparams(in_qp)
    s_out, z_out = scalar_qparams(out_qp)
    if in_qp.bits <= 8:
        codes = np.arange(-128, 128) if in_qp.signed else np.arange(0, 256)
    else:
        codes = np.arange(513, dtype=np.int64) * 128 - 32768
    y = fn(s_in * (codes - z_in).astype(np.float64))
    q = np.rint(y / s_out) + z_out
    # int16 knots stay unclamped (int32, within the validated |t| < 2^23) so interpolation
    # next to saturation stays exact; the op's act_min/act_max clamp saturates afterwards.
    limit = _LUT_VALUE_LIMIT - 1
    lo, hi = (out_qp.qmin, out_qp.qmax) if in_qp.bits <= 8 else (-limit, limit)
    q = np.clip(q, lo, hi)
    return q.astype(np.int32 if in_qp.bits > 8 else (np.int8 if out_qp.bits <= 8 else np.int16))


def lower(lw, node, inputs: list[str]) -> str:
    from ..lower import act_bounds

    in_qp = lw.fmt[inputs[0]]
    out_qp = lw.plan.acts[node.name]
    fn = ELEMENTWISE[node.op]
    table = lut_table(lambda r: fn(r, node), in_qp, out_qp)
    lo, hi = act_bounds(node, out_qp)
    return lw.emit(node.name, "lut", inputs, node.shape, out_qp, {"act_min": lo, "act_max": hi},
                   {"table": table})


def run_float_sigmoid(node, inputs):
    import torch

    return torch.sigmoid(inputs[0])


def run_float_tanh(node, inputs):
    import torch

    return torch.tanh(inputs[0])


def run_float_leaky_relu(node, inputs):
    import torch.nn.functional as F

    return F.leaky_relu(inputs[0], node.attrs["negative_slope"])


def run_float_hardswish(node, inputs):
    import torch.nn.functional as F

    return F.hardswish(inputs[0])


def run_float_hardsigmoid(node, inputs):
    """PyTorch's relu6(x + 3)/6 for its own constants; ONNX's max(0, min(1, αx + β)) else."""
    import torch
    import torch.nn.functional as F

    alpha, beta = node.attrs.get("alpha", 1 / 6), node.attrs.get("beta", 0.5)
    if (alpha, beta) == (1 / 6, 0.5):
        return F.hardsigmoid(inputs[0])
    return torch.clamp(inputs[0] * alpha + beta, 0.0, 1.0)


def run_float_silu(node, inputs):
    import torch.nn.functional as F

    return F.silu(inputs[0])


def run_float_gelu(node, inputs):
    import torch.nn.functional as F

    return F.gelu(inputs[0], approximate=node.attrs.get("approximate", "none"))


def run_float_elu(node, inputs):
    """aten.elu: scale·x for x > 0, scale·α·(exp(input_scale·x) − 1) otherwise."""
    import torch
    import torch.nn.functional as F

    a = node.attrs
    x = inputs[0]
    alpha, scale, in_scale = a.get("alpha", 1.0), a.get("scale", 1.0), a.get("input_scale", 1.0)
    if scale == 1.0 and in_scale == 1.0:
        return F.elu(x, alpha)
    return scale * torch.where(x > 0, x, alpha * torch.expm1(torch.clamp(x, max=0) * in_scale))


def run_float_erf(node, inputs):
    import torch

    return torch.erf(inputs[0])


register(
    OpDef(
        kind="lut",
        summary="elementwise function as an offline table (8-bit direct: within 0.5 LSB of "
                "the function; int16 interpolated: 1 LSB + h²/8·max|f''| + h/4·|f' jump| at a "
                "kink, h = 128·s_in)",
        attrs=frozenset({"act_min", "act_max"}),
        consts=frozenset({"table"}),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_lut.c", "iq_lut.h"),
        c_header="iq_lut.h",
        to_onnx=to_onnx,
        in_place=True,
    ),
    FloatOpDef(name="sigmoid", summary="Sigmoid", run=run_float_sigmoid, lower=lower,
               lowers_to=("lut",), fixed_format=unit_interval_format),
    FloatOpDef(name="tanh", summary="Tanh", run=run_float_tanh, lower=lower, lowers_to=("lut",),
               fixed_format=signed_unit_format),
    FloatOpDef(name="leaky_relu", summary="LeakyReLU; attr negative_slope",
               run=run_float_leaky_relu, lower=lower, lowers_to=("lut",)),
    FloatOpDef(name="hardswish", summary="Hardswish x·relu6(x + 3)/6",
               run=run_float_hardswish, lower=lower, lowers_to=("lut",)),
    FloatOpDef(name="hardsigmoid",
               summary="Hardsigmoid max(0, min(1, αx + β)); attrs alpha, beta (1/6, 1/2)",
               run=run_float_hardsigmoid, lower=lower, lowers_to=("lut",)),
    FloatOpDef(name="silu", summary="SiLU / swish x·sigmoid(x)", run=run_float_silu,
               lower=lower, lowers_to=("lut",)),
    FloatOpDef(name="gelu", summary="GELU; attr approximate (\"none\": erf, \"tanh\")",
               run=run_float_gelu, lower=lower, lowers_to=("lut",)),
    FloatOpDef(name="elu",
               summary="ELU (SELU with scale, input_scale); attrs alpha, scale, input_scale",
               run=run_float_elu, lower=lower, lowers_to=("lut",)),
    FloatOpDef(name="erf", summary="erf (what ONNX exporters decompose GELU into)",
               run=run_float_erf, lower=lower, lowers_to=("lut",)),
)
