"""add: elementwise sum of two tensors, TFLM's quantized add (src/intquant/ops/add.py)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

import intgraph_factory as F
import tflm_reference as tflm
from intgraph_factory import GraphBuilder
from intquant.interpreter import run
from intquant.intgraph import TensorInfo

from .conftest import (
    assert_rejected,
    assert_within_lsb,
    c_host_test,
    c_m0_int8_fast_path_test,
    c_m0_test,
    deq,
    one_op_graph,
    onnx_export_test,
    onnx_float_mode_test,
    quantize_path_test,
    random_q,
    requant_rounding_variant,
    round_half_away,
    round_half_up,
    to_t,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype,relu,rounding",
    [
        ("int8", False, "double"),
        ("int8", True, "single"),
        ("uint8", False, "double"),
        ("int16", False, "double"),
    ],
)
def test_add_matches_float_torch(dtype: str, relu: bool, rounding: str) -> None:
    rng = np.random.default_rng(11)
    b = GraphBuilder(rng, (3, 9), dtype)
    other = b.rescale(b.input)
    y = b.add(b.input, other, rounding=rounding, relu=relu)
    g = b.graph()
    vals = run(g, random_q(rng, (4, 3, 9), dtype), return_all=True)
    ref = torch.add(
        to_t(deq(vals[b.input], g.tensors[b.input])), to_t(deq(vals[other], g.tensors[other]))
    ).numpy()
    if relu:
        ref = np.maximum(ref, 0)
    assert_within_lsb(vals[y], ref, g.tensors[y], tol=1.0)


test_add_matches_float_after_quantize = quantize_path_test("add")


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("seed", range(4))
def test_add_matches_tflm_reference(dtype: str, seed: int) -> None:
    """Bit-exact with the naive transcription of TFLM's Add (tests/tflm_reference.py)."""
    rng = np.random.default_rng(3000 + seed)
    g = F.add_graph(rng, dtype=dtype, dims=1 + seed % 2, relu=bool(seed % 2))
    x = F.random_input(rng, g, n=3)
    vals = run(g, x, return_all=True)
    op = g.ops[-1]
    a = op.attrs
    ref = tflm.add_elementwise(
        vals[op.inputs[0]].ravel(),
        vals[op.inputs[1]].ravel(),
        input1_offset=-a["a_zero_point"],
        input2_offset=-a["b_zero_point"],
        left_shift=a["left_shift"],
        input1_multiplier=a["a_multiplier"],
        input1_shift=a["a_shift"],
        input2_multiplier=a["b_multiplier"],
        input2_shift=a["b_shift"],
        output_multiplier=a["output_multiplier"],
        output_shift=a["output_shift"],
        output_offset=a["output_zero_point"],
        act_min=a["act_min"],
        act_max=a["act_max"],
    )
    np.testing.assert_array_equal(vals[op.output].ravel().astype(np.int64), np.array(ref))


# ---- (b) validation ---------------------------------------------------------------------------


def _add_graph(dtype: str = "int16"):
    """add(x, rescale(x)) on a (2, 5) input, output clamped at 100: the add is op 1."""
    b = GraphBuilder(np.random.default_rng(6), (2, 5), dtype)
    r = b.rescale(b.input)
    b.add(b.input, r)
    b.ops[1].attrs["act_max"] = 100
    return b.graph()


