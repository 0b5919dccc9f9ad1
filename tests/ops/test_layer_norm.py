"""layer_norm: LayerNorm over the last axis in exact integer arithmetic
(src/intquant/ops/layer_norm.py).

Categories (docs/adding-an-op.md): matches_float, validation, golden, c_host, c_m0, onnx.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import intgraph_factory as IF
import intquant
from intquant.interpreter import run
from intquant.intgraph import ACTIVATION_DTYPES, IntGraph, IntGraphError, Op, TensorInfo

from .conftest import assert_c_host_equals_reference, assert_c_m0_equals_reference

DTYPES = ("int8", "uint8", "int16")


def _f32(v: float) -> float:
    return float(np.float32(v))


def _graph(x: TensorInfo, y: TensorInfo, attrs: dict, consts: dict) -> IntGraph:
    op = Op("ln", "layer_norm", [x.name], y.name, attrs, consts)
    return IntGraph({x.name: x, y.name: y}, [op], x.name, y.name).validate()


def spec_constants(gamma, beta, eps: float, c: int, s_in: float, s_out: float, z_out: int,
                   shift: int, eps_shift: int) -> tuple[dict, dict]:
    """The offline constants written from the module docstring (not from its lowering)."""
    g = np.rint(np.asarray(gamma, np.float64) * math.sqrt(c) / s_out * 2.0 ** (shift - 30))
    b = [int(round((float(v) / s_out + z_out) * 2.0**shift)) + 2 ** (shift - 1) for v in beta]
    lo, hi = -(2**15), 2**15 - 1
    eps_term = max(1, int(round(eps * c**3 * 2.0**eps_shift / s_in**2)))
    attrs = {"eps_term": eps_term, "eps_shift": eps_shift, "shift": shift, "act_min": lo,
             "act_max": hi}
    return attrs, {"gamma": g.astype(np.int32), "beta": np.array(b, np.int64)}


# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype,z_in", [("int8", -7), ("uint8", 131), ("int16", 0)])
def test_layer_norm_matches_float_torch(dtype: str, z_in: int) -> None:
    """int16 output: the float64 F.layer_norm of the dequantized input, rounded once. The
    square root and reciprocal are exact to ~2^-30 relative and ε is held to 2^-eps_shift
    relative, so every element is within 0.5 LSB + 0.01 (the float reference's own error is
    ~1e-12 LSB); rows include a constant one (normalised to 0: the output is beta), one two
    input steps wide (where ε matters) and the dtype's extremes."""
    c, s_in, s_out, z_out, eps = 24, _f32(0.05), _f32(4 / 32768), 0, 1e-5
    rng = np.random.default_rng(3)
    gamma = rng.uniform(-1.5, 1.5, c).astype(np.float32)
    beta = rng.uniform(-0.5, 0.5, c).astype(np.float32)
    eps_shift = 12 if dtype == "int16" else 32
    attrs, consts = spec_constants(gamma, beta, eps, c, s_in, s_out, z_out, shift=40,
                                   eps_shift=eps_shift)
    xi = TensorInfo("x", (5, c), dtype, s_in, z_in)
    yi = TensorInfo("y", (5, c), "int16", s_out, z_out)
    g = _graph(xi, yi, attrs, consts)
    lo, hi = ACTIVATION_DTYPES[dtype]
    xq = rng.integers(lo, hi + 1, size=(6, 5, c)).astype(dtype)
    xq[0, 0] = z_in  # constant row
    xq[0, 1, ::2], xq[0, 1, 1::2] = lo, hi
    xq[0, 2] = z_in
    xq[0, 2, 3] = z_in + 2
    x_real = s_in * (xq.astype(np.float64) - z_in)
    ref = F.layer_norm(torch.from_numpy(x_real), (c,), torch.from_numpy(gamma.astype(np.float64)),
                       torch.from_numpy(beta.astype(np.float64)), eps).numpy()
    err = np.abs(run(g, xq).astype(np.float64) - (ref / s_out + z_out))
    assert err.max() <= 0.51, f"max error {err.max():.4f} LSB"


@pytest.mark.parametrize("act_bits", [8, 16])
@pytest.mark.parametrize("shape,normalized", [((6, 20), (20,)), ((4, 3, 5), (3, 5))])
def test_layer_norm_matches_float_after_quantize(act_bits: int, shape, normalized) -> None:
    """The whole path (capture, calibrate, lower) on nn.LayerNorm vs float on the dequantized
    input, clamped to the output range: one output rounding (0.5 LSB) plus the integer op's
    ~1e-3 LSB. (A row only a few input steps wide normalises to other values than its float
    original: the reference is the float op on the same integer input.) Two trailing axes go
    through free reshapes."""
    torch.manual_seed(0)
    module = nn.LayerNorm(normalized)
    with torch.no_grad():
        module.weight.uniform_(-1.5, 1.5)
        module.bias.uniform_(-0.5, 0.5)
    x = torch.randn((64, *shape)) * torch.rand((64,) + (1,) * len(shape)) * 3
    cfg = intquant.Config(act_bits=act_bits, calibration="minmax", bias_correction=False)
    q = intquant.quantize(module, x, cfg, progress=False)
    assert {op.kind for op in q.graph.ops} <= {"layer_norm", "reshape"}
    x_int = q.quantize_input(x.numpy())
    info = q.input_info
    x_deq = torch.from_numpy(info.scale * (x_int.astype(np.float64) - info.zero_point))
    with torch.no_grad():
        ref = F.layer_norm(x_deq, normalized, module.weight.double(), module.bias.double(),
                           module.eps).detach().numpy()
    out = q.output_info
    lo, hi = ACTIVATION_DTYPES[out.dtype]
    ref_q = np.clip(ref / out.scale + out.zero_point, lo, hi)
    err = np.abs(q.run(x_int).astype(np.float64) - ref_q)
    assert err.max() <= 0.52, f"max error {err.max():.3f} LSB"


