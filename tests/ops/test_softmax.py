"""softmax: integer softmax over the last axis from an offline exp table
(src/intquant/ops/softmax.py)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

import intgraph_factory as F
from intgraph_factory import GraphBuilder
from intquant.interpreter import run
from intquant.intgraph import ACTIVATION_DTYPES, TensorInfo

from .conftest import (
    assert_rejected,
    assert_within_lsb,
    c_host_test,
    c_m0_test,
    deq,
    f32,
    one_op_graph,
    onnx_export_test,
    onnx_float_mode_test,
    quantize_path_test,
    random_q,
    to_t,
)


def softmax_exp_table(s_in: float, lut_shift: int, max_d: int) -> np.ndarray:
    """exp_table[i] = round(2^30·exp(−i·2^lut_shift·s_in)) while non-zero, then 0."""
    n = max_d // 2**lut_shift + 1
    vals = np.round(2.0**30 * np.exp(-np.arange(n) * 2**lut_shift * s_in)).astype(np.int64)
    vals = vals[: int(np.count_nonzero(vals))]
    return np.append(vals, 0).astype(np.int32)


def _attrs(lut_shift: int, out_dtype: str) -> dict:
    rng_out, z_out = (256, -128) if out_dtype == "int8" else (32768, 0)
    lo, hi = ACTIVATION_DTYPES[out_dtype]
    return {"lut_shift": lut_shift, "output_zero_point": z_out, "output_range": rng_out,
            "act_min": lo, "act_max": hi}


# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype,s_in,lut_shift,tol",
    [
        ("int8", 0.1, 0, 1.0),
        ("int8", 0.02, 0, 1.0),
        ("int16", 2**-10, 5, 2.0),
        ("int16", 2**-12, 7, 3.0),
    ],
)
def test_softmax_matches_float_torch(dtype: str, s_in: float, lut_shift: int, tol: float) -> None:
    """Measured bounds (max errors 0.50, 0.50, 1.19, 1.37 LSB here): the table's rounding and
    interpolation, and the floor of the division; row 0 is uniform (every class 1/10)."""
    out_dtype = "int8" if dtype == "int8" else "int16"
    attrs = _attrs(lut_shift, out_dtype)
    xi = TensorInfo("x", (3, 10), dtype, f32(s_in), 0)
    yi = TensorInfo("y", (3, 10), out_dtype, 1.0 / attrs["output_range"],
                    attrs["output_zero_point"])
    lo, hi = ACTIVATION_DTYPES[dtype]
    table = softmax_exp_table(xi.scale, lut_shift, hi - lo)
    g = one_op_graph("softmax", xi, yi, attrs, {"exp_table": table})
    rng = np.random.default_rng(19)
    xq = random_q(rng, (8, 3, 10), dtype)
    xq[0] = 0  # a uniform row: every class 1/10
    ref = torch.softmax(to_t(deq(xq, xi)), dim=-1).numpy()
    assert_within_lsb(run(g, xq), ref, yi, tol=tol)


test_softmax_matches_float_after_quantize = quantize_path_test("softmax")


# ---- (b) validation ---------------------------------------------------------------------------


def _softmax_graph():
    """softmax over 8 classes, int8, output clamped at 100."""
    b = GraphBuilder(np.random.default_rng(5), (3, 8), "int8")
    b.softmax(b.input)
    b.ops[0].attrs["act_max"] = 100
    return b.graph()


VALIDATION_CASES = [
    (F.edit_const(0, "exp_table", lambda t: t[1:]), r"const 'exp_table' must start at 2\^30"),
    (F.edit_const(0, "exp_table", lambda t: t[:-1]), r"must start at 2\^30 .* and end with 0"),
    (F.edit_const(0, "exp_table", lambda t: F.set_item(t, 2, t[1] + 5)), "non-increasing"),
    (F.edit_const(0, "exp_table", lambda t: t[:1]), "'exp_table' needs at least 2 entries"),
    (F.cast_const(0, "exp_table", np.int64), "const 'exp_table' has dtype int64, expected int32"),
    (F.set_field(0, "attrs", "lut_shift", 16), r"attr 'lut_shift' = 16 is out of range"),
    (F.set_field(0, "attrs", "output_range", 0), r"attr 'output_range' = 0 is out of range"),
    (F.set_field(0, "attrs", "output_range", 2**16 + 1), "attr 'output_range' = 65537"),
    (F.set_field(0, "attrs", "output_zero_point", 0), "attr 'output_zero_point' = 0 differs"),
    (F.set_field(0, "attrs", "act_min", 127), r"attr 'act_min' = 127 > 'act_max' = 100"),
    (F.del_attr(0, "lut_shift"), "missing attr 'lut_shift'"),
    (F.set_tensor(1, shape=(3, 9)), r"output tensor 't1' has shape \(3, 9\), expected \(3, 8\)"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_softmax_validation_messages(mutate, message: str) -> None:
    assert_rejected(_softmax_graph(), mutate, message)


# ---- (c) goldens ------------------------------------------------------------------------------


def _golden(x: list[list[int]], table: list[int], lut_shift: int = 0) -> np.ndarray:
    xi = TensorInfo("x", (len(x[0]),), "int8", 1.0, 0)
    yi = TensorInfo("y", (len(x[0]),), "int8", 1 / 256, -128)
    g = one_op_graph("softmax", xi, yi, _attrs(lut_shift, "int8"),
                     {"exp_table": np.array(table, dtype=np.int32)})
    return run(g, np.array(x, dtype=np.int8))


def test_softmax_golden_by_hand() -> None:
    """exp table [2^30, 2^29, 0] (e^-1 ≈ 1/2 per step, lut_shift 0; output 1/256, z = −128).
    [0, 0]: e = [2^30, 2^30], each (2·2^30·256 + 2^31) // 2^32 = 128 → 0 (real 1/2).
    [1, 0]: e = [2^30, 2^29], sum 3·2^29: 256·2/3 = 170.67 → 171 → 43; 256/3 = 85.3 → 85 → −43.
    [5, 0]: d = 5 is past the table: e = [2^30, 0] → [256 − 128, −128] saturates to 127."""
    y = _golden([[0, 0], [1, 0], [5, 0]], [2**30, 2**29, 0])
    np.testing.assert_array_equal(y, [[0, 0], [43, -43], [127, -128]])


def test_softmax_golden_interpolated_table_by_fractions() -> None:
    """lut_shift 2: d = 4i + f interpolates e = t[i] + floor((t[i+1] − t[i])·f / 4); the output
    is round-half-up(256·e/Σe) − 128, computed here with exact rationals."""
    table = [2**30, 3 * 2**27, 2**26, 0]
    rows = [[0, -1, -2, -5], [7, 0, -3, -6], [-128, -120, -127, 127]]
    y = _golden(rows, table, lut_shift=2)

    def e(d: int) -> int:
        i, f = divmod(d, 4)
        if i >= len(table) - 1:
            return 0
        return table[i] + (table[i + 1] - table[i]) * f // 4  # floor, as the spec's >>

    for row, got in zip(rows, y, strict=True):
        es = [e(max(row) - v) for v in row]
        want = [min(127, int(Fraction(256 * v, sum(es)) + Fraction(1, 2)) - 128) for v in es]
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(y[2], [-128, -128, -128, 127])  # 127 dominates: 256 → 127


# ---- (d) C vs reference -----------------------------------------------------------------------


# Full-range int16 inputs at the factory's input scales make every row one-hot; a narrower
# spread keeps the outputs varied (and the interpolated exp table in use).
C_INPUT_RANGE = {"int16": (-400, 400)}
test_softmax_c_host_equals_reference = c_host_test("softmax", C_INPUT_RANGE)
test_softmax_c_m0_equals_reference = c_m0_test("softmax", C_INPUT_RANGE)


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_softmax_onnx_integer_export_is_bit_exact = onnx_export_test("softmax")
test_softmax_onnx_float_mode_within_one_lsb = onnx_float_mode_test("softmax")


# ---- softmax along any axis (reach-transformer) -----------------------------------------------


@pytest.mark.parametrize("dtype,s_in,lut_shift,tol", [("int8", 0.1, 0, 1.0),
                                                      ("int16", 2**-10, 5, 2.0)])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_softmax_matches_float_torch_along_any_axis(dtype: str, s_in: float, lut_shift: int,
                                                    tol: float, axis: int) -> None:
    """attr ``axis``: the rows run along that axis (strided by the inner axes); the bounds of
    the last-axis test above for the same scales and tables."""
    out_dtype = "int8" if dtype == "int8" else "int16"
    attrs = {**_attrs(lut_shift, out_dtype), "axis": axis}
    xi = TensorInfo("x", (4, 5, 6), dtype, f32(s_in), 0)
    yi = TensorInfo("y", (4, 5, 6), out_dtype, 1.0 / attrs["output_range"],
                    attrs["output_zero_point"])
    lo, hi = ACTIVATION_DTYPES[dtype]
    g = one_op_graph("softmax", xi, yi, attrs,
                     {"exp_table": softmax_exp_table(xi.scale, lut_shift, hi - lo)})
    xq = random_q(np.random.default_rng(23 + axis), (6, 4, 5, 6), dtype)
    ref = torch.softmax(to_t(deq(xq, xi)), dim=axis + 1).numpy()
    assert_within_lsb(run(g, xq), ref, yi, tol=tol)


@pytest.mark.parametrize("act_bits", [8, 16])
def test_softmax_matches_float_after_quantize_along_dim_1(act_bits: int) -> None:
    """torch.softmax(x, dim=1) of (N, 5, 6) captured and lowered with attr axis 0 (non-batch),
    vs float softmax of the interpreter's own (dequantized) input: <= 1 LSB at 8 bits; at 16
    bits the bound the exp table's linear interpolation allows — with step h = 2^lut_shift·s_in
    each exp is off by a relative h²/8 at most, so a probability (<= 1, 2^15 LSB) by h²/4 of
    2^15 LSB, plus 1.5 LSB of rounding."""
    import intquant

    x = torch.randn(64, 5, 6, generator=torch.Generator().manual_seed(4)) * 2
    model = torch.nn.Softmax(dim=1).eval()
    q = intquant.quantize(model, x, intquant.Config(act_bits=act_bits, calibration="minmax"),
                          progress=False)
    (op,) = q.graph.ops
    assert op.kind == "softmax" and op.attrs["axis"] == 0
    xq = q.quantize_input(x.numpy())
    ref = torch.softmax(to_t(deq(xq, q.input_info)), dim=1).numpy()
    h = 2.0 ** op.attrs["lut_shift"] * q.input_info.scale
    tol = 1.0 if act_bits == 8 else 1.5 + 2.0**15 * h * h / 4
    assert_within_lsb(q.run(xq), ref, q.output_info, tol=tol)


@pytest.mark.parametrize("axis", [0, 1])
def test_softmax_c_host_equals_reference_along_an_inner_axis(axis: int, tmp_path) -> None:
    """The strided kernel path (inner > 1): -O2 and ASan/UBSan == interpreter."""
    from .conftest import assert_c_host_equals_reference

    rng = np.random.default_rng(40 + axis)
    g = F.softmax_graph(rng, dtype="int8", axis=axis)
    assert_c_host_equals_reference(g, F.random_input(rng, g, 16), tmp_path / "c")


@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_softmax_c_m0_equals_reference_along_an_inner_axis(dtype: str, tmp_path) -> None:
    from .conftest import assert_c_m0_equals_reference

    rng = np.random.default_rng(50)
    g = F.softmax_graph(rng, dtype=dtype, axis=1)
    assert_c_m0_equals_reference(g, F.random_input(rng, g, 8), tmp_path / "c")
