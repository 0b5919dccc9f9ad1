"""BNN / XNOR-Net end to end: QAT of the zoo MNIST-1D CNN (first and last layers 8-bit), convert
to packed binary ops, the folded BatchNorm + sign thresholds against an independent layer-by-
layer evaluation, and the C bit-exact on the host and the emulated Cortex-M0.

Accuracy and cycles are measured in benchmarks/bnn.py; QAT here is one short epoch (enough to
move BatchNorm statistics and weights away from their initial values).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from intquant.codegen import export_c
from intquant.codegen.planner import plan_memory
from intquant.codegen.toolchain import compile_and_run_host, run_on_m0
from intquant.config import Config
from intquant.interpreter import run
from intquant.intgraph import tensor_nbytes
from intquant.ptq import quantize
from intquant.qat import convert, prepare
from intquant.qat.modules import fold_params
from intquant.training import train

BINARY_KINDS = ["sign_conv", "binary_conv", "binary_max_pool", "binary_conv", "binary_max_pool",
                "binary_conv", "max_pool", "reshape", "fully_connected"]


def _trained(zoo_model, weight_quantizer: str):
    model, ds = zoo_model("mnist1d_cnn")
    cfg = Config(weight_bits=1, act_bits=1, weight_quantizer=weight_quantizer,
                 act_quantizer="sign")
    torch.manual_seed(0)
    q = prepare(model, cfg, example_input=ds.x_train[:256])
    train(q, (ds.x_train[:512], ds.y_train[:512]), epochs=1, lr=1e-3, batch_size=64,
          progress=False)
    q.eval()
    return q, convert(q, ds.x_train[:64]), ds


@pytest.fixture(scope="module", params=["binary", "xnor"])
def binary_cnn(request, zoo_model):
    return request.param, *_trained(zoo_model, request.param)


def test_deploys_as_packed_binary_ops(binary_cnn):
    """Every sign-activated layer emits packed bits; the last binary layer feeds the 8-bit
    classifier with int8; bit tensors occupy their packed size in the arena."""
    _, _, qm, _ = binary_cnn
    g = qm.graph
    assert [op.kind for op in g.ops] == BINARY_KINDS
    plan = plan_memory(g)
    for op in g.ops:
        info = g.tensors[op.output]
        if info.dtype == "bit":
            c, length = info.shape
            assert tensor_nbytes(info) == length * -(-c // 32) * 4
            buf = next(b for b in plan.buffers if op.output in b.tensors)
            assert buf.size == tensor_nbytes(info)
        if op.kind == "binary_conv":
            cin = g.tensors[op.inputs[0]].shape[0]
            assert op.consts["weight"].dtype == np.uint32
            assert op.consts["weight"].shape[1] == -(-cin * 3 // 32)  # kernel 3


def _layerwise(q, qm, x: np.ndarray) -> dict[str, np.ndarray]:
    """The deployed network from the QAT layers' own parameters, exactly: integer codes
    (BatchNorm folded into the per-channel scale), the bias on the accumulator grid
    b = round(bias'/(s_in·s_w)), and sign(s·(acc + b)) = +1 exactly when acc ≥ −b (s > 0).
    Returns the ±1 tensors of the three sign layers and the classifier input's codes."""
    xq = qm.quantize_input(x).astype(np.float64)
    z_in = qm.input_info.zero_point
    h = torch.as_tensor(xq - z_in)
    out = {}
    for name, pad in (("features.0", 2), ("features.3", 1), ("features.7", 1)):
        p = fold_params(q.get_submodule(name))
        b = torch.round(p["bias"] / p["step"])  # the trained bias on the accumulator grid
        acc = F.conv1d(h, p["codes"].double(), padding=pad)
        h = torch.where(acc >= -b.reshape(1, -1, 1), 1.0, -1.0).double()
        out[name] = h.numpy().astype(np.int8)
        if name != "features.0":
            h = F.max_pool1d(h, 2)
    return out


def test_thresholds_equal_the_layerwise_bnn(binary_cnn):
    """BatchNorm + sign folded into integer thresholds: every bit of every sign layer equals
    the independent evaluation (ties acc = −b included: sign(0) = +1)."""
    _, q, qm, ds = binary_cnn
    x = ds.x_test[:300]
    ref = _layerwise(q, qm, x)
    vals = run(qm.graph, qm.quantize_input(x), return_all=True)
    for name, bits in ref.items():
        np.testing.assert_array_equal(vals[name], bits, err_msg=name)
        assert 0.2 < np.mean(bits == 1) < 0.8, name  # the bits do vary


def test_c_bit_exact_on_host_and_cortex_m0(binary_cnn, tmp_path):
    label, _, qm, ds = binary_cnn
    x = qm.quantize_input(ds.x_test[:200])
    ref = qm.run(x)
    res = export_c(qm.graph, tmp_path / "c", name="bnn")
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, x), ref)
    if label == "binary":
        np.testing.assert_array_equal(run_on_m0(res.out_dir, x[:6]), ref[:6])


