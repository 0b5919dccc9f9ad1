"""Training recipes for 1-bit networks (BNN, XNOR-Net) fine-tuned from a float model.

Binarizing weights *and* activations of a network trained with ReLUs changes its function far
more than 4- or 2-bit quantization does, and the default QAT settings (Adam 1e-3, weight decay
on everything) leave it 6–21 pp behind float. What the literature that made binary networks
competitive agrees on (Courbariaux et al. 2016, Rastegari et al. 2016, Bethge et al. 2019,
Martinez et al. 2020, Liu et al. 2020), and what :func:`binary_recipe` / :func:`train_binary`
apply:

- **Latent-weight clipping**: the optimizer updates real-valued latent weights, clipped to
  [−1, 1] before every training forward (BinaryConnect and XNOR quantizers, ``clip_latent``),
  so that a weight never leaves the region where the straight-through gradient reaches it.
- **No weight decay on binary latent weights** (``intquant.train`` never applies it there): decay
  pulls them to 0, where their signs flip at every step; the deployed weight is sign(w).
- **A large learning rate with a cosine decay to 0** (Adam 1e-2): a latent weight only matters
  when its sign flips, and from a float model's small weights the flips that adapt the network to
  sign activations need larger steps than fine-tuning at 4 bits; the decay then freezes the signs.
  (Measured on the MNIST-1D CNN, batch 64: 3e-4 loses 60 pp, 3e-3 14 pp, 1e-2 6 pp in 10
  epochs.)
- **Small batches** (16): more updates per epoch — more chances for a useful sign flip; the
  same run at batch 64 / 32 / 16 loses 6.4 / 5.2 / 2.8 pp.
- **Per-channel scaling**: XNOR weights carry α_c = mean|W_c| per output channel; for BNN
  weights the layer's BatchNorm (kept, below) provides the per-channel scale.
- **BatchNorm kept during training** (batch statistics), folded into the per-channel scales and
  integer thresholds at conversion; the sign activation follows it, so BatchNorm's β is the
  learned threshold.
- **Real-valued shortcuts**: residual adds stay at 8 bits when activations are signs (prepare's
  rule), as in Bi-Real Net; first and last layers keep 8-bit weights (``first_last_bits``).
- **Distillation from the float model** (``teacher``): see :mod:`intquant.qat.distill`.

Stochastic BinaryConnect (``binary_stochastic``) is not part of the recipe; see
:class:`intquant.qat.quantizers.BinaryConnect` for why it fails when fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..data import Dataset
from .model import QATModel
from .prepare import prepare

__all__ = ["BinaryRecipe", "binary_recipe", "train_binary", "BINARY_KINDS"]

# kind → (weight quantizer, activation quantizer)
BINARY_KINDS = {"bnn": ("binary", "sign"), "xnor": ("xnor", "sign")}


@dataclass(frozen=True)
class BinaryRecipe:
    """How to fine-tune a float model into a W1A1 network (fields = ``intquant.train`` args)."""

    kind: str = "bnn"
    lr: float = 1e-2
    schedule: str = "cosine"
    optimizer: str = "adam"
    batch_size: int = 16
    distill: bool = True  # the float model as teacher (intquant.qat.distillation_loss)
    first_last_bits: int | None = 8

    def config(self) -> Config:
        """The QAT Config: 1-bit weights and sign activations, 8-bit first/last layers."""
        wq, aq = BINARY_KINDS[self.kind]
        return Config(weight_bits=1, act_bits=1, weight_quantizer=wq, act_quantizer=aq,
                      first_last_bits=self.first_last_bits)

    def train_kwargs(self) -> dict[str, Any]:
        """The ``intquant.train`` keyword arguments of the recipe (without the teacher)."""
        return {"lr": self.lr, "schedule": self.schedule, "optimizer": self.optimizer,
                "batch_size": self.batch_size}


def binary_recipe(kind: str = "bnn", **changes: Any) -> BinaryRecipe:
    """The recipe for ``kind`` "bnn" (BinaryConnect weights) or "xnor" (XNOR-Net weights, α per
    channel), both with sign activations; ``changes`` override fields (e.g. ``lr=3e-3``)."""
    if kind not in BINARY_KINDS:
        raise ValueError(f"binary_recipe: kind must be one of {sorted(BINARY_KINDS)}, got {kind!r}")
    return replace(BinaryRecipe(kind=kind), **changes)


def train_binary(float_model: nn.Module, data: Dataset | tuple[Any, Any], kind: str = "bnn", *,
                 epochs: int = 10, recipe: BinaryRecipe | None = None,
                 example_input: Any = None, seed: int = 0, progress: bool = True,
                 num_threads: int | None = None) -> QATModel:
    """Prepare ``float_model`` as a W1A1 QAT model and fine-tune it with the binary recipe.

    ``data`` as for ``intquant.train``; ``example_input`` (default: the first 512 training
    inputs) initialises the quantizers. Returns the trained QATModel in eval mode (eval mode is
    the deployed integer model; ``intquant.qat.convert`` gives it to export).
    """
    from ..training import as_tensors, train

    recipe = recipe or binary_recipe(kind)
    x, y = as_tensors(data)
    if example_input is None:
        example_input = x[:512]
    example = torch.as_tensor(np.asarray(example_input, dtype=np.float32)) \
        if not isinstance(example_input, torch.Tensor) else example_input
    qat = prepare(float_model, recipe.config(), example_input=example)
    teacher = float_model if recipe.distill else None
    train(qat, (x, y), epochs=epochs, seed=seed, progress=progress, num_threads=num_threads,
          teacher=teacher, desc=f"QAT {recipe.kind} W1A1", **recipe.train_kwargs())
    return qat
