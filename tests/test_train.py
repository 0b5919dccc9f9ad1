"""The training helper: determinism, extra_loss, evaluate, input validation, state hygiene."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from intquant.data import Dataset
from intquant.training import evaluate, predict_logits, train


def _blobs(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated Gaussian blobs in 4-D: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 4)) * 0.5 + (2 * y[:, None] - 1) * 1.5
    return x.astype(np.float32), y.astype(np.int64)


def _tiny(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(dropout), nn.Linear(8, 2))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_is_deterministic():
    x, y = _blobs()
    runs = []
    for _ in range(2):
        m = _tiny(dropout=0.3)
        train(m, (x, y), epochs=3, batch_size=16, seed=7, progress=False)
        runs.append(_state(m))
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k
    other = _tiny(dropout=0.3)
    train(other, (x, y), epochs=3, batch_size=16, seed=8, progress=False)
    assert not torch.equal(other.state_dict()["0.weight"], runs[0]["0.weight"])


def test_training_learns_and_reports_history():
    x, y = _blobs()
    m = _tiny()
    hist = train(m, (torch.from_numpy(x), torch.from_numpy(y)), epochs=20, lr=1e-2,
                 batch_size=16, progress=False, schedule="cosine")  # fmt: skip
    assert len(hist["loss"]) == 20 and hist["loss"][-1] < hist["loss"][0]
    assert hist["train_acc"] >= 0.95
    assert not m.training


def test_dataset_input_uses_the_train_split():
    x, y = _blobs(64)
    ds = Dataset(x[:48, None], y[:48], x[48:, None], y[48:], "blobs", (1, 4), 2)
    a, b = nn.Sequential(nn.Flatten(), _tiny()), nn.Sequential(nn.Flatten(), _tiny())
    train(a, ds, epochs=2, batch_size=8, progress=False)
    train(b, (x[:48, None], y[:48]), epochs=2, batch_size=8, progress=False)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_extra_loss_gradient_is_applied_exactly():
    """One full-batch SGD step: extra_loss = c·Σw² must shift w by exactly −lr·2c·w0."""
    x, y = _blobs(32)
    lr, c = 0.1, 0.25
    base, reg = _tiny(), _tiny()
    w0 = base[0].weight.detach().clone()

    def l2(model: nn.Module) -> torch.Tensor:
        return c * (model[0].weight ** 2).sum()

    common = dict(epochs=1, lr=lr, batch_size=32, optimizer="sgd", progress=False)
    train(base, (x, y), **common)
    train(reg, (x, y), extra_loss=l2, **common)
    delta = reg[0].weight.detach() - base[0].weight.detach()
    torch.testing.assert_close(delta, -lr * 2 * c * w0, rtol=1e-4, atol=1e-6)
    # Parameters the extra loss does not touch move identically.
    assert torch.equal(reg[3].weight, base[3].weight)


def test_global_state_is_restored():
    x, y = _blobs(32)
    model = _tiny()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        train(model, (x, y), epochs=1, progress=False, num_threads=threads + 1)
        assert torch.equal(torch.rand(3), expected), "train changed the caller's torch RNG"
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.get_num_threads() == threads
    finally:
        torch.use_deterministic_algorithms(previous)


def test_evaluate_counts_correct_predictions():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [2, 1]], np.float32)  # argmax 0,1,0,1,0
    y = np.array([0, 1, 1, 0, 0])
    assert evaluate(model, x, y) == pytest.approx(3 / 5)
    assert evaluate(model, x, y, batch_size=2) == pytest.approx(3 / 5)
    np.testing.assert_array_equal(predict_logits(model, x).numpy(), x)


def test_evaluate_uses_eval_mode():
    x, y = _blobs(200)
    m = _tiny(dropout=0.9)
    m.train()
    assert evaluate(m, x, y) == evaluate(m, x, y)
    assert not m.training


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(epochs=0), "epochs"),
        (dict(epochs=1, optimizer="lion"), "optimizer"),
        (dict(epochs=1, schedule="step"), "schedule"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    x, y = _blobs(16)
    with pytest.raises(ValueError, match=match):
        train(_tiny(), (x, y), progress=False, **kwargs)


def test_mismatched_data_raises():
    x, y = _blobs(16)
    with pytest.raises(ValueError, match="expected x of shape"):
        train(_tiny(), (x, y[:5]), epochs=1, progress=False)
    with pytest.raises(ValueError, match="Dataset or a tuple"):
        train(_tiny(), x, epochs=1, progress=False)


def test_intquant_train_is_the_function_not_the_module() -> None:
    """`intquant.train(model, data, ...)` is the documented call: no submodule may shadow it."""
    import intquant
    import intquant.zoo  # noqa: F401  (imports the training module as a side effect)

    assert callable(intquant.train) and intquant.train is train
    assert intquant.evaluate is evaluate
