"""Knowledge distillation: the loss against an independently written formula, the teacher kept
frozen (eval mode, no gradient), and intquant.train(teacher=...) on a QAT model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from intquant.config import Config
from intquant.qat import DEFAULT_TEMPERATURE, DEFAULT_WEIGHT, distillation_loss, prepare
from intquant.training import train


def _reference_loss(s: np.ndarray, t: np.ndarray, y: np.ndarray, temp: float,
                    w: float) -> float:
    """w·T²·mean_i Σ_k p_t (log p_t − log p_s) + (1 − w)·mean_i −log softmax(s)_y, in math.*"""

    def log_softmax(row: list[float]) -> list[float]:
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        return [v - lse for v in row]

    kl = ce = 0.0
    for si, ti, yi in zip(s.tolist(), t.tolist(), y.tolist(), strict=True):
        log_ps = log_softmax([v / temp for v in si])
        log_pt = log_softmax([v / temp for v in ti])
        kl += sum(math.exp(lt) * (lt - ls) for lt, ls in zip(log_pt, log_ps, strict=True))
        ce -= log_softmax(si)[yi]
    n = len(y)
    return w * temp * temp * kl / n + (1 - w) * ce / n


@pytest.mark.parametrize("temp,w", [(DEFAULT_TEMPERATURE, DEFAULT_WEIGHT), (1.0, 1.0),
                                    (2.5, 0.3), (8.0, 0.0)])
def test_loss_equals_the_formula(temp, w):
    rng = np.random.default_rng(1)
    s, t = rng.normal(0, 3, (7, 5)), rng.normal(0, 3, (7, 5))
    y = rng.integers(0, 5, 7)
    got = distillation_loss(torch.from_numpy(s), torch.from_numpy(t), torch.from_numpy(y),
                            temperature=temp, weight=w)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(_reference_loss(s, t, y, temp, w), rel=1e-12, abs=1e-12)


def test_loss_without_labels_is_pure_distillation_and_zero_at_the_teacher():
    rng = np.random.default_rng(2)
    s, t = rng.normal(0, 2, (4, 3)), rng.normal(0, 2, (4, 3))
    y = np.zeros(4, dtype=np.int64)
    got = distillation_loss(torch.from_numpy(s), torch.from_numpy(t), temperature=3.0)
    assert float(got) == pytest.approx(_reference_loss(s, t, y, 3.0, 1.0), rel=1e-12)
    same = distillation_loss(torch.from_numpy(t), torch.from_numpy(t), temperature=3.0)
    assert abs(float(same)) < 1e-12


def test_gradient_reaches_the_student_only():
    s = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    distillation_loss(s, t, torch.arange(6) % 4).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


@pytest.mark.parametrize("kwargs,match", [({"temperature": 0.0}, "temperature must be > 0"),
                                          ({"weight": 1.5}, r"weight must be in \[0, 1\]")])
def test_bad_arguments_say_which(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), **kwargs)
    with pytest.raises(ValueError, match="must both be"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 4))


# ---------------------------------------------------------------------------------------------
# intquant.train(teacher=...)
# ---------------------------------------------------------------------------------------------


def _blobs(n: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    return (centres[y] + rng.normal(0, 0.7, (n, 4))).astype(np.float32), y.astype(np.int64)


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))


class Watched(nn.Module):
    """A teacher that records the mode and grad state of every forward call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.inner(x)


def test_teacher_runs_in_eval_without_grad_and_is_unchanged():
    x, y = _blobs()
    teacher = Watched(_mlp(1))
    train(teacher.inner, (x, y), epochs=3, progress=False)
    teacher.zero_grad(set_to_none=True)
    teacher.train()  # the user left it in training mode (its dropout would be random)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = _mlp(2)
    train(student, (x, y), epochs=2, batch_size=32, teacher=teacher, progress=False)
    assert teacher.calls and all(c == (False, False) for c in teacher.calls)
    assert teacher.training  # its mode is restored
    assert all(p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_zero_weight_is_plain_training_and_a_teacher_changes_the_result():
    x, y = _blobs()
    teacher = _mlp(1)
    train(teacher, (x, y), epochs=3, progress=False)
    runs = {}
    for label, kw in [("plain", {}), ("w0", {"teacher": teacher, "distill_weight": 0.0}),
                      ("kd", {"teacher": teacher})]:
        m = _mlp(3)
        hist = train(m, (x, y), epochs=2, batch_size=32, progress=False, **kw)
        runs[label] = (m.state_dict(), hist["loss"])
    for k, v in runs["plain"][0].items():
        assert torch.equal(v, runs["w0"][0][k]), k
    assert runs["plain"][1] == runs["w0"][1]
    assert not torch.equal(runs["plain"][0]["0.weight"], runs["kd"][0]["0.weight"])


def test_distillation_step_follows_the_loss():
    """One full-batch SGD step of train(teacher=...) equals the same step written by hand."""
    x, y = _blobs(64)
    teacher = _mlp(1).eval()
    student, manual = nn.Linear(4, 3), nn.Linear(4, 3)
    manual.load_state_dict(student.state_dict())
    initial = student.weight.detach().clone()
    train(student, (x, y), epochs=1, batch_size=64, lr=0.5, optimizer="sgd", teacher=teacher,
          distill_temperature=2.0, distill_weight=0.7, progress=False)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad():
        t = teacher(xt)
    loss = distillation_loss(manual(xt), t, yt, temperature=2.0, weight=0.7)
    loss.backward()
    with torch.no_grad():
        for p in manual.parameters():
            p -= 0.5 * p.grad
    # same step up to the summation order of a shuffled batch: far below the step itself
    assert torch.allclose(student.weight, manual.weight, rtol=0, atol=1e-5)
    assert (student.weight - initial).abs().max() > 1e-3  # and the step is not negligible


def test_qat_training_with_the_float_teacher_runs_and_deploys():
    x, y = _blobs(256)
    x = x[:, None, :].repeat(4, axis=2)  # (N, 1, 16): a conv net input
    torch.manual_seed(0)
    float_model = nn.Sequential(nn.Conv1d(1, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(),
                                nn.Flatten(), nn.Linear(8 * 16, 3))
    train(float_model, (x, y), epochs=3, progress=False)
    float_model.zero_grad(set_to_none=True)
    cfg = Config(weight_bits=4, act_bits=4, weight_quantizer="lsq", act_quantizer="lsq",
                 first_last_bits=None)
    q = prepare(float_model, cfg, example_input=x[:64])
    hist = train(q, (x, y), epochs=2, teacher=float_model, progress=False)
    assert len(hist["loss"]) == 2 and all(np.isfinite(hist["loss"]))
    assert hist["train_acc"] > 0.6  # three separable blobs; chance is 1/3
    assert not q.training_anywhere()
    assert not float_model.training and all(p.grad is None for p in float_model.parameters())
