"""prelu: PReLU with one slope per channel or one shared, TFLM's PRELU arithmetic with 31-bit
slopes and a left shift (src/intquant/ops/prelu.py)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from torch import nn

import intgraph_factory as F
from intgraph_factory import GraphBuilder
from intquant.interpreter import run
from intquant.intgraph import TensorInfo

from ._elem import VIAS, assert_layer_matches_float
from .conftest import (
    assert_c_o2_and_m0_equal_reference,
    assert_rejected,
    assert_within_lsb,
    c_host_test,
    c_m0_test,
    deq,
    one_op_graph,
    onnx_export_test,
    onnx_float_mode_test,
    random_q,
    requant_rounding_variant,
    round_half_away,
    round_half_up,
    to_t,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_prelu_matches_float_torch(dtype: str, shared: bool, rounding: str) -> None:
    """|out − prelu(x)/s_out| <= 0.5 LSB + 2^-10: the first rounding of double rounding works
    on a grid 2^left_shift (2^20 / 2^15) times finer than the input, and the 31-bit
    multipliers add < 2^-30 relative error (slopes in [-0.5, 1.5], negative ones included)."""
    rng = np.random.default_rng(31)
    b = GraphBuilder(rng, (4, 3, 5), dtype)
    slopes = np.array([0.3]) if shared else np.array([-0.45, 0.05, 0.7, 1.3])
    y = F.prelu(b, b.input, slopes=slopes, rounding=rounding)
    g = b.graph()
    xq = random_q(rng, (5, 4, 3, 5), dtype)
    ref = TF.prelu(to_t(deq(xq, g.tensors[b.input])), to_t(slopes)).numpy()
    assert_within_lsb(run(g, xq), ref, g.tensors[y], tol=0.5 + 2**-10)


def _prelu(channels: int, slopes: list[float]) -> nn.Module:
    m = nn.PReLU(channels)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(slopes))
    return m


# name -> (module, input shape); measured max error 0.498 (8 bits) / 0.500 (16 bits) LSB,
# torch.export and ONNX alike; the bound is that of test_prelu_matches_float_torch.
CASES = {
    "per_channel": (_prelu(3, [-0.3, 0.1, 0.6]), (3, 10)),
    "per_channel_2d": (_prelu(2, [0.25, -1.5]), (2, 4, 5)),
    "shared": (_prelu(1, [0.25]), (3, 10)),
}


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("act_bits", [8, 16])
@pytest.mark.parametrize("name", list(CASES))
def test_prelu_matches_float_after_quantize(name: str, act_bits: int, via: str) -> None:
    """nn.PReLU as written, captured from torch.export and from torch.onnx's file."""
    module, shape = CASES[name]
    assert_layer_matches_float(module, shape, act_bits, 0.5 + 2**-10, "prelu", via)


# ---- (b) validation ---------------------------------------------------------------------------


def _prelu_graph(dtype: str = "int8"):
    b = GraphBuilder(np.random.default_rng(7), (3, 4), dtype)
    F.prelu(b, b.input, slopes=np.array([-0.25, 0.5, 1.0]))
    return b.graph()


