"""PACT: activations clipped at a learned α (Choi et al. 2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Quantizer, _float32_div


class _PACTFunction(torch.autograd.Function):
    """PACT (Choi et al. 2018, eq. 1–3): y = clip(x, 0, α), y_q = round(y·Qp/α)·α/Qp.

    ∂y_q/∂x = 1 for 0 ≤ x < α, else 0; ∂y_q/∂α = 1 for x ≥ α, else 0 (STE through round).
    """

    @staticmethod
    def forward(ctx, x, alpha, scale, qp: int):
        q = torch.clamp(torch.round(x / scale), 0, qp)
        ctx.save_for_backward(x, alpha)
        return scale * q

    @staticmethod
    def backward(ctx, grad):
        x, alpha = ctx.saved_tensors
        grad_x = grad * ((x >= 0) & (x < alpha)).to(grad.dtype)
        grad_alpha = (grad * (x >= alpha).to(grad.dtype)).sum().reshape(alpha.shape)
        return grad_x, grad_alpha, None, None


class PACT(Quantizer):
    """PACT (Choi et al. 2018): learned clip α, y_q = round(clip(x, 0, α)·Qp/α)·α/Qp, Qp = 2^b−1.

    α is a parameter (regularise it with weight decay, as the paper does); initialised to
    ``init_alpha`` or, if None, to the max of the first batch. Scale α/Qp is computed in float64
    and rounded once to float32 (as choose_qparams on the range [0, α] would).
    """

    kind = "pact"

    def __init__(self, bits: int = 4, signed: bool = False,
                 init_alpha: float | None = None) -> None:
        super().__init__(bits, signed=False)
        self.alpha = nn.Parameter(torch.tensor([init_alpha if init_alpha else 1.0]))
        self.register_buffer("initialized", torch.tensor(init_alpha is not None))

    def code_range(self) -> tuple[int, int]:
        return 0, 2**self.bits - 1

    def record_grid(self) -> Tensor:
        """Record and return the scale α/Qp of the current clip (α kept >= 1e-4 in place)."""
        with torch.no_grad():
            self.alpha.clamp_(min=1e-4)
        scale = _float32_div(self.alpha, self.code_range()[1])
        self._record(scale)
        return scale

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.initialized):
            with torch.no_grad():
                self.alpha.fill_(max(float(x.detach().max()), 1e-3))
                self.initialized.fill_(True)
        scale = self.record_grid()
        return _PACTFunction.apply(x, self.alpha, scale.reshape(()), self.code_range()[1])
