"""ONNX export checked by ONNX Runtime, an independent implementation, against the interpreter.

- ``requant="integer"`` (the default): every requantization is an integer subgraph, so ONNX
  Runtime must reproduce the interpreter (the spec) bit for bit — end to end on every zoo model
  here, and on random one-op graphs of every exported kind and dtype with full-range inputs in
  tests/ops/test_<kind>.py (``test_<kind>_onnx_*``).
- ``requant="float"`` (plain QDQ): ONNX Runtime requantizes in float, so each op agrees within
  1 LSB on >= 99% of elements; end to end the differences compound through residual adds
  (measured and reported, held to a regression floor only where the 99% figure is not met).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

import intquant
from intgraph_factory import ONE_OP_BUILDERS
from intquant import interpreter, numerics
from intquant.onnx_export import apply_multiplier_model, intgraph_to_onnx
from ops.conftest import lsb_agreement, lsb_diff, ort_run, ort_session

ZOO = ["digits_cnn", "mnist1d_cnn", "mnist1d_mlp", "mnist1d_dscnn", "mnist1d_resnet"]
CALIBRATION = 256


def _per_op_max_diff(graph, xq: np.ndarray, requant: str) -> dict[str, int]:
    """Largest |difference| (LSB) of each op run by ONNX Runtime on the interpreter's own
    inputs (no error compounding).

    In float QDQ mode ONNX Runtime requantizes r = real value computed in float (error ~1e-7
    relative, order and rounding depend on the CPU's kernels) and rounds it once; the integer
    op rounds the same r within half a step plus the fixed-point multiplier's < 2^-30. Two
    roundings of values that close differ by at most 1 on any IEEE machine, so per op the
    bound is ≤ 1, everywhere; whole models compound such steps and are only reported.
    """
    values = interpreter.run(graph, xq, return_all=True)
    s = ort_session(intgraph_to_onnx(graph, per_op=True, requant=requant), optimize=False)
    outs = s.run(None, {i.name: values[i.name] for i in s.get_inputs()})
    pairs = zip(graph.ops, outs, strict=True)
    return {op.name: int(lsb_diff(values[op.output], y).max()) for op, y in pairs}


# ---- the integer requantization subgraph vs numerics (TFLM) ------------------------------------

_EDGES = [numerics.INT32_MIN, numerics.INT32_MIN + 1, numerics.INT32_MAX, numerics.INT32_MAX - 1,
          0, 1, -1, 2, -2, 2**30, -(2**30), 2**15, -(2**15), 3, -3, 5, -5]


@pytest.mark.parametrize(("rounding", "acc_bits"),
                         [("double", 32), ("single", 32), ("pow2", 32), ("double", 64),
                          ("pow2", 64)])
def test_apply_multiplier_subgraph_is_bit_exact(rounding, acc_bits):
    """Every (M, shift) the contract allows, on edge and random accumulators, equals
    numerics.apply_multiplier (TFLM's MultiplyByQuantizedMultiplier and its variants)."""
    rng = np.random.default_rng(7)
    shifts = np.arange(-31, 8 if (acc_bits == 64 and rounding != "pow2") else 31)
    m = rng.integers(2**30, 2**31, shifts.size)
    m[:3] = [2**30, 2**31 - 1, 0]
    if rounding == "pow2":
        m[:] = 2**30
    x = [np.array(_EDGES), rng.integers(numerics.INT32_MIN, numerics.INT32_MAX + 1, 800),
         rng.integers(-3000, 3000, 800)]
    if acc_bits == 64:  # the int64 path takes |acc| < 2^47
        x += [np.array([2**47 - 1, -(2**47) + 1]), rng.integers(-(2**47) + 1, 2**47, 800)]
    x = np.concatenate(x).astype(np.int64)
    xs = np.broadcast_to(x[:, None], (x.size, shifts.size)).copy()
    s = ort_session(apply_multiplier_model(m, shifts, rounding, acc_bits))
    got = s.run(None, {"x": xs})[0]
    want = numerics.apply_multiplier(xs, m, shifts, rounding, acc_bits)
    bad = np.argwhere(got != want)
    assert bad.size == 0, [(xs[i, j], m[j], shifts[j], got[i, j], want[i, j]) for i, j in bad[:5]]


def test_apply_multiplier_subgraph_ties():
    """Exact halves at both rounding steps (SRDHM rounds ties up, RDBP away from zero)."""
    m, shift = np.array([2**30]), np.array([-3])  # real 0.5 · 2^-3: x / 16
    x = np.arange(-64, 65, dtype=np.int64)[:, None]  # includes every ±(k + 1/2) after / 16
    got = ort_session(apply_multiplier_model(m, shift)).run(None, {"x": x})[0]
    assert np.array_equal(got, numerics.apply_multiplier(x, m, shift))
    # Independent: x / 16 with SRDHM's tie (x/2 for odd x rounds up) then RDBP by 8.
    half = np.floor(x / 2 + 0.5)  # SRDHM(x, 2^30): x / 2, ties toward +inf
    expect = np.sign(half) * np.floor(np.abs(half) / 8 + 0.5)  # ties away from zero
    assert np.array_equal(got, expect.astype(np.int64))


def test_bad_requant_is_refused():
    g = ONE_OP_BUILDERS["conv"](np.random.default_rng(0))
    with pytest.raises(ValueError, match="requant must be one of"):
        intgraph_to_onnx(g, requant="exact")


# ---- zoo models end to end ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ZOO)
def test_zoo_export_agrees_with_interpreter(name, zoo_model, tmp_path, record_property):
    """Integer mode: bit-identical outputs on the whole test set (so the same accuracy).
    Float QDQ mode: every op within 1 LSB (see _per_op_max_diff); end to end only measured
    (the float results depend on the CPU's kernels)."""
    model, ds = zoo_model(name)
    qm = intquant.quantize(model, ds.x_train[:CALIBRATION], progress=False)
    xq = qm.quantize_input(ds.x_test)
    ours = qm.run(xq)
    path = intgraph_to_onnx(qm.graph, tmp_path / f"{name}.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = s.run(None, {s.get_inputs()[0].name: xq})[0]
    assert np.array_equal(ours, theirs), lsb_agreement(ours, theirs)

    qdq = ort_run(qm.graph, xq, requant="float")
    agreement = lsb_agreement(ours, qdq)
    acc_ours = (ours.argmax(1) == ds.y_test).mean()
    acc_qdq = (qdq.argmax(1) == ds.y_test).mean()
    record_property("float_qdq_within_1_lsb", agreement)
    record_property("float_qdq_equal", float((ours == qdq).mean()))
    print(f"{name}: float QDQ within 1 LSB {agreement:.4%}, accuracy {acc_ours:.4f} "
          f"(interpreter) vs {acc_qdq:.4f}")
    per_op = _per_op_max_diff(qm.graph, xq[:200], "float")
    assert max(per_op.values()) <= 1, per_op


class _Heads(nn.Module):
    """Sigmoid / tanh (lut), concat with rescale, pad, softmax: the non-conv ops."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)
        self.fc = nn.Linear(8 * 12, 6)

    def forward(self, x):
        h = self.conv(x)
        h = torch.cat([torch.sigmoid(h), torch.tanh(2 * h)], dim=1)
        h = nn.functional.pad(h, (1, 1))
        return torch.softmax(self.fc(torch.flatten(h, 1)), dim=1)


@pytest.mark.parametrize("act_bits", [8, 16])
def test_lut_softmax_concat_pad_export(act_bits):
    torch.manual_seed(0)
    net = _Heads().eval()
    x = np.random.default_rng(0).standard_normal((300, 2, 10)).astype(np.float32)
    qm = intquant.quantize(net, x, intquant.Config(act_bits=act_bits), progress=False)
    kinds = {op.kind for op in qm.graph.ops}
    assert {"lut", "softmax", "concat"} <= kinds
    xq = qm.quantize_input(x)
    ours = qm.run(xq)
    assert np.array_equal(ort_run(qm.graph, xq), ours)
    per_op = _per_op_max_diff(qm.graph, xq, "float")
    integer_both = ("lut", "concat", "reshape", "pad", "transpose")  # integer in both modes
    per_op_exact = _per_op_max_diff(qm.graph, xq, "integer")
    for op in qm.graph.ops:
        assert per_op_exact[op.name] == 0, (op.name, op.kind)
        assert per_op[op.name] <= (0 if op.kind in integer_both else 1), (op.name, op.kind)


@pytest.mark.parametrize("requant", ["integer", "float"])
def test_float_io_matches_dequantized_output(zoo_model, requant):
    model, ds = zoo_model("mnist1d_mlp")
    qm = intquant.quantize(model, ds.x_train[:CALIBRATION], progress=False)
    s = ort_session(intgraph_to_onnx(qm.graph, float_io=True, requant=requant))
    x = ds.x_test[:100].astype(np.float32)
    y_float = s.run(None, {s.get_inputs()[0].name: x})[0]
    ours = qm.dequantize_output(qm.run(qm.quantize_input(x)))
    step = qm.graph.tensors[qm.graph.output].scale
    within = np.abs(y_float - ours) <= step * (1e-3 if requant == "integer" else 1.001)
    assert np.mean(within) >= (1.0 if requant == "integer" else 0.99)
