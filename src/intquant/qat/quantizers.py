"""Fake quantizers for quantization-aware training, one small module per published method.

Every quantizer maps a float tensor to ``scale · (q − zero_point)`` where ``q`` is an integer code
and ``scale`` a float32 value (per tensor, or per output channel along axis 0 for weights). That
product is what the network sees during training, and :meth:`Quantizer.export` hands the same
integer grid (bits, scale, zero point, allowed codes) to the PTQ/lowering path, so the deployed
integer model reproduces the trained one instead of re-observing ranges.

Gradients follow each paper: the straight-through estimator (STE) treats rounding as identity,
and each method says where the gradient is cancelled (outside the clipping range, outside
[−1, 1] for sign) and how learned parameters (LSQ step, PACT clip) receive gradient.

Weight quantizers: ``uniform``, ``lsq``, ``binary``, ``binary_stochastic``, ``xnor``,
``ternary``, ``dorefa``, ``pow2``. Activation quantizers: ``uniform``, ``lsq``, ``pact``,
``sign``, ``dorefa``, ``hwgq``. Build them by name with :func:`make_weight_quantizer` /
:func:`make_act_quantizer`.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "Quantizer",
    "UniformWeight",
    "LSQ",
    "BinaryConnect",
    "XNOR",
    "Ternary",
    "DoReFaWeight",
    "Pow2Weight",
    "UniformAct",
    "PACT",
    "SignAct",
    "DoReFaAct",
    "HWGQ",
    "quantize_gradient",
    "deployed_code_shift",
    "hwgq_step",
    "make_weight_quantizer",
    "make_act_quantizer",
    "WEIGHT_QUANTIZERS",
    "ACT_QUANTIZERS",
]


# ----------------------------------------------------------------------------------------------
# Small shared pieces
# ----------------------------------------------------------------------------------------------


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


def _signed_bits_for(max_abs_code: int) -> int:
    """Fewest signed bits whose narrow range [−(2^(b−1)−1), 2^(b−1)−1] holds the codes."""
    return max(2, int(max_abs_code).bit_length() + 1)


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


# ----------------------------------------------------------------------------------------------
# Autograd functions (exact forward on the grid, the paper's backward)
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Weight quantizers
# ----------------------------------------------------------------------------------------------


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
        with torch.no_grad():
            self.step.abs_().clamp_(min=1e-8)  # a step must stay positive
        self._record(self.step)
        g = 1.0 / math.sqrt(n * qp)
        return _LSQFunction.apply(x, step, -qmin, qp, g)


class BinaryConnect(Quantizer):
    """BinaryConnect (Courbariaux et al., NeurIPS 2015): w_b = sign(w) ∈ {−1, +1}.

    ``stochastic``: during training w_b = +1 with probability σ(w) = clip((w + 1)/2, 0, 1)
    ("hard sigmoid"), −1 otherwise; deterministic sign in eval (deployment). The gradient of
    w_b is applied to the real-valued w unchanged (STE), and the QAT layers clip the latent w to
    [−1, 1] before every training forward (``clip_latent``), which equals the paper's clipping
    after each update. No scale: |w_b| = 1.
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
            p = torch.clamp((w.detach() + 1) / 2, 0, 1)
            u = torch.rand(w.shape, generator=self.generator, dtype=w.dtype)
            wb = torch.where(u < p, torch.ones_like(w), -torch.ones_like(w))
        else:
            wb = _sign_pm1(w.detach())
        return _ste(w, wb)


class XNOR(Quantizer):
    """XNOR-Net weights (Rastegari et al., ECCV 2016): W ≈ α_c·sign(W_c), α_c = mean|W_c|.

    One scale per output channel (filter). Gradient (eq. 7 of the paper, exact chain rule):
    ∂C/∂W = ∂C/∂W̃ · α·1[|W| ≤ 1] through sign (BNN STE) plus the path through α = mean|W|.
    """

    kind = "xnor"
    is_weight = True

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


