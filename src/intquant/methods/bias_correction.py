"""Empirical bias correction (Nagel et al., ICCV 2019), layer by layer.

Rounding weights (and activations) shifts the *mean* of a layer's output: E[Ŵ x̂] ≠ E[W x].
The next layers see that shift as a systematic error on every sample, which accumulates. A
per-output-channel constant removes it exactly in the mean: add E[W x + b] − E[Ŵ x̂ + b] to the
bias, measured on the calibration inputs.

Two modes (``Config.bias_correction``):
- ``"weights"``: x̂ = x, the float network's input to the layer: only the weight rounding error
  (the classic empirical correction);
- ``"full"``: x̂ is the input the layer receives from the already quantized and corrected
  layers upstream (activation rounding and clipping included), so each layer also removes the
  mean error that arrives from upstream. Run in graph order (``walk``), layer k is corrected
  with layers 1..k−1 already corrected.
The correction is taken on the pre-activation (before a fused ReLU / clamp), where the output
is linear in the bias.
"""

from __future__ import annotations

import numpy as np
import torch

from ..graph.ir import Node
from .walk import weighted_output

MODES = ("none", "weights", "full")


def mean_output_shift(float_node: Node, quant_node: Node, x_float: torch.Tensor,
                      x_quant: torch.Tensor, chunk: int = 256) -> np.ndarray:
    """E[y_float − y_quant] per output channel, over samples and positions (float64).

    The channel axis is 1 for a conv, the last for a linear layer ((N, …, C) outputs)."""
    total, count = None, 0
    for i in range(0, x_float.shape[0], chunk):
        diff = (weighted_output(float_node, x_float[i:i + chunk])
                - weighted_output(quant_node, x_quant[i:i + chunk])).double()
        channel = diff.dim() - 1 if float_node.op == "linear" else 1
        dims = [d for d in range(diff.dim()) if d != channel]
        part = diff.sum(dim=dims)
        total = part if total is None else total + part
        count += diff.numel() // diff.shape[channel]
    return (total / count).numpy()


def correct_bias(float_node: Node, quant_node: Node, x_float: torch.Tensor,
                 x_quant: torch.Tensor, mode: str) -> None:
    """Add the measured mean output shift to ``quant_node``'s bias (in place)."""
    if mode not in MODES:
        raise ValueError(f"bias correction mode must be one of {MODES}, got {mode!r}")
    if mode == "none":
        return
    x_in = x_quant if mode == "full" else x_float
    shift = mean_output_shift(float_node, quant_node, x_float, x_in)
    bias = quant_node.params.get("bias")
    bias = np.zeros(shift.shape) if bias is None else np.asarray(bias, dtype=np.float64)
    quant_node.params["bias"] = (bias + shift).astype(np.float32)
