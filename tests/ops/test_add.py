"""add: elementwise sum of two tensors, TFLM's quantized add (src/intquant/ops/add.py)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

import intgraph_factory as F
import intquant
import tflm_reference as tflm
from intgraph_factory import GraphBuilder
from intquant.interpreter import run
from intquant.intgraph import ACTIVATION_DTYPES, IntGraph, Op, TensorInfo
from intquant.intgraph.check import max_abs_offset
from intquant.numerics import quantize_multiplier
from intquant.ops.add import add_left_shift
from intquant.ops.registry import op_def

from ._elem import VIAS, assert_layer_matches_float, error_lsb
from .conftest import (
    Fn,
    assert_c_host_equals_reference,
    assert_c_m0_equals_reference,
    assert_c_o2_and_m0_equal_reference,
    assert_onnx_integer_export_bit_exact,
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


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
@pytest.mark.parametrize("broadcast", ["same", "channel", "sample", "random"])
@pytest.mark.parametrize("subtract", [False, True])
def test_add_matches_float_torch_sub_and_broadcast(dtype: str, broadcast: str,
                                                   subtract: bool) -> None:
    """a ± b with b broadcast (per channel, per sample, random axes) or a broadcast (swapped):
    the bound of the same-shape add (1 LSB: three roundings of values far finer than the
    output LSB)."""
    rng = np.random.default_rng(12)
    for swap in (False, True):
        g = F.add_broadcast_graph(rng, dims=2, dtype=dtype, broadcast=broadcast,
                                  subtract=subtract, swap=swap)
        op = g.ops[-1]
        vals = run(g, F.random_input(rng, g, 4), return_all=True)
        a, b = (to_t(deq(vals[t], g.tensors[t])) for t in op.inputs)
        ref = (torch.sub(a, b) if subtract else torch.add(a, b)).numpy()
        assert_within_lsb(vals[op.output], ref, g.tensors[op.output], tol=1.0)


def _sub_cases() -> dict[str, tuple[nn.Module, tuple[int, ...], dict[int, float]]]:
    """name -> (module, input shape, {act_bits: max error in LSB}): measured maxima in the
    comments (torch.export = ONNX), tolerances with margin; the intermediate activations'
    roundings propagate through the sum."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return {
            # [0.76, 0.98]
            "sub_same_shape": (Fn(lambda x, c: x - c(x), nn.Conv1d(3, 3, 3, padding=1)),
                               (3, 10), {8: 1.5, 16: 1.5}),
            # [1.00, 1.03]: x minus its per-channel mean
            "sub_channel_mean": (Fn(lambda x, p: x - p(x), nn.AdaptiveAvgPool1d(1)), (3, 10),
                                 {8: 1.5, 16: 1.5}),
            # [1.59, 1.49]
            "add_channel_broadcast": (Fn(lambda x, c, p: c(x) + p(x), nn.Conv1d(3, 3, 1),
                                         nn.AdaptiveAvgPool1d(1)), (3, 10), {8: 2.0, 16: 2.0}),
            "rsub_2d_channel": (Fn(lambda x, p: p(x) - x, nn.AdaptiveAvgPool2d(1)), (2, 4, 4),
                                {8: 1.5, 16: 1.5}),
        }


SUB_CASES = _sub_cases()


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("act_bits", [8, 16])
@pytest.mark.parametrize("name", list(SUB_CASES))
def test_add_matches_float_after_quantize_sub_and_broadcast(name: str, act_bits: int,
                                                            via: str) -> None:
    """a − b and broadcast sums of two activations as written, captured from torch.export and
    from torch.onnx's file."""
    module, shape, tol = SUB_CASES[name]
    assert_layer_matches_float(module, shape, act_bits, tol[act_bits], "add", via)


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
    # a negative b_multiplier is a subtraction; its magnitude is still a Q31 multiplier
    (F.set_field(1, "attrs", "b_multiplier", -2**31), r"attr 'b_multiplier' = -2147483648 is out"),
    (F.set_field(1, "attrs", "output_multiplier", -1), "attr 'output_multiplier' = -1 is out"),
    (F.set_field(1, "attrs", "a_zero_point", 1), "attr 'a_zero_point' = 1 differs from tensor"),
    (F.set_field(1, "attrs", "b_zero_point", 40000), "attr 'b_zero_point' = 40000 is out of"),
    (F.set_field(1, "attrs", "rounding", "pow2"), r"attr 'rounding' = 'pow2', expected one of"),
    (F.set_field(1, "attrs", "act_min", 32767), r"attr 'act_min' = 32767 > 'act_max'"),
    (F.del_attr(1, "output_multiplier"), "missing attr 'output_multiplier'"),
    (F.set_inputs(1, ["t0"]), r"expects 2 input\(s\), got 1"),
    (F.set_tensor(2, shape=(2, 6)), r"input a 't0' of shape \(2, 5\) does not broadcast to the "
                                    r"output shape \(2, 6\)"),
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
                    r"input b 't1' of shape \(2, 6\) does not broadcast to the output shape "
                    r"\(2, 5\) \(same rank, each dim equal or 1\)")


