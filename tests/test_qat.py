"""QAT: prepare (placement, precision policy, overrides, errors), BN folding, conversion to the
integer model with the trained grid, and deployment bit-exactness (interpreter vs C)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from intquant.codegen.toolchain import compile_and_run_host
from intquant.config import Config
from intquant.ops import weight_codes
from intquant.ops._bits import unpack_weights
from intquant.qat import (
    agreement,
    convert,
    folded_float_model,
    prepare,
    ptq_overrides,
    recalibrate_batchnorm,
)
from intquant.qat.convert import fold_layer
from intquant.qat.modules import GridAvgPool, QConv1d
from intquant.qat.quantizers import LSQ, UniformAct, UniformWeight, deployed_code_shift
from intquant.training import evaluate, train


class Net(nn.Module):
    """conv-bn-relu, pool, conv-bn-relu, flatten, linear-relu (functional), linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(8, 8, 3, padding=1, bias=False), nn.BatchNorm1d(8), nn.ReLU(),
        )
        self.fc1 = nn.Linear(8 * 8, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(self.features(x).flatten(1))))


def _data(n: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four classes of noisy 1-D templates (16 samples each)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 16)
    templates = np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t), t - 0.5, (t > 0.5) - 0.5])
    y = rng.integers(0, 4, n)
    x = templates[y] + 0.3 * rng.standard_normal((n, 16))
    return x[:, None, :].astype(np.float32), y.astype(np.int64)


def _float_model(seed: int = 0) -> Net:
    """A float Net with non-trivial BatchNorm statistics and one negative γ."""
    torch.manual_seed(seed)
    m = Net()
    x, _ = _data(256, seed + 1)
    m.train()
    with torch.no_grad():
        for _ in range(5):
            m(torch.from_numpy(x))
        m.features[1].weight[2] = -0.7
        m.features[5].bias.uniform_(-0.2, 0.2)
    return m.eval()


# ---------------------------------------------------------------------------------------------
# prepare
# ---------------------------------------------------------------------------------------------


def test_prepare_policy_placement_and_original_untouched():
    m = _float_model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    cfg = Config(weight_bits=4, act_bits=3, weight_quantizer="lsq", act_quantizer="pact",
                 overrides={"features.4": {"weight_bits": 2}})
    q = prepare(m, cfg)
    info = q.qat_layers
    assert list(info) == ["features.0", "features.4", "fc1", "fc2"]
    # first and last layer weights at 8-bit uniform; the tensor feeding the last layer and the
    # logits at 8-bit uniform; everything else as configured.
    assert (info["features.0"].weight_quantizer, info["features.0"].weight_bits) == ("uniform", 8)
    assert (info["fc2"].weight_quantizer, info["fc2"].weight_bits) == ("uniform", 8)
    assert (info["features.4"].weight_quantizer, info["features.4"].weight_bits) == ("lsq", 2)
    assert (info["fc1"].weight_quantizer, info["fc1"].weight_bits) == ("lsq", 4)
    assert (info["features.0"].act_quantizer, info["features.0"].act_bits) == ("pact", 3)
    assert (info["features.4"].act_quantizer, info["features.4"].act_bits) == ("pact", 3)
    assert (info["fc1"].act_quantizer, info["fc1"].act_bits) == ("uniform", 8)
    assert (info["fc2"].act_quantizer, info["fc2"].act_signed) == ("uniform", True)
    assert info["features.0"].batchnorm == "features.1" and info["fc1"].batchnorm is None
    assert not info["fc1"].act_signed  # F.relu before the quantizer
    # each output quantizer sits after the fused activation (module or functional)
    nodes = {n.name: n for n in q.graph.nodes}
    assert [u.target for u in nodes["features_2"].users] == ["features.0.output_quant"]
    assert [u.target for u in nodes["relu"].users] == ["fc1.output_quant"]
    assert isinstance(q.get_submodule("features.4"), QConv1d)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k
    out = q(torch.randn(4, 1, 16))
    assert out.shape == (4, 4)


def test_precision_policy_can_be_disabled_and_input_overridden():
    q = prepare(_float_model(), Config(weight_bits=4, act_bits=4, weight_quantizer="lsq",
                                       act_quantizer="lsq", first_last_bits=None,
                                       overrides={"input": {"act_bits": 6}}))
    assert all(i.weight_bits == 4 and i.act_bits == 4 for i in q.qat_layers.values())
    assert q.input_quant.bits == 6


