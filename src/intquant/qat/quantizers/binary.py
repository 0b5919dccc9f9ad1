"""1-bit quantizers: BinaryConnect and XNOR-Net weights, BNN sign activations.

All three produce codes in {−1, +1} (sign(0) = +1) and share the BNN straight-through
estimator where the paper uses it (gradient cancelled for |x| > 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Quantizer, _channel_view, _per_channel_reduce, _sign_pm1, _ste


class _SignSTE(torch.autograd.Function):
    """BNN sign (Hubara et al. 2016): forward sign(x) ∈ {−1, +1}; backward g·1[|x| ≤ 1]."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _sign_pm1(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def _mean_magnitude(w: Tensor) -> Tensor:
    """α_c = mean|w_c| per output channel, shaped to broadcast against ``w`` (1 where 0)."""
    alpha = _per_channel_reduce(w.detach().abs(), "mean")
    return _channel_view(torch.where(alpha > 0, alpha, torch.ones_like(alpha)), w.ndim)


class BinaryConnect(Quantizer):
    """BinaryConnect (Courbariaux et al., NeurIPS 2015): w_b = sign(w) ∈ {−1, +1}.

    ``stochastic``: during training w_b = +1 with probability σ(w/α_c), σ(v) = clip((v + 1)/2,
    0, 1) (the paper's "hard sigmoid") and α_c = mean|w_c| over the output channel, −1
    otherwise; deterministic sign in eval (deployment). The paper applies σ to w itself, which
    works when training from scratch for hundreds of epochs (clipping drives the latent weights
    towards ±1, where sampling is nearly deterministic) but not when fine-tuning a float model:
    its weights have |w| ≈ 0.01–0.3, so σ(w) ≈ 0.5 and almost every weight is a coin flip at
    every step; the network trains on sampling noise and the sign network deployed afterwards is
    a different one (MNIST-1D CNN, 10 epochs: 21.7 % against 98.7 % float). Dividing by the
    channel's mean magnitude makes the probabilities independent of the weights' scale (the
    deployed sign(w) is scale-free too): weights above the mean magnitude are +1 or −1 with
    certainty, smaller ones stay random in proportion (97.6 % on the same run). The gradient of
    w_b is applied to the real-valued w unchanged (STE), and the latent w is clipped to [−1, 1]
    (``clip_latent``: before every training forward, and by ``intquant.train`` after every
    update). No scale: |w_b| = 1.
    """

    kind = "binary"
    is_weight = True
    clip_latent = True

    def __init__(self, bits: int = 1, stochastic: bool = False,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(1, signed=True)
        self.stochastic = stochastic
        self.generator = generator
        if stochastic:
            self.kind = "binary_stochastic"

    def code_range(self) -> tuple[int, int]:
        return -1, 1

    def levels(self) -> list[int]:
        return [-1, 1]

    def forward(self, w: Tensor) -> Tensor:
        self._record(torch.ones(1))
        if self.stochastic and self.training:
            p = torch.clamp((w.detach() / _mean_magnitude(w) + 1) / 2, 0, 1)
            u = torch.rand(w.shape, generator=self.generator, dtype=w.dtype)
            wb = torch.where(u < p, torch.ones_like(w), -torch.ones_like(w))
        else:
            wb = _sign_pm1(w.detach())
        return _ste(w, wb)


class XNOR(Quantizer):
    """XNOR-Net weights (Rastegari et al., ECCV 2016): W ≈ α_c·sign(W_c), α_c = mean|W_c|.

    One scale per output channel (filter). Gradient (eq. 7 of the paper, exact chain rule):
    ∂C/∂W = ∂C/∂W̃ · α·1[|W| ≤ 1] through sign (BNN STE) plus the path through α = mean|W|.
    The latent weights are clipped to [−1, 1] like BinaryConnect's (``clip_latent``): a weight
    beyond ±1 would receive no gradient through sign and could never flip back.
    """

    kind = "xnor"
    is_weight = True
    clip_latent = True

    def __init__(self, bits: int = 1) -> None:
        super().__init__(1, signed=True)

    def code_range(self) -> tuple[int, int]:
        return -1, 1

    def levels(self) -> list[int]:
        return [-1, 1]

    def forward(self, w: Tensor) -> Tensor:
        alpha = _per_channel_reduce(w.abs(), "mean")
        alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
        self._record(alpha)
        return _channel_view(alpha, w.ndim) * _SignSTE.apply(w)


class SignAct(Quantizer):
    """BNN activations (Hubara et al. 2016): sign(x) ∈ {−1, +1}, gradient cancelled for |x| > 1.

    The straight-through estimator of the paper is the derivative of hardtanh: g·1[|x| ≤ 1].
    prepare() puts it in place of the layer's activation function (it *is* the activation).
    """

    kind = "sign"

    def __init__(self, bits: int = 1, signed: bool = True) -> None:
        super().__init__(1, signed=True)

    def code_range(self) -> tuple[int, int]:
        return -1, 1

    def levels(self) -> list[int]:
        return [-1, 1]

    def record_grid(self) -> None:
        """Record the fixed grid: codes ±1, scale 1."""
        self._record(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        self.record_grid()
        return _SignSTE.apply(x)
