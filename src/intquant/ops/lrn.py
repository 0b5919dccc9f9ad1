"""lrn — local response normalization across channels (ONNX LRN: AlexNet, ZFNet, GoogLeNet)

Float op: `y[c] = x[c] / (k + α/n · Σ_{j ∈ W(c)} x[j]²)^β` with the window
`W(c) = [c − ⌊(n−1)/2⌋, c + ⌈(n−1)/2⌉] ∩ [0, C)` (ONNX's; PyTorch's `local_response_norm` is the
same for odd n).
- inputs `[x]`, shape `(C,)`, `(C, L)` or `(C, H, W)` (channel axis 0, every other position is
  independent); output the same shape.
- consts: `table` int32 `[513]`, entries in `[0, 2^30]` (the normalisation factor in Q30).
- attrs: `size` (n, in [1, 2^16]), `input_zero_point`, `lut_shift` (in [0, 32]), `left_shift`
  (in [0, 30]), `multiplier`, `shift`, `output_zero_point`, `act_min`, `act_max`.
- math (int64 throughout; every value is exact):
  ```
  d[c]  = x[c] − input_zero_point
  S[c]  = Σ_{j ∈ W(c)} d[j]²                                   (≥ 0)
  i     = S >> lut_shift,   r = S & (2^lut_shift − 1)
  f     = table[i] + (((table[i+1] − table[i]) · r) >> lut_shift)   (arithmetic shift: floor)
  g     = SRDHM(d[c] · 2^left_shift, f)                         (gemmlowp, round half up)
  out   = clamp(mbqm_double(g, multiplier, shift) + output_zero_point, act_min, act_max)
  ```
  where `mbqm_double` is `multiply_by_quantized_multiplier` (TFLM double rounding).
- offline (`lower`): `D = max|q − input_zero_point|` over the input dtype's range,
  `S_max = n·D²`; `lut_shift` = the smallest L with `S_max >> L ≤ 511` (so `i + 1 ≤ 512`);
  `left_shift = 30 − bitlen(D)` (so `|d|·2^left_shift < 2^30`). With
  `φ(S) = (k + α/n · s_in² · S)^(−β)` (the float factor at the real sum of squares `s_in²·S`)
  and `φ_ref = max_i φ(i·2^lut_shift)`: `table[i] = round(2^30 · φ(i·2^lut_shift) / φ_ref)`,
  and `(multiplier, shift)` is the real multiplier `s_in · φ_ref / (2^(left_shift − 1) ·
  s_out)`.
  So `g ≈ d·2^(left_shift−1)·φ/φ_ref` keeps about 30 significant bits of `d·φ` and the output
  is rounded once more at the end: the error against float is the 0.5 LSB of that rounding plus
  the table's linear-interpolation error (`h²/8 · max|φ''|` per segment, relative to `φ_ref`;
  below 10^−6 for AlexNet's k = 1, α = 10^−4, β = 0.75 at any realistic input scale).
- Validation: same shape in and out; `input_zero_point`/`output_zero_point` equal the tensors'
  zero points; `S_max >> lut_shift ≤ 511` for the input dtype's full range (any input indexes
  inside the table); `D · 2^left_shift < 2^31`; `multiplier` in [0, 2^31), `shift` in [−31, 30];
  table entries in `[0, 2^30]` (then `f ∈ [0, 2^30]`, `SRDHM` never saturates and
  `|Δtable · r| < 2^62`). C kernel: `S` in 64 bits (`d²` as an unsigned 32-bit product).
"""

from __future__ import annotations

import math

import numpy as np

from ..intgraph.check import OpCheck, arity
from ..intgraph.types import ACTIVATION_DTYPES, Op, TensorInfo
from ..numerics import (
    multiply_by_quantized_multiplier,
    saturate,
    saturating_rounding_doubling_high_mul,
)
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register

LRN_KNOTS = 513
_LRN_TABLE_MAX = 2**30  # Q30 factor: SRDHM never saturates, (t[i+1] - t[i]) * r fits int64
_LRN_SIZE_MAX = 2**16
_LRN_LUT_SHIFT_MAX = 32


