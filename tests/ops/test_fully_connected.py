"""fully_connected: Linear on a vector with per-channel requantization
(src/intquant/ops/fully_connected.py; shared with conv in ops/_weighted.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as TF

import intgraph_factory as F
import tflm_reference as tflm
from intgraph_factory import GraphBuilder
from intquant import numerics
from intquant.interpreter import run
from intquant.intgraph import ACTIVATION_DTYPES, TensorInfo

from .conftest import (
    DTYPES,
    assert_rejected,
    assert_within_lsb,
    c_host_test,
    c_m0_test,
    deq,
    f32,
    one_op_graph,
    onnx_export_test,
    onnx_float_mode_test,
    onnx_int8_products_test,
    output_qparams,
    quantize_path_test,
    random_q,
    to_t,
    weighted_onnx_variant,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rounding", ["double", "single", "pow2"])
def test_fully_connected_matches_float_torch(dtype: str, rounding: str) -> None:
    """Float reference with the quantized weights and bias (isolates the integer arithmetic):
    < 1 LSB of requantization rounding; 16x8's 15-bit multiplier adds up to 2^-15 relative."""
    rng = np.random.default_rng(7)
    cin, cout = 20, 7
    xq = random_q(rng, (16, cin), dtype)
    zx = {"int8": -3, "uint8": 130, "int16": 0}[dtype]
    xi = TensorInfo("x", (cin,), dtype, f32(2.0**-5 if dtype != "int16" else 2.0**-12), zx)
    w = rng.normal(size=(cout, cin))
    if rounding == "pow2":  # power-of-two scales everywhere: the multiplier is a pure shift
        sw = 2.0 ** np.ceil(np.log2(np.abs(w).max(axis=1) / 127))
    else:
        sw = np.array([f32(v) for v in np.abs(w).max(axis=1) / 127])
    wq = np.round(w / sw[:, None]).astype(np.int8)
    acc_bits = 64 if dtype == "int16" else 32
    bq = np.round(rng.normal(size=cout) / (xi.scale * sw)).astype(f"int{acc_bits}")
    ref = (TF.linear(to_t(deq(xq, xi)), to_t(sw[:, None] * wq), to_t(xi.scale * sw * bq))).numpy()
    s_out, z_out = output_qparams(ref, dtype)
    if rounding == "pow2":
        s_out = 2.0 ** np.ceil(np.log2(s_out))
        z_out = (
            z_out if dtype == "int16" else int(np.clip(round(-128 - ref.min() / s_out), -128, 127))
        )
        z_out = z_out if dtype != "uint8" else int(np.clip(round(-ref.min() / s_out), 0, 255))
        e = np.round(np.log2(xi.scale * sw / s_out)).astype(np.int32)
        m, sh = np.full(cout, 2**30, dtype=np.int32), (e + 1).astype(np.int32)
    else:
        m, sh = numerics.quantize_multipliers(xi.scale * sw / s_out)
    yi = TensorInfo("y", (cout,), dtype, float(s_out), z_out)
    lo, hi = ACTIVATION_DTYPES[dtype]
    attrs = {
        "input_zero_point": zx,
        "output_zero_point": z_out,
        "act_min": lo,
        "act_max": hi,
        "acc_bits": acc_bits,
        "rounding": rounding,
    }
    g = one_op_graph(
        "fully_connected", xi, yi, attrs, {"weight": wq, "bias": bq, "multiplier": m, "shift": sh}
    )
    assert_within_lsb(run(g, xq), ref, yi, tol=1.0 if dtype != "int16" else 2.0)


test_fully_connected_matches_float_after_quantize = quantize_path_test("fully_connected")


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("seed", range(4))
def test_fully_connected_matches_tflm_reference(dtype: str, seed: int) -> None:
    """Bit-exact with the naive transcription of TFLM's FullyConnected (per channel; 16x8)."""
    rng = np.random.default_rng(2000 + seed)
    g = F.fully_connected_graph(rng, dtype=dtype, cin=int(rng.integers(8, 40)), cout=6)
    x = F.random_input(rng, g, n=5)
    op = g.ops[0]
    a = op.attrs
    ref = tflm.fully_connected_per_channel(
        x,
        op.consts["weight"],
        op.consts["bias"],
        op.consts["multiplier"],
        op.consts["shift"],
        input_offset=-a["input_zero_point"],
        output_offset=a["output_zero_point"],
        act_min=a["act_min"],
        act_max=a["act_max"],
        int16x8=a["acc_bits"] == 64,
    )
    np.testing.assert_array_equal(run(g, x).astype(np.int64), np.array(ref))


# ---- (b) validation ---------------------------------------------------------------------------


def _fc_graph():
    """fully_connected 8 → 6, int8, acc_bits 32."""
    b = GraphBuilder(np.random.default_rng(4), (8,), "int8")
    b.fully_connected(b.input, 6)
    return b.graph()