# ----------------------------------------------------------------------------------------------
# Activation quantizers
# ----------------------------------------------------------------------------------------------


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

    def forward(self, x: Tensor) -> Tensor:
        if self.training or not bool(self.initialized):
            self._observe(x)
        qmin, qmax = self.code_range()
        scale, zp = self.qparams()
        self._record(scale.reshape(1), zp.to(torch.int64).reshape(1))
        return _FakeQuantAffineSTE.apply(x, scale, zp, qmin, qmax)


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

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.initialized):
            with torch.no_grad():
                self.alpha.fill_(max(float(x.detach().max()), 1e-3))
                self.initialized.fill_(True)
        with torch.no_grad():
            self.alpha.clamp_(min=1e-4)
        qp = self.code_range()[1]
        scale = _float32_div(self.alpha, qp)
        self._record(scale)
        return _PACTFunction.apply(x, self.alpha, scale.reshape(()), qp)


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

    def forward(self, x: Tensor) -> Tensor:
        self._record(torch.ones(1))
        return _SignSTE.apply(x)


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

    def forward(self, x: Tensor) -> Tensor:
        n = self.code_range()[1]
        scale = torch.tensor(1.0 / n, dtype=torch.float32)
        self._record(scale.reshape(1))
        if self.grad_bits is not None and self.training:
            x = quantize_gradient(x, self.grad_bits, self.generator)
        q = torch.clamp(torch.round(x.detach() / scale), 0, n)
        return _ste(torch.clamp(x, 0.0, 1.0), scale * q)  # STE inside [0, 1]


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

    def forward(self, x: Tensor) -> Tensor:
        qmax = self.code_range()[1]
        step = torch.tensor(hwgq_step(self.bits), dtype=torch.float32)
        self._record(step.reshape(1))
        q = torch.clamp(torch.round(x.detach() / step), 0, qmax)
        clipped = torch.clamp(x, 0.0, float(qmax * step))  # derivative: 1 on (0, q_max)
        return _ste(clipped, step * q)


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


# ----------------------------------------------------------------------------------------------
# Factories
# ----------------------------------------------------------------------------------------------

WEIGHT_QUANTIZERS = ("uniform", "lsq", "binary", "binary_stochastic", "xnor", "ternary",
                     "dorefa", "pow2")
ACT_QUANTIZERS = ("uniform", "lsq", "pact", "sign", "dorefa", "hwgq")


def make_weight_quantizer(name: str, bits: int, where: str = "weights") -> Quantizer:
    """A weight quantizer by name (see WEIGHT_QUANTIZERS); ``where`` names the layer in errors."""
    if name == "uniform":
        return UniformWeight(bits)
    if name == "lsq":
        return LSQ(bits, signed=True, is_weight=True)
    if name in ("binary", "binary_stochastic"):
        return BinaryConnect(stochastic=name == "binary_stochastic")
    if name == "xnor":
        return XNOR()
    if name == "ternary":
        return Ternary()
    if name == "dorefa":
        return DoReFaWeight(bits)
    if name == "pow2":
        return Pow2Weight(bits)
    raise ValueError(f"{where}: unknown weight_quantizer {name!r}; choose one of "
                     f"{WEIGHT_QUANTIZERS}")


def make_act_quantizer(name: str, bits: int, signed: bool, where: str = "activations"
                       ) -> Quantizer:
    """An activation quantizer by name (see ACT_QUANTIZERS).

    ``signed`` says whether the tensor can be negative (no ReLU before it); the unsigned-only
    methods (pact, dorefa, hwgq) clip negatives by definition.
    """
    if name == "uniform":
        return UniformAct(bits, signed=signed)
    if name == "lsq":
        return LSQ(bits, signed=signed, is_weight=False)
    if name == "pact":
        return PACT(bits)
    if name == "sign":
        return SignAct()
    if name == "dorefa":
        return DoReFaAct(bits)
    if name == "hwgq":
        return HWGQ(bits)
    raise ValueError(f"{where}: unknown act_quantizer {name!r}; choose one of {ACT_QUANTIZERS}")
