"""NumPy helpers the reference implementations share (windows, padding, storage).

Arrays carry a leading batch dimension: ``(N, *tensor.shape)``; 1-D tensors ``(N, C, L)`` run
as 2-D ``(N, C, 1, L)``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..intgraph.types import TensorInfo, value_dtype


def to_out(y: np.ndarray, out: TensorInfo) -> np.ndarray:
    """Store in the tensor's dtype (int8 ±1 for "bit"); every caller has already clamped."""
    return y.astype(value_dtype(out.dtype))


def as_nchw(x: np.ndarray) -> np.ndarray:
    """(N, C, L) → (N, C, 1, L): 1-D ops run as 2-D with H = 1."""
    return x[:, :, None, :] if x.ndim == 3 else x


def from_nchw(y: np.ndarray, one_d: bool) -> np.ndarray:
    return y[:, :, 0, :] if one_d else y


def windows(
    x: np.ndarray, kernel: list[int], stride: list[int], dilation: list[int]
) -> np.ndarray:
    """View (N, C, Ho, Wo, kh, kw) of the windows of a padded (N, C, Hp, Wp) array."""
    kh, kw = kernel
    (sh, sw), (dh, dw) = stride, dilation
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    v = sliding_window_view(x, span, axis=(2, 3))
    return v[:, :, ::sh, ::sw, ::dh, ::dw]


def pad_hw(x: np.ndarray, padding: list[int], value: int) -> np.ndarray:
    top, left, bottom, right = padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def divide_round_half_away(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """(num ± den/2) / den with C truncating division: round half away from zero (TFLM)."""
    half = den // 2
    pos = (num + half) // den  # num > 0: floor == truncation
    neg = -((-num + half) // den)  # num <= 0: truncate toward zero
    return np.where(num > 0, pos, neg)