VALIDATION_CASES = [
    # 32768 << 16 = 2^31: overflows the int32 sum
    (F.set_field(1, "attrs", "left_shift", 16), r"attr 'left_shift' = 16 makes \(a − zero_point"),
    (F.set_field(1, "attrs", "a_shift", 1), r"attr 'a_shift' = 1 is out of range \[-31, 0\]"),
    (F.set_field(1, "attrs", "b_shift", 1), r"attr 'b_shift' = 1 is out of range \[-31, 0\]"),
    (F.set_field(1, "attrs", "output_shift", 31), r"attr 'output_shift' = 31 is out of range"),
    (F.set_field(1, "attrs", "a_multiplier", 2**31), r"attr 'a_multiplier' = 2147483648 is out"),
    (F.set_field(1, "attrs", "b_multiplier", -1), r"attr 'b_multiplier' = -1 is out of range"),
    (F.set_field(1, "attrs", "output_multiplier", -1), "attr 'output_multiplier' = -1 is out"),
    (F.set_field(1, "attrs", "a_zero_point", 1), "attr 'a_zero_point' = 1 differs from tensor"),
    (F.set_field(1, "attrs", "b_zero_point", 40000), "attr 'b_zero_point' = 40000 is out of"),
    (F.set_field(1, "attrs", "rounding", "pow2"), r"attr 'rounding' = 'pow2', expected one of"),
    (F.set_field(1, "attrs", "act_min", 32767), r"attr 'act_min' = 32767 > 'act_max'"),
    (F.del_attr(1, "output_multiplier"), "missing attr 'output_multiplier'"),
    (F.set_inputs(1, ["t0"]), r"expects 2 input\(s\), got 1"),
    (F.set_tensor(2, shape=(2, 6)), r"output tensor 't2' has shape \(2, 6\), expected \(2, 5\)"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_add_validation_messages(mutate, message: str) -> None:
    assert_rejected(_add_graph(), mutate, message)


def test_add_validation_int8_left_shift_bound() -> None:
    """int8 with |x − z| up to 148 and left shift 23: 148·2^23 > 2^30, refused."""
    g = _add_graph("int8")
    assert_rejected(g, F.set_field(1, "attrs", "left_shift", 23), "attr 'left_shift' = 23 makes")


def test_add_validation_inputs_of_different_shapes() -> None:
    b = GraphBuilder(np.random.default_rng(6), (2, 5), "int8")
    wide = b.pad(b.input, [0, 0, 0, 1])
    b.add(b.input, b.input)
    assert_rejected(b.graph(), F.set_inputs(1, ["t0", wide]),
                    r"inputs must have the same shape, got \(2, 5\) and \(2, 6\)")


# ---- (c) goldens ------------------------------------------------------------------------------


def _add_x_to_itself(dtype: str, attrs: dict, x: list[int]) -> np.ndarray:
    xi = TensorInfo("x", (len(x),), dtype, 1.0, 0)
    yi = TensorInfo("y", (len(x),), dtype, 1.0, 0)
    full = {"a_zero_point": 0, "b_zero_point": 0, "output_zero_point": 0, "rounding": "double",
            **attrs}
    g = one_op_graph("add", xi, yi, full, inputs=["x", "x"])
    return run(g, np.array([x], dtype=dtype))[0]


# left shift 20; a' = x·2^20·½ (M = 2^30, shift 0), b' = x·2^20·¼ (shift −1), so a' + b' =
# 3x·2^18; the output multiplier 2^30 with shift −19 is 2^−20: y = 3x/4.
THREE_QUARTERS = {"left_shift": 20, "a_multiplier": 2**30, "a_shift": 0, "b_multiplier": 2**30,
                  "b_shift": -1, "output_multiplier": 2**30, "output_shift": -19,
                  "act_min": -128, "act_max": 90}


def test_add_golden_three_quarters_by_hand() -> None:
    """y = 3x/4: [2, −2, 1, −6, 127] → 1.5, −1.5, 0.75, −4.5, 95.25. Double rounding (exact
    SRDHM steps, then RDBP half away from zero): [2, −2, 1, −5, 95] and the clamp at 90;
    single rounding (half up): [2, −1, 1, −4, 95] → 90."""
    x = [2, -2, 1, -6, 127]
    np.testing.assert_array_equal(_add_x_to_itself("int8", THREE_QUARTERS, x), [2, -2, 1, -5, 90])
    single = {**THREE_QUARTERS, "rounding": "single"}
    np.testing.assert_array_equal(_add_x_to_itself("int8", single, x), [2, -1, 1, -4, 90])


def test_add_golden_three_quarters_by_fractions() -> None:
    x = list(range(-128, 128))
    for rounding, rnd in (("double", round_half_away), ("single", round_half_up)):
        want = [max(-128, min(90, rnd(Fraction(3 * v, 4)))) for v in x]
        got = _add_x_to_itself("int8", {**THREE_QUARTERS, "rounding": rounding}, x)
        np.testing.assert_array_equal(got, want)


def test_add_golden_int16_sum_saturates() -> None:
    """int16, left shift 15: a' = b' = x·2^15·½ = x·2^14; the output multiplier 2^30 with
    shift −13 is 2^−14, so y = 2x, saturated to the int16 range."""
    attrs = {"left_shift": 15, "a_multiplier": 2**30, "a_shift": 0, "b_multiplier": 2**30,
             "b_shift": 0, "output_multiplier": 2**30, "output_shift": -13,
             "act_min": -32768, "act_max": 32767}
    x = [0, 1, -1, 12345, 16384, 20000, -16384, -16385, -32768]
    y = _add_x_to_itself("int16", attrs, x)
    np.testing.assert_array_equal(y, [0, 2, -2, 24690, 32767, 32767, -32768, -32768, -32768])


# ---- (d) C vs reference -----------------------------------------------------------------------

test_add_c_host_equals_reference = c_host_test("add")
test_add_c_m0_equals_reference = c_m0_test("add")
test_add_c_m0_int8_fast_path_equals_reference = c_m0_int8_fast_path_test("add")


# ---- (e) ONNX ---------------------------------------------------------------------------------


test_add_onnx_integer_export_is_bit_exact = onnx_export_test("add", requant_rounding_variant)
test_add_onnx_float_mode_within_one_lsb = onnx_float_mode_test("add")
