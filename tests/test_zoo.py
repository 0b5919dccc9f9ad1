"""Reference zoo (architecture constraints, cache, accuracy floors), textbook baseline, demo."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.fx
from torch import nn

from conftest import ZOO_NAMES
from intquant import baseline, data, zoo

ALLOWED_LAYERS = (
    nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear, nn.Dropout,
)  # fmt: skip
MAX_PARAMS = 30_000
MAX_ADJACENT_INT8_BYTES = 8 * 1024


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if not list(m.children())]


def _input_shape(name: str) -> tuple[int, ...]:
    return (1, 8, 8) if name.startswith("digits") else (1, 40)


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy computed directly (not with intquant.training.evaluate)."""
    with torch.no_grad():
        pred = model.eval()(torch.from_numpy(x)).argmax(1).numpy()
    return float(np.mean(pred == y))


# ---------------------------------------------------------------------------------------------
# architectures (untrained: fast)
# ---------------------------------------------------------------------------------------------


def test_names():
    assert zoo.names() == ZOO_NAMES


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_build_forward_shape_params_and_layers(name):
    model = zoo.build(name).eval()
    out = model(torch.zeros(3, *_input_shape(name)))
    assert out.shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) <= MAX_PARAMS
    bad = [(n, type(m).__name__) for n, m in _leaves(model) if not isinstance(m, ALLOWED_LAYERS)]
    assert not bad, f"layers outside the supported set: {bad}"


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_activations_fit_a_16k_ram_mcu(name):
    """Largest (input + output) of any layer, at one byte per value, stays under 8 KB."""
    model = zoo.build(name).eval()
    sizes: list[tuple[str, int]] = []

    def hook(mod, inputs, output, label):
        sizes.append((label, inputs[0].numel() + output.numel()))

    handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(mod, i, o, n))
               for n, m in _leaves(model)]  # fmt: skip
    model(torch.zeros(1, *_input_shape(name)))
    for h in handles:
        h.remove()
    label, worst = max(sizes, key=lambda s: s[1])
    assert worst <= MAX_ADJACENT_INT8_BYTES, (label, worst)


@pytest.mark.parametrize("name", [n for n in ZOO_NAMES if n != "mnist1d_mlp"])
def test_every_conv_is_followed_by_batchnorm(name):
    """The CNNs exercise BN folding: in execution order each conv feeds a BatchNorm."""
    gm = torch.fx.symbolic_trace(zoo.build(name))
    mods = dict(gm.named_modules())
    convs = 0
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(mods[node.target], nn.Conv1d | nn.Conv2d):
            convs += 1
            users = list(node.users)
            assert len(users) == 1 and users[0].op == "call_module", node.target
            assert isinstance(mods[users[0].target], nn.BatchNorm1d | nn.BatchNorm2d), node.target
    assert convs >= 3


def test_zoo_covers_the_features_the_quantizer_must_handle():
    models = {n: zoo.build(n) for n in ZOO_NAMES}
    leaves = {n: _leaves(m) for n, m in models.items()}
    kinds = {type(m) for ls in leaves.values() for _, m in ls}
    for needed in (nn.ReLU6, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AdaptiveAvgPool1d,
                   nn.AdaptiveAvgPool2d, nn.Dropout, nn.Linear, nn.Conv2d):  # fmt: skip
        assert needed in kinds, needed
    convs = [m for ls in leaves.values() for _, m in ls if isinstance(m, nn.Conv1d | nn.Conv2d)]
    assert any(c.groups == c.in_channels > 1 for c in convs), "no depthwise conv"
    assert any(c.kernel_size == (1,) for c in convs), "no pointwise conv"
    assert any(c.stride[0] > 1 for c in convs), "no strided conv"
    assert any(c.bias is not None for c in convs), "no conv with its own bias before BN"
    # The residual add is a graph node, not a module.
    gm = torch.fx.symbolic_trace(models["mnist1d_resnet"])
    adds = [n for n in gm.graph.nodes if n.op == "call_function" and "add" in str(n.target)]
    assert len(adds) == 3


