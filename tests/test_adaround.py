"""AdaRound against round-to-nearest, with reconstruction errors computed here independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from intquant.methods.adaround import adaround_layer, annealed_beta, rectified_sigmoid


def correlated_inputs(rng: np.random.Generator, n: int, features: int) -> np.ndarray:
    """Inputs whose features are strongly correlated (a random low-rank mixing plus noise)."""
    latent = rng.normal(size=(n, features // 4))
    mixing = rng.normal(size=(features // 4, features))
    return latent @ mixing + 0.1 * rng.normal(size=(n, features))


def rtn(weight: np.ndarray, scale: np.ndarray, qmax: int) -> np.ndarray:
    return np.clip(np.round(weight / scale), -qmax, qmax)


def linear_error(x: np.ndarray, w: np.ndarray, w_hat: np.ndarray) -> float:
    """Mean over samples of ||W x − Ŵ x||², in float64 NumPy."""
    return float(np.mean(np.sum((x @ w.T - x @ w_hat.T) ** 2, axis=1)))


def test_adaround_linear_beats_round_to_nearest():
    rng = np.random.default_rng(0)
    x_all = correlated_inputs(rng, 2048, 64)
    x, x_test = x_all[:1024], x_all[1024:]
    w = rng.normal(size=(16, 64)) * 0.1
    bits, qmax = 4, 7
    scale = np.abs(w).max(axis=1, keepdims=True) / qmax
    q_rtn = rtn(w, scale, qmax)
    q_ada = adaround_layer(w, x, scale.ravel(), bits, op="linear", iters=400)
    assert q_ada.dtype == np.int8 and q_ada.shape == w.shape
    assert np.all(np.abs(q_ada - q_rtn) <= 1) and np.all(np.abs(q_ada) <= qmax)
    err_rtn = linear_error(x, w, q_rtn * scale)
    err_ada = linear_error(x, w, q_ada * scale)
    assert err_ada < 0.5 * err_rtn  # typically ~0.2
    # held-out inputs from the same distribution: the gain is not overfitting
    assert linear_error(x_test, w, q_ada * scale) < linear_error(x_test, w, q_rtn * scale)
    assert np.any(q_ada != q_rtn)


def test_adaround_conv2d_with_padding_and_groups():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(64, 1, 8, 8))
    x = np.concatenate([base + 0.2 * rng.normal(size=base.shape) for _ in range(4)], axis=1)
    w = rng.normal(size=(6, 2, 3, 3))  # groups=2: 4 input channels
    bits, qmax = 4, 7
    scale = np.abs(w).reshape(6, -1).max(axis=1) / qmax
    q_ada = adaround_layer(
        w, x, scale, bits, op="conv", padding=[1, 1, 1, 1], stride=[1, 2], groups=2, iters=600
    )
    q_rtn = rtn(w, scale[:, None, None, None], qmax)
    assert np.all(np.abs(q_ada - q_rtn) <= 1)

    def conv_error(q):
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        w_hat = torch.from_numpy(q * scale[:, None, None, None])
        ref = F.conv2d(xt, wt, None, (1, 2), 1, 1, 2)
        got = F.conv2d(xt, w_hat, None, (1, 2), 1, 1, 2)
        return float(((ref - got) ** 2).flatten(1).sum(1).mean())

    assert conv_error(q_ada.astype(np.float64)) < conv_error(q_rtn)


def test_rectified_sigmoid_and_beta_schedule():
    v = torch.tensor([-100.0, 0.0, 100.0])
    np.testing.assert_allclose(rectified_sigmoid(v).numpy(), [0.0, 0.5, 1.0])
    assert annealed_beta(0, 100, 0.2, (20.0, 2.0)) == 20.0
    assert annealed_beta(100, 100, 0.2, (20.0, 2.0)) == pytest.approx(2.0)


def test_adaround_input_errors():
    w = np.ones((4, 8))
    with pytest.raises(ValueError, match="fc1: 3 scales for 4 output channels"):
        adaround_layer(w, np.ones((2, 8)), np.ones(3), 8, name="fc1")
    with pytest.raises(ValueError, match="fc1: x_in contains NaN/inf"):
        adaround_layer(w, np.full((2, 8), np.nan), 1.0, 8, name="fc1")
    with pytest.raises(ValueError, match="fc1: the layer does not run"):
        adaround_layer(w, np.ones((2, 5)), 1.0, 8, name="fc1", iters=1)
    with pytest.raises(ValueError, match="op must be 'linear' or 'conv'"):
        adaround_layer(w, np.ones((2, 8)), 1.0, 8, op="matmul")
