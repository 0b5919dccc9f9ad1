"""add_const: an activation plus a constant tensor of its shape (src/intquant/ops/add_const.py).

Categories (docs/adding-an-op.md): matches_float, validation, golden, c_host, c_m0, onnx.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn as nn

import intgraph_factory as F
import intquant
from intgraph_factory import GraphBuilder
from intquant.interpreter import run
from intquant.intgraph import ACTIVATION_DTYPES, TensorInfo
from intquant.numerics import quantize_multiplier

from .conftest import (
    assert_rejected,
    assert_within_lsb,
    c_host_test,
    c_m0_test,
    deq,
    f32,
    one_op_graph,
    onnx_export_test,
    random_q,
    round_half_up,
)


def _spec_graph(dtype: str, z_in: int, s_in: float, s_out: float, z_out: int,
                value: np.ndarray, ls: int, rounding: str = "double"):
    """Constants written from the module docstring: addend = round(P·2^ls / s_in), real
    multiplier s_in / (2^ls·s_out)."""
    xi = TensorInfo("x", value.shape, dtype, s_in, z_in)
    yi = TensorInfo("y", value.shape, dtype, s_out, z_out)
    m, sh = quantize_multiplier(s_in / (2.0**ls * s_out))
    lo, hi = ACTIVATION_DTYPES[dtype]
    attrs = {"input_zero_point": z_in, "left_shift": ls, "multiplier": m, "shift": sh,
             "output_zero_point": z_out, "act_min": lo, "act_max": hi, "rounding": rounding}
    addend = np.rint(value * 2.0**ls / s_in).astype(np.int32)
    return one_op_graph("add_const", xi, yi, attrs, {"addend": addend}), yi


# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype,z_in,ls", [("int8", -9, 20), ("uint8", 130, 20), ("int16", 0, 15)])
def test_add_const_matches_float_torch(dtype: str, z_in: int, ls: int) -> None:
    """float64 x + P of the dequantized input, requantized: one output rounding (0.5 LSB) plus
    the addend's rounding on the 2^-ls grid and the multiplier's 2^-30 relative error: <= 0.51."""
    rng = np.random.default_rng(41)
    value = rng.normal(0, 1.0, (4, 6))
    s_in, s_out = f32(0.02), f32(0.03)
    if dtype == "int16":
        s_in, s_out = f32(2 / 32768), f32(4 / 32768)
    z_out = {"int8": 3, "uint8": 120, "int16": 0}[dtype]
    g, yi = _spec_graph(dtype, z_in, s_in, s_out, z_out, value, ls)
    xq = random_q(rng, (16, 4, 6), dtype)
    ref = (torch.from_numpy(deq(xq, g.tensors["x"])) + torch.from_numpy(value)).numpy()
    assert_within_lsb(run(g, xq), ref, yi, 0.51)


class PositionalEmbedding(nn.Module):
    """Tokens (T, C) plus a learned (T, C) positional embedding, then a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(5, 8) * 0.5)
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(x) + self.pos


@pytest.mark.parametrize("act_bits", [8, 16])
def test_add_const_matches_float_after_quantize(act_bits: int) -> None:
    """x + pos through capture and lowering (add_const after the Linear, not folded into its
    bias: pos differs per token): within 0.51 output LSB of the float addition on the
    interpreter's own (dequantized) input of the op."""
    torch.manual_seed(3)
    model = PositionalEmbedding().eval()
    x = torch.randn(64, 5, 8)
    cfg = intquant.Config(act_bits=act_bits, calibration="minmax", bias_correction=False)
    q = intquant.quantize(model, x, cfg, progress=False)
    ops = [op for op in q.graph.ops if op.kind == "add_const"]
    assert len(ops) == 1
    op = ops[0]
    values = run(q.graph, q.quantize_input(x.numpy()), return_all=True)
    xi, yi = q.graph.tensors[op.inputs[0]], q.graph.tensors[op.output]
    ref = deq(values[op.inputs[0]], xi) + model.pos.detach().double().numpy()
    assert_within_lsb(values[op.output], ref, yi, 0.51,
                      act=(op.attrs["act_min"], op.attrs["act_max"]))


