"""concat: join tensors along a non-batch axis, raw copy (src/intquant/ops/concat.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_concat_matches_float_torch_exactly(dtype: str, axis: int) -> None:
    """concat(x, clamp(x), x) equals torch.cat of the real values (a copy: no rounding)."""
    rng = np.random.default_rng(16)
    b = GraphBuilder(rng, (3, 4, 5), dtype)
    x = b.input
    c = b.clamp(x)
    cat = b.concat([x, c, x], axis=axis)
    g = b.graph(cat)
    vals = run(g, random_q(rng, (2, 3, 4, 5), dtype), return_all=True)
    xr, cr = to_t(deq(vals[x], g.tensors[x])), to_t(deq(vals[c], g.tensors[c]))
    ref = torch.cat([xr, cr, xr], dim=axis + 1)
    np.testing.assert_array_equal(deq(vals[cat], g.tensors[cat]), ref.numpy())


test_concat_matches_float_after_quantize = quantize_path_test("concat")


# ---- (b) validation ---------------------------------------------------------------------------


def _concat_graph():
    """concat(x, x) along axis 1 of a (2, 3, 4) int8 input."""
    b = GraphBuilder(np.random.default_rng(5), (2, 3, 4), "int8")
    b.concat([b.input, b.input], axis=1)
    return b.graph()


VALIDATION_CASES = [
    (F.set_field(0, "attrs", "axis", 3), r"attr 'axis' = 3 is out of range \[0, 2\]"),
    (F.set_field(0, "attrs", "axis", -1), r"attr 'axis' = -1 is out of range"),
    (F.del_attr(0, "axis"), "missing attr 'axis'"),
    (F.set_inputs(0, []), "expects at least one input"),
    (F.set_tensor(1, zero_point=127), "zero_point 127 must equal 't0' zero_point"),
    (F.set_tensor(1, shape=(2, 5, 4)), r"output tensor 't1' has shape \(2, 5, 4\), expected"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_concat_validation_messages(mutate, message: str) -> None:
    assert_rejected(_concat_graph(), mutate, message)


def test_concat_validation_inputs_must_agree_off_axis() -> None:
    """Another input's shape off the axis, or its qparams, named in the message: the graph
    holds a spare pad (shape (2, 3, 5)) and rescale (other qparams) to feed the concat."""
    b = GraphBuilder(np.random.default_rng(5), (2, 3, 4), "int8")
    wide = b.pad(b.input, [0, 0, 0, 0, 0, 1])
    requantized = b.rescale(b.input)
    b.concat([b.input, b.input], axis=1)
    g = b.graph()
    assert_rejected(g, F.set_inputs(2, ["t0", wide]),
                    rf"input '{wide}' shape \(2, 3, 5\) does not match \(2, 3, 4\) off axis 1")
    zp = g.tensors[requantized].zero_point
    assert zp != g.tensors["t0"].zero_point
    assert_rejected(g, F.set_inputs(2, ["t0", requantized]),
                    f"must equal '{requantized}' zero_point {zp}")


# ---- (c) goldens ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "axis,expected",
    [
        (0, [[[1, 2, 3]], [[4, 5, 6]], [[1, 2, 3]], [[4, 5, 6]]]),
        (1, [[[1, 2, 3], [1, 2, 3]], [[4, 5, 6], [4, 5, 6]]]),
        (2, [[[1, 2, 3, 1, 2, 3]], [[4, 5, 6, 4, 5, 6]]]),
    ],
)
def test_concat_golden_x_with_itself(axis: int, expected) -> None:
    xi = TensorInfo("x", (2, 1, 3), "int16", 0.25, 0)
    shape = [2, 1, 3]
    shape[axis] *= 2
    yi = TensorInfo("y", tuple(shape), "int16", 0.25, 0)
    g = one_op_graph("concat", xi, yi, {"axis": axis}, inputs=["x", "x"])
    y = run(g, np.array([[[[1, 2, 3]], [[4, 5, 6]]]], dtype=np.int16))
    np.testing.assert_array_equal(y, [expected])


# ---- (d) C vs reference -----------------------------------------------------------------------

test_concat_c_host_equals_reference = c_host_test("concat")
test_concat_c_m0_equals_reference = c_m0_test("concat")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_concat_onnx_integer_export_is_bit_exact = onnx_export_test("concat")
