"""The base class every fake quantizer derives from, and the pieces the families share.

A quantizer maps a float tensor to ``scale · (q − zero_point)`` with integer codes ``q`` and a
float32 ``scale`` (per tensor, or per output channel along axis 0 for weights), and records that
grid so :meth:`Quantizer.export` can hand it to the PTQ/lowering path unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


def _float32_div(num: Tensor, den: float) -> Tensor:
    """num / den computed in float64 then rounded once to float32.

    NumPy's ``choose_qparams`` computes scales this way; doing the same here keeps the scale a
    PTQ recomputation would find bit-identical to the one used in training.
    """
    return (num.detach().to(torch.float64) / den).to(torch.float32)


def _channel_view(t: Tensor, ndim: int) -> Tensor:
    """A per-output-channel vector shaped to broadcast against a weight of ``ndim`` dims."""
    return t.reshape((-1,) + (1,) * (ndim - 1))


def _per_channel_reduce(x: Tensor, fn: str) -> Tensor:
    """Reduce every dim but 0 (output channel) with ``fn`` in {'amax', 'mean', 'sum'}."""
    flat = x.reshape(x.shape[0], -1)
    return getattr(flat, fn)(dim=1)


def _sum_to_shape(t: Tensor, shape: torch.Size) -> Tensor:
    """Sum ``t`` over the dims along which a tensor of ``shape`` was broadcast to it."""
    lead = t.ndim - len(shape)
    dims = list(range(lead)) + [lead + i for i, n in enumerate(shape) if n == 1]
    return t.sum(dim=dims, keepdim=True).reshape(shape) if dims else t


def _sign_pm1(x: Tensor) -> Tensor:
    """sign with sign(0) = +1, so that codes are always in {−1, +1} (1-bit)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class Quantizer(nn.Module):
    """Base class: ``forward`` fake-quantizes, ``export`` describes the integer grid used.

    Subclasses record the scale and zero point of their last forward pass in the buffers
    ``scale`` and ``zero_point`` (shape (1,) per tensor or (C,) per channel) so that ``export``
    after training describes exactly what the network computed.
    """

    kind: str = "?"
    is_weight: bool = False

    def __init__(self, bits: int, signed: bool) -> None:
        super().__init__()
        if not 1 <= int(bits) <= 16:
            raise ValueError(f"{type(self).__name__}: bits must be in [1, 16], got {bits}")
        self.bits = int(bits)
        self.signed = bool(signed)
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("zero_point", torch.zeros(1, dtype=torch.int64))

    # Integer range of the codes this quantizer produces; subclasses override.
    def code_range(self) -> tuple[int, int]:
        raise NotImplementedError

    def record_grid(self) -> Any:
        """Record the grid the next forward pass will use, from the parameters alone.

        Activation quantizers implement it (their grid depends on learned parameters or
        observed statistics, not on the batch), so convert can export the grid of the
        *current* parameters even when the last forward ran before an optimizer step. Weight
        grids depend on the weights and are recorded by running the quantizer on them.
        """
        raise NotImplementedError(f"{type(self).__name__} records its grid in forward()")

    def levels(self) -> list[int] | None:
        """The allowed integer codes when they are a strict subset of the range, else None."""
        return None

    def _record(self, scale: Tensor, zero_point: Tensor | int = 0) -> None:
        s = scale.detach().reshape(-1).to(torch.float32)
        with torch.no_grad():
            if self.scale.shape != s.shape:
                self.scale = s.clone()
            else:
                self.scale.copy_(s)
            zp = torch.as_tensor(zero_point, dtype=torch.int64).reshape(-1).expand(s.shape)
            if self.zero_point.shape != s.shape:
                self.zero_point = zp.clone()
            else:
                self.zero_point.copy_(zp)

    def export(self) -> dict[str, Any]:
        """The integer grid of the last forward pass: ``r = scale · (q − zero_point)``.

        ``bits`` is the width of a container that holds every code (sub-byte grids deploy in
        int8 containers); ``levels`` lists the codes actually allowed when they are sparse
        (binary, power-of-two, DoReFa's odd codes), None for every integer in the range.
        """
        qmin, qmax = self.code_range()
        scale = self.scale.detach().cpu().numpy().astype(np.float32).astype(np.float64)
        return {
            "kind": self.kind,
            "bits": self.bits,
            "signed": self.signed,
            "scale": scale,
            "zero_point": self.zero_point.detach().cpu().numpy().astype(np.int64),
            "axis": 0 if (self.is_weight and scale.size > 1) else None,
            "qmin": qmin,
            "qmax": qmax,
            "narrow": bool(self.signed and qmin == -qmax),
            "levels": self.levels(),
        }

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}"


class _Straight(torch.autograd.Function):
    """Forward ``value`` bit for bit; backward hands the gradient to ``x`` unchanged."""

    @staticmethod
    def forward(ctx, x, value):
        return value.detach().clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _ste(x: Tensor, value: Tensor) -> Tensor:
    """Forward exactly ``value`` (no x + (v − x) rounding), backward identity to ``x`` (STE)."""
    return _Straight.apply(x, value)


def deployed_code_shift(q: Quantizer) -> int:
    """Offset between this quantizer's codes and the stored codes of the deployed tensor.

    PTQ stores a b-bit activation in the signed range [−2^(b−1), 2^(b−1) − 1]; codes that do
    not fit (unsigned [0, 2^b − 1]) move down by 2^(b−1). Ops that round raw codes (average
    pooling) must round the stored codes, so QAT needs the same offset.
    """
    qmin, qmax = q.code_range()
    b = max(q.bits, 1)
    lo, hi = (-1, 1) if b == 1 else (-(2 ** (b - 1)), 2 ** (b - 1) - 1)
    return 0 if (qmin >= lo and qmax <= hi) else lo - qmin