# ---- (b) validation ---------------------------------------------------------------------------


def _add_const_graph():
    b = GraphBuilder(np.random.default_rng(8), (2, 5), "int8")
    F.add_const_op(b, b.input)
    return b.graph()


VALIDATION_CASES = [
    (F.set_field(0, "attrs", "left_shift", 21), r"attr 'left_shift' = 21 is out of range"),
    (F.set_field(0, "attrs", "input_zero_point", 7), "attr 'input_zero_point' = 7"),
    (F.set_field(0, "attrs", "rounding", "pow2"), "attr 'rounding' = 'pow2'"),
    (F.set_field(0, "attrs", "multiplier", 2**31), "attr 'multiplier' = 2147483648"),
    (F.del_attr(0, "shift"), "missing attr 'shift'"),
    (F.edit_const(0, "addend", lambda a: a[:, :4]), r"const 'addend' has shape \(2, 4\)"),
    (F.cast_const(0, "addend", np.int64), "const 'addend' has dtype int64"),
    (F.edit_const(0, "addend", lambda a: np.full_like(a, 2**31 - 1)), "beyond int32"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
    (F.set_tensor(1, shape=(2, 6)), r"has shape \(2, 6\), expected \(2, 5\)"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_add_const_validation_messages(mutate, message: str) -> None:
    assert_rejected(_add_const_graph(), mutate, message)


# ---- (c) goldens ------------------------------------------------------------------------------


def test_add_const_golden_fractions() -> None:
    """Every int8 input against the spec in exact rationals (single rounding: half up of the
    exact product): acc = (x − z)·2^ls + addend, y = floor(acc·M / 2^(31 − sh) + 1/2) + z_out,
    clamped."""
    xi = TensorInfo("x", (2,), "int8", 1.0, -3)
    yi = TensorInfo("y", (2,), "int8", 1.0, 5)
    m, sh, ls = 1518500249, -4, 4  # real ≈ 0.0442
    attrs = {"input_zero_point": -3, "left_shift": ls, "multiplier": m, "shift": sh,
             "output_zero_point": 5, "act_min": -128, "act_max": 127, "rounding": "single"}
    addend = np.array([37, -1000], np.int32)
    g = one_op_graph("add_const", xi, yi, attrs, {"addend": addend})
    x = np.stack([np.arange(-128, 128, dtype=np.int8)] * 2, axis=1)
    want = [[max(-128, min(127, round_half_up(Fraction((((v + 3) << ls) + int(addend[k])) * m,
                                                        2 ** (31 - sh))) + 5))
             for k in range(2)] for v in range(-128, 128)]
    assert run(g, x).tolist() == want


def test_add_const_golden_by_hand() -> None:
    """x = [10, −4] (z 2), ls 1, addend [5, −3], M = 2^30 (0.5), shift 0, z_out 1:
    acc = [(8)·2 + 5, (−6)·2 − 3] = [21, −15]; ·0.5 = [10.5 → 11, −7.5 → −7] (gemmlowp's
    SRDHM nudges a negative tie toward zero: (−15·2^30 + 1 − 2^30) / 2^31 truncates to −7);
    + 1 = [12, −6]."""
    xi = TensorInfo("x", (2,), "int8", 1.0, 2)
    yi = TensorInfo("y", (2,), "int8", 1.0, 1)
    attrs = {"input_zero_point": 2, "left_shift": 1, "multiplier": 2**30, "shift": 0,
             "output_zero_point": 1, "act_min": -128, "act_max": 127, "rounding": "double"}
    g = one_op_graph("add_const", xi, yi, attrs, {"addend": np.array([5, -3], np.int32)})
    assert run(g, np.array([[10, -4]], np.int8)).tolist() == [[12, -6]]


# ---- (d) C vs reference -----------------------------------------------------------------------

test_add_const_c_host_equals_reference = c_host_test("add_const")
test_add_const_c_m0_equals_reference = c_m0_test("add_const")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_add_const_onnx_integer_export_is_bit_exact = onnx_export_test("add_const")
