"""Ternary Weight Networks (Li et al. 2016): codes {−1, 0, +1} with a threshold and a scale."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Quantizer, _channel_view, _per_channel_reduce, _sign_pm1, _ste


class Ternary(Quantizer):
    """Ternary Weight Networks (Li et al. 2016): w_t = α·sign(w)·1[|w| > Δ].

    Δ = 0.7·mean|w| (eq. 9) and α = mean of |w| over the kept weights |w| > Δ (eq. 7, the
    optimal scale for that Δ); per tensor as in the paper, per channel with ``per_channel``.
    STE: the gradient of w_t is applied to w unchanged.
    """

    kind = "ternary"
    is_weight = True

    def __init__(self, bits: int = 2, per_channel: bool = False) -> None:
        super().__init__(2, signed=True)
        self.per_channel = per_channel

    def code_range(self) -> tuple[int, int]:
        return -1, 1

    def forward(self, w: Tensor) -> Tensor:
        a = w.detach().abs()
        if self.per_channel:
            delta = 0.7 * _channel_view(_per_channel_reduce(a, "mean"), w.ndim)
            keep = a > delta
            kept = _per_channel_reduce(a * keep, "sum")
            count = _per_channel_reduce(keep.to(a.dtype), "sum")
        else:
            delta = 0.7 * a.mean()
            keep = a > delta
            kept = (a * keep).sum().reshape(1)
            count = keep.to(a.dtype).sum().reshape(1)
        alpha = torch.where(count > 0, kept / count.clamp(min=1), torch.ones_like(kept))
        alpha = alpha.to(torch.float32)
        self._record(alpha)
        codes = _sign_pm1(w.detach()) * keep.to(w.dtype)
        s = _channel_view(alpha, w.ndim) if self.per_channel else alpha.reshape(())
        return _ste(w, s * codes)