def test_add_validation_output_shape_must_be_the_broadcast_shape() -> None:
    """pool(x) + pool(x) with a (3, 4, 4) output: each input broadcasts to it, but their
    broadcast shape is (3, 1, 1)."""
    b = GraphBuilder(np.random.default_rng(6), (3, 4, 4), "int8")
    p = b.global_avg_pool(b.input)
    F.add_broadcast(b, b.input, p)
    assert_rejected(b.graph(), F.set_inputs(1, [p, p]), r"output dim 1 is 4, expected 1")


def test_add_validation_broadcast_rank_must_match() -> None:
    """No rank extension: a (3,) operand against (3, 4) is refused (broadcasting never reaches
    across the batch axis)."""
    b = GraphBuilder(np.random.default_rng(6), (3, 4), "int8")
    flat = b.fully_connected(b.flatten(b.input), 3)
    b.add(b.input, b.input)
    assert_rejected(b.graph(), F.set_inputs(2, ["t0", flat]),
                    r"input b 't2' of shape \(3,\) does not broadcast")


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


def test_add_golden_subtraction_by_fractions() -> None:
    """x − x with THREE_QUARTERS' magnitudes and b_multiplier negated: a' = x·2^19,
    b' = −x·2^18 (exact: the sign applied after the rounding), y = round(x/4)."""
    x = list(range(-128, 128))
    for rounding, rnd in (("double", round_half_away), ("single", round_half_up)):
        attrs = {**THREE_QUARTERS, "b_multiplier": -2**30, "rounding": rounding}
        want = [max(-128, min(90, rnd(Fraction(v, 4)))) for v in x]
        np.testing.assert_array_equal(_add_x_to_itself("int8", attrs, x), want)


def test_add_golden_channel_broadcast_by_hand() -> None:
    """a (2, 3) minus a per-channel b (2, 1), THREE_QUARTERS' magnitudes: y = a/2 − b/4.
    Channel 0, b = 6: [3, 4, −1] → 0, 0.5, −2 → double (half away) [0, 1, −2], single (half
    up) [0, 1, −2]; channel 1, b = −2: [−2, 1, 127] → −0.5, 1, 64 → double [−1, 1, 64],
    single [0, 1, 64]."""
    tensors = {"a": TensorInfo("a", (2, 3), "int8", 1.0, 0),
               "b": TensorInfo("b", (2, 1), "int8", 1.0, 0),
               "y": TensorInfo("y", (2, 3), "int8", 1.0, 0)}
    a_ = np.array([[[3, 4, -1], [-2, 1, 127]]], np.int8)
    b_ = np.array([[[6], [-2]]], np.int8)
    for rounding, want in (("double", [[0, 1, -2], [-1, 1, 64]]),
                           ("single", [[0, 1, -2], [0, 1, 64]])):
        attrs = {**THREE_QUARTERS, "b_multiplier": -2**30, "a_zero_point": 0, "b_zero_point": 0,
                 "output_zero_point": 0, "rounding": rounding, "act_max": 127}
        op = Op("s", "add", ["a", "b"], "y", attrs, {})
        got = op_def("add").run(op, [a_, b_], tensors["y"])  # one-input graphs: the reference
        np.testing.assert_array_equal(got[0], want, err_msg=rounding)


# ---- (d) C vs reference -----------------------------------------------------------------------

