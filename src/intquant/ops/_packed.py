"""Packed sub-byte weights: the layouts of IntGraph's packed ``weight`` constants, and bit packing.

A conv / fully_connected weight whose integer codes fit a narrow format is stored packed: the
const ``weight`` is then a uint8 array ``(rows, row_bytes)`` and the op carries the attrs
``weight_format`` (below) and ``weight_shape`` (the logical shape, e.g. ``[Cout, Cin/g, kh,
kw]``). The logical weight is viewed as ``rows = shape[0]`` rows of ``K = prod(shape[1:])``
codes in C order; every row starts on a byte boundary and its padding bits are zero.

- ``int4``: codes [−8, 7], two's complement nibbles; code k in byte k // 2, the low nibble
  for even k.
- ``pow2``: codes 0 and ±2^e, e in [0, 6]; nibbles laid out as int4, nibble 0 is 0 and nibble
  s·8 + e + 1 is (−1)^s·2^e (nibble 8 is not a code).
- ``int2``: codes [−2, 1] (ternary {−1, 0, 1} is the common case), two's complement, stored
  as two bit planes: bit 0 of every code (ceil(K/8) bytes, code k at bit k % 8 of byte
  k // 8), then bit 1 (ceil(K/8) bytes); code = b0 − 2·b1.
- ``binary``: codes {−1, +1}, one bit per code as a plane (bit 1 is +1, bit 0 is −1).

Why these: int4 packs two codes per byte as CMSIS-NN does; the bit planes of int2 and binary
give the no-multiply kernels whole nibbles of one plane (an index of four inputs' subset sums);
pow2 keeps the 4-bit power-of-two grid of QAT (codes up to ±64) in four bits, for kernels that
shift instead of multiplying. Other widths: 3-bit codes are stored as int4; 5 to 8 bits stay
int8 and 9 to 16 bits int16, unpacked (no kernel would gain from 5-7-bit fields).

``pack_bits`` / ``unpack_bits`` (rows of {0, 1} ⇄ LSB-first bytes) are the one bit order every
packed tensor of intquant uses. NumPy only.
"""

from __future__ import annotations

import math

import numpy as np

FORMATS = ("int4", "pow2", "int2", "binary")
BITS = {"int4": 4, "pow2": 4, "int2": 2, "binary": 1}
POW2_MAX_EXPONENT = 6
_INT_RANGE = {"int4": (-8, 7), "int2": (-2, 1)}


# ----------------------------------------------------------------------------------------------
# Bits
# ----------------------------------------------------------------------------------------------


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Rows of {0, 1} → rows of bytes, bit j of a row in byte j // 8 at bit j % 8 (LSB first)."""
    return np.packbits(np.asarray(bits, dtype=np.uint8), axis=-1, bitorder="little")


def unpack_bits(packed: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``count`` bits of each row, as uint8 {0, 1}."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=-1, count=count,
                         bitorder="little")


