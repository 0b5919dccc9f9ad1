"""slice: every step-th element of one axis from start (src/intquant/ops/slice.py).

Categories (docs/adding-an-op.md): matches_float, validation, golden, c_host, c_m0, onnx.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import intgraph_factory as F
import intquant
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
    random_q,
    to_t,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis,start,step,count", [(0, 0, 1, 2), (1, 3, 2, 3), (2, 4, 1, 1),
                                                   (2, 0, 3, 2)])
def test_slice_matches_float_torch_exactly(dtype: str, axis: int, start: int, step: int,
                                           count: int) -> None:
    """Raw values are copied: the dequantized output equals torch's slice of the dequantized
    input exactly (no arithmetic)."""
    rng = np.random.default_rng(31)
    b = GraphBuilder(rng, (3, 8, 5), dtype)
    y = F.slice_op(b, b.input, axis, start, step, count)
    g = b.graph()
    xq = random_q(rng, (2, 3, 8, 5), dtype)
    index = [slice(None)] * 4
    index[axis + 1] = slice(start, start + step * (count - 1) + 1, step)
    ref = to_t(deq(xq, g.tensors[b.input]))[tuple(index)]
    np.testing.assert_array_equal(deq(run(g, xq), g.tensors[y]), ref.numpy())


class LastStep(nn.Module):
    """A TCN head: the causal conv's last time step, x[:, :, -1], then a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 6, 3, padding=2)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.conv(x)[:, :, -1])


@pytest.mark.parametrize("act_bits", [8, 16])
def test_slice_matches_float_after_quantize(act_bits: int) -> None:
    """x[:, :, -1], x[:, 1:5:2] through capture and lowering: the slice copies raw values, so
    its output equals torch's slice of the interpreter's own input tensor (dequantized) exactly;
    select (x[:, :, -1]) drops the axis with a free reshape."""
    torch.manual_seed(2)
    for model, shape in ((LastStep().eval(), (3, 10)),
                         (nn.Sequential(nn.Conv1d(2, 8, 1), Strided()).eval(), (2, 6))):
        x = torch.randn(32, *shape)
        cfg = intquant.Config(act_bits=act_bits, calibration="minmax", bias_correction=False)
        q = intquant.quantize(model, x, cfg, progress=False)
        slices = [op for op in q.graph.ops if op.kind == "slice"]
        assert len(slices) == 1
        op = slices[0]
        values = run(q.graph, q.quantize_input(x.numpy()), return_all=True)
        xi, yi = q.graph.tensors[op.inputs[0]], q.graph.tensors[op.output]
        a = op.attrs
        index = [slice(None)] * (len(xi.shape) + 1)
        index[a["axis"] + 1] = slice(a["start"], a["start"] + a["step"] * (yi.shape[a["axis"]]
                                                                          - 1) + 1, a["step"])
        want = to_t(deq(values[op.inputs[0]], xi))[tuple(index)].numpy()
        np.testing.assert_array_equal(deq(values[op.output], yi), want)


class Strided(nn.Module):
    def forward(self, x):
        return x[:, 1:5:2]


# ---- (b) validation ---------------------------------------------------------------------------


def _slice_graph():
    b = GraphBuilder(np.random.default_rng(7), (2, 9, 3), "int16")
    F.slice_op(b, b.input, 1, 2, 3, 2)
    return b.graph()


VALIDATION_CASES = [
    (F.set_field(0, "attrs", "axis", 3), r"attr 'axis' = 3 is out of range \[0, 2\]"),
    (F.set_field(0, "attrs", "start", 9), r"attr 'start' = 9 is out of range \[0, 8\]"),
    (F.set_field(0, "attrs", "step", 0), r"attr 'step' = 0 is out of range"),
    (F.set_field(0, "attrs", "start", 6), "2 elements reach past the end of axis 1 \\(size 9\\)"),
    (F.set_tensor(1, shape=(3, 2, 3)), r"has shape \(3, 2, 3\), expected \(2, 2, 3\)"),
    (F.del_attr(0, "step"), "missing attr 'step'"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
    (F.set_tensor(1, zero_point=3), "zero_point 3 must equal 't0' zero_point 0"),
    (F.set_tensor(1, shape=(2, 2)), r"has rank 2, expected 3"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_slice_validation_messages(mutate, message: str) -> None:
    assert_rejected(_slice_graph(), mutate, message)


# ---- (c) goldens ------------------------------------------------------------------------------


def test_slice_golden_by_hand() -> None:
    """x = [[0..5], [10..15]] (2, 6); axis 1, start 1, step 2, count 3: columns 1, 3, 5."""
    xi = TensorInfo("x", (2, 6), "int8", 1.0, 0)
    yi = TensorInfo("y", (2, 3), "int8", 1.0, 0)
    g = one_op_graph("slice", xi, yi, {"axis": 1, "start": 1, "step": 2})
    x = np.array([[[0, 1, 2, 3, 4, 5], [10, 11, 12, 13, 14, 15]]], np.int8)
    np.testing.assert_array_equal(run(g, x), [[[1, 3, 5], [11, 13, 15]]])


def test_slice_golden_last_row() -> None:
    """axis 0, start 2, count 1 of a (3, 2) uint8 tensor: the last row, [5, 6]."""
    xi = TensorInfo("x", (3, 2), "uint8", 1.0, 128)
    yi = TensorInfo("y", (1, 2), "uint8", 1.0, 128)
    g = one_op_graph("slice", xi, yi, {"axis": 0, "start": 2, "step": 1})
    np.testing.assert_array_equal(run(g, np.array([[[1, 2], [3, 4], [5, 6]]], np.uint8)),
                                  [[[5, 6]]])


# ---- (d) C vs reference -----------------------------------------------------------------------

test_slice_c_host_equals_reference = c_host_test("slice")
test_slice_c_m0_equals_reference = c_m0_test("slice")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_slice_onnx_integer_export_is_bit_exact = onnx_export_test("slice")