test_add_c_host_equals_reference = c_host_test("add")
test_add_c_m0_equals_reference = c_m0_test("add")
test_add_c_m0_int8_fast_path_equals_reference = c_m0_int8_fast_path_test("add")


@pytest.mark.parametrize("broadcast", ["same", "channel", "sample", "last", "random"])
def test_add_c_m0_sub_and_broadcast(broadcast: str, tmp_path) -> None:
    """Each broadcast pattern with either operand broadcast, add and sub, the int8 row (the
    hoisted double rounding) and the generic one (int16, single rounding): host -O2 and
    Cortex-M0 == interpreter."""
    variants = (("int8", False, False, "double"), ("int8", True, True, "double"),
                ("int16", True, False, "single"), ("uint8", False, True, "double"))
    for i, (dtype, sub, swap, rounding) in enumerate(variants):
        rng = np.random.default_rng(60 + i)
        g = F.add_broadcast_graph(rng, dims=2, dtype=dtype, broadcast=broadcast, subtract=sub,
                                  swap=swap, rounding=rounding)
        assert_c_o2_and_m0_equal_reference(g, F.random_input(rng, g, 4), tmp_path / f"c{i}")


# ---- (e) ONNX ---------------------------------------------------------------------------------


test_add_onnx_integer_export_is_bit_exact = onnx_export_test("add", requant_rounding_variant)
test_add_onnx_float_mode_within_one_lsb = onnx_float_mode_test("add")


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_add_onnx_integer_export_sub_and_broadcast_is_bit_exact(dtype: str) -> None:
    rng = np.random.default_rng(70)
    for trial, broadcast in enumerate(["same", "channel", "sample", "last", "random"]):
        g = F.add_broadcast_graph(rng, dims=1 + trial % 2, dtype=dtype, broadcast=broadcast,
                                  rounding=["double", "single"][trial % 2])
        assert_onnx_integer_export_bit_exact(g, F.random_input(rng, g, 16), (trial, broadcast))


# ---- (f) mixed widths: int8 and int16 inputs and output in every combination -----------------
# Per-layer act_bits overrides (or attention_act_bits) put an int16 tensor next to an int8 one:
# a residual branch at 16 bits summed into an 8-bit trunk, or an 8-bit sum kept at 16 bits.

WIDTHS = ("int8", "int16")
MIXED = [(da, db, do) for da in WIDTHS for db in WIDTHS for do in WIDTHS]


def _mixed_add(b: GraphBuilder, a: str, other: str, out_dtype: str, subtract: bool,
               rounding: str) -> str:
    """a ± other into an ``out_dtype`` tensor whose range holds about the sum's: the lowering's
    constants (TFLM's common scale 2·max(s_a, s_b), add_left_shift)."""
    ai, bi = b.info(a), b.info(other)
    span = sum(t.scale * max_abs_offset(t, t.zero_point) for t in (ai, bi))
    lo, hi = ACTIVATION_DTYPES[out_dtype]
    s_out = float(np.float32(span / (hi - lo) * b.rng.uniform(1.2, 1.8)))
    y = b.new_tensor(ai.shape, out_dtype, scale=s_out)
    yi = b.info(y)
    ls = add_left_shift(ai, ai.zero_point, bi, bi.zero_point, 8 if out_dtype == "int8" else 16)
    twice_max = 2 * max(ai.scale, bi.scale)
    am, ash = quantize_multiplier(ai.scale / twice_max)
    bm, bsh = quantize_multiplier(bi.scale / twice_max)
    om, osh = quantize_multiplier(twice_max / (2**ls * yi.scale))
    return b.op("add", [a, other], y, {
        "a_zero_point": ai.zero_point, "b_zero_point": bi.zero_point, "left_shift": ls,
        "a_multiplier": am, "a_shift": ash, "b_multiplier": -bm if subtract else bm,
        "b_shift": bsh, "output_multiplier": om, "output_shift": osh,
        "output_zero_point": yi.zero_point, "act_min": lo, "act_max": hi, "rounding": rounding})


