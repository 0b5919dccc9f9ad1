"""Loss terms that shape weight distributions for quantization (KURE and a skew penalty).

A uniform quantizer wastes levels on heavy-tailed weights: one outlier stretches the scale and
most weights collapse onto a few codes. KURE (Shkolnik et al., "Robust Quantization: One Model
to Rule Them All", NeurIPS 2020) pushes the kurtosis of each layer's weights towards 1.8, the
kurtosis of a uniform distribution, which makes the weights robust to quantization at any bit
width. A skew penalty keeps the distribution centred so symmetric grids use both halves.

All terms are differentiable functions of the weights, usable as ``extra_loss`` in any training
loop (e.g. ``intquant.train(..., extra_loss=lambda m: kurtosis(m))``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["kurtosis", "skew", "distribution_loss", "weight_stats", "standardized_moment",
           "quantizable_weights"]

UNIFORM_KURTOSIS = 1.8  # E[z^4] of a standardized uniform distribution: 9/5


def quantizable_weights(model: nn.Module, layers: Iterable[str] | None = None
                        ) -> list[tuple[str, Tensor]]:
    """(name, weight) of every Conv1d/2d/Linear (and their QAT subclasses) in ``model``.

    ``layers`` restricts to those module names; an unknown name is an error (a typo would
    silently regularize nothing).
    """
    found = [(n, m.weight) for n, m in model.named_modules()
             if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)]
    if layers is not None:
        wanted = list(layers)
        names = {n for n, _ in found}
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ValueError(f"regularizer: layers {missing} are not Conv/Linear modules of the "
                             f"model; available: {sorted(names)}")
        found = [(n, w) for n, w in found if n in set(wanted)]
    if not found:
        raise ValueError("regularizer: the model has no Conv1d/Conv2d/Linear weights to shape")
    return found


def standardized_moment(w: Tensor, order: int) -> Tensor:
    """E[((w − μ)/σ)^order] over all elements, σ the population standard deviation.

    order 3 is the skewness, order 4 the kurtosis (Pearson's, not excess: 3 for a Gaussian).
    """
    w = w.reshape(-1)
    mu = w.mean()
    var = ((w - mu) ** 2).mean()
    z = (w - mu) / torch.sqrt(var + torch.finfo(w.dtype).tiny)
    return (z**order).mean()


def kurtosis(model: nn.Module, target: float = UNIFORM_KURTOSIS,
             layers: Iterable[str] | None = None) -> Tensor:
    """KURE: mean over layers of (kurt(W_l) − target)^2."""
    terms = [(standardized_moment(w, 4) - target) ** 2
             for _, w in quantizable_weights(model, layers)]
    return torch.stack(terms).mean()


def skew(model: nn.Module, layers: Iterable[str] | None = None) -> Tensor:
    """Mean over layers of |skew(W_l)|."""
    terms = [standardized_moment(w, 3).abs() for _, w in quantizable_weights(model, layers)]
    return torch.stack(terms).mean()


def distribution_loss(model: nn.Module, kurtosis_weight: float = 1.0, skew_weight: float = 0.0,
                      target: float = UNIFORM_KURTOSIS,
                      layers: Iterable[str] | None = None) -> Tensor:
    """kurtosis_weight · kurtosis(model, target) + skew_weight · skew(model)."""
    loss = kurtosis_weight * kurtosis(model, target, layers)
    if skew_weight:
        loss = loss + skew_weight * skew(model, layers)
    return loss


def weight_stats(model: nn.Module, layers: Iterable[str] | None = None) -> list[dict]:
    """Per-layer {layer, kurtosis, skew, std, max_abs_over_std, numel} for logging."""
    rows = []
    with torch.no_grad():
        for name, w in quantizable_weights(model, layers):
            w64 = w.detach().to(torch.float64)
            std = float(w64.std(unbiased=False))
            rows.append({
                "layer": name,
                "kurtosis": float(standardized_moment(w64, 4)),
                "skew": float(standardized_moment(w64, 3)),
                "std": std,
                "max_abs_over_std": float(w64.abs().max()) / std if std > 0 else 0.0,
                "numel": int(w.numel()),
            })
    return rows
