"""QAT layers: Conv1d / Conv2d / Linear whose weights pass through a fake quantizer.

Each layer owns two quantizers:
- ``weight_quant``: applied to the weight on every forward (the latent float weight is what the
  optimizer updates; the quantized weight is what the layer computes with);
- ``output_quant``: the fake quantizer of the tensor this layer *produces* in the integer
  graph — the output after the layer's BatchNorm and fused activation. The prepared graph (see
  :func:`intquant.qat.prepare`) calls it at that point; the layer itself does not, because the
  BatchNorm and ReLU sit between the convolution and the quantized tensor.

BatchNorm choice (why deployment equals training): BatchNorm is kept as an ordinary module
during QAT (batch statistics in training, running statistics in eval). Weights are quantized per
output channel, and a frozen BatchNorm is a per-channel affine map, so folding it at conversion
changes only the per-channel *scale*, never the integer codes: s'_c = s_c·γ_c/sqrt(σ²_c + ε),
b'_c = β_c + (b_c − μ_c)·γ_c/sqrt(σ²_c + ε). The converted integer model therefore computes the
eval-mode QAT network exactly (up to the requantization rounding of the integer contract), with
no re-quantization of weights after training. (Folding BN into the weights *before* quantizing,
as Jacob et al. 2018 do, would also work but needs per-batch refolding during training.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .quantizers import Quantizer

__all__ = ["QConv1d", "QConv2d", "QLinear", "QUANT_LAYERS", "to_qat_layer"]


class _QATLayer:
    """Shared behaviour of the QAT layers (mixin)."""

    weight: nn.Parameter
    weight_quant: Quantizer
    output_quant: Quantizer | None

    def quantized_weight(self) -> Tensor:
        """The weight as the layer computes with it: scale·(q − zero_point), float32."""
        if self.training and getattr(self.weight_quant, "clip_latent", False):
            # BinaryConnect keeps the real-valued weights in [−1, 1]; clipping before each use
            # is the same as clipping after each optimizer step.
            with torch.no_grad():
                self.weight.clamp_(-1.0, 1.0)
        return self.weight_quant(self.weight)

    def _attach(self, weight_quant: Quantizer, output_quant: Quantizer | None) -> None:
        self.weight_quant = weight_quant
        self.output_quant = output_quant


class QConv1d(nn.Conv1d, _QATLayer):
    """nn.Conv1d computing with fake-quantized weights."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QConv2d(nn.Conv2d, _QATLayer):
    """nn.Conv2d computing with fake-quantized weights."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QLinear(nn.Linear, _QATLayer):
    """nn.Linear computing with fake-quantized weights."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)


QUANT_LAYERS = {nn.Conv1d: QConv1d, nn.Conv2d: QConv2d, nn.Linear: QLinear}


def to_qat_layer(module: nn.Module, weight_quant: Quantizer,
                 output_quant: Quantizer | None = None) -> nn.Module:
    """A QAT copy of a Conv1d/Conv2d/Linear with the same parameters (copied, not shared)."""
    cls = QUANT_LAYERS.get(type(module))
    if cls is None:
        raise ValueError(f"to_qat_layer: {type(module).__name__} is not Conv1d, Conv2d or Linear")
    if isinstance(module, nn.Linear):
        new = cls(module.in_features, module.out_features, bias=module.bias is not None)
    else:
        new = cls(module.in_channels, module.out_channels, module.kernel_size,
                  stride=module.stride, padding=module.padding, dilation=module.dilation,
                  groups=module.groups, bias=module.bias is not None,
                  padding_mode=module.padding_mode)
    new = new.to(dtype=module.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(module.weight)
        if module.bias is not None:
            new.bias.copy_(module.bias)
    new.train(module.training)
    new._attach(weight_quant, output_quant)
    return new
