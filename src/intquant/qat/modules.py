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

In eval mode a layer computes with the deployed parameters: BatchNorm folded into the
per-channel scale (its BatchNorm module then passes values through), weights fl32(s'·q), and
the bias rounded to the int32 accumulator grid s_in·s'_c of the deployed layer — the bias
rounding matters at low bit widths, where one accumulator step can be a sizeable fraction of
an output step. This float forward still rounds differently from the integer requantization
(and per CPU), so the prepared model's eval mode does not use it by default: it runs the
integer model itself (:mod:`intquant.qat.model`); this path serves ``exact_eval = False`` and
BatchNorm recalibration.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .quantizers import Quantizer, deployed_code_shift
from .quantizers.base import _ste

__all__ = ["QConv1d", "QConv2d", "QLinear", "QUANT_LAYERS", "to_qat_layer", "fold_params",
           "FoldableBatchNorm1d", "FoldableBatchNorm2d", "to_foldable_bn", "GridAvgPool",
           "Add", "QAdd", "Sub", "QSub", "Mul", "QMul", "Activation"]


def _links(layer: nn.Module) -> tuple[nn.Module | None, Quantizer | None]:
    """(BatchNorm folded into the layer, quantizer of the layer's input): plain references kept
    out of the module tree so parameters and state_dict keys are not duplicated."""
    return layer.__dict__.get("_bn"), layer.__dict__.get("_input_quant")


def fold_params(layer: nn.Module) -> dict[str, Tensor]:
    """The deployed parameters of a QAT layer (eval-mode quantizers, frozen BN statistics).

    f_c = γ_c / sqrt(σ²_c + ε) (1 without BN); codes'_c = sign(f_c)·codes_c;
    scale'_c = fl32(|s_c·f_c|); weight = fl32(scale'·codes'); bias' = β + (b − μ)·f (float64);
    bias_q = round(bias'/(s_in·scale'))·s_in·scale' when the input quantizer is known (the int32
    bias of the integer layer), else bias'.
    """
    bn, in_quant = _links(layer)
    if bn is not None and not getattr(bn, "folded", True):
        bn = None  # the BatchNorm is computing statistics itself (recalibrate_batchnorm)
    wq = layer.weight_quant
    was_training = wq.training
    wq.eval()
    with torch.no_grad():
        w_fq = wq(layer.weight.detach()).to(torch.float64)
    wq.train(was_training)
    cout = w_fq.shape[0]
    view = (-1,) + (1,) * (w_fq.ndim - 1)
    scale = wq.scale.detach().to(torch.float64).expand(cout) if wq.scale.numel() == 1 else \
        wq.scale.detach().to(torch.float64)
    codes = torch.round(w_fq / scale.reshape(view))
    bias = (layer.bias.detach().to(torch.float64) if layer.bias is not None
            else torch.zeros(cout, dtype=torch.float64))
    f = torch.ones(cout, dtype=torch.float64)
    if bn is not None:
        var = bn.running_var.detach().to(torch.float64)
        mean = bn.running_mean.detach().to(torch.float64)
        gamma = bn.weight.detach().to(torch.float64) if bn.affine else torch.ones_like(var)
        beta = bn.bias.detach().to(torch.float64) if bn.affine else torch.zeros_like(var)
        f = gamma / torch.sqrt(var + bn.eps)
        bias = beta + (bias - mean) * f
    sf = (scale * f).abs()
    codes = torch.where(sf.reshape(view) > 0, codes * torch.sign(f).reshape(view), 0.0)
    scale32 = torch.where(sf > 0, sf, torch.ones_like(sf)).to(torch.float32)
    out = {"codes": codes.to(torch.int64), "scale": scale32,
           "weight": scale32.reshape(view) * codes.to(torch.float32), "bias": bias,
           "bias_q": bias}
    if in_quant is not None and in_quant.scale.numel() == 1:
        unit = float(in_quant.scale) * scale32.to(torch.float64)
        out["bias_q"] = torch.round(bias / unit) * unit
        out["step"] = unit
    return out


class _FoldableBN:
    """A BatchNorm that steps aside in eval mode when its QAT layer has folded it."""

    folded: bool = True

    def forward(self, x: Tensor) -> Tensor:
        if self.folded and not self.training:
            return x
        return super().forward(x)


class FoldableBatchNorm1d(_FoldableBN, nn.BatchNorm1d):
    """BatchNorm1d folded into the preceding QAT layer in eval mode."""


class FoldableBatchNorm2d(_FoldableBN, nn.BatchNorm2d):
    """BatchNorm2d folded into the preceding QAT layer in eval mode."""


def to_foldable_bn(bn: nn.Module) -> nn.Module:
    """A Foldable copy of a BatchNorm1d/2d with the same parameters and statistics."""
    cls = FoldableBatchNorm1d if isinstance(bn, nn.BatchNorm1d) else FoldableBatchNorm2d
    new = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
              track_running_stats=bn.track_running_stats)
    new.load_state_dict(bn.state_dict())
    new.train(bn.training)
    return new


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

    def link(self, bn: nn.Module | None, input_quant: Quantizer | None) -> None:
        """Remember the BatchNorm to fold and the input quantizer (for the bias grid)."""
        self.__dict__["_bn"] = bn
        self.__dict__["_input_quant"] = input_quant

    def deployed_weight_bias(self) -> tuple[Tensor, Tensor | None]:
        """(weight, bias) used for the forward pass: QAT's in training, the deployed in eval."""
        if self.training:
            return self.quantized_weight(), self.bias
        p = fold_params(self)
        bias = p["bias_q"]
        if getattr(self, "sign_output", False) and "step" in p:
            # sign(acc) with sign(0) = +1 is sign(acc + 1/2): half a step keeps the following
            # SignAct away from float rounding noise around 0 and matches the deployed
            # layer, whose bias is 2·b_int + 1 on a half-step grid (see qat.convert.fold_layer).
            bias = bias + p["step"] / 2
        return p["weight"], bias.to(torch.float32)


