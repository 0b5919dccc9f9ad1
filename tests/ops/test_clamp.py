"""clamp: standalone ReLU / ReLU6 / Hardtanh on raw values (src/intquant/ops/clamp.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import intgraph_factory as F
from intgraph_factory import GraphBuilder
from intquant.interpreter import run
from intquant.intgraph import TensorInfo

from .conftest import (
    assert_rejected,
    c_host_test,
    c_m0_test,
    deq,
    one_op_graph,
    onnx_export_test,
    quantize_path_test,
    random_q,
    to_t,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------

# dtype, act_min, act_max (raw bounds)
FLOAT_CASES = [("int8", -20, 60), ("uint8", 100, 200), ("int16", -3000, 12000)]


@pytest.mark.parametrize("dtype,act_min,act_max", FLOAT_CASES)
def test_clamp_matches_float_torch_exactly(dtype: str, act_min: int, act_max: int) -> None:
    """Clamping raw values is clamping real values: equal, not close (min/max do not round)."""
    rng = np.random.default_rng(16)
    b = GraphBuilder(rng, (3, 4, 5), dtype)
    c = b.clamp(b.input, act_min=act_min, act_max=act_max)
    g = b.graph()
    xq = random_q(rng, (2, 3, 4, 5), dtype)
    info = g.tensors[b.input]
    lo_r, hi_r = deq(np.array(act_min), info), deq(np.array(act_max), info)
    ref = torch.clamp(to_t(deq(xq, info)), float(lo_r), float(hi_r))
    np.testing.assert_array_equal(deq(run(g, xq), g.tensors[c]), ref.numpy())


test_clamp_matches_float_after_quantize = quantize_path_test("clamp")


# ---- (b) validation ---------------------------------------------------------------------------


def _clamp_graph():
    b = GraphBuilder(np.random.default_rng(5), (3, 4, 4), "int8")
    b.clamp(b.input, act_min=-10, act_max=60)
    return b.graph()


def _set_out(**kw):
    return F.set_tensor(1, **kw)


VALIDATION_CASES = [
    (F.set_field(0, "attrs", "act_min", 100), r"attr 'act_min' = 100 > 'act_max' = 60"),
    (F.set_field(0, "attrs", "act_max", 200), r"attr 'act_max' = 200 is out of range"),
    (F.set_field(0, "attrs", "act_min", 1.5), r"attr 'act_min' must be an integer, got 1.5"),
    (F.del_attr(0, "act_max"), "missing attr 'act_max'"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
    (_set_out(zero_point=127), "zero_point 127 must equal 't0' zero_point"),
    (_set_out(scale=1.0), "scale 1.0 must equal 't0' scale"),
    (_set_out(shape=(3, 4, 5)), r"output tensor 't1' has shape \(3, 4, 5\), expected"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_clamp_validation_messages(mutate, message: str) -> None:
    assert_rejected(_clamp_graph(), mutate, message)


def test_clamp_validation_dtype_must_match() -> None:
    """A clamp copies raw values: an int16 output of an int8 input is refused."""
    g = _clamp_graph()
    assert_rejected(g, _set_out(dtype="int16", zero_point=0), "dtype int16 must equal 't0' dtype")


# ---- (c) goldens ------------------------------------------------------------------------------

GOLDENS = [  # dtype, zero point, act_min, act_max, x, expected (worked by hand)
    ("int8", 3, -5, 50, [-128, -6, -5, 0, 50, 51, 127], [-5, -5, -5, 0, 50, 50, 50]),
    ("uint8", 128, 128, 255, [0, 127, 128, 129, 255], [128, 128, 128, 129, 255]),
    ("int16", 0, -1, 1, [-32768, -2, -1, 0, 1, 2, 32767], [-1, -1, -1, 0, 1, 1, 1]),
]


@pytest.mark.parametrize("dtype,zp,act_min,act_max,x,expected", GOLDENS)
def test_clamp_golden(dtype, zp, act_min, act_max, x, expected) -> None:
    xi = TensorInfo("x", (1, len(x)), dtype, 0.5, zp)
    yi = TensorInfo("y", (1, len(x)), dtype, 0.5, zp)
    g = one_op_graph("clamp", xi, yi, {"act_min": act_min, "act_max": act_max})
    y = run(g, np.array([[x]], dtype=dtype))
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y, [[expected]])


# ---- (d) C vs reference -----------------------------------------------------------------------

test_clamp_c_host_equals_reference = c_host_test("clamp")
test_clamp_c_m0_equals_reference = c_m0_test("clamp")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_clamp_onnx_integer_export_is_bit_exact = onnx_export_test("clamp")
