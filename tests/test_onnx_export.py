"""ONNX export checked by ONNX Runtime, an independent implementation, against the interpreter.

- ``requant="integer"`` (the default): every requantization is an integer subgraph, so ONNX
  Runtime must reproduce the interpreter (the spec) bit for bit — on random one-op graphs of
  every exported kind and dtype with full-range inputs, and end to end on every zoo model.
- ``requant="float"`` (plain QDQ): ONNX Runtime requantizes in float, so each op agrees within
  1 LSB on >= 99% of elements; end to end the differences compound through residual adds
  (measured and reported, held to a regression floor only where the 99% figure is not met).
"""

from __future__ import annotations

import zlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

import intquant
from intgraph_factory import ONE_OP_BUILDERS, GraphBuilder, random_input
from intquant import interpreter, numerics
from intquant.onnx_export import apply_multiplier_model, intgraph_to_onnx

ZOO = ["digits_cnn", "mnist1d_cnn", "mnist1d_mlp", "mnist1d_dscnn", "mnist1d_resnet"]
CALIBRATION = 256


def _session(model: onnx.ModelProto, optimize: bool = True) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _ort_run(graph, x: np.ndarray, **kw) -> np.ndarray:
    s = _session(intgraph_to_onnx(graph, **kw))
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _lsb_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of elements within 1 LSB: reported only (float QDQ results vary by CPU)."""
    return float((_lsb_diff(a, b) <= 1).mean())


def _lsb_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.dtype == b.dtype and a.shape == b.shape
    return np.abs(a.astype(np.int64) - b.astype(np.int64))


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
    s = _session(intgraph_to_onnx(graph, per_op=True, requant=requant), optimize=False)
    outs = s.run(None, {i.name: values[i.name] for i in s.get_inputs()})
    pairs = zip(graph.ops, outs, strict=True)
    return {op.name: int(_lsb_diff(values[op.output], y).max()) for op, y in pairs}


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
    s = _session(apply_multiplier_model(m, shifts, rounding, acc_bits))
    got = s.run(None, {"x": xs})[0]
    want = numerics.apply_multiplier(xs, m, shifts, rounding, acc_bits)
    bad = np.argwhere(got != want)
    assert bad.size == 0, [(xs[i, j], m[j], shifts[j], got[i, j], want[i, j]) for i, j in bad[:5]]


def test_apply_multiplier_subgraph_ties():
    """Exact halves at both rounding steps (SRDHM rounds ties up, RDBP away from zero)."""
    m, shift = np.array([2**30]), np.array([-3])  # real 0.5 · 2^-3: x / 16
    x = np.arange(-64, 65, dtype=np.int64)[:, None]  # includes every ±(k + 1/2) after / 16
    got = _session(apply_multiplier_model(m, shift)).run(None, {"x": x})[0]
    assert np.array_equal(got, numerics.apply_multiplier(x, m, shift))
    # Independent: x / 16 with SRDHM's tie (x/2 for odd x rounds up) then RDBP by 8.
    half = np.floor(x / 2 + 0.5)  # SRDHM(x, 2^30): x / 2, ties toward +inf
    expect = np.sign(half) * np.floor(np.abs(half) / 8 + 0.5)  # ties away from zero
    assert np.array_equal(got, expect.astype(np.int64))


# ---- random one-op graphs: integer export is bit-exact ----------------------------------------

_KINDS = ["conv", "fully_connected", "add", "rescale", "max_pool", "avg_pool", "concat", "pad",
          "reshape", "transpose", "clamp", "lut", "softmax"]


def _one_op_cases():
    for kind in _KINDS:
        for dtype in ("int8", "uint8", "int16"):
            yield kind, dtype


@pytest.mark.parametrize(("kind", "dtype"), list(_one_op_cases()))
def test_one_op_integer_export_is_bit_exact(kind, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{kind}/{dtype}".encode()))
    build = ONE_OP_BUILDERS[kind]
    for trial in range(6):
        kw = {} if kind in ("fully_connected", "softmax") else {"dims": 1 + trial % 2}
        if kind in ("conv", "fully_connected"):
            kw["rounding"] = ["double", "single", "pow2"][trial % 3]
            if trial >= 3:
                kw["w_dtype"] = "int16"
                kw["acc_bits"] = 64
                if kw["rounding"] == "single":
                    kw["rounding"] = "double"
            if kind == "conv" and trial == 4:
                kw["depthwise"] = True
        if kind in ("add", "rescale"):
            kw["rounding"] = ["double", "single"][trial % 2]
        g = build(rng, dtype=dtype, **kw)
        x = random_input(rng, g, n=16)
        want = interpreter.run(g, x)
        for optimize in (True, False):
            s = _session(intgraph_to_onnx(g), optimize=optimize)
            got = s.run(None, {g.input: x})[0]
            assert got.dtype == want.dtype
            assert np.array_equal(got, want), (trial, kw, optimize,
                                               np.abs(got.astype(int) - want).max())


def test_integer_export_uses_only_int8_products():
    """uint8 and int16 operands reach ConvInteger / MatMulInteger as int8 (see weight_layer_int:
    ONNX Runtime's uint8 × int8 MatMulInteger saturates on AVX2)."""
    rng = np.random.default_rng(3)
    for dtype in ("uint8", "int16"):
        for build in (ONE_OP_BUILDERS["conv"], ONE_OP_BUILDERS["fully_connected"]):
            model = onnx.shape_inference.infer_shapes(intgraph_to_onnx(build(rng, dtype=dtype)))
            types = {v.name: v.type.tensor_type.elem_type
                     for v in [*model.graph.value_info, *model.graph.input]}
            types.update({t.name: t.data_type for t in model.graph.initializer})
            products = [n for n in model.graph.node if n.op_type.endswith("Integer")]
            assert products
            for n in products:
                assert {types[i] for i in n.input[:2]} == {onnx.TensorProto.INT8}, n


def test_float_mode_one_op_within_one_lsb():
    rng = np.random.default_rng(5)
    for kind in ("conv", "fully_connected", "add", "rescale", "avg_pool"):
        g = ONE_OP_BUILDERS[kind](rng, dtype="int8")
        x = random_input(rng, g, n=64)
        assert _lsb_diff(interpreter.run(g, x), _ort_run(g, x, requant="float")).max() <= 1


def test_bad_requant_and_unexportable_avg_pool():
    rng = np.random.default_rng(0)
    g = ONE_OP_BUILDERS["conv"](rng)
    with pytest.raises(ValueError, match="requant must be one of"):
        intgraph_to_onnx(g, requant="exact")
    b = GraphBuilder(rng, (1, 1024), "int16")
    b.avg_pool(b.input, (1, 1024), (1, 1), (0, 0, 0, 0), False)
    with pytest.raises(ValueError, match=r"avg_pool.*2\^24.*requant='float'"):
        intgraph_to_onnx(b.graph())
    intgraph_to_onnx(b.graph(), requant="float")  # the QDQ model still exports


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
    assert np.array_equal(ours, theirs), _lsb_agreement(ours, theirs)

    qdq = _ort_run(qm.graph, xq, requant="float")
    agreement = _lsb_agreement(ours, qdq)
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
    assert np.array_equal(_ort_run(qm.graph, xq), ours)
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
    s = _session(intgraph_to_onnx(qm.graph, float_io=True, requant=requant))
    x = ds.x_test[:100].astype(np.float32)
    y_float = s.run(None, {s.get_inputs()[0].name: x})[0]
    ours = qm.dequantize_output(qm.run(qm.quantize_input(x)))
    step = qm.graph.tensors[qm.graph.output].scale
    within = np.abs(y_float - ours) <= step * (1e-3 if requant == "integer" else 1.001)
    assert np.mean(within) >= (1.0 if requant == "integer" else 0.99)