def check(chk: OpCheck) -> None:
    """Every input indexes inside the 513-knot table and d·2^left_shift fits int32."""
    arity(chk, 1)
    x = chk.ins()[0]
    chk.expect_output_shape(x.shape)
    size = chk.int_attr("size", 1, _LRN_SIZE_MAX)
    z = chk.zero_point_attr("input_zero_point", x)
    lut_shift = chk.int_attr("lut_shift", 0, _LRN_LUT_SHIFT_MAX)
    left_shift = chk.int_attr("left_shift", 0, 30)
    chk.multiplier_attr("multiplier")
    chk.shift_attr("shift")
    chk.zero_point_attr("output_zero_point", chk.out)
    chk.act_range()
    lo, hi = ACTIVATION_DTYPES[x.dtype]
    d_max = max(hi - z, z - lo)
    s_max = size * d_max * d_max
    if s_max >> lut_shift > 511:
        raise chk.fail(
            f"attr 'lut_shift' = {lut_shift} is too small: the largest sum of squares "
            f"{s_max} (size {size}, |x − z| <= {d_max}) would index past the 513-entry table; "
            f"need S_max >> lut_shift <= 511"
        )
    if d_max << left_shift >= 2**31:
        raise chk.fail(
            f"attr 'left_shift' = {left_shift}: |x − z|·2^left_shift reaches "
            f"{d_max << left_shift} >= 2^31 (int32 overflow)"
        )
    table = chk.const("table", ("int32",), 1)
    if table.shape[0] != 513:
        raise chk.fail(f"const 'table' has {table.shape[0]} entries, expected 513")
    if np.any(table < 0) or np.any(table.astype(np.int64) > _LRN_TABLE_MAX):
        raise chk.fail("const 'table' entries must lie in [0, 2^30] (a Q30 factor)")


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """S = Σ d² over the channel window, the Q30 factor f(S) interpolated from the 513-knot table,
    g = SRDHM(d·2^left_shift, f) keeps ~30 bits of d·f, one final requantization."""
    a = op.attrs
    x = inputs[0]
    d = x.reshape(x.shape[0], x.shape[1], -1).astype(np.int64) - a["input_zero_point"]
    s = channel_window_sum(d * d, a["size"])
    f = interpolate_table_pot(op.consts["table"].astype(np.int64), s, a["lut_shift"])
    g = saturating_rounding_doubling_high_mul(d << a["left_shift"], f)
    r = multiply_by_quantized_multiplier(g, a["multiplier"], a["shift"])
    y = saturate(r + a["output_zero_point"], a["act_min"], a["act_max"])
    return to_out(y.reshape(x.shape), out)


def channel_window_sum(v: np.ndarray, size: int) -> np.ndarray:
    """Σ v[j] over j in [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉] ∩ [0, C), axis 1 of (N, C, P).

    A difference of prefix sums over the zero-padded channels (int64, exact).
    """
    before, after = (size - 1) // 2, size // 2
    padded = np.pad(v, ((0, 0), (before + 1, after), (0, 0)))
    prefix = np.cumsum(padded, axis=1)
    channels = v.shape[1]
    return prefix[:, size : size + channels] - prefix[:, :channels]


def interpolate_table_pot(table: np.ndarray, s: np.ndarray, shift: int) -> np.ndarray:
    """t[s >> shift] + ((t[(s >> shift) + 1] − t[s >> shift])·(s mod 2^shift) >> shift), s >= 0."""
    i = s >> shift
    r = s & ((1 << shift) - 1)
    return table[i] + (((table[i + 1] - table[i]) * r) >> shift)


_C_KEYS = (
    "size",
    "input_zero_point",
    "lut_shift",
    "left_shift",
    "multiplier",
    "shift",
    "output_zero_point",
    "act_min",
    "act_max",
)


def emit_c(em, i: int, op: Op, p: str) -> None:
    a = op.attrs
    x = op.inputs[0]
    shape = em.g.tensors[x].shape
    t = em.const_array(f"{p}_table", "int32_t", op.consts["table"])
    prm = em.params(
        "iq_lrn_params_t",
        f"{p}_params",
        {"channels": shape[0], "inner": math.prod(shape[1:]), **{k: a[k] for k in _C_KEYS}},
    )
    em.calls.append(
        f"    iq_lrn(&{prm}, {t}, {em.ptr(x, True)}, {em.code(x)}, "
        f"{em.ptr(op.output, False)}, {em.code(op.output)});"
    )


# ----------------------------------------------------------------------------------------------
# Lowering
# ----------------------------------------------------------------------------------------------


