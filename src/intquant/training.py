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
from .qat.distill import (
    DEFAULT_TEMPERATURE,
    DEFAULT_WEIGHT,
    check_distillation_args,
    distillation_loss,
)

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


def binary_latent_weights(model: nn.Module) -> list[nn.Parameter]:
    """The latent float weights of 1-bit QAT layers (BinaryConnect, XNOR): only their signs
    are deployed."""
    return [m.weight for m in model.modules()
            if getattr(getattr(m, "weight_quant", None), "bits", None) == 1
            and isinstance(getattr(m, "weight", None), nn.Parameter)]


def _make_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters; weight decay spares 1-bit latent weights.

    Decay pulls a binary layer's latent weights towards 0, where their signs flip at every
    step and training stops converging (Bethge et al. 2019, Martinez et al. 2020 train binary
    weights without it); the deployed weight is sign(w), so decay regularizes nothing there.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    binary = {id(p) for p in binary_latent_weights(model)}
    groups = [{"params": [p for p in params if id(p) not in binary]},
              {"params": [p for p in params if id(p) in binary], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {name!r}")


def _cosine_lr(base_lr: float, step: int, total: int) -> float:
    """Cosine decay from base_lr to 0 over ``total`` steps: a good final model in few epochs."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * step / max(total, 1)))


def _distributed_setup(model: nn.Module, distributed: bool | None, x: torch.Tensor
                       ) -> tuple[nn.Module, nn.Module, int, int]:
    """(model to call, the module it trains, rank, world size) for this process.

    With an initialized ``torch.distributed`` process group (``torchrun``) the model is wrapped
    in DistributedDataParallel unless it already is one: DDP copies rank 0's parameters and
    buffers to every rank and averages the gradients of every step, so all ranks hold the same
    model throughout. A QAT model's pending quantizers are initialised before wrapping (LSQ
    creates its step parameters then, and DDP must see the final ones).
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    initialized = dist.is_available() and dist.is_initialized()
    if distributed and not initialized:
        raise ValueError("train(distributed=True): no torch.distributed process group; call "
                         "torch.distributed.init_process_group (torchrun sets up its variables)")
    if not (initialized if distributed is None else distributed):
        inner = model.module if isinstance(model, DistributedDataParallel) else model
        return model, inner, 0, 1
    rank, world = dist.get_rank(), dist.get_world_size()
    if isinstance(model, DistributedDataParallel):
        return model, model.module, rank, world
    _initialise_quantizers(model, x)
    return DistributedDataParallel(model), model, rank, world


def _initialise_quantizers(model: nn.Module, x: torch.Tensor) -> None:
    """Give data-dependent QAT quantizers (LSQ steps, observers) their first grid from the
    first training samples, as ``prepare(example_input=...)`` does: identical on every rank,
    whereas each rank's first batch differs under DDP."""
    pending = getattr(model, "uninitialized_quantizers", None)
    if pending is None or not pending():
        return
    from .qat.model import CALIBRATION_SAMPLES

    was_training = model.training
    model.eval()
    with torch.no_grad():
        model.fake_quant_forward(x[:CALIBRATION_SAMPLES])
    model.train(was_training)


def _shard(order: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's share of an epoch's permutation (as DistributedSampler: padded with its
    first indices to a multiple of the world size, so every rank takes the same number of
    steps — DDP's collective gradient averaging needs that)."""
    if world == 1:
        return order
    pad = (-order.numel()) % world
    order = torch.cat([order, order[:pad]])
    return order[rank::world]


def _clip_latent_weights(weights: list[nn.Parameter]) -> None:
    """Clip BinaryConnect / XNOR latent weights to [−1, 1] after each update, as the papers
    do (the QAT layers also clip before each training forward, for users' own loops)."""
    with torch.no_grad():
        for w in weights:
            w.clamp_(-1.0, 1.0)


def _all_reduce(t: torch.Tensor) -> None:
    import torch.distributed as dist

    dist.all_reduce(t)


def _broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers to every rank. DDP syncs buffers at the *start* of each forward, so
    after the last step each rank's BatchNorm statistics and range observers still hold its
    own last batch; this makes every rank end with one model (the same integer model)."""
    import torch.distributed as dist

    for b in model.buffers():
        dist.broadcast(b, src=0)


def _teacher_logits(teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The teacher's logits on all of ``x``, once: eval mode, no gradient, its mode restored."""
    was_training = teacher.training
    try:
        return predict_logits(teacher, x).detach().to(torch.float32)
    finally:
        teacher.train(was_training)


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
    teacher: nn.Module | None = None,
    distill_temperature: float = DEFAULT_TEMPERATURE,
    distill_weight: float = DEFAULT_WEIGHT,
    distributed: bool | None = None,
) -> dict:
    """Train ``model`` in place with cross-entropy (+ ``extra_loss(model)``), deterministically.

    ``schedule`` is ``"constant"`` or ``"cosine"`` (per-step cosine decay to 0). ``num_threads``
    pins torch's intra-op thread count for the run (restored afterwards): float reductions, hence
    the trained weights, depend on it, and for MCU-sized models one thread is also the fastest.
    ``desc`` labels the progress bar. ``weight_decay`` is not applied to the latent weights of
    1-bit layers (see ``_make_optimizer``).

    ``teacher`` (e.g. the float model a QAT model was prepared from) turns the loss into
    knowledge distillation, :func:`intquant.qat.distillation_loss` with ``distill_temperature``
    and ``distill_weight`` (defaults T = 4, weight 0.5): the teacher's logits on the training
    data are computed once, in eval mode and without gradients, and the teacher is not changed.

    ``distributed`` (None = whenever a ``torch.distributed`` process group is initialized, as
    under ``torchrun``): data-parallel training with DistributedDataParallel (the model is
    wrapped unless it already is DDP). Every rank passes the same data; each epoch's shuffled
    order is split between the ranks, ``batch_size`` is per rank (the global batch is
    ``batch_size × world size``), gradients are averaged every step, and at the end every rank
    holds rank 0's buffers (BatchNorm statistics) too: all ranks end with the same model. A QAT
    model's data-dependent quantizers start from the first 256 training samples on every rank.
    The loss history is the mean over all ranks' samples.

    Returns the history ``{"loss": [mean loss per epoch], "train_acc": final accuracy on the
    training data}``. The model is left in eval mode.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(
            f"train: need epochs >= 1, batch_size >= 1 and lr > 0, "
            f"got epochs={epochs}, batch_size={batch_size}, lr={lr}"
        )
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"train: schedule must be 'constant' or 'cosine', got {schedule!r}")
    if teacher is not None:
        check_distillation_args(distill_temperature, distill_weight)
    from .progress import bar as progress_bar

    x, y = as_tensors(data)
    n = x.shape[0]
    history: dict = {"loss": []}

    # fork_rng: seeding must not change the caller's global torch random stream.
    with torch.random.fork_rng(devices=[]), _deterministic(), _torch_threads(num_threads):
        torch.manual_seed(seed)
        shuffle = torch.Generator().manual_seed(seed)
        t_logits = _teacher_logits(teacher, x) if teacher is not None else None
        runner, inner, rank, world = _distributed_setup(model, distributed, x)
        steps_per_epoch = math.ceil(math.ceil(n / world) / batch_size)
        total_steps = epochs * steps_per_epoch
        opt = _make_optimizer(inner, optimizer, lr, weight_decay)
        clipped = [m.weight for m in inner.modules()
                   if getattr(getattr(m, "weight_quant", None), "clip_latent", False)]
        loss_fn = nn.CrossEntropyLoss()
        step = 0
        bar = progress_bar(range(epochs), desc, progress and rank == 0)
        for _ in bar:
            runner.train()
            order = _shard(torch.randperm(n, generator=shuffle), rank, world)
            total = torch.zeros(2, dtype=torch.float64)  # (sum of losses, samples)
            for start in range(0, order.numel(), batch_size):
                idx = order[start : start + batch_size]
                if schedule == "cosine":
                    for group in opt.param_groups:
                        group["lr"] = _cosine_lr(lr, step, total_steps)
                out = runner(x[idx])
                if t_logits is None:
                    loss = loss_fn(out, y[idx])
                else:
                    loss = distillation_loss(out, t_logits[idx], y[idx],
                                             temperature=distill_temperature,
                                             weight=distill_weight)
                if extra_loss is not None:
                    loss = loss + extra_loss(inner)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                _clip_latent_weights(clipped)
                step += 1
                total += torch.tensor([float(loss.detach()) * len(idx), len(idx)],
                                      dtype=torch.float64)
            if world > 1:
                _all_reduce(total)
            history["loss"].append(float(total[0] / total[1]))
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", refresh=False)  # keep the delay
        bar.close()
        if world > 1:
            _broadcast_buffers(inner)
        history["train_acc"] = evaluate(inner, x, y)
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