def test_prepare_errors_name_the_problem():
    m = _float_model()
    with pytest.raises(ValueError, match="'features.9'.*no Conv/Linear layer"):
        prepare(m, Config(overrides={"features.9": {"weight_bits": 4}}))
    with pytest.raises(ValueError, match="weight_quantizer.*'int4'"):
        prepare(m, Config(overrides={"fc1": {"weight_quantizer": "int4"}}))
    with pytest.raises(ValueError, match="ConvTranspose3d.*no QAT version"):
        prepare(nn.Sequential(nn.ConvTranspose3d(1, 2, 3)), Config())
    with pytest.raises(ValueError, match="unknown weight_quantizer"):
        prepare(m, Config(weight_quantizer="nope"))


def test_sign_activation_replaces_the_relu():
    q = prepare(_float_model(), Config(weight_bits=1, weight_quantizer="xnor",
                                       act_quantizer="sign"))
    nodes = {n.name: n for n in q.graph.nodes}
    assert "features_6" not in nodes  # the ReLU of features.4 is gone
    assert [u.target for u in nodes["features_5"].users] == ["features.4.output_quant"]
    seen = []
    q.get_submodule("features.4").output_quant.register_forward_hook(
        lambda mod, a, o: seen.append(o))
    q.eval().fake_quant_forward(torch.randn(3, 1, 16))
    assert set(torch.unique(seen[0]).tolist()) == {-1.0, 1.0}


