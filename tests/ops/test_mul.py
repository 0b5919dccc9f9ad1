"""mul: product of two activations with broadcasting, TFLM's quantized mul
(src/intquant/ops/mul.py).

Squeeze-excitation's ``x * gate`` (a per-channel (C, 1, 1) gate), same-shape products and
per-sample scalars."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

import intgraph_factory as F
from intgraph_factory import GraphBuilder
from intquant.interpreter import run
from intquant.intgraph import IntGraph, IntGraphError, Op, TensorInfo
from intquant.numerics import quantize_multiplier
from intquant.ops.registry import op_def

from ._elem import VIAS, assert_layer_matches_float
from .conftest import (
    Fn,
    assert_c_o2_and_m0_equal_reference,
    assert_rejected,
    assert_within_lsb,
    c_host_test,
    c_m0_test,
    deq,
    onnx_export_test,
    onnx_float_mode_test,
    random_q,
    round_half_away,
    round_half_up,
    to_t,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------


def _consistent_mul(b: GraphBuilder, a: str, other: str, out_scale: float, rounding: str) -> str:
    """mul with the multiplier lowering computes: s_a·s_b/s_out."""
    ai, bi = b.info(a), b.info(other)
    shape = tuple(max(x, y) for x, y in zip(ai.shape, bi.shape, strict=True))
    y = b.new_tensor(shape, ai.dtype, scale=out_scale)
    yi = b.info(y)
    m, sh = quantize_multiplier(ai.scale * bi.scale / yi.scale)
    lo, hi = b.act_range(yi.dtype, yi.zero_point, False)
    return b.op("mul", [a, other], y, {
        "a_zero_point": ai.zero_point, "b_zero_point": bi.zero_point, "output_multiplier": m,
        "output_shift": sh, "output_zero_point": yi.zero_point, "act_min": lo, "act_max": hi,
        "rounding": rounding})


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
@pytest.mark.parametrize("broadcast", ["same", "channel", "sample"])
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_mul_matches_float_torch(dtype: str, broadcast: str, rounding: str) -> None:
    """|out − a·b/s_out| <= 0.5 LSB + 2^(output_shift − 1) (double rounding: SRDHM rounds to
    a 2^output_shift LSB grid first) + the multiplier's 2^-30 relative error (< 1e-4 LSB at
    these output magnitudes): the product itself is exact."""
    rng = np.random.default_rng(21)
    b = GraphBuilder(rng, (3, 4, 5), dtype)
    other = F.operand_from(b, b.input, F.broadcast_shape(rng, (3, 4, 5), broadcast))
    ai, oi = b.info(b.input), b.info(other)
    spread = F._dtype_spread(dtype)
    y = _consistent_mul(b, b.input, other, ai.scale * oi.scale * spread, rounding)
    g = b.graph()
    vals = run(g, random_q(rng, (4, 3, 4, 5), dtype), return_all=True)
    ref = torch.mul(to_t(deq(vals[b.input], ai)), to_t(deq(vals[other], oi))).numpy()
    shift = g.ops[-1].attrs["output_shift"]
    assert shift < 0
    assert_within_lsb(vals[y], ref, g.tensors[y], tol=0.5 + 2.0 ** (shift - 1) + 1e-4)


def _se(gate: nn.Module) -> nn.Module:
    """Squeeze-excitation as torchvision writes it: x · gate(fc2(relu(fc1(avgpool(x)))))."""
    return Fn(lambda x, pool, fc1, fc2, g: x * g(fc2(torch.relu(fc1(pool(x))))),
              nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 2, 1), nn.Conv2d(2, 4, 1), gate)


def _cases() -> dict[str, tuple[nn.Module, tuple[int, ...], dict[int, float]]]:
    """name -> (module, input shape, {act_bits: max error in LSB}); tolerances are the measured
    maxima (in brackets, torch.export = ONNX) plus margin: every intermediate activation's
    rounding propagates through the product."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return {
            # [1.27, 1.55]
            "se_hardsigmoid": (_se(nn.Hardsigmoid()), (4, 5, 5), {8: 2.0, 16: 2.5}),
            # [1.99, 2.72]
            "se_sigmoid": (_se(nn.Sigmoid()), (4, 5, 5), {8: 3.0, 16: 3.5}),
            # [1.18, 1.61]
            "same_shape": (Fn(lambda x, c: x * c(x), nn.Conv1d(3, 3, 3, padding=1)), (3, 10),
                           {8: 2.0, 16: 2.5}),
        }


