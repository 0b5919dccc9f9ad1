"""DoReFa-Net (Zhou et al. 2016): k-bit weights through tanh, k-bit activations in [0, 1], and
stochastic k-bit quantization of gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Quantizer, _sign_pm1, _ste


class _GradQuant(torch.autograd.Function):
    """Identity forward; DoReFa's stochastic k-bit gradient quantization backward (eq. 12):

    dr̃ = 2·max|dr|·[quantize_k(dr/(2·max|dr|) + 1/2 + N(k)) − 1/2], N(k) = σ/(2^k − 1),
    σ ~ Uniform(−0.5, 0.5), with the maximum taken per sample (over all but the batch dim).
    """

    @staticmethod
    def forward(ctx, x, bits: int, generator):
        ctx.bits, ctx.generator = bits, generator
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        n = 2**ctx.bits - 1
        dims = tuple(range(1, grad.ndim))
        m = grad.abs().amax(dim=dims, keepdim=True) if dims else grad.abs().amax()
        m = torch.where(m > 0, m, torch.ones_like(m))
        noise = (torch.rand(grad.shape, generator=ctx.generator, dtype=grad.dtype) - 0.5) / n
        r = grad / (2 * m) + 0.5 + noise
        q = torch.round(torch.clamp(r, 0, 1) * n) / n
        return 2 * m * (q - 0.5), None, None


def quantize_gradient(x: Tensor, bits: int, generator: torch.Generator | None = None) -> Tensor:
    """Identity on the forward pass; stochastic k-bit quantization of the gradient (DoReFa)."""
    return _GradQuant.apply(x, bits, generator)


class DoReFaWeight(Quantizer):
    """DoReFa-Net weights (Zhou et al. 2016, eq. 9): k-bit weights through tanh normalisation.

    w' = tanh(w) / (2·max|tanh(w)|) + 1/2 ∈ [0, 1];  w_q = 2·quantize_k(w') − 1 with
    quantize_k(r) = round((2^k − 1)·r)/(2^k − 1). On the integer grid: w_q = n/(2^k − 1) with n
    = 2·round((2^k − 1)·w') − (2^k − 1), odd codes in [−(2^k−1), 2^k−1] (container k + 1 bits,
    scale 1/(2^k − 1)). k = 1: w_q = E|w|·sign(w) (eq. 8). The rounding is straight-through; the
    tanh normalisation (including the max) is differentiated exactly.
    """

    kind = "dorefa"
    is_weight = True

    def __init__(self, bits: int = 2) -> None:
        super().__init__(bits, signed=True)
        self.k = int(bits)
        self.bits = 2 if self.k == 1 else self.k + 1

    def code_range(self) -> tuple[int, int]:
        if self.k == 1:
            return -1, 1
        n = 2**self.k - 1
        return -n, n

    def levels(self) -> list[int]:
        if self.k == 1:
            return [-1, 1]
        n = 2**self.k - 1
        return list(range(-n, n + 1, 2))

    def forward(self, w: Tensor) -> Tensor:
        if self.k == 1:
            e = w.detach().abs().mean().to(torch.float32)
            e = torch.where(e > 0, e, torch.ones_like(e))
            self._record(e.reshape(1))
            return _ste(w, e * _sign_pm1(w.detach()))
        n = 2**self.k - 1
        t = torch.tanh(w)
        wn = t / (2 * t.abs().max().clamp(min=1e-12)) + 0.5
        codes = 2 * torch.round(n * wn.detach()) - n
        scale = torch.tensor([1.0 / n], dtype=torch.float32)
        self._record(scale)
        return _ste(2 * wn - 1, scale.reshape(()) * codes)


class DoReFaAct(Quantizer):
    """DoReFa-Net activations (Zhou et al. 2016, eq. 11): x_q = quantize_k(clip(x, 0, 1)).

    quantize_k(r) = round((2^k − 1)·r)/(2^k − 1): codes [0, 2^k − 1], scale 1/(2^k − 1). STE
    inside [0, 1], zero outside. ``grad_bits`` adds DoReFa's stochastic k-bit quantization of
    the gradient flowing back through this point (eq. 12); None keeps float gradients.
    """

    kind = "dorefa"

    def __init__(self, bits: int = 2, signed: bool = False, grad_bits: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(bits, signed=False)
        self.grad_bits = grad_bits
        self.generator = generator

    def code_range(self) -> tuple[int, int]:
        return 0, 2**self.bits - 1

    def record_grid(self) -> Tensor:
        """Record and return the fixed scale 1/(2^k − 1)."""
        scale = torch.tensor(1.0 / self.code_range()[1], dtype=torch.float32)
        self._record(scale.reshape(1))
        return scale

    def forward(self, x: Tensor) -> Tensor:
        n = self.code_range()[1]
        scale = self.record_grid()
        if self.grad_bits is not None and self.training:
            x = quantize_gradient(x, self.grad_bits, self.generator)
        q = torch.clamp(torch.round(x.detach() / scale), 0, n)
        return _ste(torch.clamp(x, 0.0, 1.0), scale * q)  # STE inside [0, 1]