def lrn_lut_shift(size: int, d_max: int) -> int:
    """Smallest L with (size·d_max²) >> L <= 511: every sum of squares indexes inside the table."""
    return max(0, (size * d_max * d_max).bit_length() - 9)


def lrn_factor_table(size: int, alpha: float, beta: float, bias: float, s_in: float,
                     lut_shift: int) -> tuple[np.ndarray, float]:
    """Q30 knots of φ(S) = (k + α/n·s_in²·S)^(−β) at S = i·2^lut_shift, and the reference φ_ref.

    Normalising by φ_ref = max φ puts every knot in [0, 2^30] whatever k and β are; φ_ref goes
    into the output multiplier instead.
    """
    from ..lower import LoweringError

    s = np.arange(LRN_KNOTS, dtype=np.float64) * 2.0**lut_shift
    base = bias + alpha / size * s_in * s_in * s
    if not np.all(np.isfinite(base)) or np.any(base <= 0):
        raise LoweringError(f"LRN base k + α/n·Σx² must stay > 0 (bias {bias}, alpha {alpha})")
    phi = base ** (-beta)
    phi_ref = float(phi.max())
    if not math.isfinite(phi_ref) or phi_ref <= 0:
        raise LoweringError(f"LRN factor (k + α/n·Σx²)^(−β) is not finite (beta {beta})")
    table = np.clip(np.rint(phi / phi_ref * 2.0**30), 0, 2**30).astype(np.int32)
    return table, phi_ref


def lower(lw, node, inputs: list[str]) -> str:
    """Σd² over channels, Q30 factor table, one requantization."""
    from ..lower import LoweringError, act_bounds, dtype_of, scalar_qparams
    from ..numerics import quantize_multiplier

    x = inputs[0]
    in_qp = lw.fmt[x]
    out_qp = lw.plan.acts[node.name]
    s_in, z_in = scalar_qparams(in_qp)
    s_out, z_out = scalar_qparams(out_qp)
    a = node.attrs
    size = int(a["size"])
    q_lo, q_hi = ACTIVATION_DTYPES[dtype_of(in_qp)]  # the whole dtype: any input is safe
    d_max = max(q_hi - z_in, z_in - q_lo)
    lut_shift = lrn_lut_shift(size, d_max)
    left_shift = 30 - d_max.bit_length()
    table, phi_ref = lrn_factor_table(size, float(a["alpha"]), float(a["beta"]),
                                      float(a["bias"]), s_in, lut_shift)
    m, sh = quantize_multiplier(s_in * phi_ref / (2.0 ** (left_shift - 1) * s_out))
    if sh > 30:
        raise LoweringError(f"output multiplier too large (shift {sh} > 30): output scale "
                            f"{s_out} is far finer than the input's {s_in}")
    lo, hi = act_bounds(node, out_qp)
    attrs = dict(size=size, input_zero_point=z_in, lut_shift=lut_shift, left_shift=left_shift,
                 multiplier=m, shift=sh, output_zero_point=z_out, act_min=lo, act_max=hi)
    return lw.emit(node.name, "lrn", [x], node.shape, out_qp, attrs, {"table": table})


def run_float(node, inputs):
    """ONNX LRN: x / (bias + alpha/size · Σ x²)^beta, the sum over channels
    c − ⌊(size−1)/2⌋ .. c + ⌈(size−1)/2⌉ (zero outside)."""
    import torch.nn.functional as F

    x = inputs[0]
    a = node.attrs
    size = a["size"]
    sq = (x * x).reshape(x.shape[0], 1, x.shape[1], -1)  # pool over C as a spatial axis
    sq = F.pad(sq, (0, 0, (size - 1) // 2, size // 2))
    s = F.avg_pool2d(sq, (size, 1), stride=1).squeeze(1).reshape(x.shape) * size
    return x / (a["bias"] + a["alpha"] / size * s) ** a["beta"]


register(
    OpDef(
        kind="lrn",
        summary="local response normalization across channels (Q30 factor table)",
        attrs=frozenset(_C_KEYS),
        consts=frozenset({"table"}),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_lrn.c", "iq_lrn.h"),
        c_header="iq_lrn.h",
    ),
    FloatOpDef(
        name="lrn",
        summary="ONNX LRN across channels; attrs size, alpha, beta, bias (from ONNX import)",
        run=run_float,
        lower=lower,
        lowers_to=("lrn",),
    ),
)