CASES = _cases()


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("act_bits", [8, 16])
@pytest.mark.parametrize("name", list(CASES))
def test_mul_matches_float_after_quantize(name: str, act_bits: int, via: str) -> None:
    """The layer as written, captured from torch.export and from torch.onnx's file."""
    module, shape, tol = CASES[name]
    assert_layer_matches_float(module, shape, act_bits, tol[act_bits], "mul", via)


# ---- (b) validation ---------------------------------------------------------------------------


def _mul_graph(dtype: str = "int8") -> IntGraph:
    """mul(x, gate) with a per-channel gate: op 2 (after the pool and the rescale)."""
    b = GraphBuilder(np.random.default_rng(8), (3, 4, 4), dtype)
    gate = b.rescale(b.global_avg_pool(b.input))
    F.mul(b, b.input, gate)
    return b.graph()


VALIDATION_CASES = [
    (F.set_field(2, "attrs", "output_shift", 31), r"attr 'output_shift' = 31 is out of range"),
    (F.set_field(2, "attrs", "output_multiplier", -1), "attr 'output_multiplier' = -1 is out"),
    (F.set_field(2, "attrs", "a_zero_point", 1000), "attr 'a_zero_point' = 1000 is out of"),
    (F.set_field(2, "attrs", "act_max", -129), r"attr 'act_max' = -129 is out of range"),
    (F.set_field(2, "attrs", "rounding", "floor"), r"attr 'rounding' = 'floor', expected"),
    (F.del_attr(2, "output_multiplier"), "missing attr 'output_multiplier'"),
    (F.set_inputs(2, ["t0"]), r"expects 2 input\(s\), got 1"),
    (F.set_tensor(3, shape=(3, 4, 5)), r"input a 't0' of shape \(3, 4, 4\) does not broadcast"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_mul_validation_messages(mutate, message: str) -> None:
    assert_rejected(_mul_graph(), mutate, message)


def test_mul_validation_output_shape_must_be_the_broadcast_shape() -> None:
    """gate · gate with a (3, 4, 4) output: each input broadcasts to it, but their broadcast
    shape is (3, 1, 1)."""
    g = _mul_graph()
    gate = g.ops[1].output
    assert_rejected(g, F.set_inputs(2, [gate, gate]), r"output dim 1 is 4, expected 1")


def test_mul_validation_int16_product_must_fit_int32() -> None:
    """int16 operands with zero point 20000: |x − z| reaches 52768, 52768² > 2^31 − 1."""
    b16 = GraphBuilder(np.random.default_rng(8), (3, 4), "int16")
    F.mul(b16, b16.input, b16.input)

    def zero_points_20000(g: IntGraph) -> None:
        g.tensors["t0"] = TensorInfo("t0", (3, 4), "int16", g.tensors["t0"].scale, 20000)
        g.ops[0].attrs["a_zero_point"] = 20000
        g.ops[0].attrs["b_zero_point"] = 20000

    assert_rejected(b16.graph(), zero_points_20000,
                    r"\(a − a_zero_point\)·\(b − b_zero_point\) can exceed int32")


def test_mul_validation_too_many_broadcast_levels() -> None:
    """(2, 1, 2, 1, 2) against (1, 2, 1, 2, 1): five alternating axes, one loop level each."""
    b = GraphBuilder(np.random.default_rng(9), (2, 1, 2, 1, 2), "int8")
    other = F.operand_from(b, b.input, (1, 2, 1, 2, 1))
    F.mul(b, b.input, other)
    with pytest.raises(IntGraphError, match=r"op 3 'mul_3' \(mul\): broadcasting .* needs 5 "
                                            r"loop levels; at most 4"):
        b.graph()


# ---- (c) goldens ------------------------------------------------------------------------------


def _mul_x_by_gate(x: list[list[int]], gate: list[int], attrs: dict) -> np.ndarray:
    """y = x · gate, int8, all zero points 0, the gate broadcast per channel (x (C, W), gate
    (C, 1)): the op's NumPy reference on both operands (a graph has one input)."""
    c, w = len(x), len(x[0])
    tensors = {"x": TensorInfo("x", (c, w), "int8", 1.0, 0),
               "g": TensorInfo("g", (c, 1), "int8", 1.0, 0),
               "y": TensorInfo("y", (c, w), "int8", 1.0, 0)}
    full = {"a_zero_point": 0, "b_zero_point": 0, "output_zero_point": 0, "act_min": -128,
            "act_max": 127, **attrs}
    op = Op("m", "mul", ["x", "g"], "y", full, {})
    gates = np.array([[[v] for v in gate]], np.int8)
    return op_def("mul").run(op, [np.array([x], np.int8), gates], tensors["y"])[0]


# output multiplier 2^30, shift −4: the real multiplier is 1/32 (a gate in units of 1/32).
ONE_32ND = {"output_multiplier": 2**30, "output_shift": -4}


def test_mul_golden_gate_by_hand() -> None:
    """x · gate / 32 per channel: channel 0 gate 16 (½): [3, −3, 5, 127] → 1.5, −1.5, 2.5,
    63.5 → double rounding (half away): [2, −2, 3, 64]; single (half up): [2, −1, 3, 64].
    Channel 1 gate −8 (−¼): [4, 6, −2, −128] → −1, −1.5, 0.5, 32 → double: [−1, −2, 1, 32];
    single: [−1, −1, 1, 32]."""
    x = [[3, -3, 5, 127], [4, 6, -2, -128]]
    gate = [16, -8]
    got = _mul_x_by_gate(x, gate, {**ONE_32ND, "rounding": "double"})
    np.testing.assert_array_equal(got, [[2, -2, 3, 64], [-1, -2, 1, 32]])
    got = _mul_x_by_gate(x, gate, {**ONE_32ND, "rounding": "single"})
    np.testing.assert_array_equal(got, [[2, -1, 3, 64], [-1, -1, 1, 32]])


def test_mul_golden_by_fractions() -> None:
    """Every int8 x against six gates, output multiplier 3·2^28 with shift −4 (3/128 of the
    product), from the spec in exact rationals: double rounding rounds p·m/2^31 half up (SRDHM's
    nudge), then divides by 2^4 rounding half away from zero (RDBP); single rounding rounds
    p·3/128 once, half up."""
    m, sh = 3 * 2**28, -4
    assert Fraction(m, 2**31) / 2**-sh == Fraction(3, 128)
    x = [list(range(-128, 128))] * 2
    rounders = {
        "double": lambda p: round_half_away(Fraction(round_half_up(Fraction(p * m, 2**31)),
                                                     2**-sh)),
        "single": lambda p: round_half_up(Fraction(3 * p, 128)),
    }
    for gates in ([-128, 127], [-17, 0], [1, 85]):
        for rounding, rnd in rounders.items():
            got = _mul_x_by_gate(x, gates, {"output_multiplier": m, "output_shift": sh,
                                            "rounding": rounding})
            want = [[max(-128, min(127, rnd(v * g))) for v in row]
                    for row, g in zip(x, gates, strict=True)]
            np.testing.assert_array_equal(got, want, err_msg=f"{gates} {rounding}")


# ---- (d) C vs reference -----------------------------------------------------------------------

test_mul_c_host_equals_reference = c_host_test("mul")
test_mul_c_m0_equals_reference = c_m0_test("mul")


@pytest.mark.parametrize("broadcast", ["same", "channel", "sample", "last", "random"])
def test_mul_c_m0_every_broadcast_and_int8_fast_path(broadcast: str, tmp_path) -> None:
    """Each broadcast pattern, either operand broadcast, int8 (the hoisted double-rounding row)
    and int16: host -O2 and Cortex-M0 == interpreter."""
    for i, (dtype, swap) in enumerate((("int8", False), ("int8", True), ("int16", True))):
        rng = np.random.default_rng(50 + i)
        g = F.mul_graph(rng, dims=2, dtype=dtype, broadcast=broadcast, swap=swap)
        assert_c_o2_and_m0_equal_reference(g, F.random_input(rng, g, 4), tmp_path / f"c{i}")


# ---- (e) ONNX ---------------------------------------------------------------------------------


def _rounding_variant(trial: int) -> dict:
    return {"rounding": ["double", "single", "pow2"][trial % 3]}


test_mul_onnx_integer_export_is_bit_exact = onnx_export_test("mul", _rounding_variant)
test_mul_onnx_float_mode_within_one_lsb = onnx_float_mode_test("mul")
