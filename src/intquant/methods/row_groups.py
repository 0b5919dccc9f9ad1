"""GPTQ and bias correction for the weight matrices inside an op (``FloatOpDef.weight_inputs``):
the gate matrices of a GRU or an LSTM.

A recurrent layer's gate pre-activation is W_ih x_t + b_ih + W_hh h_{t−1} + b_hh, per gate
row: both matrices add into the same rows (a ``RowGroup``), so their rounding errors add too.
GPTQ (``gptq.py``) rounds them as one matrix [W_ih | W_hh] over the joint inputs
[x_t; h_{t−1}] — every step of every calibration sample — each half on its own row scales
(the op requantizes the two products separately). The Hessian then holds the correlation of
x_t with h_{t−1}, and the error of one side's codes is compensated on the other side too.

Bias correction removes the mean of the remaining gate error, row by row, the x side into
b_ih and the h side into b_hh: E[W z] − E[Ŵ ẑ]. A constant gate error is not averaged out
over time but integrated (an LSTM cell whose forget gate is near 1 sums it at every step).
``"full"``: ẑ is what the layer sees in the quantized network so far — x_t from the
quantized upstream and the float recurrence's h_{t−1} on it; ``"weights"``: ẑ = z.

Measured on the zoo's keyword spotters (49 steps; float64 PyTorch with only the gate matrices
rounded, 1024 calibration samples; the NOTES of benchmarks/arch_rnn.py): rounding them to int8
per row, to nearest, limits the LSTM's logits to 38 dB; this brings them to 49 dB (GRU: 47.5
to 52 dB). Separate GPTQ of W_ih and W_hh varied between 37 and 50 dB with the damping and the
column order on the LSTM; joint GPTQ with act-order and the correction stayed within 47-50 dB
over damping 0.001-0.3.

Offline only (NumPy / torch float64); the codes go into the plan like any others (``snap``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..graph.ir import Node
from ..numerics import QParams, quantize
from ..ops import float_op
from ..ops.registry import RowGroup
from .gptq import gptq_codes
from .walk import snap


def has_row_groups(node: Node) -> bool:
    """An op whose inner weight matrices these methods round (a GRU, an LSTM)."""
    return node.op != "input" and float_op(node.op).weight_inputs is not None


def row_group_hessian(group: RowGroup) -> np.ndarray:
    """H = 2 Zᵀ Z / rows of the joint inputs Z = [inputs[0] | inputs[1] | …]."""
    z = torch.cat([torch.as_tensor(v).double() for v in group.inputs], dim=1)
    return (2.0 * z.T @ z / max(z.shape[0], 1)).numpy()


def row_group_codes(weights: list[np.ndarray], formats: list[QParams], h: np.ndarray,
                    damping: float, act_order: bool) -> list[np.ndarray]:
    """GPTQ codes of the matrices side by side (each column on its own matrix's row scale),
    split back per matrix."""
    w = np.concatenate([np.asarray(m, np.float64) for m in weights], axis=1)
    steps = np.concatenate([np.broadcast_to(np.asarray(qp.scale, np.float64).reshape(-1, 1),
                                            np.shape(m))
                            for m, qp in zip(weights, formats, strict=True)], axis=1)
    qmin = max(qp.qmin for qp in formats)
    qmax = min(qp.qmax for qp in formats)
    codes = gptq_codes(w, h, steps, qmin, qmax, damping, act_order)
    cuts = np.cumsum([np.shape(m)[1] for m in weights])[:-1]
    return np.split(codes, cuts, axis=1)


def mean_row_shift(w: np.ndarray, w_hat: np.ndarray, z: Any, z_hat: Any) -> np.ndarray:
    """E[W z] − E[Ŵ ẑ] per row: z, ẑ one row per (sample, step) (float64)."""
    mean = torch.as_tensor(z).double().mean(dim=0).numpy()
    mean_hat = torch.as_tensor(z_hat).double().mean(dim=0).numpy()
    return np.asarray(w, np.float64) @ mean - np.asarray(w_hat, np.float64) @ mean_hat


def round_row_groups(float_node: Node, node: Node, x_f: torch.Tensor, x_q: torch.Tensor,
                     weights: Mapping[str, QParams], config: Any) -> None:
    """Set ``node``'s inner weight matrices to their grids (GPTQ unless
    ``config.weight_rounding`` is "nearest": then lowering rounds them) and correct their
    biases (``config.bias_correction``), in place. ``x_f`` / ``x_q``: the op's input in the
    float / the quantized network so far."""
    d = float_op(node.op)
    seen = d.weight_inputs(float_node, [x_q])
    target = d.weight_inputs(float_node, [x_f])
    for group, float_group in zip(seen, target, strict=True):
        formats = [weights[f"{node.name}/{k}"] for k in group.weights]
        w_float = [np.asarray(float_node.params[k], np.float64) for k in group.weights]
        if config.weight_rounding == "nearest":
            codes = [quantize(w, qp).astype(np.int64)
                     for w, qp in zip(w_float, formats, strict=True)]
        else:
            codes = row_group_codes(w_float, formats, row_group_hessian(group),
                                    config.gptq_damping, config.gptq_act_order)
        for key, c, qp in zip(group.weights, codes, formats, strict=True):
            node.params[key] = snap(c, qp)
        if config.bias_correction == "none":
            continue
        inputs = float_group.inputs if config.bias_correction == "weights" else group.inputs
        for i, bias in enumerate(group.biases):
            shift = mean_row_shift(w_float[i], node.params[group.weights[i]],
                                   float_group.inputs[i], inputs[i])
            node.params[bias] = np.asarray(node.params[bias], np.float64) + shift