def plane_bytes(k: int) -> int:
    """Bytes of one bit plane of a row of ``k`` codes."""
    return -(-int(k) // 8)


def row_bytes(fmt: str, k: int) -> int:
    """Bytes of one packed row of ``k`` codes (each row starts on a byte boundary)."""
    if fmt in ("int4", "pow2"):
        return -(-int(k) // 2)
    if fmt == "int2":
        return 2 * plane_bytes(k)
    if fmt == "binary":
        return plane_bytes(k)
    raise ValueError(f"unknown packed weight format {fmt!r}; expected one of {list(FORMATS)}")


def packed_nbytes(fmt: str | None, shape: tuple[int, ...] | list[int], itemsize: int = 1) -> int:
    """Bytes of a weight of logical ``shape`` stored in ``fmt`` (None: unpacked, ``itemsize``
    bytes per code). The one formula every byte count of intquant uses."""
    rows, k = int(shape[0]), math.prod(int(s) for s in shape[1:])
    if fmt is None:
        return rows * k * int(itemsize)
    return rows * row_bytes(fmt, k)


# ----------------------------------------------------------------------------------------------
# Codes
# ----------------------------------------------------------------------------------------------


def pow2_codes() -> np.ndarray:
    """The 15 codes of the pow2 format: 0 and ±2^e, e in [0, 6]."""
    mags = 2 ** np.arange(POW2_MAX_EXPONENT + 1)
    return np.sort(np.concatenate([-mags, [0], mags])).astype(np.int64)


def representable(codes: np.ndarray, fmt: str) -> bool:
    """Every code is a level of ``fmt``."""
    c = np.asarray(codes).astype(np.int64)
    if fmt in _INT_RANGE:
        lo, hi = _INT_RANGE[fmt]
        return bool(c.size == 0 or (c.min() >= lo and c.max() <= hi))
    if fmt == "binary":
        return bool(np.all(np.abs(c) == 1))
    if fmt == "pow2":
        return bool(np.all(np.isin(c, pow2_codes())))
    raise ValueError(f"unknown packed weight format {fmt!r}")


def choose_format(codes: np.ndarray, bits: int) -> str | None:
    """The packed format a weight of declared width ``bits`` is stored in (None: unpacked).

    1 bit: binary (int2 if a code is 0); 2 bits: int2; 3-4 bits: int4. A wider declared
    container holding only 0 and ±2^e (e ≤ 6) codes, some beyond int4, is a power-of-two grid
    (QAT's pow2 quantizer declares an int8 container for its codes up to ±64): pow2. A code
    outside the declared format's range leaves the weight unpacked.
    """
    c = np.asarray(codes).astype(np.int64)
    if bits <= 1 and representable(c, "binary"):
        return "binary"
    if bits <= 2 and representable(c, "int2"):
        return "int2"
    if bits <= 4 and representable(c, "int4"):
        return "int4"
    if bits <= 8 and not representable(c, "int4") and representable(c, "pow2"):
        return "pow2"
    return None


def _nibbles(codes: np.ndarray, fmt: str) -> np.ndarray:
    c = codes.astype(np.int64)
    if fmt == "int4":
        return (c & 0xF).astype(np.uint8)
    mag = np.abs(c)
    e = np.zeros_like(mag)
    nz = mag > 0
    e[nz] = np.log2(mag[nz]).round().astype(np.int64)
    return np.where(nz, (c < 0) * 8 + e + 1, 0).astype(np.uint8)


def _from_nibbles(nib: np.ndarray, fmt: str) -> np.ndarray:
    n = nib.astype(np.int64)
    if fmt == "int4":
        return ((n ^ 8) - 8).astype(np.int8)
    f = n & 7
    mag = np.where(f > 0, np.left_shift(1, np.maximum(f - 1, 0)), 0)
    return np.where(n & 8, -mag, mag).astype(np.int8)


def pack(codes: np.ndarray, fmt: str) -> np.ndarray:
    """Integer codes, shape (rows, ...), → the packed uint8 array (rows, row_bytes(fmt, K))."""
    c = np.asarray(codes).astype(np.int64)
    rows = c.shape[0]
    c = c.reshape(rows, -1)
    k = c.shape[1]
    if not representable(c, fmt):
        raise ValueError(f"codes in [{c.min()}, {c.max()}] are not all levels of {fmt!r}")
    if fmt in ("int4", "pow2"):
        nib = _nibbles(c, fmt)
        if k % 2:
            nib = np.concatenate([nib, np.zeros((rows, 1), np.uint8)], axis=1)
        return (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)
    if fmt == "int2":
        return np.concatenate([pack_bits(c & 1), pack_bits((c >> 1) & 1)], axis=1)
    return pack_bits(c > 0)  # binary


def unpack(packed: np.ndarray, fmt: str, k: int) -> np.ndarray:
    """The packed array (rows, row_bytes) → int8 codes (rows, k). Inverse of :func:`pack`."""
    p = np.asarray(packed, dtype=np.uint8)
    rows = p.shape[0]
    if fmt in ("int4", "pow2"):
        nib = np.empty((rows, 2 * p.shape[1]), np.uint8)
        nib[:, 0::2] = p & 0xF
        nib[:, 1::2] = p >> 4
        return _from_nibbles(nib[:, :k], fmt)
    if fmt == "int2":
        nb = plane_bytes(k)
        b0 = unpack_bits(p[:, :nb], k).astype(np.int8)
        b1 = unpack_bits(p[:, nb:], k).astype(np.int8)
        return (b0 - 2 * b1).astype(np.int8)
    if fmt == "binary":
        return (2 * unpack_bits(p, k).astype(np.int8) - 1).astype(np.int8)
    raise ValueError(f"unknown packed weight format {fmt!r}")


def canonical_error(packed: np.ndarray, fmt: str, k: int) -> str | None:
    """Why a packed array is not the canonical encoding of any codes (None: it is).

    Padding bits must be zero and pow2 nibbles must not be 8, so that one weight has exactly
    one packed form (``load(save(g)) == g`` and byte counts mean something).
    """
    p = np.asarray(packed, dtype=np.uint8)
    if fmt in ("int4", "pow2"):
        if k % 2 and np.any(p[:, -1] >> 4):
            return "padding nibble of a row is not zero"
        if fmt == "pow2":
            nib = np.stack([p & 0xF, p >> 4], axis=-1).reshape(p.shape[0], -1)[:, :k]
            if np.any(nib == 8):
                return "pow2 nibble 8 is not a code"
        return None
    nb = plane_bytes(k)
    planes = [p[:, :nb], p[:, nb:]] if fmt == "int2" else [p]
    pad = 8 * nb - k
    if pad and any(np.any(q[:, -1] >> (8 - pad)) for q in planes):
        return "padding bits of a row are not zero"
    return None


# ----------------------------------------------------------------------------------------------
# Ops
# ----------------------------------------------------------------------------------------------


def weight_format(op) -> str | None:
    """The packed format of a conv / fully_connected weight (None: stored unpacked)."""
    return op.attrs.get("weight_format")


def weight_shape(op) -> tuple[int, ...]:
    """The logical shape of the weight, packed or not."""
    if weight_format(op) is None:
        return tuple(op.consts["weight"].shape)
    return tuple(int(s) for s in op.attrs["weight_shape"])


def weight_codes(op) -> np.ndarray:
    """The integer weight of a conv / fully_connected op in its logical shape (unpacked)."""
    fmt = weight_format(op)
    if fmt is None:
        return op.consts["weight"]
    shape = weight_shape(op)
    return unpack(op.consts["weight"], fmt, math.prod(shape[1:])).reshape(shape)