def mixed_add_graph(seed: int, da: str, db: str, do: str, subtract: bool = False,
                    rounding: str = "double") -> IntGraph:
    """x (da) ± y (db) → do, on a (3, 7) input, y = rescale(x) with its scale read as 2.5
    times the rescaled one (y's real value 2.5·x: a − y does not cancel): the add is op 1."""
    b = GraphBuilder(np.random.default_rng(seed), (3, 7), da)
    other = b.rescale(b.input, out_dtype=db)
    b.info(other).scale *= 2.5
    _mixed_add(b, b.input, other, do, subtract, rounding)
    return b.graph()


def _mbqm_error_bound(shift: int) -> float:
    """Worst |mbqm(x, M, shift) − x·M/2^31·2^shift| for shift ≤ 0: SRDHM's rounding (½ on the
    2^shift-finer grid) plus the final ½ (single rounding's one ½ is within it)."""
    assert shift <= 0
    return 0.5 + 2.0 ** (shift - 1)


def _exact_sum_codes(g: IntGraph, vals: dict[str, np.ndarray], sign: int) -> list[Fraction]:
    """(s_a·(a − z_a) ± s_b·(b − z_b)) / s_out + z_out in exact rationals, per element."""
    op = g.ops[-1]
    (ia, ib), io = (g.tensors[t] for t in op.inputs), g.tensors[op.output]
    ra, rb = (Fraction(t.scale) / Fraction(io.scale) for t in (ia, ib))
    a, b = (vals[t].ravel().tolist() for t in op.inputs)
    return [ra * (u - ia.zero_point) + sign * rb * (v - ib.zero_point) + io.zero_point
            for u, v in zip(a, b, strict=True)]


@pytest.mark.parametrize("rounding", ["double", "single"])
@pytest.mark.parametrize("subtract", [False, True])
@pytest.mark.parametrize("da,db,do", MIXED)
def test_add_mixed_widths_within_derived_bound_of_exact_sum(da: str, db: str, do: str,
                                                            subtract: bool, rounding: str) -> None:
    """Every int8 / int16 combination validates and lands within the bound the arithmetic
    gives of the exact rational a ± b: each input's mbqm errs by at most ½ + 2^(shift−1) units
    of the a' grid, which the real output multiplier scales to output LSB; the output mbqm adds
    its own; the Q31 multipliers' relative error (< 2^-31 each, two in a chain) on terms of at
    most 2^17 output LSB adds < 1e-3 LSB."""
    g = mixed_add_graph(80 + MIXED.index((da, db, do)), da, db, do, subtract, rounding)
    op = g.ops[-1]
    x = F.random_input(np.random.default_rng(81), g, 6)
    vals = run(g, x, return_all=True)
    a = op.attrs
    m_out = Fraction(a["output_multiplier"], 2**31) * Fraction(2) ** a["output_shift"]
    bound = (float((Fraction(_mbqm_error_bound(a["a_shift"]))
                    + Fraction(_mbqm_error_bound(a["b_shift"]))) * m_out)
             + _mbqm_error_bound(a["output_shift"]) + 1e-3)
    lo, hi = a["act_min"], a["act_max"]
    ref = [min(max(r, lo), hi) for r in _exact_sum_codes(g, vals, -1 if subtract else 1)]
    got = vals[op.output].ravel().tolist()
    err = max(abs(Fraction(v) - r) for v, r in zip(got, ref, strict=True))
    assert err <= bound, (float(err), bound)
    # not all saturated: the bound is exercised inside the range
    assert sum(lo < v < hi for v in got) >= len(got) // 2


def test_add_left_shift_by_hand() -> None:
    """TFLM's 20 (8-bit output) / 15 (16-bit output), lowered to the widest input's room:
    max|x − z|·2^s ≤ 2^30. int8 with z = −128: 255·2^22 ≤ 2^30, so 20 stands; int16 with
    z = 0: 2^15·2^15 = 2^30, so 15; int16 with z = 100: 32868 > 2^15, so 14."""
    def t(dtype: str, z: int) -> TensorInfo:
        return TensorInfo("t", (4,), dtype, 1.0, z)

    cases = [  # (a, b, output bits, left shift)
        (t("int8", -128), t("int8", 5), 8, 20),
        (t("uint8", 128), t("int8", 0), 8, 20),
        (t("int8", 3), t("int8", 0), 16, 15),
        (t("int16", 0), t("int8", 0), 8, 15),
        (t("int8", -7), t("int16", 0), 8, 15),
        (t("int16", 0), t("int16", 0), 8, 15),
        (t("int16", 0), t("int16", 0), 16, 15),
        (t("int8", 0), t("int16", 100), 8, 14),
    ]
    for a, b, bits, want in cases:
        assert add_left_shift(a, a.zero_point, b, b.zero_point, bits) == want, (a, b, bits)


