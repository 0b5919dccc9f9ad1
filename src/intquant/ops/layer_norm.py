"""layer_norm — LayerNorm over the last axis in exact integer arithmetic (no float, no table)

Per row x_0 … x_{C−1} (raw values; the zero point cancels in the centring):
- `S = Σ x_j`; `c_i = C·x_i − S` (exact: C times the deviation from the mean);
  `Q = Σ c_i²`; `n = Q·2^eps_shift + eps_term` (eps_shift even: Q is scaled up so that the
  variance epsilon, `eps_term` = round(eps·C³·2^eps_shift / s_in²) >= 1, is held to ~2^-30;
  n > 0);
- integer square root of n normalised to 62 bits: `k = (62 − bitlen(n)) div 2`,
  `R = isqrt(n·4^k)` in [2^30, 2^31), `inv = (2^61 − 1) div R` (one division per row);
- `e = max(1, 31 − k − eps_shift/2)`; `u_i = (c_i·inv + 2^(e−1)) >> e` ≈ 2^30·c_i / √(Q + ε)
  (|u| <= 2^30 + 1; int64 products; e < 1 only for a constant row, whose c_i are all 0);
- `out_i = clamp((u_i·gamma_i + beta_i) >> shift, act_min, act_max)` (int64, floor shift).
Offline: the normalised value is √C·c_i/√n, so `gamma_i` = round(γ_i·√C / s_out · 2^(shift−30))
(int32) and `beta_i` = round((β_i / s_out + z_out)·2^shift) + 2^(shift−1) (int64: the bias, the
output zero point and the rounding half). consts `gamma` int32 [C], `beta` int64 [C]; attrs
`eps_term`, `eps_shift` (even, [0, 60]), `shift` in [1, 44], `act_min`, `act_max`. Validation
proves the int64 bounds: `C·(C·(hi − lo))²·2^eps_shift + eps_term < 2^62` (Q and n),
|beta| <= 2^62 (with |u·gamma| < 2^61 + 2^31 the sum fits int64), gamma > INT32_MIN.

Error vs float LayerNorm on the same (dequantized) input: the square root and reciprocal are
exact to ~2^-30 relative, so the output is the float result rounded once (≤ 0.5 LSB + ~2^-20
relative); measured SQNR on its own: benchmarks/RESULTS.md (section "transformer pieces").

Float op lowered here: ``layer_norm`` (nn.LayerNorm over the last ``dims`` axes; several axes
are flattened into one row by free reshapes).
"""

from __future__ import annotations

import math

import numpy as np

from ..intgraph.check import OpCheck, arity
from ..intgraph.types import ACTIVATION_DTYPES, Op, TensorInfo
from ..numerics import saturate
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register

N_LIMIT = 2**62  # n = Q + eps_term stays below it: n·4^k < 2^62 with k >= 0
MAX_SHIFT = 44  # with |beta| <= 2^62 a clamped beta still saturates any 16-bit output
INV_NUMERATOR = 2**61 - 1


def max_square_sum(c: int, dtype: str) -> int:
    """The largest Q = Σ c_i² a row of length C of the dtype can reach: C·(C·(hi − lo))²."""
    lo, hi = ACTIVATION_DTYPES[dtype]
    return c * (c * (hi - lo)) ** 2


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    chk.expect_output_shape(x.shape)
    c = x.shape[-1]
    eps_term = chk.int_attr("eps_term", 1)
    eps_shift = chk.int_attr("eps_shift", 0, 60)
    if eps_shift % 2:
        raise chk.fail(f"attr 'eps_shift' = {eps_shift} must be even")
    room = N_LIMIT - 1 - (max_square_sum(c, x.dtype) << eps_shift)
    if eps_term > room:
        raise chk.fail(f"attr 'eps_term' = {eps_term}: rows of {c} {x.dtype} values need "
                       f"C·(C·(hi − lo))²·2^eps_shift + eps_term < 2^62, which leaves "
                       f"eps_term at most {max(room, 0)}")
    chk.int_attr("shift", 1, MAX_SHIFT)
    chk.act_range()
    gamma = chk.const("gamma", ("int32",), 1)
    beta = chk.const("beta", ("int64",), 1)
    for key, a in (("gamma", gamma), ("beta", beta)):
        if a.shape[0] != c:
            raise chk.fail(f"const '{key}' has {a.shape[0]} entries, expected C = {c}")
    if np.any(gamma.astype(np.int64) == -(2**31)):
        raise chk.fail("const 'gamma' holds INT32_MIN (|gamma| must fit int32)")
    if np.any(np.abs(beta.astype(np.int64)) > 2**62):
        raise chk.fail("const 'beta' values must lie in [-2^62, 2^62]")


# ----------------------------------------------------------------------------------------------
# Reference (int64 throughout)
# ----------------------------------------------------------------------------------------------