VALIDATION_CASES = [
    (F.edit_const(0, "bias", lambda b: b[:, None]), "const 'bias' must be 1-D"),
    (F.edit_const(0, "bias", lambda b: b[:5]), "const 'bias' has 5 entries, expected Cout = 6"),
    (F.edit_const(0, "weight", lambda w: w[:, :7]), r"const 'weight' shape \(6, 7\): dim 1 must"),
    (F.edit_const(0, "weight", lambda w: w[None]), "const 'weight' must be 2-D"),
    (F.cast_const(0, "weight", np.int32), "const 'weight' has dtype int32, expected int8 or int16"),
    (F.edit_const(0, "multiplier", lambda m: -m), "const 'multiplier' values must be in"),
    (F.edit_const(0, "shift", lambda s: s * 0 + 31), r"const 'shift' values must be in \[-31, 30"),
    (F.edit_const(0, "bias", lambda b: F.set_item(b, 0, 2**31 - 1)), "accumulator bound"),
    (F.set_field(0, "attrs", "acc_bits", 16), "attr 'acc_bits' = 16, expected 32 or 64"),
    (F.set_field(0, "attrs", "rounding", "pow2"), "rounding 'pow2' needs every const"),
    (F.set_field(0, "attrs", "input_zero_point", 300), "attr 'input_zero_point' = 300 is out"),
    (F.set_tensor(1, shape=(7,)), r"output tensor 't1' has shape \(7,\), expected \(6,\)"),
    (F.set_tensor(0, shape=(2, 4)), r"const 'weight' shape \(6, 8\): dim 1 must be Cin = 4"),
    (F.set_tensor(0, shape=()), r"input 't0' is rank 0 \(one scalar per sample\)"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_fully_connected_validation_messages(mutate, message: str) -> None:
    assert_rejected(_fc_graph(), mutate, message)


# ---- (c) goldens ------------------------------------------------------------------------------

WEIGHT = np.array([[1, 2, 3], [-1, 0, 1]], dtype=np.int8)


def _golden(dtype: str, x: list[list[int]], rounding: str = "double", zx: int = 1, zy: int = -5):
    """W = [[1, 2, 3], [−1, 0, 1]], bias [0, 10], multiplier 2^30 with shift 0 (real ½)."""
    acc_bits = 64 if dtype == "int16" else 32
    zx, zy = (0, 0) if dtype == "int16" else (zx, zy)
    xi = TensorInfo("x", (3,), dtype, 1.0, zx)
    yi = TensorInfo("y", (2,), dtype, 1.0, zy)
    lo, hi = ACTIVATION_DTYPES[dtype]
    attrs = {"input_zero_point": zx, "output_zero_point": zy, "act_min": lo, "act_max": hi,
             "acc_bits": acc_bits, "rounding": rounding}
    consts = {"weight": WEIGHT, "bias": np.array([0, 10], dtype=f"int{acc_bits}"),
              "multiplier": np.full(2, 2**30, np.int32), "shift": np.zeros(2, np.int32)}
    g = one_op_graph("fully_connected", xi, yi, attrs, consts)
    return run(g, np.array(x, dtype=dtype))


def test_fully_connected_golden_by_hand() -> None:
    """Input zero point 1, output −5. x = [2, −1, 4]: x − 1 = [1, −2, 3], acc = [6, 12] → [3, 6];
    x = [1, 1, 1]: acc = bias = [0, 10] → [0, 5]; x = [4, 1, 1]: acc = [3, 7] → 1.5, 3.5 round
    half up (SRDHM's tie) → [2, 4]. Minus 5."""
    y = _golden("int8", [[2, -1, 4], [1, 1, 1], [4, 1, 1]])
    np.testing.assert_array_equal(y, [[-2, 1], [-5, 0], [-3, -1]])


def test_fully_connected_golden_rounding_modes_on_ties() -> None:
    """acc = ±7, real ½: double rounding (SRDHM half up) 4 / −3; pow2 (a shift by one, half
    away from zero) 4 / −4; 16x8 (reduced multiplier 2^14, (acc·2^14 + 2^14) >> 15) 4 / −3."""
    x = [[7, 0, 0], [-7, 0, 0]]  # zero points 0: acc = [±7, ∓7 (+10 for channel 1)]
    np.testing.assert_array_equal(_golden("int8", x, zx=0, zy=0)[:, 0], [4, -3])
    np.testing.assert_array_equal(_golden("int8", x, "pow2", zx=0, zy=0)[:, 0], [4, -4])
    np.testing.assert_array_equal(_golden("int16", x)[:, 0], [4, -3])
    np.testing.assert_array_equal(_golden("int16", x)[:, 1], [2, 9])  # 3/2 → 2, 17/2 → 9


# ---- (d) C vs reference -----------------------------------------------------------------------

test_fully_connected_c_host_equals_reference = c_host_test("fully_connected")
test_fully_connected_c_m0_equals_reference = c_m0_test("fully_connected")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_fully_connected_onnx_integer_export_is_bit_exact = onnx_export_test(
    "fully_connected", weighted_onnx_variant)
test_fully_connected_onnx_integer_export_uses_only_int8_products = onnx_int8_products_test(
    "fully_connected")
test_fully_connected_onnx_float_mode_within_one_lsb = onnx_float_mode_test("fully_connected")
