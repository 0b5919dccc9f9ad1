"""reshape: the same bytes under another shape, an alias in C (src/intquant/ops/reshape.py)."""

from __future__ import annotations

import numpy as np
import pytest

import intgraph_factory as F
from intgraph_factory import GraphBuilder
from intquant.interpreter import run
from intquant.intgraph import TensorInfo

from .conftest import (
    DTYPES,
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 30), (60,), (5, 4, 3)])
def test_reshape_matches_float_torch_exactly(dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(16)
    b = GraphBuilder(rng, (3, 4, 5), dtype)
    y = b.reshape(b.input, shape)
    g = b.graph()
    xq = random_q(rng, (2, 3, 4, 5), dtype)
    ref = to_t(deq(xq, g.tensors[b.input])).reshape(2, *shape)
    np.testing.assert_array_equal(deq(run(g, xq), g.tensors[y]), ref.numpy())


test_reshape_matches_float_after_quantize = quantize_path_test("reshape")


# ---- (b) validation ---------------------------------------------------------------------------


def _reshape_graph():
    b = GraphBuilder(np.random.default_rng(5), (3, 4, 2), "int8")
    b.reshape(b.input, (4, 6))
    return b.graph()


VALIDATION_CASES = [
    (F.set_field(0, "attrs", "shape", [7, 9]), "attr 'shape' .* different element count"),
    (F.set_field(0, "attrs", "shape", [24, 0]), "attr 'shape' entries must be >= 1"),
    (F.set_field(0, "attrs", "shape", [6, 4]), r"has shape \(4, 6\), expected \(6, 4\)"),
    (F.set_field(0, "attrs", "shape", "4x6"), "attr 'shape' must be a list of integers"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
    (F.set_tensor(1, zero_point=127), "zero_point 127 must equal 't0' zero_point"),
    (F.set_tensor(1, dtype="uint8", zero_point=128), "dtype uint8 must equal 't0' dtype int8"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_reshape_validation_messages(mutate, message: str) -> None:
    assert_rejected(_reshape_graph(), mutate, message)


# ---- (c) goldens ------------------------------------------------------------------------------


def test_reshape_golden_row_major() -> None:
    """(2, 3) → (3, 2): C order, the bytes unchanged."""
    xi = TensorInfo("x", (2, 3), "int16", 1.0, 0)
    yi = TensorInfo("y", (3, 2), "int16", 1.0, 0)
    g = one_op_graph("reshape", xi, yi, {"shape": [3, 2]})
    y = run(g, np.array([[[1, 2, 3], [4, 5, 6]], [[-1, -2, -3], [-4, -5, -6]]], dtype=np.int16))
    np.testing.assert_array_equal(y, [[[1, 2], [3, 4], [5, 6]], [[-1, -2], [-3, -4], [-5, -6]]])


# ---- (d) C vs reference (reshape has no kernel: the planner aliases its output) -----------------

test_reshape_c_host_equals_reference = c_host_test("reshape")
test_reshape_c_m0_equals_reference = c_m0_test("reshape")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_reshape_onnx_integer_export_is_bit_exact = onnx_export_test("reshape")
