"""convert(qat_model): the trained fake-quantized network → the integer ``QuantizedModel``.

Conversion hands PTQ the *trained* integer grid instead of letting it observe new ranges:
1. :func:`folded_float_model` builds a plain float network equal to the eval-mode QAT network:
   each BatchNorm is folded into its layer's per-channel weight *scale* (the integer codes do
   not change, see :mod:`intquant.qat.modules`), each weight is replaced by
   fl32(scale'·code), and the fake-quantizer nodes are removed;
2. :func:`ptq_overrides` states, per layer, the weight scale (float32 per output channel), the
   weight container bits, and the output activation range and bits the QAT quantizers used;
3. ``intquant.quantize`` lowers that float network with those overrides, so every weight code
   and every activation format of the IntGraph is the trained one.
Residual adds are QAdd modules whose output formats are trained as well, so every format of
the IntGraph of a conv/linear/add network comes from training and the calibration input does not
change it; so are products and differences of two activations (QMul, QSub) and the outputs of
activations (Hardswish, Sigmoid, GELU, ...: ``qat_elems``). Eval mode of the prepared model
runs exactly this integer model (see :mod:`intquant.qat.model`); the training forward differs
from it only by the integer contract's own rounding (bias rounding, fixed-point
requantization multipliers, the activation tables).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..config import Config
from .model import QATModel
from .modules import (
    RECURRENT_WEIGHT_BITS,
    Add,
    GridAvgPool,
    Mul,
    QAdd,
    QConv1d,
    QConv2d,
    QConvTranspose1d,
    QConvTranspose2d,
    QLinear,
    QMul,
    QRecurrent,
    QSub,
    Sub,
    fold_params,
    to_plain_recurrent,
)
from .prepare import INPUT_KEY, LayerInfo
from .quantizers import Quantizer, deployed_code_shift

__all__ = ["convert", "folded_float_model", "ptq_overrides", "fold_layer", "agreement"]

_QLAYERS = (QConv1d, QConv2d, QConvTranspose1d, QConvTranspose2d, QLinear)


def _check_prepared(model: nn.Module) -> dict[str, LayerInfo]:
    if not isinstance(model, QATModel):
        raise ValueError("convert: expected the model returned by intquant.qat.prepare "
                         f"(a QATModel), got {type(model).__name__}")
    return model.qat_layers


def fold_layer(layer: nn.Module, sign_output: bool = False) -> dict[str, Any]:
    """Integer codes, folded per-channel float32 scales, folded bias and container bits of one
    QAT layer (see :func:`intquant.qat.modules.fold_params` for the math).

    ``sign_output``: the layer feeds a sign activation (BNN). Its bias is then the one on the
    accumulator grid (``bias_q`` = b·s_in·s'), which lowering recovers exactly as the integer
    b; the sign of s_in·s'·(acc + b) (sign(0) = +1, what the QAT layer computes as
    sign(acc + b + 1/2)) is +1 exactly when acc ≥ −b, so the deployed layer is a per-channel
    integer threshold emitting packed bits (``binary_conv`` / ``sign_conv``, ``ops/_binary.py``).
    """
    p = fold_params(layer)
    codes = p["codes"].numpy()
    scale = p["scale"].numpy().astype(np.float64)
    bias = p["bias"]
    bits = int(layer.weight_quant.export()["bits"])
    if sign_output:
        if "step" not in p:
            raise ValueError("convert: a sign activation needs its layer's input quantizer to "
                             "put the bias on the accumulator grid (insert no op between the "
                             "previous quantized tensor and the layer)")
        bias = p["bias_q"]
    hi = int(codes.max()) if codes.size else 0
    lo = int(codes.min()) if codes.size else 0
    if bits > 1 and (hi > 2 ** (bits - 1) - 1 or lo < -(2 ** (bits - 1))):
        bits += 1  # e.g. LSQ's −2^(b−1) negated by γ < 0 (two's complement range exceeded)
    return {"codes": codes, "scale": scale, "bits": bits,
            "weight": p["weight"], "bias": bias.to(torch.float32)}


def _act_quantizers(qat_model: QATModel) -> list[Quantizer]:
    """The input, layer-output and add-output quantizers: every activation format trained."""
    names = ["input_quant"] + [f"{n}.output_quant" for n in qat_model.qat_layers] + \
        [f"{n}.output_quant" for n in qat_model.qat_adds] + \
        [f"{n}.output_quant" for n in qat_model.qat_elems]
    return [qat_model.get_submodule(n) for n in names]


def _act_override(q: Quantizer) -> dict[str, Any]:
    """act_bits/act_range reproducing the quantizer's grid in PTQ's signed b-bit format.

    PTQ turns a range into s = (hi − lo)/(qmax − qmin), z = qmin − round(lo/s) on the signed
    range [−2^(b−1), 2^(b−1) − 1]. Our codes are shifted into that range (unsigned codes move
    down by 2^(b−1)); lo and hi are then exact float64 multiples of the float32 step, so PTQ
    recovers the step and zero point bit for bit.
    """
    e = q.export()
    s = float(e["scale"][0])
    zp = int(e["zero_point"][0])
    b = max(int(e["bits"]), 1)
    plo, phi = (-1, 1) if b == 1 else (-(2 ** (b - 1)), 2 ** (b - 1) - 1)
    zp_p = zp + deployed_code_shift(q)
    return {"act_bits": b, "act_range": (s * (plo - zp_p), s * (phi - zp_p)),
            "act_signed": bool(e["signed"])}


def ptq_overrides(qat_model: QATModel) -> dict[str, dict[str, Any]]:
    """Config.overrides for intquant.quantize that reproduce the trained grid of every layer,
    residual add and of the input, from the current parameters."""
    infos = _check_prepared(qat_model)
    for q in _act_quantizers(qat_model):
        q.record_grid()  # the last forward may predate an optimizer step
    overrides: dict[str, dict[str, Any]] = {}
    for name, info in infos.items():
        layer = qat_model.get_submodule(name)
        folded = fold_layer(layer, sign_output=info.act_quantizer == "sign")
        ov = {"weight_bits": folded["bits"], "weight_scale": folded["scale"]}
        ov.update(_act_override(layer.output_quant))
        overrides[name] = ov
    for name in list(qat_model.qat_adds) + list(qat_model.qat_elems):
        overrides[name] = _act_override(qat_model.get_submodule(name).output_quant)
    overrides[INPUT_KEY] = _act_override(qat_model.get_submodule("input_quant"))
    for name, m in qat_model.named_modules():  # -- recurrent layers --
        if isinstance(m, QRecurrent):
            overrides[name] = {"weight_bits": RECURRENT_WEIGHT_BITS,
                               "weight_scale": m.deployed_scales().double().numpy()}
    return overrides


def folded_float_model(qat_model: QATModel) -> fx.GraphModule:
    """A float network equal to the eval-mode QAT network, BN folded, weights on the grid.

    Fake-quantizer nodes are removed (PTQ re-imposes the same grids through the overrides);
    residual adds stay modules (:class:`Add`) so the captured graph names them by their path.
    The result is a plain ``torch.fx.GraphModule``.
    """
    infos = _check_prepared(qat_model)
    gm = copy.deepcopy(qat_model).eval()
    for name, info in infos.items():
        layer = gm.get_submodule(name)
        folded = fold_layer(layer, sign_output=info.act_quantizer == "sign")
        plain = _plain_copy(layer)
        with torch.no_grad():
            plain.weight.copy_(layer.layer_weight(folded["weight"]))
            if plain.bias is None:
                plain.bias = nn.Parameter(torch.zeros(plain.out_features if isinstance(
                    plain, nn.Linear) else plain.out_channels))
            plain.bias.copy_(folded["bias"])
        _set_module(gm, name, plain)
        if info.batchnorm:
            _set_module(gm, info.batchnorm, nn.Identity())
    for name, m in list(gm.named_modules()):  # -- recurrent layers --
        if isinstance(m, QRecurrent):
            _set_module(gm, name, to_plain_recurrent(m))
    signs = {f"{n}.output_quant" for n, i in infos.items() if i.act_quantizer == "sign"}
    if signs:
        gm.add_submodule("binary_sign", BinarySign())
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        if node.target in signs:
            node.target = "binary_sign"  # captured as the float op "sign" (see fold_layer)
        elif node.target == "input_quant" or node.target.endswith(".output_quant"):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
        elif isinstance(gm.get_submodule(node.target), GridAvgPool):
            _set_module(gm, node.target, gm.get_submodule(node.target).pool)
        elif isinstance(gm.get_submodule(node.target), QAdd | QMul | QSub):
            plain = {QAdd: Add, QMul: Mul, QSub: Sub}[type(gm.get_submodule(node.target))]
            _set_module(gm, node.target, plain())
    gm.graph.lint()
    return fx.GraphModule(gm, gm.graph)


class BinarySign(nn.Module):
    """torch.sign: captured as intquant's float op ``sign``, whose sign(0) is +1 (BNN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x)