def test_recalibrate_batchnorm_uses_deployed_weights():
    x, _ = _data(200)
    q = prepare(_float_model(), Config(weight_bits=1, act_bits=8,
                                       weight_quantizer="binary_stochastic",
                                       act_quantizer="uniform"), example_input=x)
    layer, bn = q.get_submodule("features.4"), q.get_submodule("features.5")
    feats = {}
    layer.register_forward_hook(lambda m, a, o: feats.__setitem__("in", a[0]))
    recalibrate_batchnorm(q, x, batch_size=1000)  # one batch: the hook sees its input
    with torch.no_grad():
        w = torch.where(layer.weight >= 0, 1.0, -1.0)  # deterministic sign (eval)
        y = F.conv1d(feats["in"], w, None, padding=1)
    torch.testing.assert_close(bn.running_mean, y.mean(dim=(0, 2)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, y.var(dim=(0, 2), unbiased=True), rtol=1e-4,
                               atol=1e-5)
    assert not q.training and not bn.training


# ---------------------------------------------------------------------------------------------
# BatchNorm folding and conversion
# ---------------------------------------------------------------------------------------------


def test_fold_layer_keeps_codes_and_equals_conv_then_bn():
    m = _float_model()
    conv, bn = m.features[0], m.features[1]
    from intquant.qat.modules import to_qat_layer

    qconv = to_qat_layer(conv, UniformWeight(4)).eval()
    qconv.link(bn, None)
    with torch.no_grad():
        w_fq = qconv.quantized_weight()
    s = qconv.weight_quant.export()["scale"]
    codes = np.rint(w_fq.numpy() / s.reshape(-1, 1, 1)).astype(np.int64)
    folded = fold_layer(qconv)
    gamma = bn.weight.detach().numpy().astype(np.float64)
    f = gamma / np.sqrt(bn.running_var.numpy().astype(np.float64) + bn.eps)
    np.testing.assert_array_equal(folded["codes"], codes * np.sign(f).reshape(-1, 1, 1))
    np.testing.assert_array_equal(folded["scale"], np.abs(s * f).astype(np.float32))
    x = torch.randn(5, 1, 16)
    qconv.link(None, None)  # unfolded: conv with quantized weights, then the BatchNorm
    with torch.no_grad():
        ref = bn(qconv(x)).double()
        got = F.conv1d(x, folded["weight"], folded["bias"], padding=1).double()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_folded_float_model_matches_qat_eval_without_quantizers():
    q = prepare(_float_model(), Config(weight_bits=4, act_bits=4, weight_quantizer="lsq",
                                       act_quantizer="lsq"), example_input=_data(64)[0])
    fm = folded_float_model(q)
    assert not any(isinstance(mod, nn.BatchNorm1d) for mod in fm.modules())
    # With the activation quantizers made transparent, the fake-quant eval forward == folded
    # float model (float vs float: equal up to float rounding on any machine).
    q.eval()
    q.exact_eval = False
    x = torch.from_numpy(_data(32, 5)[0])
    ident = {}
    for name in list(q.qat_layers) + ["input_quant"]:
        quant = q.input_quant if name == "input_quant" else q.get_submodule(name).output_quant
        ident[name] = quant.forward
        quant.forward = lambda t: t
    try:
        with torch.no_grad():
            ref = q(x)
    finally:
        for name, fwd in ident.items():
            quant = q.input_quant if name == "input_quant" else q.get_submodule(name).output_quant
            quant.forward = fwd
    with torch.no_grad():
        # equal up to the bias rounding to the accumulator grid that QAT eval applies
        torch.testing.assert_close(fm(x), ref, rtol=0, atol=2e-2)


def _trained_qat(cfg: Config, epochs: int = 10) -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    x, y = _data(512)
    q = prepare(_float_model(), cfg, example_input=x[:128])
    train(q, (x, y), epochs=epochs, lr=1e-2, batch_size=64, progress=False)
    return q, x, y


def test_qat_w4a4_converts_with_trained_grid_and_runs_bit_exact_in_c(tmp_path):
    cfg = Config(weight_bits=4, act_bits=4, weight_quantizer="lsq", act_quantizer="lsq")
    q, x, y = _trained_qat(cfg)
    xt, yt = _data(256, seed=9)
    assert evaluate(q, xt, yt) > 0.6  # it learned (4 classes, chance 0.25)
    qm = convert(q, x[:64])
    # the IntGraph holds exactly the trained codes and formats
    ov = ptq_overrides(q)
    for name in q.qat_layers:
        folded = fold_layer(q.get_submodule(name))
        op = next(o for o in qm.graph.ops if o.name == name)
        w = weight_codes(op).astype(np.int64)
        np.testing.assert_array_equal(w.reshape(folded["codes"].shape), folded["codes"])
        e = q.get_submodule(name).output_quant.export()
        t = qm.graph.tensors[op.output]
        assert np.float32(t.scale) == np.float32(e["scale"][0]), name
        assert ov[name]["weight_bits"] == q.qat_layers[name].weight_bits
    assert np.float32(qm.input_info.scale) == np.float32(q.input_quant.export()["scale"][0])
    # eval-mode QAT runs the integer model: logits bit-identical, on every machine
    agree = agreement(q, qm, xt)
    assert agree["exact_fraction"] == 1.0 and agree["max_abs_diff_lsb"] == 0.0, agree
    assert qm.accuracy(xt, yt) == evaluate(q, xt, yt)
    # interpreter and generated C agree bit for bit
    xi = qm.quantize_input(xt[:64])
    out_dir = tmp_path / "c"
    qm.export_c(out_dir)
    np.testing.assert_array_equal(compile_and_run_host(out_dir, xi), qm.run(xi))


@pytest.mark.parametrize("wq,wb,aq,ab", [
    ("binary", 1, "sign", 1),
    ("xnor", 1, "sign", 1),
    ("binary", 1, "uniform", 8),
    ("xnor", 1, "hwgq", 2),
    ("ternary", 2, "pact", 2),
    ("lsq", 2, "lsq", 2),
    ("dorefa", 2, "dorefa", 2),
    ("pow2", 4, "uniform", 8),
    ("uniform", 4, "pact", 4),
])
def test_low_bit_grids_deploy_bit_exact(tmp_path, wq, wb, aq, ab):
    cfg = Config(weight_bits=wb, act_bits=ab, weight_quantizer=wq, act_quantizer=aq)
    x, _ = _data(256)
    q = prepare(_float_model(), cfg, example_input=x[:128]).eval()
    qm = convert(q, x[:64])
    name = "features.4"  # a low-bit layer: its codes in the IntGraph are the QAT levels
    op = next(o for o in qm.graph.ops if o.name == name)
    levels = q.get_submodule(name).weight_quant.levels()
    if op.kind == "binary_conv":  # between sign layers: packed ±1 weights (ops/_bits.py)
        kh, kw = op.attrs["kernel"]
        w = unpack_weights(op.consts["weight"], qm.graph.tensors[op.inputs[0]].shape[0], kh, kw)
    else:
        w = weight_codes(op)
    codes = np.unique(np.abs(w.astype(np.int64)))
    if levels is not None:
        assert set(codes.tolist()) <= {abs(v) for v in levels}
    assert codes.max() <= 2 ** (q.get_submodule(name).weight_quant.bits - 1)
    agree = agreement(q, qm, x)  # eval mode runs the integer model: identical on every CPU
    assert agree["exact_fraction"] == 1.0 and agree["argmax_agreement"] == 1.0, agree
    xi = qm.quantize_input(x[:32])
    qm.export_c(tmp_path / "c")
    np.testing.assert_array_equal(compile_and_run_host(tmp_path / "c", xi), qm.run(xi))


def test_lsq_steps_are_trained():
    cfg = Config(weight_bits=4, act_bits=4, weight_quantizer="lsq", act_quantizer="lsq")
    x, _ = _data(128)
    q0 = prepare(_float_model(), cfg, example_input=x)
    step0 = q0.get_submodule("features.4").weight_quant.step.detach().clone()
    q, _, _ = _trained_qat(cfg, epochs=1)
    wq = q.get_submodule("features.4").weight_quant
    assert isinstance(wq, LSQ) and wq.step.shape == step0.shape == (8,)
    assert not torch.equal(wq.step.detach(), step0)


@pytest.mark.parametrize("signed", [False, True])
def test_training_average_pool_rounds_stored_codes_like_the_integer_op(signed):
    """GridAvgPool (the training forward's pool) returns the codes the integer avg_pool
    computes: the sum of the *stored* codes (unsigned 4-bit codes are stored shifted down by 8)
    divided by the count, rounded half away from zero. Exact on any IEEE machine: the float32
    mean is far closer than half a step to the true mean for these small windows."""
    src = UniformAct(4, signed=signed)
    with torch.no_grad():
        src.min_val.fill_(-3.3 if signed else 0.0)
        src.max_val.fill_(2.9 if signed else 4.1)
        src.initialized.fill_(True)
    scale, zp = (float(v) for v in src.record_grid())
    shift = deployed_code_shift(src)
    assert shift == (0 if signed else -8)
    lo, hi = src.code_range()
    rng = np.random.default_rng(1)
    codes = rng.integers(lo, hi + 1, size=(64, 3, 2, 2))
    # stored sums −26 and 10: −6.5 → −7 and 2.5 → 3 (half to even would give −6 and 2)
    codes[0, 0] = np.array([[-8, -8], [-6, -4]]) - shift
    codes[0, 1] = np.array([[7, 7], [-2, -2]]) - shift
    x = torch.from_numpy((np.float32(scale) * (codes - zp)).astype(np.float32))
    pool = GridAvgPool(nn.AdaptiveAvgPool2d(1), src)
    with torch.no_grad():
        out = pool(x).numpy().astype(np.float64)
    got = np.rint(out / np.float32(scale)) + zp + shift  # the stored output code
    stored = (codes + shift).reshape(64, 3, 4).sum(axis=2)
    want = [[_round_half_away(Fraction(int(v), 4)) for v in row] for row in stored]
    np.testing.assert_array_equal(got.reshape(64, 3), np.array(want))
    assert any(Fraction(int(v), 4).denominator == 2 for v in stored.ravel())  # ties tested


def _round_half_away(v: Fraction) -> int:
    n = abs(v)
    r = int(n) + (1 if n - int(n) >= Fraction(1, 2) else 0)
    return r if v >= 0 else -r


def test_global_average_pool_model_deploys_bit_exact(tmp_path):
    """conv2d-bn-relu → global average pool → linear: eval mode (the integer model) and the
    generated C agree bit for bit."""
    torch.manual_seed(3)
    m = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    x = torch.randn(256, 1, 4, 4)
    m.train()
    with torch.no_grad():
        m(x)
    m.eval()
    cfg = Config(weight_bits=4, act_bits=4, weight_quantizer="lsq", act_quantizer="lsq")
    q = prepare(m, cfg, example_input=x).eval()
    qm = convert(q, x[:32].numpy())
    agree = agreement(q, qm, x.numpy())
    assert agree["exact_fraction"] == 1.0, agree
    xi = qm.quantize_input(x[:32].numpy())
    qm.export_c(tmp_path / "c")
    np.testing.assert_array_equal(compile_and_run_host(tmp_path / "c", xi), qm.run(xi))


# ---------------------------------------------------------------------------------------------
# Transposed convolutions (ops/conv_transpose.py)
# ---------------------------------------------------------------------------------------------


class TinyUNet(nn.Module):
    """A U-Net as people write it: conv down, ConvTranspose up (BatchNorm + ReLU after it, as
    fused and folded), concat with the skip, conv; a grouped strided ConvTranspose1d branch
    over the rows, cropped and padded (padding, output_padding), added back."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.mid = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(8, 4, 2, stride=2), nn.BatchNorm2d(4),
                                nn.ReLU())
        self.dec = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.ReLU())
        self.rows = nn.Sequential(nn.Conv1d(8, 4, 3, stride=3, padding=1), nn.ReLU(),
                                  nn.ConvTranspose1d(4, 8, 3, stride=3, padding=1,
                                                     output_padding=1, groups=2))
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.enc(x)
        d = self.dec(torch.cat([self.up(self.mid(F.max_pool2d(e, 2))), e], dim=1))
        y = self.head(d)  # (N, 1, 8, 8)
        r = self.rows(y.flatten(2).reshape(-1, 8, 8))  # rows as channels: (N, 8, 8)
        return y + r.reshape(-1, 1, 8, 8)


def _denoise_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth 8x8 images (sums of two separable waves) and their noisy copies."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, np.pi, 8)
    f = rng.uniform(0.5, 2.0, (n, 2, 2))
    clean = (np.sin(f[:, 0, 0, None, None] * t[:, None]) * np.cos(f[:, 0, 1, None, None] * t)
             + np.cos(f[:, 1, 0, None, None] * t[:, None]) * np.sin(f[:, 1, 1, None, None] * t))
    noisy = clean + 0.3 * rng.standard_normal(clean.shape)
    return noisy[:, None].astype(np.float32), clean[:, None].astype(np.float32)


def test_conv_transpose_layers_train_and_eval_is_the_integer_model(tmp_path):
    """ConvTranspose1d/2d get QAT layers whose weights are fake-quantized per *output*
    channel (dim 1 of torch's [Cin, Cout/groups, k] weight, per group: the grid lowering
    deploys); a few training steps move them; eval mode then equals the converted integer
    graph (which holds conv_transpose ops with the trained codes) code for code, and the
    generated C equals the interpreter."""
    torch.manual_seed(0)
    x, target = _denoise_data(256, 1)
    q = prepare(TinyUNet().eval(), Config(weight_bits=4, act_bits=8, weight_quantizer="lsq"),
                example_input=x[:64])
    up, rows = q.get_submodule("up.0"), q.get_submodule("rows.2")
    assert type(up).__name__ == "QConvTranspose2d" and type(rows).__name__ == "QConvTranspose1d"
    # the uniform (first/last: 8-bit) quantizer of the 1-D branch: one scale per output channel,
    # max |w| over torch's dim 1 within each group / 127
    w = rows.weight.detach().reshape(2, 2, 4, 3)  # [group, cin/g, cout/g, k]
    want = w.abs().amax(dim=(1, 3)).reshape(8) / 127
    rows.quantized_weight()
    torch.testing.assert_close(rows.weight_quant.scale.reshape(8), want, rtol=1e-6, atol=0)
    before = up.weight.detach().clone()
    opt = torch.optim.Adam(q.parameters(), lr=1e-2)
    q.train()
    for i in range(6):
        xb, tb = (torch.from_numpy(a[32 * i: 32 * (i + 1)]) for a in (x, target))
        loss = F.mse_loss(q(xb), tb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(up.weight.detach(), before)
    qm = convert(q, x[:64])
    ops = {o.name: o for o in qm.graph.ops}
    assert ops["up.0"].kind == ops["rows.2"].kind == "conv_transpose"
    for name in ("up.0", "rows.2"):
        folded = fold_layer(q.get_submodule(name))  # codes output channel first, BN folded
        np.testing.assert_array_equal(weight_codes(ops[name]).astype(np.int64).reshape(
            folded["codes"].shape), folded["codes"])
    xt, _ = _denoise_data(64, 7)
    q.eval()
    with torch.no_grad():
        out = q(torch.from_numpy(xt)).numpy().astype(np.float64)
    info = qm.output_info
    codes = np.rint(out / info.scale) + info.zero_point
    xi = qm.quantize_input(xt)
    ref = qm.run(xi)
    np.testing.assert_array_equal(codes, ref)
    assert np.unique(ref).size > 20
    qm.export_c(tmp_path / "c")
    np.testing.assert_array_equal(compile_and_run_host(tmp_path / "c", xi), ref)
