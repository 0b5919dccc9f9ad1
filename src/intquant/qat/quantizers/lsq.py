"""LSQ: Learned Step Size Quantization (Esser et al., ICLR 2020), for weights and activations."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Quantizer, _channel_view, _per_channel_reduce, _sum_to_shape


class _LSQFunction(torch.autograd.Function):
    """LSQ (Esser et al. 2020, eq. 1–3): v̂ = round(clip(v/s, −Qn, Qp))·s.

    ∂v̂/∂v = 1 if −Qn ≤ v/s ≤ Qp else 0 (STE);
    ∂v̂/∂s = −v/s + round(v/s) inside, −Qn below, Qp above; the step gradient is scaled by
    g = 1/sqrt(N·Qp) (section 2.2) and summed over the elements sharing a step.
    """

    @staticmethod
    def forward(ctx, x, step, qn: int, qp: int, grad_scale: float):
        v = x / step
        q = torch.clamp(torch.round(v), -qn, qp)
        ctx.save_for_backward(v, q)
        ctx.g, ctx.qn, ctx.qp, ctx.step_shape = grad_scale, qn, qp, step.shape
        return q * step

    @staticmethod
    def backward(ctx, grad):
        v, q = ctx.saved_tensors
        inside = ((v >= -ctx.qn) & (v <= ctx.qp)).to(grad.dtype)
        # Outside the range round(v) is clamped to the bound, so ∂v̂/∂s = q − v·1[inside]
        # gives −Qn / Qp there and round(v) − v inside: the paper's three cases in one line.
        grad_step = _sum_to_shape(grad * (q - v * inside), ctx.step_shape) * ctx.g
        return grad * inside, grad_step, None, None, None


class LSQ(Quantizer):
    """Learned Step Size Quantization (Esser et al., ICLR 2020).

    v̂ = round(clip(v/s, −Qn, Qp))·s with a learned step s. Weights: signed, one step per output
    channel (``per_channel``), narrow range Qn = Qp = 2^(b−1)−1 by default (``narrow=False``
    gives the paper's Qn = 2^(b−1)); activations: unsigned Qn = 0, Qp = 2^b − 1 after ReLU,
    signed otherwise. Step initialised from the first batch as 2·mean|v|/sqrt(Qp) (paper).
    Gradient scale g = 1/sqrt(N·Qp), N = number of elements sharing one step (weights per
    channel, or features per sample for activations).
    """

    kind = "lsq"

    def __init__(
        self, bits: int = 4, signed: bool = True, is_weight: bool = True,
        per_channel: bool | None = None, narrow: bool = True,
    ) -> None:
        super().__init__(bits, signed)
        if signed and bits < 2:
            raise ValueError("signed LSQ needs bits >= 2")
        self.is_weight = is_weight
        self.per_channel = is_weight if per_channel is None else per_channel
        self.narrow = narrow
        self.step = nn.Parameter(torch.ones(1))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def code_range(self) -> tuple[int, int]:
        if not self.signed:
            return 0, 2**self.bits - 1
        qp = 2 ** (self.bits - 1) - 1
        return (-qp if self.narrow else -(qp + 1)), qp

    def _init_step(self, x: Tensor) -> None:
        qp = self.code_range()[1]
        with torch.no_grad():
            if self.per_channel:
                m = _per_channel_reduce(x.detach().abs(), "mean")
            else:
                m = x.detach().abs().mean().reshape(1)
            s = 2 * m / math.sqrt(qp)
            s = torch.where(s > 0, s, torch.full_like(s, 1e-3)).to(torch.float32)
            if s.shape == self.step.shape:
                self.step.copy_(s)  # in place: an optimizer built earlier keeps seeing it
            else:
                # per-channel weight steps get their shape here; prepare() runs this before
                # any optimizer exists.
                self.step = nn.Parameter(s)
            self.initialized.fill_(True)

    def record_grid(self) -> None:
        """Record the step the forward pass uses (kept positive in place, as it must be)."""
        with torch.no_grad():
            self.step.abs_().clamp_(min=1e-8)
        self._record(self.step)

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.initialized):
            self._init_step(x)
        qmin, qp = self.code_range()
        if self.per_channel:
            n = x[0].numel()
            step = _channel_view(self.step, x.ndim)
        else:
            n = x[0].numel() if not self.is_weight else x.numel()
            step = self.step.reshape(())
        self.record_grid()
        g = 1.0 / math.sqrt(n * qp)
        return _LSQFunction.apply(x, step, -qmin, qp, g)
