"""A small, deterministic training loop shared by the zoo, the QAT helpers and the tests.

Determinism matters because the reference models are trained from scratch on every fresh
machine (CI) and cached by recipe: the same recipe must give the same weights, so accuracy
floors in tests and numbers in reports are reproducible. :func:`train` therefore seeds torch and
its own shuffling generator and turns on ``torch.use_deterministic_algorithms`` for its duration
(restoring the caller's setting afterwards).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .data import Dataset

__all__ = ["train", "evaluate", "predict_logits", "as_tensors"]

ArrayLike = np.ndarray | torch.Tensor


def as_tensors(data: Dataset | tuple[ArrayLike, ArrayLike]) -> tuple[torch.Tensor, torch.Tensor]:
    """(x float32, y int64) tensors from a Dataset (its train split) or an ``(x, y)`` pair."""
    if isinstance(data, Dataset):
        x, y = data.x_train, data.y_train
    elif isinstance(data, tuple | list) and len(data) == 2:
        x, y = data
    else:
        raise ValueError(
            f"train data must be a Dataset or a tuple (x, y), got {type(data).__name__}"
        )
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if x.shape[0] != y.shape[0] or y.ndim != 1:
        raise ValueError(
            f"train data: x has {tuple(x.shape)} and y {tuple(y.shape)}; "
            "expected x of shape (N, ...) and y of shape (N,)"
        )
    return x.to(torch.float32), y.to(torch.int64)


@contextmanager
def _deterministic() -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _make_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {name!r}")


def _cosine_lr(base_lr: float, step: int, total: int) -> float:
    """Cosine decay from base_lr to 0 over ``total`` steps: a good final model in few epochs."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * step / max(total, 1)))


def train(
    model: nn.Module,
    data: Dataset | tuple[ArrayLike, ArrayLike],
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    weight_decay: float = 0.0,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
    progress: bool = True,
    optimizer: str = "adam",
    schedule: str = "constant",
    num_threads: int | None = None,
    desc: str = "train",
) -> dict:
    """Train ``model`` in place with cross-entropy (+ ``extra_loss(model)``), deterministically.

    ``schedule`` is ``"constant"`` or ``"cosine"`` (per-step cosine decay to 0). ``num_threads``
    pins torch's intra-op thread count for the run (restored afterwards): float reductions, hence
    the trained weights, depend on it, and for MCU-sized models one thread is also the fastest.
    ``desc`` labels the progress bar. Returns the history ``{"loss": [mean loss per epoch],
    "train_acc": final accuracy on the training data}``.
    The model is left in eval mode.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(
            f"train: need epochs >= 1, batch_size >= 1 and lr > 0, "
            f"got epochs={epochs}, batch_size={batch_size}, lr={lr}"
        )
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"train: schedule must be 'constant' or 'cosine', got {schedule!r}")
    from .progress import bar as progress_bar

    x, y = as_tensors(data)
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch
    history: dict = {"loss": []}

    # fork_rng: seeding must not change the caller's global torch random stream.
    with torch.random.fork_rng(devices=[]), _deterministic(), _torch_threads(num_threads):
        torch.manual_seed(seed)
        shuffle = torch.Generator().manual_seed(seed)
        opt = _make_optimizer(model, optimizer, lr, weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        step = 0
        bar = progress_bar(range(epochs), desc, progress)
        for _ in bar:
            model.train()
            order = torch.randperm(n, generator=shuffle)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                if schedule == "cosine":
                    for group in opt.param_groups:
                        group["lr"] = _cosine_lr(lr, step, total_steps)
                loss = loss_fn(model(x[idx]), y[idx])
                if extra_loss is not None:
                    loss = loss + extra_loss(model)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                total += float(loss.detach()) * len(idx)
            history["loss"].append(total / n)
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", refresh=False)  # keep the delay
        bar.close()
        history["train_acc"] = evaluate(model, x, y)
    return history


def predict_logits(model: nn.Module, x: ArrayLike, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` in eval mode, without gradients, batched to bound memory."""
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    xt = xt.to(torch.float32)
    model.eval()
    with torch.no_grad():
        outs = [model(xt[i : i + batch_size]) for i in range(0, xt.shape[0], batch_size)]
    return torch.cat(outs) if outs else torch.empty(0)


def evaluate(model: nn.Module, x: ArrayLike, y: ArrayLike, batch_size: int = 1024) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (eval mode, no grad) on ``(x, y)``."""
    yt = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    logits = predict_logits(model, x, batch_size)
    if logits.shape[0] != yt.shape[0]:
        raise ValueError(f"evaluate: {logits.shape[0]} inputs but {yt.shape[0]} labels")
    return float((logits.argmax(1) == yt).to(torch.float64).mean())
