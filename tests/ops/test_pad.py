"""pad: constant pad with a quantized value (src/intquant/ops/pad.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as TF

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


@pytest.mark.parametrize("dtype,value", [("int8", -7), ("uint8", 200), ("int16", -1234)])
def test_pad_matches_float_torch_exactly(dtype: str, value: int) -> None:
    """pad [1, 0, 0, 2, 3, 1] over (C, H, W) with a raw value equals F.pad with its real value."""
    rng = np.random.default_rng(16)
    b = GraphBuilder(rng, (3, 4, 5), dtype)
    padded = b.pad(b.input, [1, 0, 0, 2, 3, 1], value=value)
    g = b.graph()
    xq = random_q(rng, (2, 3, 4, 5), dtype)
    info = g.tensors[b.input]
    ref = TF.pad(to_t(deq(xq, info)), (3, 1, 0, 2, 1, 0), value=float(deq(np.array(value), info)))
    np.testing.assert_array_equal(deq(run(g, xq), g.tensors[padded]), ref.numpy())


test_pad_matches_float_after_quantize = quantize_path_test("pad")


# ---- (b) validation ---------------------------------------------------------------------------


def _pad_graph(dtype: str = "int16"):
    b = GraphBuilder(np.random.default_rng(7), (2, 5, 3), dtype)
    b.pad(b.input, [0, 0, 1, 1, 0, 2])
    return b.graph()


VALIDATION_CASES = [
    (F.set_field(0, "attrs", "pads", [0, 0, 1, 1, 0]), "attr 'pads' must have 6 entries"),
    (F.set_field(0, "attrs", "pads", [0, 0, 1, 1, 0, -2]), "attr 'pads' entries must be >= 0"),
    (F.set_field(0, "attrs", "pads", [0, 0, 1, 1, 0, 1]), r"has shape \(2, 7, 5\), expected"),
    (F.set_field(0, "attrs", "value", 40000), r"attr 'value' = 40000 is out of range"),
    (F.set_field(0, "attrs", "value", 0.5), "attr 'value' must be an integer"),
    (F.del_attr(0, "value"), "missing attr 'value'"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
    (F.set_tensor(1, zero_point=5), "zero_point 5 must equal 't0' zero_point 0"),
    (F.set_tensor(1, scale=9.0), "scale 9.0 must equal 't0' scale"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_pad_validation_messages(mutate, message: str) -> None:
    assert_rejected(_pad_graph(), mutate, message)


def test_pad_validation_value_range_follows_dtype() -> None:
    assert_rejected(_pad_graph("uint8"), F.set_field(0, "attrs", "value", -1),
                    r"attr 'value' = -1 is out of range \[0, 255\]")


# ---- (c) goldens ------------------------------------------------------------------------------


def test_pad_golden_before_and_after_each_axis() -> None:
    """(1, 2, 2) padded by [c: 0, 0 | h: 1, 0 | w: 0, 2] with 9: by hand."""
    xi = TensorInfo("x", (1, 2, 2), "int8", 0.5, 3)
    yi = TensorInfo("y", (1, 3, 4), "int8", 0.5, 3)
    g = one_op_graph("pad", xi, yi, {"pads": [0, 0, 1, 0, 0, 2], "value": 9})
    y = run(g, np.array([[[[1, 2], [3, 4]]]], dtype=np.int8))
    np.testing.assert_array_equal(y, [[[[9, 9, 9, 9], [1, 2, 9, 9], [3, 4, 9, 9]]]])


def test_pad_golden_channels_of_a_1d_tensor() -> None:
    xi = TensorInfo("x", (1, 3), "uint8", 0.5, 128)
    yi = TensorInfo("y", (3, 4), "uint8", 0.5, 128)
    g = one_op_graph("pad", xi, yi, {"pads": [2, 0, 1, 0], "value": 128})
    y = run(g, np.array([[[7, 8, 255]]], dtype=np.uint8))
    np.testing.assert_array_equal(y, [[[128] * 4, [128] * 4, [128, 7, 8, 255]]])


# ---- (d) C vs reference -----------------------------------------------------------------------

test_pad_c_host_equals_reference = c_host_test("pad")
test_pad_c_m0_equals_reference = c_m0_test("pad")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_pad_onnx_integer_export_is_bit_exact = onnx_export_test("pad")
