"""Power-of-two (logarithmic) weights: codes 0, ±2^j, so products become shifts."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Quantizer, _channel_view, _per_channel_reduce, _sign_pm1, _ste


class Pow2Weight(Quantizer):
    """Power-of-two (logarithmic) weights (Miyashita et al. 2016; levels as in INQ, Zhou 2017).

    With b bits: one sign bit, zero, and n = 2^(b−1) − 1 magnitudes α_c·2^(−j), j = 0..n−1, with
    α_c = max|w_c| per output channel. Rounding is in the log domain:
    e = clamp(round(log2(|w|/α)), −(n−1), 0), and |w|/α < 2^(−(n−1) − 1/2) maps to 0.
    Integer codes: q = sign(w)·2^(e + n − 1), scale α·2^(−(n−1)) (exact in float32), so a
    4-bit grid holds codes {0, ±1, ±2, …, ±64} in an int8 container. STE gradient.
    """

    kind = "pow2"
    is_weight = True

    def __init__(self, bits: int = 4) -> None:
        super().__init__(bits, signed=True)
        if bits < 2:
            raise ValueError("pow2 weights need bits >= 2 (sign + at least one magnitude)")
        self.code_bits = int(bits)
        self.n = 2 ** (self.code_bits - 1) - 1
        self.bits = self.n + 1  # container: max code 2^(n−1) must fit a signed narrow range
        if self.bits > 16:
            raise ValueError(f"pow2 with {bits} bits needs {self.bits}-bit containers; use <= 5")

    def code_range(self) -> tuple[int, int]:
        top = 2 ** (self.n - 1)
        return -top, top

    def levels(self) -> list[int]:
        mags = [2**j for j in range(self.n)]
        return sorted([-m for m in mags] + [0] + mags)

    def forward(self, w: Tensor) -> Tensor:
        a = w.detach().abs()
        alpha = _per_channel_reduce(a, "amax").to(torch.float32)
        alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
        rel = a / _channel_view(alpha, w.ndim)
        e = torch.clamp(torch.round(torch.log2(rel.clamp(min=1e-30))), -(self.n - 1), 0)
        zero = rel < 2.0 ** (-(self.n - 1) - 0.5)
        mag = torch.where(zero, torch.zeros_like(e), torch.exp2(e + self.n - 1))
        codes = _sign_pm1(w.detach()) * mag
        scale = alpha * 2.0 ** (-(self.n - 1))
        self._record(scale)
        return _ste(w, _channel_view(scale, w.ndim) * codes)
