"""Quantization-aware training: fake quantizers with straight-through gradients, QAT layers,
``prepare`` (float model → trainable fake-quantized copy) and ``convert`` (→ integer model).

Typical use::

    cfg = intquant.Config(weight_bits=4, act_bits=4, weight_quantizer="lsq", act_quantizer="lsq")
    qat = intquant.qat.prepare(float_model, cfg, example_input=x_train[:256])
    intquant.train(qat, data, epochs=10, lr=1e-3)
    qmodel = intquant.qat.convert(qat, calib=x_train[:256])
"""

from .convert import agreement, convert, folded_float_model, ptq_overrides
from .modules import QConv1d, QConv2d, QLinear
from .prepare import LayerInfo, prepare, recalibrate_batchnorm
from .quantizers import ACT_QUANTIZERS, WEIGHT_QUANTIZERS, make_act_quantizer, make_weight_quantizer

__all__ = [
    "prepare", "recalibrate_batchnorm", "convert", "agreement", "folded_float_model",
    "ptq_overrides", "LayerInfo",
    "QConv1d", "QConv2d", "QLinear", "WEIGHT_QUANTIZERS", "ACT_QUANTIZERS",
    "make_weight_quantizer", "make_act_quantizer",
]
