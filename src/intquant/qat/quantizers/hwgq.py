"""HWGQ: the half-wave Gaussian quantizer (Cai et al., CVPR 2017), a quantized ReLU."""

from __future__ import annotations

import math
from functools import cache

import torch
from torch import Tensor

from .base import Quantizer, _ste


@cache
def hwgq_step(bits: int) -> float:
    """Step Δ of the optimal uniform quantizer of the half-wave Gaussian (Cai et al. 2017).

    Q(x) = Δ·clamp(round(x/Δ), 0, 2^b − 1) for x > 0 and 0 for x ≤ 0; Δ minimises
    E[(Q(x) − relu(x))^2] for x ~ N(0, 1) (BatchNorm makes pre-activations about unit
    Gaussian). Computed here from that definition by golden-section search on the closed-form
    Gaussian integrals, so no table is trusted blindly.
    """
    n = 2**bits - 1

    def phi(t: float) -> float:
        return math.exp(-t * t / 2) / math.sqrt(2 * math.pi)

    def cdf(t: float) -> float:
        return 0.5 * (1 + math.erf(t / math.sqrt(2)))

    def sq_err(lo: float, hi: float, c: float) -> float:
        # ∫_lo^hi (x − c)^2 φ(x) dx in closed form (hi may be inf).
        def prim(t: float) -> float:
            if math.isinf(t):
                return 1.0 + c * c
            # ∫ x²φ = Φ − tφ ; ∫ xφ = −φ ; ∫ φ = Φ
            return (cdf(t) - t * phi(t)) + 2 * c * phi(t) + c * c * cdf(t)

        return prim(hi) - prim(lo)

    def mse(d: float) -> float:
        total = 0.0
        for i in range(n + 1):
            lo = 0.0 if i == 0 else (i - 0.5) * d
            hi = math.inf if i == n else (i + 0.5) * d
            total += sq_err(lo, hi, i * d)
        return total

    a, b = 1e-3, 4.0
    r = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        c, d = b - r * (b - a), a + r * (b - a)
        if mse(c) < mse(d):
            b = d
        else:
            a = c
    return (a + b) / 2


class HWGQ(Quantizer):
    """Half-wave Gaussian quantizer (Cai et al., CVPR 2017): a quantized ReLU for BN outputs.

    Forward: Q(x) = Δ·clamp(round(x/Δ), 0, 2^b − 1) (0 for x ≤ 0) with Δ = :func:`hwgq_step`
    (float32). Backward: the paper's clipped-ReLU surrogate, 1 for 0 < x ≤ q_max = (2^b − 1)·Δ,
    0 elsewhere.
    """

    kind = "hwgq"

    def __init__(self, bits: int = 2, signed: bool = False) -> None:
        super().__init__(bits, signed=False)

    def code_range(self) -> tuple[int, int]:
        return 0, 2**self.bits - 1

    def record_grid(self) -> Tensor:
        """Record and return the fixed step Δ (float32)."""
        step = torch.tensor(hwgq_step(self.bits), dtype=torch.float32)
        self._record(step.reshape(1))
        return step

    def forward(self, x: Tensor) -> Tensor:
        qmax = self.code_range()[1]
        step = self.record_grid()
        q = torch.clamp(torch.round(x.detach() / step), 0, qmax)
        clipped = torch.clamp(x, 0.0, float(qmax * step))  # derivative: 1 on (0, q_max)
        return _ste(clipped, step * q)
