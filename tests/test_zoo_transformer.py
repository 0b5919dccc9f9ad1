"""The transformer family of issue 13 as written: nn.MultiheadAttention (batch_first either
way), nn.TransformerEncoderLayer (post- and pre-norm, ReLU), from torch.export and from ONNX, and
the zoo's tiny transformer and TCN (``mnist1d_transformer``, ``mnist1d_tcn``): float accuracy
floor, the quantized model in C bit-exact with the interpreter on the host (every test sample,
and under ASan/UBSan) and on the emulated Cortex-M0 (QEMU micro:bit: 16 KB RAM; one sample).

GELU feed-forwards are not covered here: the GELU lookup table is reach-elem's. Accuracy, SQNR,
flash, arena and cycles are measured in benchmarks/arch_tf.py (RESULTS.md), not here.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import intquant
from intquant import zoo
from intquant.codegen.toolchain import build_m0, compile_and_run_host, run_on_m0

NAMES = ["mnist1d_transformer", "mnist1d_tcn"]
MODES = {"int8": 8, "16x8": 16}


class SelfAttention(nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.attn = nn.MultiheadAttention(16, 2, batch_first=batch_first)

    def forward(self, x):
        if not self.batch_first:  # the layer sees (T, N, C): sequence first, as written
            x = x.transpose(0, 1)
        y = self.attn(x, x, x, need_weights=False)[0]
        return y if self.batch_first else y.transpose(0, 1)


def _layer(name: str) -> nn.Module:
    torch.manual_seed(5)
    if name == "mha_batch_first":
        return SelfAttention(True).eval()
    if name == "mha_sequence_first":
        return SelfAttention(False).eval()
    return nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True,
                                      norm_first=name == "encoder_pre_norm").eval()


class Called(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


LAYERS = ["mha_batch_first", "mha_sequence_first", "encoder_post_norm", "encoder_pre_norm"]


def _sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    return float(10 * np.log10((ref**2).sum() / ((out - ref) ** 2).sum()))


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("name", LAYERS)
def test_attention_layers_quantize_as_written_and_c_is_bit_exact(name, bits, tmp_path):
    """Captured by torch.export with no edit; the integer model tracks float (a loose floor,
    20 / 30 dB: the measured values, ~33-36 / ~80 dB, are in RESULTS.md) and the host C equals
    the interpreter (-O2 and ASan/UBSan)."""
    model = _layer(name)
    gen = torch.Generator().manual_seed(1)
    calib, x = torch.randn(128, 6, 16, generator=gen), torch.randn(16, 6, 16, generator=gen)
    q = intquant.quantize(model, calib, intquant.Config(act_bits=bits), progress=False)
    kinds = {op.kind for op in q.graph.ops}
    assert {"matmul", "softmax", "fully_connected"} <= kinds
    assert ("layer_norm" in kinds) == name.startswith("encoder")
    xq = q.quantize_input(x.numpy())
    y = q.run(xq)
    with torch.no_grad():
        ref = model(x).double().numpy()
    assert _sqnr_db(ref, q.dequantize_output(y).astype(np.float64)) >= (20 if bits == 8 else 30)
    res = q.export_c(tmp_path / "c", name="net")
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, xq, opt="-O2"), y)
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, xq[:4], opt="-O1",
                                                       sanitize=True), y[:4])


@pytest.mark.parametrize("name", ["mha_batch_first", "encoder_post_norm", "encoder_pre_norm"])
def test_attention_layers_from_onnx_match_pytorch(name):
    """torch.onnx export of the layer as written, imported (MatMul, Softmax, LayerNormalization,
    Reshape/Transpose, the scalar scale folded into the matmul): the float graph equals
    PyTorch, and it quantizes to the same integer kinds."""
    model = Called(_layer(name))  # a plain forward(x): the TorchScript exporter traces the
    # encoder layer's is_causal default as a tensor when the layer is exported directly
    x = torch.randn(8, 6, 16, generator=torch.Generator().manual_seed(2))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x[:1],), buf, dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    gm = intquant.from_onnx(onnx.load_from_string(buf.getvalue()))
    with torch.no_grad():
        np.testing.assert_allclose(gm(x).numpy(), model(x).numpy(), atol=2e-5)
    q = intquant.quantize(gm, x, intquant.Config(), progress=False)
    assert {"matmul", "softmax"} <= {op.kind for op in q.graph.ops}


def test_transformer_zoo_models_are_in_the_architectures_table():
    assert set(NAMES) <= set(zoo.architectures())
    for name in NAMES:
        assert zoo.recipe(name).dataset == "mnist1d"


@pytest.fixture(scope="module")
def quantized(zoo_project):
    return lambda name, mode: zoo_project(name, act_bits=MODES[mode])


@pytest.mark.parametrize("name", NAMES)
def test_transformer_zoo_model_meets_its_float_accuracy_floor(zoo_model, name):
    model, ds = zoo_model(name)
    with torch.no_grad():
        acc = float((model(torch.from_numpy(ds.x_test)).argmax(1).numpy() == ds.y_test).mean())
    assert acc >= zoo.recipe(name).min_test_acc, acc


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", NAMES)
def test_transformer_zoo_c_host_bit_exact_every_test_sample(quantized, name, mode):
    q, res, x, ref, *_ = quantized(name, mode)
    kinds = {op.kind for op in q.graph.ops}
    assert ({"layer_norm", "matmul", "softmax", "add_const"} if name.endswith("transformer")
            else {"slice", "conv", "add"}) <= kinds
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, x, opt="-O2"), ref)
    np.testing.assert_array_equal(
        compile_and_run_host(res.out_dir, x[:20], opt="-O1", sanitize=True), ref[:20])


@pytest.mark.parametrize("name", NAMES)
def test_transformer_zoo_m0_one_sample(quantized, name):
    """W8A8 on QEMU's micro:bit (Cortex-M0, 16 KB RAM, no soft-float helper)."""
    _, res, x, ref, *_ = quantized(name, "int8")
    build = build_m0(res.out_dir, x[:1])
    assert build.soft_float == [] and build.board == "microbit"
    np.testing.assert_array_equal(run_on_m0(res.out_dir, x[:1], "qemu").reshape(ref[:1].shape),
                                  ref[:1])
