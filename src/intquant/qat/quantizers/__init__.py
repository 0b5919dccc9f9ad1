"""Fake quantizers for quantization-aware training, one module per family of published methods.

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

from .base import Quantizer, deployed_code_shift
from .binary import XNOR, BinaryConnect, SignAct
from .dorefa import DoReFaAct, DoReFaWeight, quantize_gradient
from .hwgq import HWGQ, hwgq_step
from .lsq import LSQ
from .pact import PACT
from .pow2 import Pow2Weight
from .ternary import Ternary
from .uniform import UniformAct, UniformWeight

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