class SignNet(nn.Module):
    """A float binary net as a user writes it: conv, BatchNorm, torch.sign."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv1d(1, 8, 3, padding=1), nn.BatchNorm1d(8)
        self.c2, self.b2 = nn.Conv1d(8, 8, 3, padding=1, bias=False), nn.BatchNorm1d(8)
        self.fc = nn.Linear(8 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sign(self.b1(self.c1(x)))
        h = torch.sign(self.b2(self.c2(h)))
        return self.fc(torch.flatten(F.max_pool1d(h, 2), 1))


def test_ptq_of_a_float_sign_network(tmp_path):
    """Without QAT the pre-sign tensors are calibrated int8: sign packs them, max pooling runs
    on bits, an 8-bit-weight layer reads unpacked ±1 — and the C still equals the reference."""
    torch.manual_seed(0)
    model = SignNet().eval()
    x = np.random.default_rng(0).normal(size=(64, 1, 12)).astype(np.float32)
    qm = quantize(model, x, Config(), progress=False)
    kinds = [op.kind for op in qm.graph.ops]
    assert "sign" in kinds and "binary_max_pool" in kinds and "unpack_bits" in kinds
    xi = qm.quantize_input(x)
    res = export_c(qm.graph, tmp_path / "c", name="net")
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, xi), qm.run(xi))


def test_depthwise_separable_bnn_converts(zoo_model):
    """Depthwise layers between sign activations become grouped sign_conv on unpacked ±1 (a
    depthwise XOR-popcount would have ~3 MACs per output); pointwise layers binary_conv. (The
    grouped kernels' C: tests/ops/test_sign_conv.py.)"""
    model, ds = zoo_model("mnist1d_dscnn")
    cfg = Config(weight_bits=1, act_bits=1, weight_quantizer="binary", act_quantizer="sign")
    q = prepare(model, cfg, example_input=ds.x_train[:128]).eval()
    qm = convert(q, ds.x_train[:32])
    grouped = [op for op in qm.graph.ops if op.kind == "sign_conv" and op.attrs["groups"] > 1]
    assert grouped and all(qm.graph.tensors[op.inputs[0]].dtype == "int8" for op in grouped)
    assert any(op.kind == "binary_conv" for op in qm.graph.ops)
    vals = run(qm.graph, qm.quantize_input(ds.x_test[:40]), return_all=True)
    for op in grouped:  # each equals float64 grouped conv of its ±1 input, thresholded
        a = op.attrs
        xz = torch.as_tensor(vals[op.inputs[0]].astype(np.float64) - a["input_zero_point"])
        acc = F.conv1d(F.pad(xz, (a["padding"][1], a["padding"][3])),
                       torch.as_tensor(op.consts["weight"][:, :, 0, :].astype(np.float64)),
                       stride=a["stride"][1], dilation=a["dilation"][1], groups=a["groups"])
        thr = op.consts["threshold"].astype(np.float64)[None, :, None]
        np.testing.assert_array_equal(vals[op.output], np.where(acc.numpy() >= thr, 1, -1))
