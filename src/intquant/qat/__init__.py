"""Quantization-aware training: fake quantizers with straight-through gradients, QAT layers,
``prepare`` (float model → trainable fake-quantized copy) and ``convert`` (→ integer model).

Typical use::

    cfg = intquant.Config(weight_bits=4, act_bits=4, weight_quantizer="lsq", act_quantizer="lsq")
    qat = intquant.qat.prepare(float_model, cfg, example_input=x_train[:256])
    intquant.train(qat, data, epochs=10, lr=1e-3, teacher=float_model)  # distillation
    acc = intquant.evaluate(qat, x_test, y_test)   # eval mode: the deployed integer model
    qmodel = intquant.qat.convert(qat)             # the same integer model, to save / export
"""

from .convert import agreement, convert, folded_float_model, ptq_overrides
from .distill import DEFAULT_TEMPERATURE, DEFAULT_WEIGHT, distillation_loss
from .model import QATModel
from .modules import QConv1d, QConv2d, QLinear
from .prepare import AddInfo, LayerInfo, prepare, recalibrate_batchnorm
from .quantizers import ACT_QUANTIZERS, WEIGHT_QUANTIZERS, make_act_quantizer, make_weight_quantizer
from .recipes import BinaryRecipe, binary_recipe, train_binary

__all__ = [
    "prepare", "recalibrate_batchnorm", "convert", "agreement", "folded_float_model",
    "ptq_overrides", "LayerInfo", "AddInfo", "QATModel",
    "QConv1d", "QConv2d", "QLinear", "WEIGHT_QUANTIZERS", "ACT_QUANTIZERS",
    "make_weight_quantizer", "make_act_quantizer", "distillation_loss", "DEFAULT_TEMPERATURE",
    "DEFAULT_WEIGHT", "BinaryRecipe", "binary_recipe", "train_binary",
]
