"""The 1-bit recipes: what binary_recipe configures, no weight decay on binary latent weights,
latent clipping for BinaryConnect and XNOR, and train_binary end to end on a small model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from intquant.qat import binary_recipe, prepare, train_binary
from intquant.training import _make_optimizer, binary_latent_weights, evaluate, train


class Net(nn.Module):
    """conv-bn-relu, pool, conv-bn-relu, flatten, linear (first and last layer stay 8-bit)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(8, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU(),
            nn.Conv1d(16, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU(),
        )
        self.fc = nn.Linear(16 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


def _data(n: int = 384, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four classes of noisy 1-D templates (16 samples each)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 16)
    templates = np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t), t - 0.5, (t > 0.5) - 0.5])
    y = rng.integers(0, 4, n)
    x = templates[y] + 0.3 * rng.standard_normal((n, 16))
    return x[:, None, :].astype(np.float32), y.astype(np.int64)


def _float_model() -> Net:
    torch.manual_seed(0)
    m = Net()
    train(m, _data(), epochs=4, lr=3e-3, progress=False)
    return m


@pytest.mark.parametrize("kind,wq", [("bnn", "binary"), ("xnor", "xnor")])
def test_recipe_configures_w1a1_with_8_bit_edges(kind, wq):
    r = binary_recipe(kind)
    cfg = r.config()
    assert (cfg.weight_quantizer, cfg.weight_bits) == (wq, 1)
    assert (cfg.act_quantizer, cfg.act_bits, cfg.first_last_bits) == ("sign", 1, 8)
    assert r.train_kwargs() == {"lr": 1e-2, "schedule": "cosine", "optimizer": "adam",
                                "batch_size": 16}
    assert binary_recipe(kind, lr=3e-3).lr == 3e-3 and r.distill


def test_unknown_kind_is_named():
    with pytest.raises(ValueError, match="kind must be one of.*'ternary'"):
        binary_recipe("ternary")


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_weight_decay_spares_only_binary_latent_weights(name):
    q = prepare(_float_model(), binary_recipe("bnn").config(), example_input=_data(64)[0])
    latent = binary_latent_weights(q)
    # the two inner convs are binary; the first conv and the classifier keep 8-bit weights
    assert {id(p) for p in latent} == {id(q.get_submodule("features.4").weight),
                                       id(q.get_submodule("features.7").weight)}
    opt = _make_optimizer(q, name, 1e-3, 0.25)
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert len(decay) == len([p for p in q.parameters() if p.requires_grad])
    for p in q.parameters():
        assert decay[id(p)] == (0.0 if any(p is w for w in latent) else 0.25)


def test_decay_leaves_a_binary_latent_weight_alone():
    """With zero gradient (lr·wd large), SGD decay would shrink every weight; the binary latent
    weights must come out unchanged while the 8-bit first layer shrinks."""
    q = prepare(_float_model(), binary_recipe("bnn").config(), example_input=_data(64)[0])
    binary_w = q.get_submodule("features.4").weight
    first_w = q.get_submodule("features.0").weight
    before_b, before_f = binary_w.detach().clone(), first_w.detach().clone()
    opt = _make_optimizer(q, "sgd", 0.5, 1.0)
    for p in q.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(binary_w, before_b)
    assert torch.equal(first_w, before_f * 0.5)  # w − lr·wd·w: exact for lr·wd = 1/2


@pytest.mark.parametrize("kind", ["bnn", "xnor"])
def test_latent_weights_stay_clipped(kind):
    x, y = _data()
    q = prepare(_float_model(), binary_recipe(kind).config(), example_input=x[:64])
    with torch.no_grad():
        q.get_submodule("features.4").weight.mul_(40.0)  # far outside [−1, 1]
    train(q, (x, y), epochs=1, lr=0.2, progress=False)
    for w in binary_latent_weights(q):
        assert float(w.detach().abs().max()) <= 1.0


@pytest.mark.parametrize("kind", ["bnn", "xnor"])
def test_train_binary_learns_and_deploys(kind):
    x, y = _data()
    fm = _float_model()
    q = train_binary(fm, (x, y), kind, epochs=3, progress=False)
    assert not q.training_anywhere()
    xt, yt = _data(256, seed=1)
    acc = evaluate(q, xt, yt)  # eval mode: the deployed integer model
    assert acc > 0.5  # four classes: chance is 0.25
