"""GPTQ: round a layer's weights one input column at a time, pushing each column's rounding error
onto the columns not yet rounded (Frantar et al., ICLR 2023; Optimal Brain Quantization).

For a layer y = W x with inputs X (rows = samples, columns = the K inputs of one output: for a
conv, the im2col patches), the output error ||W X − Ŵ X||² is a quadratic form in the weight
error with Hessian H = 2 Xᵀ X, the same for every output row. Rounding column q to its grid
costs (w_q − ŵ_q)² / [H_F⁻¹]_qq, and the best change of the remaining columns F is

    δ_F = −(w_q − ŵ_q) / [H_F⁻¹]_qq · (H_F⁻¹)_{:,q}.

GPTQ visits the columns in a fixed order (act-order: largest diag(H) first, the inputs that
matter most are rounded while the most columns remain to absorb their error), and gets every
H_F⁻¹ from one upper Cholesky factor U of H⁻¹ (Uᵀ U = H⁻¹): row q of U restricted to the
columns after q is (H_F⁻¹)_{q,:} / sqrt([H_F⁻¹]_qq). Damping adds λ·mean(diag H) to the
diagonal so that H is safely positive definite (inputs that never vary, or fewer samples than
columns). Scales are chosen before (observers) and are not changed; the codes stay in range.

Inputs from the quantized upstream: the layer receives x̂ (rounded activations), not the
float x. With ``x_float`` given, the target is the float network's output, ||X Wᵀ − X̂ Ŵᵀ||²:
its minimiser over real weights is W* = W C H⁻¹ with C = Xᵀ X̂ (the same damping), and the
objective is ||X̂ (W* − Ŵ)ᵀ||² plus a constant, so GPTQ then rounds W* instead of W. The
upstream error is compensated along with the rounding error (the first step of Qronos, Zhang
et al. 2025; GPTAQ).

Offline only (NumPy float64, torch for im2col); the codes go into the plan like any others.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..graph.ir import Node

BLOCK = 128  # columns updated lazily together (same result, fewer passes over W)


def input_columns(node: Node, x: torch.Tensor) -> torch.Tensor:
    """The inputs each output sees, one row per (sample, position): [groups, rows, K].

    linear: x itself, one row per leading position of (N, …, K). conv: im2col patches
    (channel-major, as weight.reshape(Cout, -1)), split per group; 1-D convs are 2-D convs of
    height 1.
    """
    if node.op == "linear":
        return x.reshape(1, -1, x.shape[-1])
    a = node.attrs
    top, left, bottom, right = a["padding"]
    w_shape = node.params["weight"].shape
    if a["dims"] == 1:
        x = F.pad(x, (left, right))[:, :, None, :]
        kernel, stride, dilation = (1, w_shape[-1]), (1, a["stride"][1]), (1, a["dilation"][1])
    else:
        x = F.pad(x, (left, right, top, bottom))
        kernel, stride, dilation = tuple(w_shape[-2:]), tuple(a["stride"]), tuple(a["dilation"])
    cols = F.unfold(x, kernel, dilation=dilation, stride=stride)  # [N, C·kk, L]
    groups = int(a["groups"])
    k = cols.shape[1] // groups
    cols = cols.permute(0, 2, 1).reshape(-1, groups, k)
    return cols.permute(1, 0, 2)


def hessian(node: Node, x: torch.Tensor, x_other: torch.Tensor | None = None,
            chunk: int = 256) -> np.ndarray:
    """H = 2 Xᵀ X / rows per group, [groups, K, K] float64, accumulated over sample chunks;
    with ``x_other``, the cross term 2 X_otherᵀ X / rows instead."""
    total, rows = None, 0
    for i in range(0, x.shape[0], chunk):
        cols = input_columns(node, x[i:i + chunk]).double()
        left = cols if x_other is None else input_columns(node, x_other[i:i + chunk]).double()
        part = 2.0 * left.transpose(1, 2) @ cols
        total = part if total is None else total + part
        rows += cols.shape[1]
    return (total / max(rows, 1)).numpy()


def float_target_weights(w: np.ndarray, h: np.ndarray, c: np.ndarray,
                         damping: float) -> np.ndarray:
    """W* = W C H⁻¹ = W + W (C − H) H⁻¹: the real weights that best map the quantized inputs
    onto the float outputs (``c`` = 2 Xᵀ X̂ / rows, ``h`` = 2 X̂ᵀ X̂ / rows). Written as a
    correction of W so that damping H only tempers the correction and never shrinks W itself
    (W C (H + λ)⁻¹ would pull every weight towards 0 along the weak directions of H)."""
    damped = h + damping * np.mean(np.diag(h)) * np.eye(len(h))
    return w + np.linalg.solve(damped.T, (w @ (c - h)).T).T


def gptq_codes(weight: np.ndarray, h: np.ndarray, scale: np.ndarray, qmin: int, qmax: int,
               damping: float = 0.01, act_order: bool = True) -> np.ndarray:
    """Integer codes of ``weight`` [rows, K] on the grid ``scale`` (zero point 0): one step per
    row ([rows]), or per row and column ([rows, K]: matrices with their own row scales that
    add into the same outputs, side by side, e.g. a GRU's W_ih | W_hh).

    ``h``: the K×K Hessian of the layer's inputs. Returns int64 codes in [qmin, qmax].
    """
    w = np.array(weight, dtype=np.float64)
    h = np.array(h, dtype=np.float64)
    k = w.shape[1]
    s = np.asarray(scale, dtype=np.float64)
    s = np.broadcast_to(s if s.ndim == 2 else s.reshape(-1, 1), w.shape)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0  # inputs that are always 0: nothing to compensate through them
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(k)
    w, h, s = w[:, order], h[np.ix_(order, order)], s[:, order]
    h[np.diag_indices(k)] += damping * np.mean(np.diag(h))
    u = upper_cholesky_of_inverse(h)
    codes = np.zeros_like(w)
    for start in range(0, k, BLOCK):
        stop = min(start + BLOCK, k)
        block = w[:, start:stop].copy()
        errors = np.zeros_like(block)
        for j in range(stop - start):
            step = s[:, start + j]
            q = np.clip(np.rint(block[:, j] / step), qmin, qmax)
            codes[:, start + j] = q
            err = (block[:, j] - q * step) / u[start + j, start + j]
            block[:, j:] -= np.outer(err, u[start + j, start + j:stop])
            errors[:, j] = err
        w[:, stop:] -= errors @ u[start:stop, stop:]
    out = np.empty_like(codes)
    out[:, order] = codes
    return out.astype(np.int64)


def upper_cholesky_of_inverse(h: np.ndarray) -> np.ndarray:
    """U upper triangular with Uᵀ U = H⁻¹ (H symmetric positive definite)."""
    lower = np.linalg.cholesky(h)
    inv_lower = np.linalg.solve(lower, np.eye(len(h)))
    h_inv = inv_lower.T @ inv_lower
    return np.linalg.cholesky(h_inv).T


def gptq_layer(node: Node, x: torch.Tensor, scale: np.ndarray, qmin: int, qmax: int,
               damping: float = 0.01, act_order: bool = True,
               x_float: torch.Tensor | None = None) -> np.ndarray:
    """Codes of a conv/linear node's weight (its shape) from the inputs ``x`` it receives;
    ``x_float``: the float network's inputs for the same samples (target = float output)."""
    weight = np.asarray(node.params["weight"], dtype=np.float64)
    cout = weight.shape[0]
    groups = 1 if node.op == "linear" else int(node.attrs["groups"])
    h = hessian(node, x)
    scale = np.broadcast_to(np.asarray(scale, np.float64).reshape(-1), (cout,))
    rows = weight.reshape(groups, cout // groups, -1)
    if x_float is not None:
        c = hessian(node, x, x_float)
        rows = np.stack([float_target_weights(rows[g], h[g], c[g], damping)
                         for g in range(groups)])
    s = scale.reshape(groups, cout // groups)
    codes = [gptq_codes(rows[g], h[g], s[g], qmin, qmax, damping, act_order)
             for g in range(groups)]
    return np.concatenate(codes).reshape(weight.shape)
