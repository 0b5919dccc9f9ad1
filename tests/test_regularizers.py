"""KURE / skew regularizers: values against scipy.stats, differentiability (gradcheck)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from intquant.regularizers import distribution_loss, kurtosis, skew, weight_stats


def _model(dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6, 3))
    with torch.no_grad():
        m[3].weight.copy_(torch.distributions.Laplace(0.0, 0.1).sample(m[3].weight.shape))
    return m.to(dtype)


def _np_weights(m):
    return [m[0].weight.detach().double().numpy().ravel(),
            m[3].weight.detach().double().numpy().ravel()]


def test_kurtosis_and_skew_match_scipy():
    m = _model()
    ws = _np_weights(m)
    k = [stats.kurtosis(w, fisher=False, bias=True) for w in ws]
    s = [stats.skew(w, bias=True) for w in ws]
    assert float(kurtosis(m, target=1.8)) == pytest.approx(np.mean([(v - 1.8) ** 2 for v in k]),
                                                           rel=1e-4)
    assert float(skew(m)) == pytest.approx(np.mean(np.abs(s)), rel=1e-4)
    combo = distribution_loss(m, kurtosis_weight=0.5, skew_weight=2.0, target=3.0)
    expected = 0.5 * np.mean([(v - 3.0) ** 2 for v in k]) + 2.0 * np.mean(np.abs(s))
    assert float(combo) == pytest.approx(expected, rel=1e-4)
    rows = weight_stats(m)
    assert [r["layer"] for r in rows] == ["0", "3"]
    assert rows[1]["kurtosis"] == pytest.approx(k[1], rel=1e-9)
    assert rows[0]["skew"] == pytest.approx(s[0], rel=1e-9)


def test_uniform_weights_have_kurtosis_near_1_8():
    lin = nn.Linear(1000, 100)
    with torch.no_grad():
        lin.weight.uniform_(-1, 1)
    assert float(kurtosis(nn.Sequential(lin), target=1.8)) < 1e-3


@pytest.mark.parametrize("fn", [
    lambda m: kurtosis(m),
    lambda m: skew(m),
    lambda m: distribution_loss(m, kurtosis_weight=1.0, skew_weight=0.3),
])
def test_regularizers_are_differentiable_gradcheck(fn):
    m = _model(torch.float64)
    w0 = m[0].weight.detach().clone().requires_grad_(True)
    w3 = m[3].weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: fn(_Swap(a, b)), (w0, w3), eps=1e-6, atol=1e-5)


class _Swap(nn.Module):
    """The model's two weighted layers with their weights replaced by given tensors."""

    def __init__(self, w0: torch.Tensor, w3: torch.Tensor) -> None:
        super().__init__()
        self.a = _Holder(nn.Conv1d, w0)
        self.b = _Holder(nn.Linear, w3)


def _Holder(cls, w):  # noqa: N802 - a factory that reads like the class it builds
    mod = cls.__new__(cls)
    nn.Module.__init__(mod)
    mod.weight = w  # a plain tensor attribute: gradcheck differentiates through it
    return mod


def test_training_with_kure_lowers_kurtosis():
    torch.manual_seed(1)
    m = _model()
    before = kurtosis(m).item()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        kurtosis(m).backward()
        opt.step()
    assert kurtosis(m).item() < 0.1 * before


def test_unknown_layer_names_are_an_error():
    with pytest.raises(ValueError, match="'conv9'.*not Conv/Linear"):
        kurtosis(_model(), layers=["conv9"])
    with pytest.raises(ValueError, match="no Conv1d/Conv2d/Linear"):
        skew(nn.Sequential(nn.ReLU()))