def test_module_names_are_stable():
    expected = {
        "digits_cnn": {"features.0": nn.Conv2d, "features.1": nn.BatchNorm2d,
                       "classifier.2": nn.Linear},
        "mnist1d_cnn": {"features.0": nn.Conv1d, "classifier.1": nn.Linear},
        "mnist1d_mlp": {"features.1": nn.Linear, "classifier.0": nn.Linear},
        "mnist1d_dscnn": {"features.3": nn.Conv1d, "features.5": nn.ReLU6},
        "mnist1d_resnet": {"stem.0": nn.Conv1d, "blocks.0.conv1": nn.Conv1d,
                           "blocks.1.downsample.0": nn.Conv1d, "fc": nn.Linear},
    }  # fmt: skip
    for name, layers in expected.items():
        mods = dict(zoo.build(name).named_modules())
        for layer, kind in layers.items():
            assert isinstance(mods.get(layer), kind), (name, layer)


def test_build_is_deterministic():
    a, b = zoo.build("mnist1d_dscnn"), zoo.build("mnist1d_dscnn")
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


def test_unknown_name_raises():
    with pytest.raises(ValueError, match="unknown zoo model 'vgg'"):
        zoo.build("vgg")


# ---------------------------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------------------------


def test_weights_round_trip_through_npz_without_pickle(tmp_path):
    model = zoo.build("mnist1d_resnet")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    model.blocks[0].bn1.running_var.fill_(3.0)
    path = tmp_path / "w.npz"
    zoo._save_weights(model, path)
    with np.load(path, allow_pickle=False) as z:  # loads with pickles disabled
        assert set(z.files) == set(model.state_dict())
    fresh = zoo.build("mnist1d_resnet")
    assert zoo._load_weights(fresh, path)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    path.write_bytes(b"garbage")
    assert not zoo._load_weights(zoo.build("mnist1d_resnet"), path)


def test_cache_key_follows_the_recipe_but_not_the_floor(monkeypatch):
    name = "digits_cnn"
    key = zoo._cache_key(name)
    builder, rec = zoo._MODELS[name]
    monkeypatch.setitem(zoo._MODELS, name, (builder, dataclasses.replace(rec, min_test_acc=0.5)))
    assert zoo._cache_key(name) == key
    monkeypatch.setitem(zoo._MODELS, name, (builder, dataclasses.replace(rec, epochs=31)))
    assert zoo._cache_key(name) != key
    monkeypatch.setitem(zoo._MODELS, name, (builder, rec))
    monkeypatch.setattr(zoo, "ZOO_VERSION", zoo.ZOO_VERSION + "-changed")
    assert zoo._cache_key(name) != key


