"""lut: an elementwise function as an offline table, direct for 8-bit inputs and 513-knot
linear interpolation for int16 (src/intquant/ops/lut.py)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

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
    quantize_path_test,
    random_q,
    to_t,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------


def lut_table_8bit(f, xi: TensorInfo, yi: TensorInfo) -> np.ndarray:
    codes = np.arange(-128, 128) if xi.dtype == "int8" else np.arange(256)
    real = f(to_t(xi.scale * (codes - xi.zero_point))).numpy()
    lo, hi = ACTIVATION_DTYPES[yi.dtype]
    return np.clip(np.round(real / yi.scale) + yi.zero_point, lo, hi).astype(yi.dtype)


def lut_table_16bit(f, xi: TensorInfo, yi: TensorInfo) -> np.ndarray:
    x_at = np.arange(513) * 128 - 32768  # table[i] = f at x = i·128 − 32768
    real = f(to_t(xi.scale * (x_at - xi.zero_point))).numpy()
    lo, hi = ACTIVATION_DTYPES[yi.dtype]
    return np.clip(np.round(real / yi.scale) + yi.zero_point, lo, hi).astype(np.int32)


LUT_FUNCS = {
    "sigmoid": (torch.sigmoid, 1 / 256, -128),
    "tanh": (torch.tanh, 1 / 128, 0),
    "leaky_relu": (lambda t: TF.leaky_relu(t, 0.1), 0.05, -100),
}


@pytest.mark.parametrize("fname", list(LUT_FUNCS))
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_lut_matches_float_torch_8bit(fname: str, dtype: str) -> None:
    """The table holds the rounded function at every code: |error| <= 0.5 LSB."""
    f, s_out, z_out = LUT_FUNCS[fname]
    xi = TensorInfo("x", (2, 50), dtype, f32(0.06), 10 if dtype == "int8" else 128)
    yi = TensorInfo("y", (2, 50), "int8", f32(s_out), z_out)
    g = one_op_graph(
        "lut", xi, yi, {"act_min": -128, "act_max": 127}, {"table": lut_table_8bit(f, xi, yi)}
    )
    xq = random_q(np.random.default_rng(17), (3, 2, 50), dtype)
    ref = f(to_t(deq(xq, xi))).numpy()
    assert_within_lsb(run(g, xq), ref, yi, tol=0.5 + 1e-9)


@pytest.mark.parametrize(
    "fname,s_out,max_f2",
    [("sigmoid", 2**-15, 0.0963), ("tanh", 2**-15, 0.770), ("leaky_relu", 2**-11, 0.0)],
)
def test_lut_matches_float_torch_int16_interpolated(fname: str, s_out: float, max_f2: float):
    """Error bound: 1 LSB of rounding + linear interpolation error h²/8·max|f''| (h = 128·s_in).

    (leaky_relu's kink sits on a table point, x = 0, so interpolation is exact there.)
    """
    f = LUT_FUNCS[fname][0]
    xi = TensorInfo("x", (4, 64), "int16", 2**-12, 0)  # inputs in [−8, 8)
    yi = TensorInfo("y", (4, 64), "int16", s_out, 0)
    g = one_op_graph(
        "lut", xi, yi, {"act_min": -32768, "act_max": 32767}, {"table": lut_table_16bit(f, xi, yi)}
    )
    xq = random_q(np.random.default_rng(18), (3, 4, 64), "int16")
    ref = f(to_t(deq(xq, xi))).numpy()
    h = 128 * xi.scale
    assert_within_lsb(run(g, xq), ref, yi, tol=1.0 + h**2 / 8 * max_f2 / s_out + 1e-9)


test_lut_matches_float_after_quantize = quantize_path_test("lut")


# ---- (b) validation ---------------------------------------------------------------------------


def _lut_graph(dtype: str):
    """A random monotone table on a (2, 5, 3) input, output clamped at 99."""
    b = GraphBuilder(np.random.default_rng(7), (2, 5, 3), dtype)
    b.lut(b.input)
    b.ops[0].attrs["act_max"] = 99
    return b.graph()


VALIDATION_8BIT = [
    (F.edit_const(0, "table", lambda t: t[:255]), "const 'table' has 255 entries, expected 256"),
    (F.cast_const(0, "table", np.int16), "const 'table' has dtype int16, expected int8"),
    (F.edit_const(0, "table", lambda t: t[None]), "const 'table' must be 1-D"),
    (F.set_field(0, "consts", "table", [0] * 256), "const 'table' must be a numpy array"),
    (F.set_field(0, "attrs", "act_min", 100), r"attr 'act_min' = 100 > 'act_max' = 99"),
    (F.set_field(0, "attrs", "act_max", 128), r"attr 'act_max' = 128 is out of range"),
    (F.set_tensor(1, shape=(2, 5, 4)), r"output tensor 't1' has shape \(2, 5, 4\), expected"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_8BIT)
def test_lut_validation_8bit(mutate, message: str) -> None:
    assert_rejected(_lut_graph("int8"), mutate, message)


def test_lut_validation_table_dtype_is_the_output_dtype() -> None:
    """uint8 → int8 lut: the 256 entries are int8 output codes, not uint8."""
    b = GraphBuilder(np.random.default_rng(7), (2, 5), "uint8")
    b.lut(b.input, out_dtype="int8")
    g = b.graph()
    assert_rejected(g, F.cast_const(0, "table", np.uint8),
                    "const 'table' has dtype uint8, expected int8")


VALIDATION_16BIT = [
    (F.set_field(0, "consts", "table", np.zeros(256, np.int32)),
     "const 'table' has 256 entries, expected 513"),
    (F.set_field(0, "consts", "table", np.full(513, 2**24, np.int32)), r"\|t\| < 2\^23"),
    (F.edit_const(0, "table", lambda t: F.set_item(t, 512, -(2**23))), r"\|t\| < 2\^23"),
    (F.cast_const(0, "table", np.int16), "const 'table' has dtype int16, expected int32"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_16BIT)
def test_lut_validation_int16(mutate, message: str) -> None:
    assert_rejected(_lut_graph("int16"), mutate, message)


# ---- (c) goldens ------------------------------------------------------------------------------


def test_lut_golden_int8_direct() -> None:
    """table[k] = (k − 128) // 2 (floor), so y = floor(x / 2), clamped to [-50, 50]."""
    table = ((np.arange(256) - 128) // 2).astype(np.int8)
    xi = TensorInfo("x", (1, 7), "int8", 1.0, 0)
    yi = TensorInfo("y", (1, 7), "int8", 0.5, 0)
    g = one_op_graph("lut", xi, yi, {"act_min": -50, "act_max": 50}, {"table": table})
    y = run(g, np.array([[[-128, -101, -3, 0, 5, 99, 127]]], dtype=np.int8))
    np.testing.assert_array_equal(y, [[[-50, -50, -2, 0, 2, 49, 50]]])


def test_lut_golden_uint8_indexes_from_zero() -> None:
    table = (255 - np.arange(256)).astype(np.uint8)  # y = 255 − x
    xi = TensorInfo("x", (1, 4), "uint8", 1.0, 128)
    yi = TensorInfo("y", (1, 4), "uint8", 1.0, 128)
    g = one_op_graph("lut", xi, yi, {"act_min": 0, "act_max": 255}, {"table": table})
    y = run(g, np.array([[[0, 1, 128, 255]]], dtype=np.uint8))
    np.testing.assert_array_equal(y, [[[255, 254, 127, 0]]])


def test_lut_golden_int16_interpolation_by_fractions() -> None:
    """Knots t[i] = i²: between knots i and i + 1 the output is t[i] + (t[i+1] − t[i])·f/128
    rounded half up (f = (x + 32768) mod 128) — exact rationals, then the clamp."""
    table = (np.arange(513) ** 2).astype(np.int32)
    xi = TensorInfo("x", (1, 8), "int16", 1.0, 0)
    yi = TensorInfo("y", (1, 8), "int16", 1.0, 0)
    g = one_op_graph("lut", xi, yi, {"act_min": -32768, "act_max": 30000}, {"table": table})
    x = [-32768, -32767, -32768 + 64, -32768 + 127, -32768 + 128 * 3 + 5, 0, 100, 32767]
    y = run(g, np.array([[x]], dtype=np.int16))[0, 0]

    def expected(v: int) -> int:
        i, f = divmod(v + 32768, 128)
        exact = i * i + Fraction((2 * i + 1) * f, 128)
        return min(int(exact + Fraction(1, 2)), 30000)  # floor(exact + 1/2): round half up

    assert [expected(v) for v in x[:4]] == [0, 0, 1, 1]  # by hand: 1/128, 64/128, 127/128
    np.testing.assert_array_equal(y, [expected(v) for v in x])


# ---- (d) C vs reference -----------------------------------------------------------------------

test_lut_c_host_equals_reference = c_host_test("lut")
test_lut_c_m0_equals_reference = c_m0_test("lut")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_lut_onnx_integer_export_is_bit_exact = onnx_export_test("lut")