# ---- (b) validation ---------------------------------------------------------------------------


def _valid_graph(dtype: str = "int8", c: int = 6, eps_shift: int = 2) -> IntGraph:
    b = IF.GraphBuilder(np.random.default_rng(1), (3, c), dtype)
    IF.layer_norm_op(b, b.input, eps_term=5, eps_shift=eps_shift)
    return b.graph()


def _attr(key, value):
    return lambda g: g.ops[0].attrs.__setitem__(key, value)


def _const(key, fn):
    return lambda g: g.ops[0].consts.__setitem__(key, fn(g.ops[0].consts[key]))


VALIDATION_CASES = [
    (_attr("eps_term", 0), r"attr 'eps_term' = 0 is out of range"),
    (_attr("eps_term", 2**62), r"attr 'eps_term' = 4611686018427387904: rows of 6 int8 values"),
    (_attr("eps_shift", 3), r"attr 'eps_shift' = 3 must be even"),
    (_attr("eps_shift", 62), r"attr 'eps_shift' = 62 is out of range \[0, 60\]"),
    (_attr("shift", 0), r"attr 'shift' = 0 is out of range \[1, 44\]"),
    (_attr("shift", 45), r"attr 'shift' = 45 is out of range"),
    (lambda g: g.ops[0].attrs.update(act_min=120, act_max=100),
     r"attr 'act_min' = 120 > 'act_max' = 100"),
    (lambda g: g.ops[0].attrs.pop("shift"), "missing attr 'shift'"),
    (_const("gamma", lambda a: a[:-1]), r"const 'gamma' has 5 entries, expected C = 6"),
    (_const("beta", lambda a: a[1:]), r"const 'beta' has 5 entries, expected C = 6"),
    (_const("gamma", lambda a: a.astype(np.int64)), "const 'gamma' has dtype int64"),
    (_const("beta", lambda a: a.astype(np.int32)), "const 'beta' has dtype int32"),
    (_const("gamma", lambda a: np.full_like(a, -(2**31))), "holds INT32_MIN"),
    (_const("beta", lambda a: np.full_like(a, 2**62 + 1)), r"beta' values must lie in"),
    (lambda g: setattr(g.tensors[g.output], "shape", (3, 7)), r"has shape \(3, 7\), expected"),
    (lambda g: g.ops[0].inputs.append(g.input), r"expects 1 input\(s\), got 2"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_layer_norm_validation_messages(mutate, message: str) -> None:
    g = copy.deepcopy(_valid_graph())
    mutate(g)
    with pytest.raises(IntGraphError, match=message) as e:
        g.validate()
    assert str(e.value).startswith("op 0 'layer_norm_0' (layer_norm): "), str(e.value)


def test_layer_norm_validation_bounds_the_row_length_by_dtype() -> None:
    """int16 rows: C·(C·65535)² < 2^62 allows C = 1024, not 1025; int8 rows are far longer."""
    _valid_graph("int16", 1024, eps_shift=0)
    with pytest.raises(IntGraphError, match="rows of 1025 int16 values need"):
        _valid_graph("int16", 1025, eps_shift=0)
    _valid_graph("int8", 4096, eps_shift=0)


# ---- (c) goldens ------------------------------------------------------------------------------


def spec_in_python_ints(row: list[int], gamma: list[int], beta: list[int], eps_term: int,
                        eps_shift: int, shift: int, lo: int, hi: int) -> list[int]:
    """The docstring's formulas with Python integers, math.isqrt and int.bit_length."""
    c_len = len(row)
    total = sum(row)
    c = [c_len * v - total for v in row]
    n = (sum(v * v for v in c) << eps_shift) + eps_term
    k = (62 - n.bit_length()) // 2
    inv = (2**61 - 1) // math.isqrt(n << (2 * k))
    e = max(1, 31 - k - eps_shift // 2)
    u = [(v * inv + 2 ** (e - 1)) >> e for v in c]
    return [min(hi, max(lo, (ui * gi + bi) >> shift)) for ui, gi, bi in zip(u, gamma, beta,
                                                                             strict=True)]


def test_layer_norm_golden_worked_by_hand() -> None:
    """x = [0, 2] (int8, C = 2), eps_term 1, eps_shift 0, gamma 3·2^28, beta 2^28 (+ the half),
    shift 30: S = 2, c = [−2, 2], Q = 8, n = 9, k = (62 − 4) div 2 = 29, e = 31 − 29 = 2,
    R = isqrt(9·2^58) = 3·2^29,
    inv = (2^61 − 1) div (3·2^29) = 1431655765, u = (∓2·1431655765 + 2) >> 2
    = [−715827882, 715827883] (≈ ∓2^30·2/3); out = (u·3·2^28 + 2^28 + 2^29) >> 30
    = floor(3u/4 + 0.75) = [−536870911, 536870913] → clamped to int16: [−32768, 32767];
    with gamma 3: floor((3u + 2^28 + 2^29)/2^30) = floor(∓2 + 0.75 ∓ 1e-9) = [−2, 2]."""
    xi = TensorInfo("x", (2,), "int8", 1.0, 0)
    yi = TensorInfo("y", (2,), "int16", 1.0, 0)
    for g_val, want in ((3 * 2**28, [-32768, 32767]), (3, [-2, 2])):
        attrs = {"eps_term": 1, "eps_shift": 0, "shift": 30, "act_min": -32768,
                 "act_max": 32767}
        consts = {"gamma": np.full(2, g_val, np.int32),
                  "beta": np.full(2, 2**28 + 2**29, np.int64)}
        got = run(_graph(xi, yi, attrs, consts), np.array([[0, 2]], np.int8))
        assert got.tolist() == [want]


def test_layer_norm_golden_python_integers() -> None:
    """Random rows, a constant row, the extremes and C = 1 against the spec in Python ints."""
    rng = np.random.default_rng(7)
    for dtype, c in (("int8", 1), ("int8", 17), ("uint8", 9), ("int16", 33), ("int16", 1024)):
        b = IF.GraphBuilder(rng, (4, c), dtype)
        IF.layer_norm_op(b, b.input)
        g = b.graph()
        lo_in, hi_in = ACTIVATION_DTYPES[dtype]
        x = IF.random_input(rng, g, 3)
        x[0, 0] = lo_in
        x[0, 1] = hi_in
        x[0, 2, ::2] = lo_in
        op = g.ops[0]
        a = op.attrs
        want = [[spec_in_python_ints([int(v) for v in row], op.consts["gamma"].tolist(),
                                     op.consts["beta"].tolist(), a["eps_term"],
                                     a["eps_shift"], a["shift"], a["act_min"], a["act_max"])
                  for row in sample]
                 for sample in x]
        assert run(g, x).tolist() == want


# ---- (d) C vs reference -----------------------------------------------------------------------


def _c_case(dtype: str) -> tuple[IntGraph, np.ndarray]:
    rng = np.random.default_rng(zlib_key("layer_norm", dtype))
    g = IF.layer_norm_graph(rng, dims=1 if dtype == "uint8" else 2, dtype=dtype)
    x = IF.random_input(rng, g, 24)
    x[0] = g.tensors[g.input].zero_point  # constant rows
    return g, x


def zlib_key(*parts: str) -> int:
    import zlib

    return zlib.crc32("/".join(parts).encode())


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_c_host_equals_reference(dtype: str, tmp_path) -> None:
    """-O2 and -O1 with ASan+UBSan, every sample == interpreter."""
    g, x = _c_case(dtype)
    assert_c_host_equals_reference(g, x, tmp_path / "c")


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_c_m0_equals_reference(dtype: str, tmp_path) -> None:
    """Cortex-M0 (unicorn, no soft-float helper linked): both square-sum paths (8-bit rows
    whose c² fit 32 bits, int16 rows that need 64-bit products)."""
    g, x = _c_case(dtype)
    assert_c_m0_equals_reference(g, x, tmp_path / "c")


# ---- (e) ONNX ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_onnx_integer_export_is_bit_exact(dtype: str) -> None:
    """The integer export (bit length, digit-by-digit square root as ONNX ops) run by ONNX
    Runtime equals the interpreter, graph optimisation on and off."""
    import onnxruntime as ort

    from intquant.onnx_export import intgraph_to_onnx

    g, x = _c_case(dtype)
    want = run(g, x)
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        so.log_severity_level = 3
        s = ort.InferenceSession(intgraph_to_onnx(g).SerializeToString(), so,
                                 providers=["CPUExecutionProvider"])
        got = s.run(None, {g.input: x})[0]
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_layer_norm_onnx_float_mode_is_layer_normalization() -> None:
    """requant="float": DQ, LayerNormalization (γ, β, eps read back from the integers), Q;
    within 1 LSB of the integer op (two roundings of values within ~1e-6 of each other)."""
    import onnxruntime as ort

    from intquant.onnx_export import intgraph_to_onnx

    g, x = _c_case("int8")
    model = intgraph_to_onnx(g, requant="float")
    assert "LayerNormalization" in {n.op_type for n in model.graph.node}
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = s.run(None, {g.input: x})[0]
    assert np.abs(got.astype(np.int64) - run(g, x).astype(np.int64)).max() <= 1