def test_add_validation_mixed_widths_names_the_largest_shift() -> None:
    """An int8 + int16 add with int8's left shift 20: refused, naming the int16 input's room."""
    g = mixed_add_graph(90, "int8", "int16", "int8")
    assert g.ops[1].attrs["left_shift"] == 15
    assert_rejected(g, F.set_field(1, "attrs", "left_shift", 20),
                    r"attr 'left_shift' = 20 makes \(b − zero_point\) << left_shift exceed 2\^30 "
                    r"\(int32 overflow in the sum\); int16 b with zero point 0 allows at most 15")


MIXED_ONLY = [c for c in MIXED if len(set(c)) > 1]


@pytest.mark.parametrize("da,db,do", MIXED_ONLY)
def test_add_mixed_widths_c_host_and_m0_equal_reference(da: str, db: str, do: str,
                                                        tmp_path) -> None:
    """The generic row (mixed dtypes never take the int8 fast path), add then sub, double then
    single rounding: host -O2, host ASan/UBSan and Cortex-M0 == interpreter."""
    for i, (sub, rounding) in enumerate(((False, "double"), (True, "single"))):
        g = mixed_add_graph(100 + i, da, db, do, sub, rounding)
        x = F.random_input(np.random.default_rng(101), g, 8)
        assert_c_host_equals_reference(g, x, tmp_path / f"h{i}")
        assert_c_m0_equals_reference(g, x, tmp_path / f"m{i}")


@pytest.mark.parametrize("da,db,do", MIXED_ONLY)
def test_add_mixed_widths_onnx_integer_export_is_bit_exact(da: str, db: str, do: str) -> None:
    for i, (sub, rounding) in enumerate(((False, "double"), (True, "single"))):
        g = mixed_add_graph(110 + i, da, db, do, sub, rounding)
        assert_onnx_integer_export_bit_exact(g, F.random_input(np.random.default_rng(111), g, 16),
                                             (da, db, do, sub))


class _Residual(nn.Module):
    """h = relu(conv_a(x)); out = conv_c(h + conv_b(h)): a residual add of two activations."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv1d(3, 4, 3, padding=1)
        self.b = nn.Conv1d(4, 4, 1)
        self.c = nn.Conv1d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        return self.c(h + self.b(h))


@pytest.mark.parametrize("wide,ab", [("b", ("int8", "int16")), ("a", ("int16", "int8"))])
def test_add_residual_with_one_branch_at_16_bits_end_to_end(wide: str, ab: tuple[str, str],
                                                            tmp_path) -> None:
    """act_bits=16 on one layer feeding an 8-bit residual add (the branch, or the trunk the
    branch leaves): quantizes (int8's left shift 20 used to overflow the int16 input and fail
    validation), the add takes int8 and int16 with left shift 15, the output is within
    tolerance of float PyTorch on the dequantized input (measured max 1.73 / 1.81 LSB: the
    branch's and the trunk's roundings propagate through the sum and conv_c), and the C
    equals the interpreter (host -O2 and ASan/UBSan)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _Residual().eval()
    x = torch.randn((64, 3, 10), generator=torch.Generator().manual_seed(1))
    cfg = intquant.Config(calibration="minmax", bias_correction=False,
                          overrides={wide: {"act_bits": 16}})
    q = intquant.quantize(model, x, cfg, progress=False)
    (add,) = [op for op in q.graph.ops if op.kind == "add"]
    assert tuple(q.graph.tensors[t].dtype for t in add.inputs) == ab
    assert q.graph.tensors[add.output].dtype == "int8"
    assert add.attrs["left_shift"] == 15
    err = error_lsb(model, x, q)
    assert err <= 2.5, err
    xq = q.quantize_input(x[:8].numpy())
    assert_c_host_equals_reference(q.graph, xq, tmp_path / "c")
