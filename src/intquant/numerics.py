"""The integer arithmetic contract: quantization parameters, rounding, saturation, requantization.

Every later part (observers, lowering, interpreter, C runtime) uses these functions, so they are
written to be read next to TFLite-Micro's ``quantization_util.cc`` and gemmlowp's
``fixedpoint.h``: one small function per piece of math, vectorized over NumPy integer arrays.

This module imports NumPy only (never torch): a deployable IntGraph can be inspected and run
without PyTorch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

Rounding = Literal["half_even", "half_away", "stochastic"]


# ----------------------------------------------------------------------------------------------
# Integer formats
# ----------------------------------------------------------------------------------------------


def qrange(bits: int, signed: bool = True, narrow: bool = False) -> tuple[int, int]:
    """Integer range of a ``bits``-wide format; ``narrow`` drops the most negative code.

    Symmetric weights use the narrow range [-(2^(b-1)-1), 2^(b-1)-1] so that negation is exact
    and the zero point is 0 (TFLM's convention for int8 weights).
    """
    if bits < 1 or bits > 32:
        raise ValueError(f"bits must be in [1, 32], got {bits}")
    if signed:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        if bits == 1:  # a 1-bit signed code holds the two levels {-1, +1} (binary weights)
            return -1, 1
        return (lo + 1 if narrow else lo), hi
    return 0, 2**bits - 1


def unit_interval_format(bits: int, name: str) -> QParams:
    """The fixed output format of softmax and sigmoid (TFLM): [0, 1) on int8 (scale 1/256,
    zero point −128) or int16 (scale 1/32768, zero point 0)."""
    if bits <= 8:
        return QParams(scale=[1 / 256], zero_point=[-128], bits=8, name=name)
    return QParams(scale=[1 / 32768], zero_point=[0], bits=16, name=name)


def signed_unit_format(bits: int, name: str) -> QParams:
    """The fixed output format of tanh (TFLM): [−1, 1) on int8 (scale 1/128) or int16
    (scale 1/32768), zero point 0."""
    if bits <= 8:
        return QParams(scale=[1 / 128], zero_point=[0], bits=8, name=name)
    return QParams(scale=[1 / 32768], zero_point=[0], bits=16, name=name)


def storage_dtype(bits: int, signed: bool = True) -> np.dtype:
    """Smallest NumPy integer container for a format (sub-byte formats live in int8 / uint8)."""
    if bits <= 8:
        return np.dtype(np.int8 if signed else np.uint8)
    if bits <= 16:
        return np.dtype(np.int16 if signed else np.uint16)
    return np.dtype(np.int32 if signed else np.uint32)


@dataclass
class QParams:
    """Quantization parameters of one tensor: ``r = scale * (q - zero_point)``.

    ``axis`` is None for per-tensor; otherwise ``scale``/``zero_point`` have one entry per index
    along ``axis`` (per channel). With ``block_size`` set, ``axis`` is still the channel axis: each
    channel's slice is flattened in C order over the remaining axes and cut into blocks of
    ``block_size`` consecutive elements (the last may be short), and the entries are indexed
    [channel, block], shape (C, nblocks) — the layout observers.py produces. For a conv weight
    [Cout, Cin, kh, kw] with axis=0 a block is a run of the Cin·kh·kw reduction of one output.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    bits: int = 8
    signed: bool = True
    axis: int | None = None
    block_size: int | None = None
    narrow: bool = False
    name: str = field(default="tensor", compare=False)

    def __post_init__(self) -> None:
        self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float64))
        self.zero_point = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int64))
        if self.scale.shape != self.zero_point.shape:
            raise ValueError(
                f"{self.name}: scale shape {self.scale.shape} != zero_point shape "
                f"{self.zero_point.shape}"
            )
        if not np.all(np.isfinite(self.scale)) or np.any(self.scale <= 0):
            raise ValueError(f"{self.name}: scales must be finite and > 0, got {self.scale}")

    @property
    def qmin(self) -> int:
        return qrange(self.bits, self.signed, self.narrow)[0]

    @property
    def qmax(self) -> int:
        return qrange(self.bits, self.signed, self.narrow)[1]

    @property
    def dtype(self) -> np.dtype:
        return storage_dtype(self.bits, self.signed)

    def broadcast(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Scale and zero point broadcast to an array of ``shape``."""
        if self.axis is None:
            if self.scale.size != 1:
                raise ValueError(
                    f"{self.name}: {self.scale.size} scales but axis is None (per-tensor); "
                    "set axis= for per-channel or per-block parameters"
                )
            return self.scale.reshape(()), self.zero_point.reshape(())
        if not -len(shape) <= self.axis < len(shape):
            raise ValueError(f"{self.name}: axis {self.axis} out of range for shape {shape}")
        axis = self.axis % len(shape)
        if self.block_size is None:
            if self.scale.size not in (1, shape[axis]):
                raise ValueError(
                    f"{self.name}: {self.scale.size} per-channel scales but dimension {axis} of "
                    f"shape {shape} has {shape[axis]} channels"
                )
            view = [1] * len(shape)
            view[axis] = -1
            return self.scale.reshape(view), self.zero_point.reshape(view)
        channels = shape[axis]
        per_slice = math.prod(s for i, s in enumerate(shape) if i != axis)
        nblocks = -(-per_slice // self.block_size)
        if self.scale.size != channels * nblocks:
            raise ValueError(
                f"{self.name}: {self.scale.size} per-block scales for shape {shape} with channel "
                f"axis {axis} and block_size {self.block_size}: expected {channels} channels x "
                f"{nblocks} blocks of each channel's {per_slice} values"
            )
        return _broadcast_blocks(self.scale, shape, axis, self.block_size), _broadcast_blocks(
            self.zero_point, shape, axis, self.block_size
        )


def _broadcast_blocks(values: np.ndarray, shape: tuple[int, ...], axis: int, block: int):
    """Expand per-block values, laid out (C, nblocks), to the full shape.

    Channel c's slice (the tensor at index c along ``axis``, flattened in C order) takes value
    [c, k] on its elements k·block ... (k+1)·block − 1.
    """
    rest = tuple(s for i, s in enumerate(shape) if i != axis)
    per_slice = math.prod(rest)
    nblocks = -(-per_slice // block)
    v = values.reshape(shape[axis], nblocks)
    v = np.repeat(v, block, axis=1)[:, :per_slice].reshape((shape[axis],) + rest)
    return np.moveaxis(v, 0, axis)


# ----------------------------------------------------------------------------------------------
# Choosing quantization parameters from a range
# ----------------------------------------------------------------------------------------------


def round_up_to_power_of_two(scale: np.ndarray) -> np.ndarray:
    """Smallest power of two >= scale (so the clipping range can only grow).

    Exact via frexp (scale = m · 2^e, m in [0.5, 1)): ceil(log2(scale)) in floating point
    rounds 2^k · (1 + 2^-52) down to exactly k for |k| >= 2, giving a power of two below scale.
    """
    mantissa, exponent = np.frexp(np.asarray(scale, dtype=np.float64))
    return np.ldexp(np.where(mantissa == 0.5, 0.5, 1.0), exponent)


def choose_qparams(
    min_val: np.ndarray | float | None = None,
    max_val: np.ndarray | float | None = None,
    *,
    absmax: np.ndarray | float | None = None,
    bits: int = 8,
    symmetric: bool = True,
    signed: bool = True,
    narrow: bool | None = None,
    axis: int | None = None,
    block_size: int | None = None,
    power_of_two: bool = False,
    name: str = "tensor",
) -> QParams:
    """Quantization parameters that cover [min_val, max_val] (or [-absmax, absmax]).

    Symmetric: zero point 0 and scale = absmax / qmax (narrow range by default for weights).
    Affine: the range is first widened to contain 0 (so real zero is exact, as padding needs),
    scale = (max - min) / (qmax - qmin), zero point = qmin - round(min / scale) clamped.
    A constant or all-zero range gets scale 1 (any scale represents it exactly with q = 0);
    non-finite bounds raise an error naming the tensor.
    """
    if absmax is not None:
        hi = np.abs(np.asarray(absmax, dtype=np.float64))
        lo = -hi
    else:
        if min_val is None or max_val is None:
            raise ValueError(f"{name}: give min_val and max_val, or absmax")
        lo = np.asarray(min_val, dtype=np.float64)
        hi = np.asarray(max_val, dtype=np.float64)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError(
            f"{name}: range is not finite (min={lo}, max={hi}); the data contain NaN or inf"
        )
    if np.any(lo > hi):
        raise ValueError(f"{name}: min_val > max_val ({lo} > {hi})")
    lo = np.minimum(lo, 0.0)
    hi = np.maximum(hi, 0.0)
    if narrow is None:
        narrow = symmetric and signed
    qmin, qmax = qrange(bits, signed, narrow)
    if symmetric:
        amax = np.maximum(np.abs(lo), np.abs(hi))
        if signed:
            scale = amax / qmax
        else:
            scale = amax / qmax  # unsigned symmetric: [0, amax] with zero point 0
        zero_point = np.zeros_like(scale, dtype=np.int64)
    else:
        scale = (hi - lo) / (qmax - qmin)
        zero_point = None
    # float32 scales, as TFLM stores them; the multiplier computation starts from these values.
    # The zero guard comes after the cast: a tiny nonzero range (e.g. |x| ~ 1e-44) underflows
    # to a float32 scale of 0, and gets scale 1 like an all-zero range (its values round to 0).
    with np.errstate(over="ignore"):
        scale = np.asarray(scale).astype(np.float32).astype(np.float64)
    if not np.all(np.isfinite(scale)):
        raise ValueError(
            f"{name}: range (min={lo}, max={hi}) is too wide for a float32 scale; "
            "clip the tensor or check the calibration data"
        )
    scale = np.where(scale > 0, scale, 1.0)
    if power_of_two:
        scale = round_up_to_power_of_two(scale)
    if zero_point is None:
        zero_point = np.clip(qmin - np.round(lo / scale), qmin, qmax).astype(np.int64)
    return QParams(
        scale=scale,
        zero_point=zero_point,
        bits=bits,
        signed=signed,
        axis=axis,
        block_size=block_size,
        narrow=narrow,
        name=name,
    )


# ----------------------------------------------------------------------------------------------
# Rounding, quantize, dequantize
# ----------------------------------------------------------------------------------------------


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero (C's ``round``, TFLM's ``TfLiteRound``)."""
    # Not floor(|x| + 0.5): that addition rounds in float64 (0.49999999999999994 + 0.5 == 1.0,
    # and 2^52 + 1 + 0.5 rounds to 2^52 + 2). |x| - floor(|x|) is exact, so compare it instead.
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    whole = np.floor(a)
    with np.errstate(invalid="ignore"):  # inf - inf for infinite x: keeps inf
        up = (a - whole) >= 0.5
    return np.copysign(whole + up, x)


def round_stochastic(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Round down or up with probability equal to the distance: unbiased, E[round(x)] = x."""
    x = np.asarray(x, dtype=np.float64)
    floor = np.floor(x)
    return floor + (rng.random(x.shape) < (x - floor))


def quantize(
    x: np.ndarray,
    qparams: QParams,
    rounding: Rounding = "half_even",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """q = clamp(round(x / scale) + zero_point, qmin, qmax), in the format's storage dtype.

    A 1-bit signed format has the two levels {−1, +1} (``qrange``): q = sign(x), sign(0) = +1,
    its zero point is not used.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{qparams.name}: cannot quantize NaN or inf values")
    scale, zero_point = qparams.broadcast(x.shape)
    y = x / scale
    if rounding == "half_even":
        r = np.rint(y)
    elif rounding == "half_away":
        r = round_half_away(y)
    elif rounding == "stochastic":
        if rng is None:
            raise ValueError("stochastic rounding needs rng=np.random.default_rng(seed)")
        r = round_stochastic(y, rng)
    else:
        raise ValueError(f"rounding must be half_even, half_away or stochastic, got {rounding!r}")
    if qparams.bits == 1 and qparams.signed:  # the levels are {-1, +1}: nearest is the sign
        return np.where(y >= 0, 1, -1).astype(qparams.dtype)
    q = np.clip(r + zero_point, qparams.qmin, qparams.qmax)
    return q.astype(qparams.dtype)


def dequantize(q: np.ndarray, qparams: QParams) -> np.ndarray:
    """r = scale * (q - zero_point) as float64 (host side only)."""
    q = np.asarray(q)
    scale, zero_point = qparams.broadcast(q.shape)
    return scale * (q.astype(np.int64) - zero_point)


# ----------------------------------------------------------------------------------------------
# Fixed-point multipliers (offline, float allowed here) — TFLM QuantizeMultiplier
# ----------------------------------------------------------------------------------------------


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(M, shift) with real ≈ M · 2^(shift − 31), M in [2^30, 2^31), exactly as TFLM computes it.

    frexp gives real = f · 2^n with f in [0.5, 1); M = round_half_away(f · 2^31); a rounding up to
    2^31 renormalises to 2^30 with n + 1; an exponent below −31 flushes to (0, 0).
    """
    real = float(real)
    if not math.isfinite(real) or real < 0:
        raise ValueError(f"real multiplier must be finite and >= 0, got {real}")
    if real == 0.0:
        return 0, 0
    f, n = math.frexp(real)
    m = int(math.floor(f * 2**31 + 0.5))  # f > 0: round half away == floor(+0.5)
    if m == 2**31:
        m //= 2
        n += 1
    if n < -31:
        return 0, 0
    return m, n


def quantize_multipliers(reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``quantize_multiplier``: int32 arrays (M, shift)."""
    pairs = [quantize_multiplier(float(r)) for r in np.ravel(reals)]
    m = np.array([p[0] for p in pairs], dtype=np.int64).reshape(np.shape(reals))
    s = np.array([p[1] for p in pairs], dtype=np.int64).reshape(np.shape(reals))
    return m.astype(np.int32), s.astype(np.int32)


# ----------------------------------------------------------------------------------------------
# Run-time integer primitives (vectorized, exact, int64 internally)
# ----------------------------------------------------------------------------------------------


def _i64(x) -> np.ndarray:
    return np.asarray(x).astype(np.int64)


def saturate(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Clamp to [lo, hi]: every narrowing in the contract is saturating."""
    return np.clip(_i64(x), lo, hi)


def saturating_left_shift_int32(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """x · 2^shift saturated to int32 (shift >= 0), for any int64 x and any shift.

    Clamping x to [-2^31 - 1, 2^31] and the shift to 31 keeps the int64 shift from overflowing
    without changing the saturated result (any |x| >= 1 shifted by >= 31 saturates, and -1 · 2^31
    is INT32_MIN itself).
    """
    x = np.clip(_i64(x), INT32_MIN - 1, INT32_MAX + 1)
    return saturate(x << np.minimum(_i64(shift), 31), INT32_MIN, INT32_MAX)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp SRDHM: high 32 bits of 2·a·b with round half up (nudge), C truncating division.

    The one overflow case a == b == INT32_MIN saturates to INT32_MAX.
    """
    a = _i64(a)
    b = _i64(b)
    ab = a * b  # |ab| <= 2^62: exact in int64
    negative = (ab >> 63) & (2**31 - 1)  # 2^31 − 1 where ab < 0, else 0 (no temporaries of where)
    num = ab + (1 << 30) - negative  # nudge: 2^30, or 1 − 2^30 for negative products
    # C integer division by 2^31 truncates toward zero: bias negatives by 2^31 − 1, then floor.
    q = (num + ((num >> 63) & (2**31 - 1))) >> 31
    if np.any(b == INT32_MIN) or np.any(a == INT32_MIN):
        q = np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)
    return q


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """x / 2^exponent rounded half away from zero (gemmlowp RoundingDivideByPOT)."""
    x = _i64(x)
    e = _i64(exponent)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: np.ndarray, M: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """TFLM's default MultiplyByQuantizedMultiplier on int32 values ("double rounding").

    x' = saturate(x · 2^max(shift, 0)); y = SRDHM(x', M);
    result = RoundingDivideByPOT(y, max(-shift, 0)).
    """
    shift = _i64(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    y = saturating_rounding_doubling_high_mul(saturating_left_shift_int32(x, left), M)
    return rounding_divide_by_pot(y, right)


def multiply_by_quantized_multiplier_single(
    x: np.ndarray, M: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """CMSIS-NN single rounding: (x·M + 2^(30 − shift)) >> (31 − shift), shift <= 30.

    One rounding (half up) of the exact product instead of two; differs from the double-rounding
    result by at most 1.
    """
    x = _i64(x)
    shift = _i64(shift)
    if np.any(shift > 30):
        raise ValueError("single rounding needs shift <= 30")
    total = 31 - shift
    # x·M can reach 2^62 in magnitude; add the rounding term in Python ints when it would
    # overflow int64 — but |x·M| < 2^62 and 2^(total-1) <= 2^61, so int64 holds the sum.
    result = (x * _i64(M) + (np.int64(1) << (total - 1))) >> total
    return saturate(result, INT32_MIN, INT32_MAX)


def reduce_multiplier_16x8(M: np.ndarray) -> np.ndarray:
    """TFLM's 16-bit reduced multiplier for the int64 path: round M to 15 fractional bits."""
    M = _i64(M)
    return np.where(M < 0x7FFF0000, (M + (1 << 15)) >> 16, 0x7FFF)


def multiply_by_quantized_multiplier_16x8(
    x: np.ndarray, M: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """TFLM's int64 MultiplyByQuantizedMultiplier (16x8 and 16-bit-weight layers).

    result = (x · M16 + 2^(14 − shift)) >> (15 − shift) with M16 the reduced 16-bit multiplier;
    requires |x| < 2^47 and shift in [-31, 7] (checked at lowering time).
    """
    x = _i64(x)
    shift = _i64(shift)
    total = 15 - shift
    m16 = reduce_multiplier_16x8(M)
    result = (x * m16 + (np.int64(1) << (total - 1))) >> total
    return saturate(result, INT32_MIN, INT32_MAX)


def shift_requantize(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """Power-of-two requantization, no multiply: x · 2^exponent, rounding half away from zero.

    The result is saturated to int32 in both directions: an int64 accumulator (16x8 layers)
    divided by a small power of two can still exceed int32, and the C runtime
    (``iq_shift_requantize``) saturates it too.
    """
    x = _i64(x)
    e = _i64(exponent)
    left = np.maximum(e, 0)
    right = np.maximum(-e, 0)
    up = saturating_left_shift_int32(x, left)
    down = saturate(rounding_divide_by_pot(x, right), INT32_MIN, INT32_MAX)
    return np.where(e >= 0, up, down)


RequantRounding = Literal["double", "single", "pow2"]


def apply_multiplier(
    acc: np.ndarray,
    M: np.ndarray,
    shift: np.ndarray,
    rounding: RequantRounding = "double",
    acc_bits: int = 32,
) -> np.ndarray:
    """The accumulator → output-scale step of every op, dispatching on the contract's modes."""
    if rounding == "pow2":
        return shift_requantize(acc, _i64(shift) - 1)
    if acc_bits == 64:
        return multiply_by_quantized_multiplier_16x8(acc, M, shift)
    if rounding == "double":
        return multiply_by_quantized_multiplier(acc, M, shift)
    if rounding == "single":
        return multiply_by_quantized_multiplier_single(acc, M, shift)
    raise ValueError(f"rounding must be 'double', 'single' or 'pow2', got {rounding!r}")


def requantize(
    acc: np.ndarray,
    M: np.ndarray,
    shift: np.ndarray,
    zero_point: int,
    qmin: int,
    qmax: int,
    rounding: RequantRounding = "double",
    acc_bits: int = 32,
    axis: int | None = None,
) -> np.ndarray:
    """out = clamp(apply_multiplier(acc, M, shift) + zero_point, qmin, qmax).

    M and shift are scalars or per-channel arrays broadcast along ``axis`` of ``acc``.
    """
    acc = _i64(acc)
    M = _i64(M)
    shift = _i64(shift)
    if axis is not None and M.ndim == 1:
        view = [1] * acc.ndim
        view[axis] = -1
        M = M.reshape(view)
        shift = shift.reshape(view)
    scaled = apply_multiplier(acc, M, shift, rounding, acc_bits)
    return saturate(scaled + zero_point, qmin, qmax)
