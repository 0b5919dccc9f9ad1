"""QDQ export: ONNX Runtime (an independent implementation that requantizes in float) runs the
exported model and agrees with our integer interpreter within 1 LSB on >= 99% of elements."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

import intquant
from intquant import interpreter, zoo
from intquant.onnx_export import intgraph_to_onnx


def _session(model: onnx.ModelProto, optimize: bool = True) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _lsb_agreement(a: np.ndarray, b: np.ndarray) -> float:
    assert a.dtype == b.dtype and a.shape == b.shape
    return float((np.abs(a.astype(np.int64) - b.astype(np.int64)) <= 1).mean())


def _per_op_agreement(qm, xq: np.ndarray) -> dict[str, float]:
    """Each op run by ONNX Runtime on the interpreter's own inputs (no error compounding)."""
    values = interpreter.run(qm.graph, xq, return_all=True)
    model = intgraph_to_onnx(qm.graph, per_op=True)
    s = _session(model, optimize=False)
    feeds = {i.name: values[i.name] for i in s.get_inputs()}
    outs = s.run(None, feeds)
    pairs = zip(qm.graph.ops, outs, strict=True)
    return {op.name: _lsb_agreement(values[op.output], y) for op, y in pairs}


ZOO = zoo.names()


@pytest.mark.parametrize("name", ZOO)
def test_zoo_export_agrees_with_interpreter(name, tmp_path):
    model, ds = zoo.get(name, progress=False)
    qm = intquant.quantize(model, ds.x_train[:256], progress=False)
    path = intgraph_to_onnx(qm.graph, tmp_path / f"{name}.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    xq = qm.quantize_input(ds.x_test)
    ours = qm.run(xq)
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = s.run(None, {s.get_inputs()[0].name: xq})[0]
    # Every op on its own agrees within 1 LSB on >= 99% of elements.
    per_op = _per_op_agreement(qm, xq[:200])
    assert min(per_op.values()) >= 0.99, per_op
    # End to end: 1-LSB differences compound through residual adds, so the deep residual
    # model is held to 95%, the others to 99%; accuracy is the same within half a point.
    floor = 0.95 if "resnet" in name else 0.99
    assert _lsb_agreement(ours, theirs) >= floor
    acc_ours = (ours.argmax(1) == ds.y_test).mean()
    acc_ort = (theirs.argmax(1) == ds.y_test).mean()
    assert abs(acc_ours - acc_ort) <= 0.005, (acc_ours, acc_ort)


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
    per_op = _per_op_agreement(qm, xq)
    for op in qm.graph.ops:
        if op.kind in ("lut", "concat", "reshape", "pad", "transpose"):
            assert per_op[op.name] == 1.0, (op.name, op.kind)  # integer ops: bit-exact
        else:
            assert per_op[op.name] >= 0.99, (op.name, op.kind, per_op[op.name])
    ours = qm.run(xq)
    theirs = _session(intgraph_to_onnx(qm.graph)).run(None, {qm.graph.input: xq})[0]
    assert _lsb_agreement(ours, theirs) >= 0.99


def test_float_io_matches_dequantized_output():
    model, ds = zoo.get("mnist1d_mlp", progress=False)
    qm = intquant.quantize(model, ds.x_train[:256], progress=False)
    s = _session(intgraph_to_onnx(qm.graph, float_io=True))
    x = ds.x_test[:100].astype(np.float32)
    y_float = s.run(None, {s.get_inputs()[0].name: x})[0]
    ours = qm.dequantize_output(qm.run(qm.quantize_input(x)))
    step = qm.graph.tensors[qm.graph.output].scale
    assert np.mean(np.abs(y_float - ours) <= step * 1.001) >= 0.99
