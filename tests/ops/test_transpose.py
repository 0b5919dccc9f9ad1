"""transpose: permutation of the non-batch axes (src/intquant/ops/transpose.py)."""

from __future__ import annotations

import itertools

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
@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_transpose_matches_float_torch_exactly(dtype: str, perm: tuple[int, ...]) -> None:
    rng = np.random.default_rng(16)
    b = GraphBuilder(rng, (3, 4, 5), dtype)
    tr = b.transpose(b.input, list(perm))
    g = b.graph()
    xq = random_q(rng, (2, 3, 4, 5), dtype)
    ref = to_t(deq(xq, g.tensors[b.input])).permute(0, *(p + 1 for p in perm))
    np.testing.assert_array_equal(deq(run(g, xq), g.tensors[tr]), ref.numpy())


test_transpose_matches_float_after_quantize = quantize_path_test("transpose")


# ---- (b) validation ---------------------------------------------------------------------------


def _transpose_graph():
    b = GraphBuilder(np.random.default_rng(7), (2, 5, 3), "int16")
    b.transpose(b.input, [2, 1, 0])
    return b.graph()


VALIDATION_CASES = [
    (F.set_field(0, "attrs", "perm", [2, 2, 0]), r"attr 'perm' \[2, 2, 0\] is not a permutation"),
    (F.set_field(0, "attrs", "perm", [0, 1, 3]), "is not a permutation of 0..2"),
    (F.set_field(0, "attrs", "perm", [1, 0]), "attr 'perm' must have 3 entries"),
    (F.set_field(0, "attrs", "perm", [2, 0, 1]), r"has shape \(3, 5, 2\), expected \(3, 2, 5\)"),
    (F.del_attr(0, "perm"), "missing attr 'perm'"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
    (F.set_tensor(1, zero_point=3), "zero_point 3 must equal 't0' zero_point 0"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_transpose_validation_messages(mutate, message: str) -> None:
    assert_rejected(_transpose_graph(), mutate, message)


# ---- (c) goldens ------------------------------------------------------------------------------


def test_transpose_golden_2d() -> None:
    xi = TensorInfo("x", (2, 3), "int8", 1.0, 0)
    yi = TensorInfo("y", (3, 2), "int8", 1.0, 0)
    g = one_op_graph("transpose", xi, yi, {"perm": [1, 0]})
    y = run(g, np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.int8))
    np.testing.assert_array_equal(y, [[[1, 4], [2, 5], [3, 6]]])


def test_transpose_golden_3d_rotation() -> None:
    """perm [2, 0, 1]: y[k, i, j] = x[i, j, k]."""
    xi = TensorInfo("x", (2, 2, 2), "uint8", 1.0, 128)
    yi = TensorInfo("y", (2, 2, 2), "uint8", 1.0, 128)
    g = one_op_graph("transpose", xi, yi, {"perm": [2, 0, 1]})
    x = np.array([[[[0, 1], [2, 3]], [[4, 5], [6, 7]]]], dtype=np.uint8)  # x[i,j,k] = 4i+2j+k
    np.testing.assert_array_equal(run(g, x), [[[[0, 2], [4, 6]], [[1, 3], [5, 7]]]])


# ---- (d) C vs reference -----------------------------------------------------------------------

test_transpose_c_host_equals_reference = c_host_test("transpose")
test_transpose_c_m0_equals_reference = c_m0_test("transpose")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_transpose_onnx_integer_export_is_bit_exact = onnx_export_test("transpose")
