"""Transposed convolution as zero insertion followed by a plain convolution (exact rewrite).

``ConvTranspose(x, W; stride s, padding p, output_padding a, dilation d, groups g)`` equals a
stride-1 ``conv`` of ``x`` with ``s − 1`` zeros inserted between neighbours (the ``upsample``
op in mode "zeros"), padded by ``d·(k − 1) − p`` before and ``d·(k − 1) − p + a`` after, with
the kernel flipped and its in/out channel axes swapped within each group. Both captures
(torch.export and ONNX) emit that pair, so a transposed convolution is quantized, calibrated,
bias-corrected and compiled exactly like any other convolution (per-channel weights over its
output channels). Cost: the conv runs over the zero-inserted input, s^dims times the MACs of a
dedicated transposed kernel.
"""

from __future__ import annotations

import numpy as np


class TransposedConvError(ValueError):
    """A transposed convolution the rewrite cannot express (e.g. padding wider than the kernel)."""


def conv_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """(Cin, Cout/g, *k) → the equivalent conv weight (Cout, Cin/g, *k), flipped spatially."""
    cin, cout_g = weight.shape[:2]
    k = weight.shape[2:]
    w = weight.reshape(groups, cin // groups, cout_g, *k)
    w = np.swapaxes(w, 1, 2).reshape(groups * cout_g, cin // groups, *k)
    flip = tuple(range(2, w.ndim))
    return np.ascontiguousarray(np.flip(w, axis=flip)).astype(np.float32)


def conv_padding(kernel: list[int], pads_begin: list[int], pads_end: list[int],
                 output_padding: list[int], dilation: list[int]) -> tuple[list[int], list[int]]:
    """Per spatial axis: (before, after) padding of the zero-inserted input."""
    before, after = [], []
    for k, pb, pe, a, d in zip(kernel, pads_begin, pads_end, output_padding, dilation,
                               strict=True):
        span = d * (k - 1)
        if pb > span or pe > span + a:
            raise TransposedConvError(
                f"padding {pb}/{pe} wider than dilation·(kernel − 1) = {span} (cropping)")
        before.append(span - pb)
        after.append(span - pe + a)
    return before, after


def conv_attrs(dims: int, before: list[int], after: list[int], dilation: list[int],
               groups: int) -> dict:
    """Float-graph conv attrs (always [h, w] / [top, left, bottom, right]; 1-D in the w slots)."""
    if dims == 1:
        return {"dims": 1, "stride": [1, 1], "padding": [0, before[0], 0, after[0]],
                "dilation": [1, dilation[0]], "groups": groups}
    return {"dims": 2, "stride": [1, 1], "padding": [before[0], before[1], after[0], after[1]],
            "dilation": list(dilation), "groups": groups}


def zeros_factor(dims: int, stride: list[int]) -> list[int]:
    """The upsample factor [fh, fw] of the zero insertion."""
    return [1, stride[0]] if dims == 1 else list(stride)
