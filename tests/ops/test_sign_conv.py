"""sign_conv: an 8/16-bit conv (or linear) whose output is the sign of the accumulator against
a per-channel threshold, packed into bits (src/intquant/ops/sign_conv.py). Reference against
exact float64 PyTorch on x − z, goldens, validation, C (the offset-binary 8-bit path and the
portable path), ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import intgraph_factory as Fac
from intquant.interpreter import run
from intquant.intgraph import IntGraph, Op, TensorInfo

from .binary_helpers import float_conv
from .conftest import (
    assert_c_o2_and_m0_equal_reference,
    assert_rejected,
    c_host_test,
    c_m0_test,
    onnx_export_test,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(24))
def test_sign_conv_matches_float_conv_exactly(seed):
    """acc = float64 conv of (x − z) with zero padding (padding holds the zero point: real 0);
    +1 where acc ≥ threshold. Vectors (Linear), 1-D and 2-D, depthwise; int8/uint8/int16
    inputs; int8 and int16 weights."""
    rng = np.random.default_rng(seed)
    dims, dtype = seed % 3, ("int8", "uint8", "int16")[(seed // 3) % 3]
    w_dtype = "int16" if seed % 2 else "int8"
    depthwise = dims > 0 and seed >= 12
    g = Fac.sign_conv_graph(rng, dims=dims, dtype=dtype, w_dtype=w_dtype, depthwise=depthwise)
    op = g.ops[0]
    x = Fac.random_input(rng, g, 5)
    got = run(g, x, return_all=True)[op.output]
    xz = torch.as_tensor(x.astype(np.float64) - op.attrs["input_zero_point"])
    w = op.consts["weight"].astype(np.float64)
    if dims == 0:
        acc = F.linear(xz, torch.as_tensor(w[:, :, 0, 0]))
    else:
        acc = float_conv(xz, w, op.attrs, groups=op.attrs["groups"])
    thr = op.consts["threshold"].astype(np.float64).reshape((1, -1) + (1,) * (acc.dim() - 2))
    expected = np.where(acc.numpy() >= thr, 1, -1)
    np.testing.assert_array_equal(got, expected)


# ---- (c) goldens ------------------------------------------------------------------------------


def golden_graph(dtype: str = "int8") -> IntGraph:
    """x (1, 4), zero point 2, kernel [1, −2, 1], padding 1 (padded taps hold 2: real 0).
    x − z = [1, −2, 0, 3], worked out per position:
      o0: 0·1 + 1·(−2) + (−2)·1 = −4;  o1: 1 + 4 + 0 = 5;  o2: −2 + 0 + 3 = 1;  o3: 0 − 6 + 0 = −6.
    Threshold 1: [−1, +1, +1, −1]."""
    t = {"x": TensorInfo("x", (1, 4), dtype, 0.1, 2), "y": TensorInfo("y", (1, 4), "bit", 1.0, 0),
         "u": TensorInfo("u", (1, 4), "int8", 1.0, 0)}
    attrs = {"stride": [1, 1], "padding": [0, 1, 0, 1], "dilation": [1, 1], "groups": 1,
             "input_zero_point": 2}
    consts = {"weight": np.array([[[[1, -2, 1]]]], np.int8),
              "threshold": np.array([1], np.int32)}
    ops = [Op("c", "sign_conv", ["x"], "y", attrs, consts), Op("u", "unpack_bits", ["y"], "u")]
    return IntGraph(t, ops, "x", "u").validate()


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_sign_conv_golden(dtype):
    """The same values in every input dtype (uint8's C path, offset binary: the c_host test)."""
    g = golden_graph(dtype)
    x = np.array([[[3, 0, 2, 5]]], dtype)
    np.testing.assert_array_equal(run(g, x), [[[-1, 1, 1, -1]]])


# ---- (b) validation ---------------------------------------------------------------------------



@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (Fac.set_tensor(1, dtype="int8"), "output 'y' must be a 'bit' tensor"),
        (Fac.set_field(0, "consts", "weight", np.full((1, 1, 1, 3), 2**15 - 1, np.int16)),
         "accumulator bound .* >= 2\\^31"),
        (Fac.set_field(0, "attrs", "input_zero_point", 0), "differs from tensor 'x'"),
        (Fac.set_field(0, "consts", "threshold", np.zeros(2, np.int32)), "Cout = 1"),
        (Fac.cast_const(0, "threshold", np.int64),
         "const 'threshold' has dtype int64, expected int32"),
        (Fac.set_field(0, "attrs", "groups", 2), "attr 'groups' = 2 must divide Cin = 1"),
        (Fac.del_attr(0, "stride"), "missing attr 'stride'"),
    ],
)
def test_sign_conv_validation_names_the_field(mutate, message):
    assert_rejected(golden_graph("int16"), mutate, message, op_index=0)


# ---- (d) C vs reference -----------------------------------------------------------------------

test_sign_conv_c_host_equals_reference = c_host_test("sign_conv")
test_sign_conv_c_m0_equals_reference = c_m0_test("sign_conv")



@pytest.mark.parametrize(("dtype", "w_dtype", "dims"), [("int8", "int8", 2), ("int16", "int16", 0)])
def test_sign_conv_c_m0_fast8_and_portable_equal_reference(dtype, w_dtype, dims,
                                                          tmp_path):
    """8-bit inputs with int8 weights take the offset-binary path (uint8 inputs: the c_host test and
    the chains of tests/test_c_backend.py); int16 the portable one. Both with a grouped and a
    depthwise layer."""
    rng = np.random.default_rng(7)
    b = Fac.GraphBuilder(rng, (6, 7, 6) if dims == 2 else (40,), dtype)
    if dims == 0:
        t = b.sign_conv(b.input, 37, w_dtype=w_dtype)
        u = b.unpack_bits(t)
        t = b.sign_conv(b.reshape(u, (37, 1)), 37, (1, 1), groups=37)  # depthwise, int8 in
    else:
        t = b.sign_conv(b.input, 36, (3, 3), (1, 2), (1, 1, 2, 0), (1, 1), w_dtype=w_dtype,
                        groups=3)  # grouped: 2 inputs, 12 outputs per group
        u = b.unpack_bits(t)
        t = b.sign_conv(u, 72, (3, 3), (1, 1), (1, 1, 1, 1), groups=36)  # depthwise x2
    b.unpack_bits(t)
    g = b.graph()
    assert_c_o2_and_m0_equal_reference(g, Fac.random_input(rng, g, 6), tmp_path / "c")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_sign_conv_onnx_integer_export_is_bit_exact = onnx_export_test("sign_conv")