def _plain_copy(layer: nn.Module) -> nn.Module:
    if isinstance(layer, QLinear):
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    if isinstance(layer, QConvTranspose1d | QConvTranspose2d):
        cls = nn.ConvTranspose1d if isinstance(layer, QConvTranspose1d) else nn.ConvTranspose2d
        return cls(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                   padding=layer.padding, output_padding=layer.output_padding,
                   groups=layer.groups, bias=layer.bias is not None, dilation=layer.dilation,
                   padding_mode=layer.padding_mode)
    cls = nn.Conv1d if isinstance(layer, QConv1d) else nn.Conv2d
    return cls(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
               padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
               bias=layer.bias is not None, padding_mode=layer.padding_mode)


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def convert(qat_model: QATModel, calib: Any = None, config: Config | None = None,
            progress: bool = False):
    """The integer ``QuantizedModel`` of a QAT-trained model (same type intquant.quantize returns).

    With the defaults this is the model the prepared model runs in eval mode.
    ``calib``: a few float inputs. Every tensor of a conv/linear/add network has a trained
    format, so any input of the right shape gives the same integer model; tensors QAT does not
    quantize (e.g. a concatenation) are calibrated on it. Default: the first samples the model
    saw (``qat_model.calibration_input``).
    ``config``: base PTQ settings (rounding, input_spec …); its overrides are replaced and bias
    correction is off (the trained weights are on their grid: nothing to correct). Default:
    ``qat_model.deploy_config`` if set, else ``Config(rounding="single")``. TFLM's default
    double rounding first rounds
    acc·M to an integer and then divides by 2^shift, rounding again; with the small
    accumulators of low-bit layers that second rounding often lands on the wrong side (e.g.
    acc·m = 1.41 → 5.64 → 6 → 6/4 = 1.5 → 2), so the deployment would disagree with the trained
    network. CMSIS-NN's single rounding rounds the exact product once, as training does.
    """
    from ..ptq import quantize

    _check_prepared(qat_model)
    missing = qat_model.uninitialized_quantizers()
    if missing:
        raise ValueError(f"convert: quantizers {missing} have not seen data yet; run the model "
                         "on a batch first (or pass example_input to prepare)")
    if calib is None:
        calib = qat_model.calibration_input
        if calib is None:
            raise ValueError("convert: pass calib (a few inputs); the model has not run yet")
    overrides = ptq_overrides(qat_model)
    float_model = folded_float_model(qat_model)
    config = config if config is not None else qat_model.deploy_config
    base = copy.deepcopy(config) if config is not None else Config(rounding="single")
    base.bias_correction = False
    base.overrides = overrides
    base.validate()
    return quantize(float_model, calib, base, progress=progress)


def agreement(qat_model: nn.Module, qmodel: Any, x: Any) -> dict[str, float]:
    """How closely the integer model ``qmodel`` reproduces the eval-mode QAT model on ``x``.

    Returns argmax agreement (fraction of samples with the same predicted class), the max and
    mean |logit difference| in whole output steps (the QAT logits rounded to ``qmodel``'s output
    grid; for eval mode that recovers its integer codes exactly), and the fraction of logits
    with the same integer code. Eval mode runs ``convert(qat_model)``, so for that ``qmodel``
    the figures are 1, 0, 0 and 1 on every machine.
    """
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    qat_model.eval()
    with torch.no_grad():
        ref = qat_model(xt).to(torch.float64).numpy()
    y = qmodel.predict(np.asarray(x, dtype=np.float32))
    lsb = float(qmodel.output_info.scale)
    diff = np.abs(np.rint(ref / lsb) - np.rint(y / lsb))
    return {
        "argmax_agreement": float(np.mean(ref.argmax(1) == y.argmax(1))),
        "max_abs_diff_lsb": float(diff.max()),
        "mean_abs_diff_lsb": float(diff.mean()),
        "exact_fraction": float(np.mean(diff == 0)),
    }
