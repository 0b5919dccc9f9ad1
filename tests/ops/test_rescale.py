"""rescale: change of scale, zero point and dtype (src/intquant/ops/rescale.py)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import intgraph_factory as F
from intgraph_factory import GraphBuilder
from intquant.interpreter import run
from intquant.intgraph import TensorInfo

from .conftest import (
    assert_rejected,
    assert_within_lsb,
    c_host_test,
    c_m0_test,
    one_op_graph,
    onnx_export_test,
    onnx_float_mode_test,
    random_q,
    requant_rounding_variant,
    round_half_away,
    round_half_up,
)

# ---- (a) vs float (the "float op" of a rescale is the identity on real values) ------------------


@pytest.mark.parametrize(
    "src,dst,z_in",
    [
        ("int8", "int8", None),
        ("uint8", "int8", 127.5),
        ("int8", "int16", None),
        ("int16", "int8", None),
    ],
)
def test_rescale_matches_float(src: str, dst: str, z_in: float | None) -> None:
    """Including a fractional input zero point (raw uint8 pixels normalised by mean 127.5)."""
    rng = np.random.default_rng(12)
    b = GraphBuilder(rng, (2, 10), src)
    y = b.rescale(b.input, out_dtype=dst, input_zero_point=z_in)
    g = b.graph()
    xq = random_q(rng, (5, 2, 10), src)
    xi = g.tensors[b.input]
    zin = xi.zero_point if z_in is None else z_in
    ref = xi.scale * (xq.astype(np.float64) - zin)
    assert_within_lsb(run(g, xq), ref, g.tensors[y], tol=1.0)


# ---- (b) validation ---------------------------------------------------------------------------


def _rescale_graph(dtype: str = "int8"):
    """rescale of a (2, 5) input to int8, output clamped at 100."""
    b = GraphBuilder(np.random.default_rng(6), (2, 5), dtype)
    b.rescale(b.input, out_dtype="int8")
    b.ops[0].attrs["act_max"] = 100
    return b.graph()


VALIDATION_CASES = [
    (F.set_field(0, "attrs", "left_shift", 31), r"attr 'left_shift' = 31 is out of range \[0, 30"),
    (F.set_field(0, "attrs", "input_zero_point_shifted", 2**31), "exceeding int32"),
    (F.set_field(0, "attrs", "multiplier", -1), r"attr 'multiplier' = -1 is out of range"),
    (F.set_field(0, "attrs", "multiplier", 2**31), r"attr 'multiplier' = 2147483648 is out of"),
    (F.set_field(0, "attrs", "shift", 31), r"attr 'shift' = 31 is out of range \[-31, 30\]"),
    (F.set_field(0, "attrs", "output_zero_point", 1000), "attr 'output_zero_point' = 1000"),
    (F.set_field(0, "attrs", "rounding", "pow2"), r"attr 'rounding' = 'pow2', expected one of"),
    (F.set_field(0, "attrs", "act_min", 127), r"attr 'act_min' = 127 > 'act_max' = 100"),
    (F.del_attr(0, "multiplier"), "missing attr 'multiplier'"),
    (F.set_tensor(1, shape=(2, 6)), r"output tensor 't1' has shape \(2, 6\), expected \(2, 5\)"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_rescale_validation_messages(mutate, message: str) -> None:
    assert_rejected(_rescale_graph(), mutate, message)


def test_rescale_validation_shifted_input_must_fit_int32() -> None:
    """int16 input, left shift 15: x·2^15 − zps reaches 2^31 when zps = −2^31."""
    g = _rescale_graph("int16")
    assert_rejected(g, F.set_field(0, "attrs", "input_zero_point_shifted", -(2**31)),
                    r"attrs 'left_shift' = 15 / 'input_zero_point_shifted' = -2147483648: .*"
                    "exceeding int32")


def test_rescale_validation_output_zero_point_is_the_tensors() -> None:
    g = _rescale_graph()
    z = g.tensors["t1"].zero_point
    assert_rejected(g, F.set_field(0, "attrs", "output_zero_point", z + 1),
                    f"attr 'output_zero_point' = {z + 1} differs from tensor 't1' zero_point {z}")


# ---- (c) goldens ------------------------------------------------------------------------------


def _golden(src: str, z_shifted: int, x: list[int], rounding: str) -> np.ndarray:
    """left_shift 20, multiplier 2^30 with shift −20: a real multiplier of 2^-21 on
    x·2^20 − z_shifted, i.e. (x − z_shifted/2^20) / 2; output zero point 10."""
    xi = TensorInfo("x", (len(x),), src, 1.0, 0 if src != "uint8" else 128)
    yi = TensorInfo("y", (len(x),), "int8", 1.0, 10)
    attrs = {"input_zero_point_shifted": z_shifted, "left_shift": 20, "multiplier": 2**30,
             "shift": -20, "output_zero_point": 10, "act_min": -128, "act_max": 127,
             "rounding": rounding}
    return run(one_op_graph("rescale", xi, yi, attrs), np.array([x], dtype=src))[0]


def test_rescale_golden_halves_by_hand() -> None:
    """x − 3 = [1, −1, 3, 0, −3] halved. Double rounding (SRDHM exact here, then RDBP half away
    from zero): [1, −1, 2, 0, −2]; single rounding (half up): [1, 0, 2, 0, −1]; + 10."""
    x = [4, 2, 6, 3, 0]
    np.testing.assert_array_equal(_golden("int8", 3 * 2**20, x, "double"), [11, 9, 12, 10, 8])
    np.testing.assert_array_equal(_golden("int8", 3 * 2**20, x, "single"), [11, 10, 12, 10, 9])


def test_rescale_golden_fractional_zero_point_by_fractions() -> None:
    """uint8 pixels with zero point 127.5 (z_shifted = 255·2^19): y = (x − 127.5)/2 + 10 exactly,
    rounded half away from zero (double) or half up (single), then saturated."""
    x = [0, 1, 127, 128, 200, 255]
    for rounding, rnd in (("double", round_half_away), ("single", round_half_up)):
        want = [min(127, rnd(Fraction(2 * v - 255, 4)) + 10) for v in x]
        np.testing.assert_array_equal(_golden("uint8", 255 * 2**19, x, rounding), want)
    assert _golden("uint8", 255 * 2**19, [0, 255], "double").tolist() == [-54, 74]  # ∓63.75


# ---- (d) C vs reference -----------------------------------------------------------------------

test_rescale_c_host_equals_reference = c_host_test("rescale")
test_rescale_c_m0_equals_reference = c_m0_test("rescale")


# ---- (e) ONNX ---------------------------------------------------------------------------------


test_rescale_onnx_integer_export_is_bit_exact = onnx_export_test(
    "rescale", requant_rounding_variant)
test_rescale_onnx_float_mode_within_one_lsb = onnx_float_mode_test("rescale")
