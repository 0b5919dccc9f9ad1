"""The textbook baseline every other method in intquant is compared to.

Per weight tensor, ``qf = (2^(b-1) - 1) / max|w|``, ``q = round(w · qf)``, ``w' = q / qf``:
one symmetric scale per tensor set by its largest magnitude. A single outlier stretches the
scale and most weights collapse onto a few levels — the problem better scales, clipping and
quantization-aware training are meant to fix. Only weights are quantized (biases and
activations stay float) so that the number isolates the weight-rounding loss.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .numerics import round_half_away

__all__ = ["textbook_quantize_tensor", "textbook_quantize_weights", "quantized_layer_types"]

quantized_layer_types: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)


def textbook_quantize_tensor(w: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    """(q as int64, qf) with ``qf = (2^(bits-1)-1)/max|w|`` and ``q = round_half_away(w·qf)``.

    An all-zero tensor gets ``qf = 1`` (every q is 0 anyway). Ties round away from zero, like
    C's ``round()`` an embedded engineer would call.
    """
    if not isinstance(bits, int) or not 2 <= bits <= 32:
        raise ValueError(f"textbook quantization: bits must be an int in [2, 32], got {bits!r}")
    w = np.asarray(w, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError("textbook quantization: weight tensor contains NaN or inf")
    max_abs = float(np.max(np.abs(w))) if w.size else 0.0
    qf = (2 ** (bits - 1) - 1) / max_abs if max_abs > 0 else 1.0
    return round_half_away(w * qf).astype(np.int64), qf


def textbook_quantize_weights(model: nn.Module, bits: int) -> nn.Module:
    """A deep copy of ``model`` whose conv/linear weights are replaced by ``q / qf`` (per tensor).

    Biases, BatchNorm parameters and activations are left in float.
    """
    qmodel = copy.deepcopy(model)
    with torch.no_grad():
        for name, module in qmodel.named_modules():
            if not isinstance(module, quantized_layer_types):
                continue
            w = module.weight
            try:
                q, qf = textbook_quantize_tensor(w.detach().cpu().numpy(), bits)
            except ValueError as e:
                raise ValueError(f"layer {name!r}: {e}") from None
            w.copy_(torch.from_numpy(q.astype(np.float64) / qf).to(w.dtype))
    return qmodel