def test_get_without_training_on_empty_cache_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("INTQUANT_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="train_if_missing=True"):
        zoo.get("digits_cnn", train_if_missing=False)


def test_get_rechecks_the_cache_after_taking_the_lock(tmp_path, monkeypatch):
    """A process that waited for the lock loads what the other one trained instead of training."""
    monkeypatch.setenv("INTQUANT_CACHE", str(tmp_path))
    calls = iter([False, True])  # missing before the lock, present after it
    monkeypatch.setattr(zoo, "_load_weights", lambda model, path: next(calls))

    def no_training(*args, **kwargs):
        raise AssertionError("trained although another process had just cached the model")

    monkeypatch.setattr(zoo, "_train_and_cache", no_training)
    model, _ = zoo.get("digits_cnn")
    assert not model.training


def test_file_lock_is_exclusive(tmp_path):
    events: list[str] = []
    held = threading.Event()

    def holder() -> None:
        with zoo._file_lock(tmp_path / "x.lock"):
            held.set()
            time.sleep(0.3)
            events.append("holder done")

    t = threading.Thread(target=holder)
    t.start()
    held.wait()
    with zoo._file_lock(tmp_path / "x.lock"):
        events.append("waiter in")
    t.join()
    assert events == ["holder done", "waiter in"]


# ---------------------------------------------------------------------------------------------
# trained models (session fixtures: trained once per machine, cached)
# ---------------------------------------------------------------------------------------------


def test_trained_model_meets_its_accuracy_floor(any_zoo_model):
    name, model, ds = any_zoo_model
    assert not model.training
    acc = _accuracy(model, ds.x_test, ds.y_test)
    assert acc >= zoo.recipe(name).min_test_acc, (name, acc)
    info = zoo.meta(name)
    assert info is not None and info["name"] == name
    assert info["test_acc"] == pytest.approx(acc, abs=1e-9)


def test_documented_floors():
    floors = {n: zoo.recipe(n).min_test_acc for n in ZOO_NAMES}
    assert floors == {"digits_cnn": 0.97, "mnist1d_cnn": 0.95, "mnist1d_mlp": 0.60,
                      "mnist1d_dscnn": 0.92, "mnist1d_resnet": 0.95}  # fmt: skip


def test_get_returns_cached_weights_without_training(digits_cnn, monkeypatch):
    model, _ = digits_cnn

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(zoo, "_train_and_cache", no_training)
    again, ds = zoo.get("digits_cnn", train_if_missing=False)
    assert ds.name == "digits"
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


def test_fixture_gives_independent_copies(zoo_model):
    a, _ = zoo_model("mnist1d_mlp")
    with torch.no_grad():
        a.classifier[0].weight.zero_()
    b, _ = zoo_model("mnist1d_mlp")
    assert b.classifier[0].weight.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# textbook baseline
# ---------------------------------------------------------------------------------------------


def _round_half_away_fraction(v: Fraction) -> int:
    """Exact round-half-away-from-zero of a rational."""
    sign = -1 if v < 0 else 1
    a = abs(v)
    n = a.numerator // a.denominator
    return sign * (n + 1 if a - n >= Fraction(1, 2) else n)


def test_textbook_4bit_matches_exact_rational_computation(digits_cnn):
    model, _ = digits_cnn
    w = model.features[0].weight.detach().numpy()
    q, qf = baseline.textbook_quantize_tensor(w, 4)
    fw = [Fraction(float(v)) for v in w.ravel()]
    max_abs = max(abs(v) for v in fw)
    exact_qf = Fraction(7) / max_abs
    expected = [_round_half_away_fraction(v * exact_qf) for v in fw]
    assert q.ravel().tolist() == expected
    assert q.min() >= -7 and q.max() <= 7 and np.abs(q).max() == 7
    # In the quantized model: w' = q / qf, error at most half a step everywhere.
    qmodel = baseline.textbook_quantize_weights(model, 4)
    wq = qmodel.features[0].weight.detach().numpy().astype(np.float64)
    step = float(max_abs) / 7
    exact_wq = np.array([float(Fraction(e) / exact_qf) for e in expected]).reshape(w.shape)
    np.testing.assert_allclose(wq, exact_wq, rtol=1e-6)
    assert np.abs(wq - w).max() <= step / 2 * (1 + 1e-6)
    assert len(np.unique(wq)) <= 15


def test_textbook_copies_and_leaves_biases_and_bn_untouched(digits_cnn):
    model, _ = digits_cnn
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qmodel = baseline.textbook_quantize_weights(model, 4)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"original model changed at {k}"
    qmods = dict(qmodel.named_modules())
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            assert not torch.equal(qmods[name].weight, m.weight), name
            if m.bias is not None:
                assert torch.equal(qmods[name].bias, m.bias), name
        elif isinstance(m, nn.BatchNorm2d):
            for k, v in m.state_dict().items():
                assert torch.equal(qmods[name].state_dict()[k], v), (name, k)


def test_textbook_16_bits_keeps_float_accuracy(digits_cnn):
    model, ds = digits_cnn
    float_acc = _accuracy(model, ds.x_test, ds.y_test)
    q16 = _accuracy(baseline.textbook_quantize_weights(model, 16), ds.x_test, ds.y_test)
    assert abs(q16 - float_acc) <= 0.005


def test_textbook_rejects_bad_bits_and_names_the_layer(digits_cnn):
    model, _ = digits_cnn
    with pytest.raises(ValueError, match=r"layer 'features.0'.*bits"):
        baseline.textbook_quantize_weights(model, 1)
    with torch.no_grad():
        model.classifier[2].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"layer 'classifier.2'.*NaN"):
        baseline.textbook_quantize_weights(model, 8)


def test_textbook_all_zero_tensor():
    q, qf = baseline.textbook_quantize_tensor(np.zeros((2, 3)), 8)
    assert qf == 1.0 and not q.any()


# ---------------------------------------------------------------------------------------------
# demo (phase 1)
# ---------------------------------------------------------------------------------------------


def test_demo_phase1_table(digits_cnn, capsys):
    from intquant import demo

    rows = demo.phase1(progress=False)
    out = capsys.readouterr().out
    assert [r.weight_bits for r in rows] == ["32", "16", "8", "4"]
    model, ds = digits_cnn
    assert rows[0].accuracy == pytest.approx(_accuracy(model, ds.x_test, ds.y_test))
    assert "float32" in out and "textbook max-abs" in out
    assert out.count("%") >= 4


def test_meta_is_json(digits_cnn):
    weights, meta_path, _ = zoo._cache_paths("digits_cnn")
    info = json.loads(meta_path.read_text())
    assert info["recipe"]["epochs"] == zoo.recipe("digits_cnn").epochs
    assert weights.parent == data.cache_dir() / "zoo"
