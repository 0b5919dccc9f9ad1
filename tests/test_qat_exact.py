"""QAT eval mode is the deployed integer model, on every CPU.

A prepared model in eval mode must return exactly what ``intquant.qat.convert`` deploys: the
integer logits of ``QuantizedModel.run`` (dequantized). These tests compare *integer codes* —
the eval output divided by the output scale, which recovers the code exactly, against a fresh
conversion run by the NumPy interpreter — so they hold or fail the same way on AVX2, AVX-512
and ATen's default kernels (the float fake-quant forward does not: its convolutions round
differently per CPU). They cover every zoo model with every quantizer family after a few
training steps (so the parameters are not the float model's), the cache that rebuilds the
integer model when parameters change, the deployment config (double rounding, 16x8), and
that training mode never converts.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import ZOO_NAMES
from intquant.config import Config
from intquant.qat import convert, prepare, recalibrate_batchnorm
from intquant.qat import model as qat_model_module
from intquant.training import train

# (weight quantizer, weight bits, activation quantizer, activation bits): every family once.
FAMILIES = [
    ("uniform", 8, "uniform", 8),
    ("lsq", 4, "lsq", 4),
    ("uniform", 4, "pact", 4),
    ("binary", 1, "uniform", 8),           # BinaryConnect
    ("binary_stochastic", 1, "uniform", 8),
    ("binary", 1, "sign", 1),              # BNN
    ("xnor", 1, "sign", 1),                # XNOR-Net
    ("ternary", 2, "uniform", 8),          # TWN
    ("dorefa", 2, "dorefa", 2),
    ("xnor", 1, "hwgq", 2),                # HWGQ activations
    ("pow2", 4, "uniform", 8),
]


def _trained(model, ds, cfg: Config, steps: int = 2):
    """prepare + a couple of training steps: parameters, BN statistics and steps move."""
    q = prepare(model, cfg, example_input=ds.x_train[:128])
    n = 64 * steps
    train(q, (ds.x_train[:n], ds.y_train[:n]), epochs=1, lr=1e-3, batch_size=64,
          progress=False)
    return q


def _eval_output(q, x: np.ndarray) -> np.ndarray:
    q.eval()
    with torch.no_grad():
        out = q(torch.from_numpy(x)).numpy()
    assert out.dtype == np.float32
    return out


def _codes(out: np.ndarray, qmodel) -> np.ndarray:
    """The integer logits behind the eval-mode QAT model's float32 output."""
    info = qmodel.output_info
    codes = np.rint(out.astype(np.float64) / info.scale) + info.zero_point
    # The float32 output is exactly fl32(scale·(code − zero point)), nothing else.
    np.testing.assert_array_equal(out, np.float32(qmodel.dequantize_output(codes)))
    return codes.astype(np.int64)


def _assert_eval_is_deployed(q, x: np.ndarray) -> None:
    out = _eval_output(q, x)
    qmodel = convert(q)  # an independent conversion, not the eval-mode cache
    ref = qmodel.run(qmodel.quantize_input(x)).astype(np.int64)
    np.testing.assert_array_equal(_codes(out, qmodel), ref)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f"{f[0]}{f[1]}-{f[2]}{f[3]}")
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_eval_equals_integer_model_on_every_zoo_model(zoo_model, name, family):
    model, ds = zoo_model(name)
    wq, wb, aq, ab = family
    cfg = Config(weight_bits=wb, act_bits=ab, weight_quantizer=wq, act_quantizer=aq)
    q = _trained(model, ds, cfg)
    if wq == "binary_stochastic":  # the documented recipe; eval is exact either way
        recalibrate_batchnorm(q, ds.x_train[:256])
    _assert_eval_is_deployed(q, ds.x_test[:200])


def test_eval_follows_the_parameters(mnist1d_resnet):
    """The cached integer model is rebuilt after a training step, and only then."""
    model, ds = mnist1d_resnet
    cfg = Config(weight_bits=4, act_bits=4, weight_quantizer="lsq", act_quantizer="lsq")
    q = _trained(model, ds, cfg, steps=1)
    x = ds.x_test[:100]
    q.eval()
    with torch.no_grad():
        before = q(torch.from_numpy(x))
        first = q.deployed_model()
        assert q.deployed_model() is first  # nothing changed: no reconversion
    train(q, (ds.x_train[:256], ds.y_train[:256]), epochs=1, lr=1e-2, progress=False)
    assert q.deployed_model() is not first
    with torch.no_grad():
        after = q(torch.from_numpy(x))
    assert not torch.equal(before, after)
    _assert_eval_is_deployed(q, x)
    twin = copy.deepcopy(q)  # a copy keeps the QAT metadata and converts on its own
    _assert_eval_is_deployed(twin, x)


