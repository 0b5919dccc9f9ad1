"""Uniform quantizers: symmetric per-channel weights and observed-range affine activations.

The grids are the ones PTQ's observers choose (max-abs weights, min/max activations, as
``numerics.choose_qparams`` computes them), so a uniform QAT layer deploys on the PTQ grid.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Quantizer, _channel_view, _float32_div, _per_channel_reduce


class _FakeQuantAffineSTE(torch.autograd.Function):
    """y = s·(clamp(round(x/s) + z, qmin, qmax) − z); dy/dx = 1 where the code is not clamped.

    The straight-through estimator of Bengio et al. 2013 with the clipping mask of Jacob et al.
    2018 (the same mask as PyTorch's fake_quantize_per_tensor_affine).
    """

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin: int, qmax: int):
        q = torch.round(x / scale) + zero_point
        inside = (q >= qmin) & (q <= qmax)
        ctx.save_for_backward(inside)
        return scale * (torch.clamp(q, qmin, qmax) - zero_point)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None, None, None, None


class UniformWeight(Quantizer):
    """Uniform symmetric weights on the narrow range [−(2^(b−1)−1), 2^(b−1)−1], per channel.

    The observer is the weight itself: s_c = max|w_c| / (2^(b−1)−1) (float32), as PTQ's maxabs
    calibration would choose. Nothing is clipped, so the STE passes the gradient everywhere.
    """

    kind = "uniform"
    is_weight = True

    def __init__(self, bits: int = 8, per_channel: bool = True) -> None:
        super().__init__(bits, signed=True)
        if bits < 2:
            raise ValueError("uniform weights need bits >= 2 (use 'binary' or 'xnor' for 1 bit)")
        self.per_channel = per_channel

    def code_range(self) -> tuple[int, int]:
        qmax = 2 ** (self.bits - 1) - 1
        return -qmax, qmax

    def forward(self, w: Tensor) -> Tensor:
        qmax = self.code_range()[1]
        amax = _per_channel_reduce(w.detach().abs(), "amax") if self.per_channel else \
            w.detach().abs().amax().reshape(1)
        scale = _float32_div(amax, qmax)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        self._record(scale)
        s = _channel_view(scale, w.ndim) if self.per_channel else scale.reshape(())
        return _FakeQuantAffineSTE.apply(w, s, 0.0, -qmax, qmax)


class UniformAct(Quantizer):
    """Uniform affine activations with an observed range (Jacob et al. 2018).

    Training updates an exponential moving average of the batch min/max (``momentum``; the
    first batch initialises it); the range is widened to contain 0 and
    s = (max − min)/(qmax − qmin) (float64 → float32), z = qmin − round(min/s), exactly as
    ``numerics.choose_qparams`` computes them. ``signed=False`` (after ReLU) uses [0, 2^b − 1].
    STE gradient inside the representable range, zero outside.
    """

    kind = "uniform"

    def __init__(self, bits: int = 8, signed: bool = True, momentum: float = 0.9) -> None:
        super().__init__(bits, signed)
        self.momentum = momentum
        self.register_buffer("min_val", torch.zeros(()))
        self.register_buffer("max_val", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def code_range(self) -> tuple[int, int]:
        if self.signed:
            return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
        return 0, 2**self.bits - 1

    def _observe(self, x: Tensor) -> None:
        lo, hi = x.detach().min(), x.detach().max()
        with torch.no_grad():
            if not bool(self.initialized):
                self.min_val.copy_(lo)
                self.max_val.copy_(hi)
                self.initialized.fill_(True)
            else:
                m = self.momentum
                self.min_val.mul_(m).add_((1 - m) * lo)
                self.max_val.mul_(m).add_((1 - m) * hi)

    def qparams(self) -> tuple[Tensor, Tensor]:
        """(scale float32, zero point) from the observed range, as choose_qparams does."""
        qmin, qmax = self.code_range()
        lo = torch.clamp(self.min_val.to(torch.float64), max=0.0)
        hi = torch.clamp(self.max_val.to(torch.float64), min=0.0)
        scale = ((hi - lo) / (qmax - qmin)).to(torch.float32)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zp = torch.clamp(qmin - torch.round(lo / scale.to(torch.float64)), qmin, qmax)
        return scale, zp.to(torch.float32)

    def record_grid(self) -> tuple[Tensor, Tensor]:
        """Record and return (scale, zero point) of the observed range."""
        scale, zp = self.qparams()
        self._record(scale.reshape(1), zp.to(torch.int64).reshape(1))
        return scale, zp

    def forward(self, x: Tensor) -> Tensor:
        if self.training or not bool(self.initialized):
            self._observe(x)
        qmin, qmax = self.code_range()
        scale, zp = self.record_grid()
        return _FakeQuantAffineSTE.apply(x, scale, zp, qmin, qmax)