class QConv1d(nn.Conv1d, _QATLayer):
    """nn.Conv1d computing with fake-quantized weights."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, *self.deployed_weight_bias())


class QConv2d(nn.Conv2d, _QATLayer):
    """nn.Conv2d computing with fake-quantized weights."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, *self.deployed_weight_bias())


class QLinear(nn.Linear, _QATLayer):
    """nn.Linear computing with fake-quantized weights."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, *self.deployed_weight_bias())


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


class Add(nn.Module):
    """``a + b`` as a module, so that an exported graph names the add by its module path."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


class QAdd(Add):
    """A residual add whose output format QAT trains: the prepared graph passes the sum (after
    its fused activation) through ``output_quant``, as it does for a layer's output."""

    def __init__(self, output_quant: Quantizer) -> None:
        super().__init__()
        self.output_quant = output_quant


class Sub(nn.Module):
    """``a − b`` of two activations as a module (named by its path in the exported graph)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a - b


class Mul(nn.Module):
    """``a · b`` of two activations as a module (e.g. squeeze-excitation's gate times x)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a * b


class QSub(Sub):
    """A subtraction of two activations whose output format QAT trains (as :class:`QAdd`)."""

    def __init__(self, output_quant: Quantizer) -> None:
        super().__init__()
        self.output_quant = output_quant


class QMul(Mul):
    """A product of two activations whose output format QAT trains (as :class:`QAdd`)."""

    def __init__(self, output_quant: Quantizer) -> None:
        super().__init__()
        self.output_quant = output_quant


class Activation(nn.Module):
    """A functional activation (``torch.sigmoid(x)``, ``F.gelu(x, approximate="tanh")``) as a
    module, so that its output quantizer and the exported graph name it by its path. ``args``
    and ``kwargs`` are the call's constant extra arguments."""

    def __init__(self, fn, args: tuple = (), kwargs: dict | None = None) -> None:
        super().__init__()
        self.fn, self.args, self.kwargs = fn, tuple(args), dict(kwargs or {})

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x, *self.args, **self.kwargs)