def test_residual_adds_are_trained_formats(mnist1d_resnet):
    """Each residual add is a QAdd whose output format reaches the IntGraph unchanged, so the
    integer model does not depend on the calibration data given to convert."""
    model, ds = mnist1d_resnet
    cfg = Config(weight_bits=4, act_bits=4, weight_quantizer="lsq", act_quantizer="lsq")
    q = _trained(model, ds, cfg, steps=1)
    assert list(q.qat_adds) == ["blocks.0.add", "blocks.1.add", "blocks.2.add"]
    # the last add feeds the last layer (through the pool): 8-bit by the first/last policy
    assert (q.qat_adds["blocks.2.add"].act_quantizer, q.qat_adds["blocks.2.add"].act_bits) == \
        ("uniform", 8)
    assert q.qat_adds["blocks.0.add"].act_bits == 4 and not q.qat_adds["blocks.0.add"].act_signed
    a = convert(q, ds.x_train[:64])
    b = convert(q, np.random.default_rng(0).normal(size=(8, 1, 40)).astype(np.float32))
    for op_a, op_b in zip(a.graph.ops, b.graph.ops, strict=True):
        assert op_a.attrs == op_b.attrs, op_a.name
        for k in op_a.consts:
            np.testing.assert_array_equal(op_a.consts[k], op_b.consts[k])
    for name in q.qat_adds:
        t = a.graph.tensors[next(o.output for o in a.graph.ops if o.name == name)]
        assert np.float32(t.scale) == q.get_submodule(name).output_quant.scale.item(), name


@pytest.mark.parametrize("deploy", [Config(rounding="double"), Config(rounding="single")],
                         ids=["double", "single"])
def test_eval_uses_the_deployment_rounding(mnist1d_cnn, deploy):
    model, ds = mnist1d_cnn
    cfg = Config(weight_bits=4, act_bits=4, weight_quantizer="lsq", act_quantizer="lsq")
    q = _trained(model, ds, cfg, steps=1)
    q.deploy_config = deploy
    qmodel = q.deployed_model()
    assert {op.attrs.get("rounding") for op in qmodel.graph.ops if op.kind == "conv"} == \
        {deploy.rounding}
    _assert_eval_is_deployed(q, ds.x_test[:200])


def test_eval_of_16x8_model(mnist1d_dscnn):
    """W8A16: int16 activations, int64 accumulators and the 16-bit reduced multiplier."""
    model, ds = mnist1d_dscnn
    cfg = Config(weight_bits=8, act_bits=16, first_last_bits=16)
    q = _trained(model, ds, cfg, steps=1)
    qmodel = q.deployed_model()
    assert {qmodel.graph.tensors[op.output].dtype for op in qmodel.graph.ops} == {"int16"}
    _assert_eval_is_deployed(q, ds.x_test[:200])


def test_training_mode_never_converts(mnist1d_cnn, monkeypatch):
    """Training keeps the fake-quant straight-through forward (fast, differentiable)."""
    model, ds = mnist1d_cnn
    cfg = Config(weight_bits=4, act_bits=4, weight_quantizer="lsq", act_quantizer="lsq")
    q = prepare(model, cfg, example_input=ds.x_train[:128])

    def refuse(*a, **k):
        raise AssertionError("convert called in training mode")

    monkeypatch.setattr(qat_model_module.QATModel, "deployed_model", refuse)
    q.train()
    out = q(torch.from_numpy(ds.x_train[:32]))
    assert out.requires_grad
    out.sum().backward()
    assert q.get_submodule("features.3").weight.grad is not None
    # eval with exact_eval off is the fake-quant forward too
    q.eval()
    q.exact_eval = False
    with torch.no_grad():
        q(torch.from_numpy(ds.x_train[:32]))


def test_eval_before_any_data_initialises_from_the_batch(mnist1d_mlp):
    model, ds = mnist1d_mlp
    cfg = Config(weight_bits=4, act_bits=4, weight_quantizer="lsq", act_quantizer="pact")
    q = prepare(model, cfg).eval()
    with pytest.raises(ValueError, match="have not seen data yet"):
        q.deployed_model()
    _assert_eval_is_deployed(q, ds.x_test[:100])


class _Concat(torch.nn.Module):
    """Linear → [h, sigmoid(h)] → linear: the sigmoid and concat formats are not trained."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(4, 4)
        self.b = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return self.b(torch.cat([h, torch.sigmoid(h)], dim=1))


def test_untrained_formats_are_calibrated_on_the_first_samples():
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    q = prepare(_Concat(), example_input=x[:64])
    np.testing.assert_array_equal(q.calibration_input, x[:64])
    _assert_eval_is_deployed(q, x)  # convert(q) calibrates on the same samples


def test_eval_of_an_unconvertible_model_says_what_to_do():
    class Exp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.exp(self.a(x))  # no integer exp of an activation

    q = prepare(Exp(), example_input=torch.randn(32, 4)).eval()
    with pytest.raises(ValueError, match="runs the deployed integer model.*exact_eval = False"):
        q(torch.randn(3, 4))
    q.exact_eval = False
    assert q(torch.randn(3, 4)).shape == (3, 4)
