"""Bit packing of binary (±1) values: the storage layout of "bit" tensors and binary weights.

One convention everywhere: a value −1 is a set bit, +1 a clear bit, and bits fill 32-bit words
from the most significant bit down (value j of a word is bit 31 − j). With −1 as the set bit,
max pooling is an AND of words and the sign of an int8 value is its sign bit; filling from the
top lets a kernel shift each new output bit in from the bottom (``adcs out, out`` on Cortex-M0)
and end with channel 0 in bit 31.

- **Activations** ("bit" tensors, shape (C,), (C, L) or (C, H, W)): pixels in row-major order,
  each pixel ``ceil(C/32)`` words holding channels 0..C−1; unused bits of a pixel's last word
  are 0. A (C,) vector is one pixel.
- **Binary weights** ([Cout, words]): each output channel's receptive field flattened in
  (kh, kw, Cin) order — the order a kernel gathers the input's pixels — as one bit stream of
  Cin·kh·kw values, padded with 0 bits to whole words. A fully connected layer is the 1x1 case.

Because both sides pad with 0 bits, XOR leaves padding bits 0 and a popcount of
``field ^ weights`` counts exactly the mismatching ±1 pairs: Σ x·w = n − 2·popcount.
NumPy only.
"""

from __future__ import annotations

import numpy as np

from ..intgraph.types import BIT_WORD, bit_words_per_pixel

_WEIGHTS = (np.uint64(1) << np.arange(BIT_WORD - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)


def pack_words(negative: np.ndarray) -> np.ndarray:
    """Boolean array [..., n] (True = −1) → uint32 words [..., ceil(n/32)], MSB first."""
    n = negative.shape[-1]
    words = -(-n // BIT_WORD)
    padded = np.zeros((*negative.shape[:-1], words * BIT_WORD), dtype=np.uint64)
    padded[..., :n] = negative
    blocks = padded.reshape(*negative.shape[:-1], words, BIT_WORD)
    return (blocks * _WEIGHTS).sum(axis=-1).astype(np.uint32)


def unpack_words(words: np.ndarray, n: int) -> np.ndarray:
    """uint32 words [..., m] → int8 values ±1 [..., n] (the first n of the m·32 bits)."""
    w = words.astype(np.uint64)[..., None]
    bits = ((w & _WEIGHTS) != 0).reshape(*words.shape[:-1], words.shape[-1] * BIT_WORD)
    return np.where(bits[..., :n], -1, 1).astype(np.int8)


def padding_bits(words: np.ndarray, n: int) -> np.ndarray:
    """The bits beyond the first n of each row of words (must all be 0 in a valid layout)."""
    w = words.astype(np.uint64)[..., None]
    bits = ((w & _WEIGHTS) != 0).reshape(*words.shape[:-1], words.shape[-1] * BIT_WORD)
    return bits[..., n:]


def pack_tensor(values: np.ndarray) -> np.ndarray:
    """Batch of ±1 tensors (N, C[, L[, W]]) → their packed storage, uint32 (N, pixels·words).

    The exact bytes the C back end keeps in the arena (little-endian words).
    """
    n, c = values.shape[:2]
    pixels = values.reshape(n, c, -1).transpose(0, 2, 1)  # (N, P, C)
    return pack_words(pixels < 0).reshape(n, -1)


def unpack_tensor(words: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_tensor`: uint32 (N, pixels·words) → int8 ±1 (N, *shape)."""
    c = shape[0]
    pixels = int(np.prod(shape[1:], dtype=np.int64))
    w = words.reshape(words.shape[0], pixels, bit_words_per_pixel(c))
    values = unpack_words(w, c)  # (N, P, C)
    return values.transpose(0, 2, 1).reshape(words.shape[0], *shape)


def pack_weights(weight: np.ndarray) -> np.ndarray:
    """±1 weights [Cout, Cin, kh, kw] → the weight bit streams [Cout, ceil(Cin·kh·kw/32)]."""
    stream = weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)  # (kh, kw, Cin) order
    return pack_words(stream < 0)


def unpack_weights(words: np.ndarray, cin: int, kh: int, kw: int) -> np.ndarray:
    """Inverse of :func:`pack_weights`: int8 ±1 [Cout, Cin, kh, kw]."""
    stream = unpack_words(words, cin * kh * kw)
    return stream.reshape(words.shape[0], kh, kw, cin).transpose(0, 3, 1, 2)


def stream_words(cin: int, kh: int = 1, kw: int = 1) -> int:
    """Words of one output channel's weight bit stream."""
    return -(-(cin * kh * kw) // BIT_WORD)