VALIDATION_CASES = [
    (F.set_field(0, "attrs", "left_shift", 31), r"attr 'left_shift' = 31 is out of range"),
    # int8: |x − z| up to 128 + |z|; << 24 exceeds 2^30
    (F.set_field(0, "attrs", "left_shift", 24), r"attr 'left_shift' = 24 makes \(x − zero_poi"),
    (F.set_field(0, "attrs", "pos_shift", 40), r"attr 'pos_shift' = 40 is out of range"),
    (F.set_field(0, "attrs", "pos_multiplier", -3), "attr 'pos_multiplier' = -3 is out"),
    (F.set_field(0, "attrs", "input_zero_point", 300), "attr 'input_zero_point' = 300 is out"),
    (F.set_field(0, "attrs", "rounding", "pow2"), r"attr 'rounding' = 'pow2', expected one of"),
    (F.del_attr(0, "act_max"), "missing attr 'act_max'"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
    (F.set_tensor(1, shape=(3, 5)), r"output tensor 't1' has shape \(3, 5\), expected \(3, 4\)"),
    (F.edit_const(0, "neg_multiplier", lambda m: m[:2]),
     r"consts 'neg_multiplier' \(2,\) and 'neg_shift' \(3,\) must both have 3 \(channels\)"),
    (F.edit_const(0, "neg_multiplier", lambda m: F.set_item(m, 1, -2**31)),
     r"const 'neg_multiplier' must lie in \(-2\^31, 2\^31\)"),
    (F.edit_const(0, "neg_shift", lambda s: F.set_item(s, 2, 99)),
     r"const 'neg_shift' entries must lie in"),
    (F.cast_const(0, "neg_shift", np.int64), "const 'neg_shift'"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_prelu_validation_messages(mutate, message: str) -> None:
    assert_rejected(_prelu_graph(), mutate, message)


def test_prelu_validation_shared_slope_is_valid() -> None:
    """One (multiplier, shift) pair for every channel is the shared-slope form."""
    g = _prelu_graph()
    assert_rejected(g, lambda g: g.ops[0].consts.update(
        neg_multiplier=g.ops[0].consts["neg_multiplier"][:1],
        neg_shift=g.ops[0].consts["neg_shift"][:1]), None)


# ---- (c) goldens ------------------------------------------------------------------------------

# left shift 20; pos: 2^30 (½) with shift −19 → 2^-20, so x ≥ 0 passes through (y = x);
# channel 0: slope −¼ (−2^30 with shift −21 → 2^-22); channel 1: slope 3/4 (3·2^29, −20).
GOLDEN_ATTRS = {"input_zero_point": 0, "left_shift": 20, "output_zero_point": 0,
                "pos_multiplier": 2**30, "pos_shift": -19, "act_min": -128, "act_max": 127}
GOLDEN_CONSTS = {"neg_multiplier": np.array([-2**30, 3 * 2**29], np.int32),
                 "neg_shift": np.array([-21, -20], np.int32)}


def _golden_run(x: list[list[int]], rounding: str) -> np.ndarray:
    xi = TensorInfo("x", (2, len(x[0])), "int8", 1.0, 0)
    yi = TensorInfo("y", (2, len(x[0])), "int8", 1.0, 0)
    g = one_op_graph("prelu", xi, yi, {**GOLDEN_ATTRS, "rounding": rounding}, GOLDEN_CONSTS)
    return run(g, np.array([x], np.int8))[0]


def test_prelu_golden_by_hand() -> None:
    """Channel 0 (−¼): [5, −6, −2, −128] → 5, 1.5, 0.5, 32; the sign is applied after rounding
    −x/4·(−1): double rounding of −1.5 and −0.5 is half away (−2, −1) → [5, 2, 1, 32]; single
    (half up: −1, 0) → [5, 1, 0, 32]. Channel 1 (¾): [−2, −6, 0, −128] → −1.5, −4.5, 0, −96:
    double → [−2, −5, 0, −96], single → [−1, −4, 0, −96]."""
    x = [[5, -6, -2, -128], [-2, -6, 0, -128]]
    np.testing.assert_array_equal(_golden_run(x, "double"), [[5, 2, 1, 32], [-2, -5, 0, -96]])
    np.testing.assert_array_equal(_golden_run(x, "single"), [[5, 1, 0, 32], [-1, -4, 0, -96]])


def test_prelu_golden_by_fractions() -> None:
    """Every int8 x on both channels from the spec in exact rationals: double rounding rounds
    d·|m|/2^31 half up (SRDHM) then divides by 2^-shift half away from zero (RDBP); single
    rounding rounds d·|m|·2^shift/2^31 half up; the multiplier's sign is applied after."""
    x = [list(range(-128, 128))] * 2
    for rounding in ("double", "single"):
        got = _golden_run(x, rounding)
        for c in range(2):
            m, sh = int(GOLDEN_CONSTS["neg_multiplier"][c]), int(GOLDEN_CONSTS["neg_shift"][c])
            want = []
            for v in x[c]:
                if v >= 0:
                    want.append(v)
                    continue
                d = v * 2**20
                if rounding == "double":
                    r = round_half_away(Fraction(round_half_up(Fraction(d * abs(m), 2**31)),
                                                 2**-sh))
                else:
                    r = round_half_up(Fraction(d * abs(m), 2**31) / 2**-sh)
                want.append(max(-128, min(127, -r if m < 0 else r)))
            np.testing.assert_array_equal(got[c], want, err_msg=f"{rounding} channel {c}")


# ---- (d) C vs reference -----------------------------------------------------------------------

test_prelu_c_host_equals_reference = c_host_test("prelu")
test_prelu_c_m0_equals_reference = c_m0_test("prelu")


def test_prelu_c_m0_shared_slope_and_uint8_to_int8(tmp_path) -> None:
    """The shared-slope path (one pair for every channel) and a dtype change, host and M0."""
    rng = np.random.default_rng(33)
    b = GraphBuilder(rng, (3, 2, 4), "uint8")
    F.prelu(b, b.input, slopes=np.array([-0.6]), out_dtype="int8")
    g = b.graph()
    assert_c_o2_and_m0_equal_reference(g, F.random_input(rng, g, 4), tmp_path / "c")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_prelu_onnx_integer_export_is_bit_exact = onnx_export_test("prelu", requant_rounding_variant)
test_prelu_onnx_float_mode_within_one_lsb = onnx_float_mode_test("prelu")