def bit_length(n: np.ndarray) -> np.ndarray:
    """Bits of each positive int64 (binary search over 32, 16, … 1)."""
    v = n.astype(np.int64)
    bits = np.zeros_like(v)
    for s in (32, 16, 8, 4, 2, 1):
        big = v >= (np.int64(1) << s)
        bits += np.where(big, s, 0)
        v = np.where(big, v >> s, v)
    return bits + (v >= 1)


def isqrt(n: np.ndarray) -> np.ndarray:
    """floor(√n) of each int64 in [0, 2^62), digit by digit (32 steps, no float)."""
    rem = n.astype(np.int64)
    root = np.zeros_like(rem)
    bit = np.int64(1) << 62
    while bit:
        take = rem >= root + bit
        rem = np.where(take, rem - (root + bit), rem)
        root = np.where(take, (root >> 1) + bit, root >> 1)
        bit >>= 2
    return root


def normalized_rows(x: np.ndarray, eps_term: int, eps_shift: int) -> np.ndarray:
    """u ≈ 2^30·c / √(Q + ε) per element (the spec's u_i), int64."""
    c_len = x.shape[-1]
    x = x.astype(np.int64)
    c = c_len * x - x.sum(axis=-1, keepdims=True)
    n = ((c * c).sum(axis=-1, keepdims=True) << eps_shift) + eps_term
    k = (62 - bit_length(n)) // 2
    inv = INV_NUMERATOR // isqrt(n << (2 * k))
    e = np.maximum(1, 31 - k - eps_shift // 2)
    return (c * inv + (np.int64(1) << (e - 1))) >> e


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Centre, integer square root, one reciprocal per row, per-channel affine (see spec)."""
    a = op.attrs
    u = normalized_rows(inputs[0], a["eps_term"], a["eps_shift"])
    gamma = op.consts["gamma"].astype(np.int64)
    beta = op.consts["beta"].astype(np.int64)
    y = (u * gamma + beta) >> a["shift"]
    return to_out(saturate(y, a["act_min"], a["act_max"]), out)


# ----------------------------------------------------------------------------------------------
# C, ONNX
# ----------------------------------------------------------------------------------------------


def emit_c(em, i: int, op: Op, p: str) -> None:
    a = op.attrs
    x = op.inputs[0]
    info = em.g.tensors[x]
    c = info.shape[-1]
    lo, hi = ACTIVATION_DTYPES[info.dtype]
    g = em.const_array(f"{p}_gamma", "int32_t", op.consts["gamma"])
    b = em.const_array(f"{p}_beta", "int64_t", op.consts["beta"])
    prm = em.params(
        "iq_layer_norm_params_t",
        f"{p}_params",
        {
            "rows": math.prod(info.shape[:-1]),
            "row_len": c,
            "eps_term": a["eps_term"],
            "eps_shift": a["eps_shift"],
            "shift": a["shift"],
            "act_min": a["act_min"],
            "act_max": a["act_max"],
            # c_i² fits 32 bits unsigned: |c| <= C·(hi − lo) < 2^16
            "small_squares": int(c * (hi - lo) < 2**16),
        },
    )
    em.calls.append(
        f"    iq_layer_norm(&{prm}, {g}, {b}, {em.ptr(x, True)}, {em.code(x)}, "
        f"{em.ptr(op.output, False)}, {em.code(op.output)});"
    )


def _real_affine(op: Op, out: TensorInfo) -> tuple[np.ndarray, np.ndarray]:
    """(γ, β) in real units from the integer constants (for the QDQ export)."""
    c = op.consts["gamma"].shape[0]
    s = op.attrs["shift"]
    gamma = op.consts["gamma"].astype(np.float64) * out.scale / (math.sqrt(c) * 2.0 ** (s - 30))
    beta = (op.consts["beta"].astype(np.float64) - 2.0 ** (s - 1)) / 2.0**s
    return gamma, (beta - out.zero_point) * out.scale


def to_onnx(ex, op: Op) -> None:
    """DQ(x), LayerNormalization (opset 17) with γ, β and eps read back from the integers, Q."""
    x_info, out = ex.g.tensors[op.inputs[0]], ex.g.tensors[op.output]
    c = x_info.shape[-1]
    gamma, beta = _real_affine(op, out)
    eps = op.attrs["eps_term"] * x_info.scale**2 / (c**3 * 2.0 ** op.attrs["eps_shift"])
    y = ex.node("LayerNormalization",
                [ex.dq_tensor(op.inputs[0], op.name),
                 ex.const(op.name + "_gamma", gamma.astype(np.float32)),
                 ex.const(op.name + "_beta", beta.astype(np.float32))],
                op.name, axis=-1, epsilon=float(eps))
    ex.clip_and_q(y, op, out)


def to_onnx_int(ex, op: Op) -> None:
    """The reference step by step on int64 tensors: bit length by binary search and the
    integer square root digit by digit (Where / comparisons), exact divisions and shifts."""
    from onnx import TensorProto

    a, h = op.attrs, op.name
    c_len = ex.g.tensors[op.inputs[0]].shape[-1]
    axes = ex.i64(h + "_axes", [-1])
    x = ex.cast(op.inputs[0], TensorProto.INT64, h + "_x")
    total = ex.node("ReduceSum", [x, axes], h + "_s", keepdims=1)
    c = ex.node("Sub", [ex.node("Mul", [x, ex.i64(h + "_C", c_len)], h + "_cx"), total], h + "_c")
    q = ex.node("ReduceSum", [ex.node("Mul", [c, c], h + "_c2"), axes], h + "_q", keepdims=1)
    q = ex.node("Mul", [q, ex.i64(h + "_es", 1 << a["eps_shift"])], h + "_qs")
    n = ex.node("Add", [q, ex.i64(h + "_eps", a["eps_term"])], h + "_n")
    bits = _bit_length_int(ex, n, h + "_bl")
    k = ex.node("Div", [ex.node("Sub", [ex.i64(h + "_62", 62), bits], h + "_62b"),
                        ex.i64(h + "_2", 2)], h + "_k")
    scale_4k = _pow2_int(ex, ex.node("Mul", [k, ex.i64(h + "_two", 2)], h + "_2k"), h + "_p4k")
    root = _isqrt_int(ex, ex.node("Mul", [n, scale_4k], h + "_nk"), h + "_sqrt")
    inv = ex.node("Div", [ex.i64(h + "_num", INV_NUMERATOR), root], h + "_inv")
    sh = ex.node("Max", [ex.node("Sub", [ex.i64(h + "_31", 31 - a["eps_shift"] // 2), k],
                                 h + "_e"), ex.i64(h + "_1e", 1)], h + "_sh")
    half = _pow2_int(ex, ex.node("Sub", [sh, ex.i64(h + "_one", 1)], h + "_sh1"), h + "_half")
    u = ex.node("Add", [ex.node("Mul", [c, inv], h + "_ci"), half], h + "_uh")
    u = _floor_div_pow2(ex, u, _pow2_int(ex, sh, h + "_p"), h + "_u")
    y = ex.node("Add", [ex.node("Mul", [u, ex.i64(h + "_g", op.consts["gamma"])], h + "_ug"),
                        ex.i64(h + "_b", op.consts["beta"])], h + "_y")
    y = ex.floor_shift_int(y, np.int64(a["shift"]), h + "_ys")
    ex.finish_int(y, op, 0)


def _pow2_int(ex, e: str, hint: str) -> str:
    """2^e for int64 exponents in [0, 62] (Pow on int64 is exact)."""
    return ex.node("Pow", [ex.i64(hint + "_2", 2), e], hint + "_pow")


def _floor_div_pow2(ex, v: str, d: str, hint: str) -> str:
    rem = ex.node("Mod", [v, d], hint + "_mod")
    return ex.node("Div", [ex.node("Sub", [v, rem], hint + "_vr"), d], hint + "_fl")


def _bit_length_int(ex, n: str, hint: str) -> str:
    from onnx import TensorProto

    bits = ex.i64(hint + "_zero", np.zeros(1, np.int64))
    v = n
    for s in (32, 16, 8, 4, 2, 1):
        big = ex.node("GreaterOrEqual", [v, ex.i64(hint + f"_t{s}", 1 << s)], hint + "_ge")
        bits = ex.node("Add", [bits, ex.node("Where", [big, ex.i64(hint + f"_s{s}", s),
                                                       ex.i64(hint + "_0", 0)], hint + "_w")],
                       hint + "_acc")
        v = ex.node("Where", [big, ex.node("Div", [v, ex.i64(hint + f"_d{s}", 1 << s)],
                                           hint + "_sh"), v], hint + "_v")
    one = ex.cast(ex.node("GreaterOrEqual", [v, ex.i64(hint + "_1", 1)], hint + "_ge1"),
                  TensorProto.INT64, hint + "_b")
    return ex.node("Add", [bits, one], hint + "_bits")


def _isqrt_int(ex, n: str, hint: str) -> str:
    rem, root = n, ex.i64(hint + "_r0", np.zeros(1, np.int64))
    for e in range(62, -1, -2):
        bit = ex.i64(hint + f"_b{e}", 1 << e)
        trial = ex.node("Add", [root, bit], hint + "_t")
        take = ex.node("GreaterOrEqual", [rem, trial], hint + "_take")
        half = ex.node("Div", [root, ex.i64(hint + "_2", 2)], hint + "_half")
        rem = ex.node("Where", [take, ex.node("Sub", [rem, trial], hint + "_sub"), rem],
                      hint + "_rem")
        root = ex.node("Where", [take, ex.node("Add", [half, bit], hint + "_hb"), half],
                       hint + "_root")
    return root


# ----------------------------------------------------------------------------------------------
# Lowering and float semantics
# ----------------------------------------------------------------------------------------------


def affine_constants(gamma: np.ndarray, beta: np.ndarray, c: int, s_out: float,
                     z_out: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(gamma int32, beta int64, shift): the largest shift <= 44 whose gamma fits int32."""
    g_real = gamma.astype(np.float64) * math.sqrt(c) / s_out
    gmax = float(np.abs(g_real).max(initial=0.0))
    shift = MAX_SHIFT if gmax == 0 else int(np.clip(
        30 + math.floor(math.log2((2**31 - 1) / gmax)), 1, MAX_SHIFT))
    while True:
        g = np.rint(g_real * 2.0 ** (shift - 30))
        if np.abs(g).max(initial=0) <= 2**31 - 1 or shift == 1:
            break
        shift -= 1
    g = np.clip(g, -(2**31 - 1), 2**31 - 1)
    b = np.rint((beta.astype(np.float64) / s_out + z_out) * 2.0**shift) + 2.0 ** (shift - 1)
    b = np.clip(b, -(2.0**62), 2.0**62)
    return g.astype(np.int32), np.array([int(v) for v in b], dtype=np.int64), shift


def lower(lw, node, inputs: list[str]) -> str:
    from ..lower import LoweringError, act_bounds, scalar_qparams

    in_qp = lw.fmt[inputs[0]]
    out_qp = lw.plan.acts[node.name]
    s_in, _ = scalar_qparams(in_qp)
    s_out, z_out = scalar_qparams(out_qp)
    dims = int(node.attrs["dims"])
    shape = tuple(node.shape)
    c = math.prod(shape[-dims:])
    rows = shape[:-dims] + (c,)
    x_dtype = lw.tensors[inputs[0]].dtype
    q_max = max_square_sum(c, x_dtype)
    if q_max >= N_LIMIT - 1:
        raise LoweringError(f"LayerNorm over {c} {x_dtype} values: rows this long overflow the "
                            "int64 variance (use 8-bit activations or shorter rows)")
    eps_real = node.attrs["eps"] * c**3 / s_in**2  # ε in units of Q
    eps_shift = 0
    while eps_shift + 2 <= 60 and (q_max << (eps_shift + 2)) + eps_real * 2.0 ** (
            eps_shift + 2) < 2**61:
        eps_shift += 2
    room = N_LIMIT - 1 - (q_max << eps_shift)
    eps_term = int(np.clip(round(eps_real * 2.0**eps_shift), 1, room))
    gamma, beta, shift = affine_constants(node.params["weight"], node.params["bias"], c, s_out,
                                          z_out)
    lo, hi = act_bounds(node, out_qp)
    attrs = dict(eps_term=eps_term, eps_shift=eps_shift, shift=shift, act_min=lo, act_max=hi)
    x = inputs[0]
    if rows != lw.tensors[x].shape:
        x = lw.emit(node.name + ".rows", "reshape", [x], rows, in_qp, {"shape": list(rows)})
    if rows == shape:
        return lw.emit(node.name, "layer_norm", [x], rows, out_qp, attrs,
                       {"gamma": gamma, "beta": beta})
    y = lw.emit(node.name + ".norm", "layer_norm", [x], rows, out_qp, attrs,
                {"gamma": gamma, "beta": beta})
    return lw.emit(node.name, "reshape", [y], shape, out_qp, {"shape": list(shape)})


def run_float(node, inputs):
    import torch
    import torch.nn.functional as F

    x = inputs[0]
    dims = int(node.attrs["dims"])
    shape = tuple(x.shape[x.dim() - dims:])
    w = torch.as_tensor(np.asarray(node.params["weight"], np.float32)).reshape(shape)
    b = torch.as_tensor(np.asarray(node.params["bias"], np.float32)).reshape(shape)
    return F.layer_norm(x, shape, w, b, float(node.attrs["eps"]))


register(
    OpDef(
        kind="layer_norm",
        summary="LayerNorm over the last axis: exact integer mean, variance, square root and "
                "reciprocal",
        attrs=frozenset({"eps_term", "eps_shift", "shift", "act_min", "act_max"}),
        consts=frozenset({"gamma", "beta"}),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_layer_norm.c", "iq_layer_norm.h"),
        c_header="iq_layer_norm.h",
        to_onnx=to_onnx,
        to_onnx_int=to_onnx_int,
        in_place=True,
    ),
    FloatOpDef(
        name="layer_norm",
        summary="LayerNorm over the last `dims` axes; params weight, bias (flattened); attrs "
                "eps, dims",
        run=run_float,
        lower=lower,
        lowers_to=("layer_norm", "reshape"),
    ),
)