class GridAvgPool(nn.Module):
    """An average pool whose output is re-rounded to its input's grid, as the integer op does.

    The integer ``avg_pool`` sums the stored codes of the window and divides by the count,
    rounding half away from zero, keeping the input's scale and zero point. Without this the
    QAT network would feed the next layer an unrounded mean. Gradient: straight through.
    Only fixed-count windows (global pooling, unpadded pools) are wrapped.
    """

    def __init__(self, pool: nn.Module, source: Quantizer) -> None:
        super().__init__()
        self.pool = pool
        self.__dict__["_source"] = source

    def _count(self, x: Tensor) -> int:
        if isinstance(self.pool, nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d):
            n = 1
            for d in x.shape[2:]:
                n *= int(d)
            return n
        k = self.pool.kernel_size
        k = (k,) if isinstance(k, int) else tuple(k)
        n = 1
        for d in k:
            n *= int(d)
        return n

    def forward(self, x: Tensor) -> Tensor:
        y = self.pool(x)
        src: Quantizer = self.__dict__["_source"]
        n = self._count(x)
        s = src.scale.detach().to(torch.float64).reshape(())
        zp = float(src.zero_point.reshape(-1)[0])
        shift = deployed_code_shift(src)
        raw_sum = torch.round(n * (y.detach().to(torch.float64) / s + zp + shift))
        code = torch.sign(raw_sum) * torch.floor((raw_sum.abs() + n // 2) / n)
        out = (s.to(torch.float32) * (code - shift - zp).to(torch.float32))
        return _ste(y, out)


# ----------------------------------------------------------------------------------------------
# -- recurrent layers --
# ----------------------------------------------------------------------------------------------

RECURRENT_WEIGHT_BITS = 8  # lowering keeps recurrent weights int8 (one scale per gate row)


def recurrent_row_scales(w: Tensor) -> Tensor:
    """The deployed format of a gate matrix: symmetric narrow int8, one scale per row,
    s = max|w_row| / 127 (PTQ's minmax weight format, given to it as an override at convert)."""
    qmax = 2 ** (RECURRENT_WEIGHT_BITS - 1) - 1
    return w.detach().abs().amax(dim=1).clamp_min(torch.finfo(w.dtype).tiny) / qmax


def fake_quant_rows(w: Tensor) -> Tensor:
    """w on its int8 per-row grid, straight-through gradient."""
    qmax = 2 ** (RECURRENT_WEIGHT_BITS - 1) - 1
    s = recurrent_row_scales(w)[:, None]
    return _ste(w, torch.clamp(torch.round(w / s), -qmax, qmax) * s)


class QRecurrent:
    """nn.GRU / nn.LSTM / nn.GRUCell / nn.LSTMCell whose gate matrices are fake-quantized in
    training mode; in eval mode the plain layer (the deployed model is computed by the integer
    interpreter anyway)."""

    _fake_quant_active = False

    def gate_matrices(self) -> list[str]:
        """Names of the gate matrices in the lowering's order (w_ih, w_hh per layer)."""
        return [f"weight_{k}_l{layer}" for layer in range(self.num_layers) for k in ("ih", "hh")]

    def forward(self, *args):
        if not self.training or self._fake_quant_active:
            return super().forward(*args)
        weights = {n: fake_quant_rows(getattr(self, n)) for n in self.gate_matrices()}
        self._fake_quant_active = True
        try:
            return torch.func.functional_call(self, weights, args)
        finally:
            self._fake_quant_active = False

    def deployed_scales(self) -> Tensor:
        """Row scales of every gate matrix in the lowering's order."""
        return torch.cat([recurrent_row_scales(getattr(self, n)) for n in self.gate_matrices()])


class QGRU(QRecurrent, nn.GRU):
    pass


class QLSTM(QRecurrent, nn.LSTM):
    pass


class QCell(QRecurrent):
    """A GRUCell / LSTMCell: one layer, gate matrices weight_ih and weight_hh. A loop of its
    calls is one recurrent op (see intquant.graph.capture), whose matrices it quantizes."""

    def gate_matrices(self) -> list[str]:
        return ["weight_ih", "weight_hh"]


class QGRUCell(QCell, nn.GRUCell):
    pass


class QLSTMCell(QCell, nn.LSTMCell):
    pass


QUANT_RECURRENT = {nn.GRU: QGRU, nn.LSTM: QLSTM, nn.GRUCell: QGRUCell, nn.LSTMCell: QLSTMCell}
_PLAIN_RECURRENT = {q: p for p, q in QUANT_RECURRENT.items()}


def _recurrent_copy(cls: type, module: nn.Module) -> nn.Module:
    """``cls`` with the configuration and a copy of the parameters of ``module``."""
    if issubclass(cls, nn.RNNCellBase):
        new = cls(module.input_size, module.hidden_size, bias=module.bias)
    else:
        new = cls(module.input_size, module.hidden_size, num_layers=module.num_layers,
                  bias=module.bias, batch_first=module.batch_first, dropout=module.dropout,
                  bidirectional=module.bidirectional)
    new.load_state_dict(module.state_dict())
    return new.to(dtype=next(module.parameters()).dtype)


def to_qat_recurrent(module: nn.Module) -> nn.Module:
    """A QAT copy of an nn.GRU / nn.LSTM / GRUCell / LSTMCell (parameters copied, not
    shared)."""
    return _recurrent_copy(QUANT_RECURRENT[type(module)], module)


def to_plain_recurrent(module: nn.Module) -> nn.Module:
    """The plain torch layer of a QAT recurrent layer (same parameters, copied)."""
    return _recurrent_copy(_PLAIN_RECURRENT[type(module)], module)
