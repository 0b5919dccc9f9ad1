"""numerics.py against independent exact references.

Every expected value here comes from pure-Python integers or ``fractions.Fraction``, transcribed
from /work/shared/notes/integer-spec.md (TFLM ``quantization_util.cc``, gemmlowp ``fixedpoint.h``,
TFLM's int64 ``MultiplyByQuantizedMultiplier``), never from numerics.py itself. The bulk tests run
10^6 random triples through a scalar C-semantics transcription; edge cases are listed by hand.
"""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from intquant import numerics as nm

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
HALF = Fraction(1, 2)
FAST = settings(max_examples=150, deadline=None)


# ----------------------------------------------------------------------------------------------
# Independent references (pure Python ints / Fraction)
# ----------------------------------------------------------------------------------------------


def clamp(v: int, lo: int = INT32_MIN, hi: int = INT32_MAX) -> int:
    return lo if v < lo else hi if v > hi else v


def frac_round_half_away(q: Fraction) -> int:
    """round(q), ties away from zero, exactly."""
    n = math.floor(abs(q) + HALF)
    return n if q >= 0 else -n


def frac_round_half_up(q: Fraction) -> int:
    """floor(q + 1/2): ties toward +inf."""
    return math.floor(q + HALF)


def c_trunc_div(a: int, b: int) -> int:
    """C99 integer division by b > 0: the quotient truncates toward zero."""
    q = abs(a) // b
    return q if a >= 0 else -q


def ref_srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul, transcribed with C division semantics."""
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return c_trunc_div(ab + nudge, 1 << 31)


def ref_rdbpot(x: int, e: int) -> int:
    """gemmlowp RoundingDivideByPOT transcribed (two's-complement & and arithmetic >>)."""
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


def ref_mbqm(x: int, m: int, shift: int) -> int:
    """TFLM MultiplyByQuantizedMultiplier (double rounding), left shift saturating to int32."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return ref_rdbpot(ref_srdhm(clamp(x << left), m), right)


def ref_mbqm_single(x: int, m: int, shift: int) -> int:
    """CMSIS-NN single rounding, exact integers: floor(x·M / 2^(31-shift) + 1/2), saturated."""
    total = 31 - shift
    return clamp((2 * x * m + (1 << total)) >> (total + 1))


def ref_reduce_16x8(m: int) -> int:
    return 0x7FFF if m >= 0x7FFF0000 else (m + (1 << 15)) >> 16


def ref_mbqm_16x8(x: int, m: int, shift: int) -> int:
    """TFLM int64 MultiplyByQuantizedMultiplier, saturated to int32 (the contract saturates)."""
    total = 15 - shift
    return clamp((x * ref_reduce_16x8(m) + (1 << (total - 1))) >> total)


def ref_quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM QuantizeMultiplier from the exact rational value of the double ``real``."""
    r = Fraction(real)
    if r == 0:
        return 0, 0
    # n with 2^(n-1) <= r < 2^n, found exactly (frexp's exponent).
    n = r.numerator.bit_length() - r.denominator.bit_length()
    while r >= Fraction(2) ** n:
        n += 1
    while r < Fraction(2) ** (n - 1):
        n -= 1
    m = frac_round_half_away(r / Fraction(2) ** n * 2**31)
    if m == 2**31:
        m, n = 2**30, n + 1
    if n < -31:
        return 0, 0
    return m, n


def frac_pow2(e: int) -> Fraction:
    return Fraction(2) ** e


# ----------------------------------------------------------------------------------------------
# The references themselves agree with their rational definitions (so a wrong reference fails)
# ----------------------------------------------------------------------------------------------


@FAST
@given(st.integers(INT32_MIN, INT32_MAX), st.integers(INT32_MIN, INT32_MAX))
def test_reference_srdhm_is_round_half_up_of_doubled_high_product(a, b):
    assume(not (a == INT32_MIN and b == INT32_MIN))
    assert ref_srdhm(a, b) == frac_round_half_up(Fraction(a * b, 2**31))


@FAST
@given(st.integers(-(2**62), 2**62), st.integers(0, 62))
def test_reference_rdbpot_is_round_half_away(x, e):
    assert ref_rdbpot(x, e) == frac_round_half_away(Fraction(x, 2**e))


# ----------------------------------------------------------------------------------------------
# 1. quantize_multiplier
# ----------------------------------------------------------------------------------------------


def check_multiplier(real: float) -> tuple[int, int]:
    m, shift = nm.quantize_multiplier(real)
    assert isinstance(m, int) and isinstance(shift, int)
    assert (m, shift) == ref_quantize_multiplier(real), real
    if m == 0:
        assert shift == 0
        assert Fraction(real) < frac_pow2(-32), "only multipliers below 2^-32 flush to zero"
    else:
        assert 2**30 <= m < 2**31
        err = abs(m * frac_pow2(shift - 31) - Fraction(real))
        assert err <= frac_pow2(shift - 32), (real, m, shift)
    return m, shift


@settings(max_examples=400, deadline=None)
@given(
    st.floats(min_value=0.0, max_value=2.0**40, allow_nan=False, allow_infinity=False)
    | st.floats(min_value=1e-15, max_value=4.0)
)
@example(1.0)
@example(0.5)
@example(2.0**-31)
@example(2.0**-32)
@example(2.0**-33)
@example(1e-12)
@example(200.0)
@example(127.99)
@example(5e-324)
def test_quantize_multiplier_matches_tflm(real):
    check_multiplier(real)


def test_quantize_multiplier_edges():
    assert nm.quantize_multiplier(0.0) == (0, 0)
    assert nm.quantize_multiplier(1.0) == (2**30, 1)
    assert nm.quantize_multiplier(0.5) == (2**30, 0)
    assert nm.quantize_multiplier(0.75) == (3 * 2**29, 0)
    assert nm.quantize_multiplier(1e-12) == (0, 0)  # frexp exponent -39 < -31: flush
    assert nm.quantize_multiplier(2.0**-32) == (2**30, -31)  # exponent exactly -31: kept
    assert nm.quantize_multiplier(2.0**-33) == (0, 0)
    assert nm.quantize_multiplier(200.0) == (200 * 2**23, 8)  # 200 = 0.78125 · 2^8
    # f · 2^31 rounds up to 2^31: renormalise to 2^30 with shift + 1.
    assert nm.quantize_multiplier(1.0 - 2.0**-40) == (2**30, 1)
    # ... and the flush test comes after the renormalisation (TFLM order): 2^-32·(1 - 2^-40) has
    # frexp exponent -32 but renormalises to exponent -31, so it is kept.
    assert nm.quantize_multiplier(2.0**-32 * (1 - 2.0**-40)) == (2**30, -31)
    # round half away from zero on exact ties of f · 2^31 = 2^30 + 1/2 and 2^30 + 3/2
    assert nm.quantize_multiplier(0.5 + 2.0**-32) == (2**30 + 1, 0)
    assert nm.quantize_multiplier(0.5 + 3 * 2.0**-32) == (2**30 + 2, 0)
    assert nm.quantize_multiplier(0.5 + 2.0**-32 - 2.0**-52) == (2**30, 0)  # just below
    # largest M below the renormalisation point
    assert nm.quantize_multiplier(1.0 - 2.0**-31) == (2**31 - 1, 0)


@pytest.mark.parametrize("bad", [-1e-3, float("nan"), float("inf")])
def test_quantize_multiplier_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="multiplier"):
        nm.quantize_multiplier(bad)


def test_quantize_multipliers_per_channel():
    reals = np.array([[1e-12, 0.25, 0.3], [1.7, 0.0, 2.0**-20]])
    m, s = nm.quantize_multipliers(reals)
    assert m.dtype == np.int32 and s.dtype == np.int32 and m.shape == reals.shape
    for idx in np.ndindex(reals.shape):
        assert (int(m[idx]), int(s[idx])) == ref_quantize_multiplier(float(reals[idx]))


# ----------------------------------------------------------------------------------------------
# 2. multiply_by_quantized_multiplier (double rounding) — 10^6 random triples + edges
# ----------------------------------------------------------------------------------------------


def random_x_int32(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mix of uniform int32, log-uniform magnitudes (both signs) and small values."""
    kind = rng.integers(0, 3, n)
    uniform = rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True)
    bits = rng.integers(0, 32, n)
    logu = rng.integers(0, 2**bits, dtype=np.int64) * rng.choice([-1, 1], n)
    small = rng.integers(-1000, 1000, n, endpoint=True)
    x = np.where(kind == 0, uniform, np.where(kind == 1, logu, small))
    return np.clip(x, INT32_MIN, INT32_MAX).astype(np.int64)


def random_multipliers(rng: np.random.Generator, n: int) -> np.ndarray:
    """Valid M: mostly uniform in [2^30, 2^31), some with many trailing zeros (ties), some 0."""
    m = rng.integers(2**30, 2**31, n, dtype=np.int64)
    tz = rng.integers(0, 31, n)
    m_tz = (m >> tz) << tz
    m_tz = np.where(m_tz < 2**30, 2**30, m_tz)
    pick = rng.random(n)
    return np.where(pick < 0.01, 0, np.where(pick < 0.3, m_tz, m))


def test_multiply_by_quantized_multiplier_bulk_vs_tflm():
    rng = np.random.default_rng(20240601)
    n = 1_000_000
    x = random_x_int32(rng, n)
    m = random_multipliers(rng, n)
    shift = rng.integers(-31, 32, n)
    got = nm.multiply_by_quantized_multiplier(x, m, shift)
    assert got.shape == (n,)
    triples = zip(x.tolist(), m.tolist(), shift.tolist(), strict=True)
    expected = [ref_mbqm(a, b, c) for a, b, c in triples]
    mismatch = np.flatnonzero(got != np.array(expected, dtype=np.int64))
    assert mismatch.size == 0, [
        (int(x[i]), int(m[i]), int(shift[i]), int(got[i]), expected[i]) for i in mismatch[:5]
    ]


X_EDGES = [INT32_MIN, INT32_MIN + 1, -(2**30), -3, -2, -1, 0, 1, 2, 3, 2**30, INT32_MAX - 1,
           INT32_MAX]
M_EDGES = [0, 2**30, 2**30 + 1, 3 * 2**29, 2**31 - 2, 2**31 - 1]
SHIFT_EDGES = [-31, -30, -17, -2, -1, 0, 1, 2, 15, 30, 31]


def test_multiply_by_quantized_multiplier_edge_grid():
    grid = [(x, m, s) for x in X_EDGES for m in M_EDGES for s in SHIFT_EDGES]
    x, m, s = (np.array(c, dtype=np.int64) for c in zip(*grid, strict=True))
    got = nm.multiply_by_quantized_multiplier(x, m, s)
    for i, (a, b, c) in enumerate(grid):
        assert got[i] == ref_mbqm(a, b, c), (a, b, c)
    # hand-checked anchors
    f = nm.multiply_by_quantized_multiplier
    assert f(INT32_MAX, 2**31 - 1, 31) == INT32_MAX - 1  # saturated x' times (1 - 2^-31)
    assert f(INT32_MIN, 2**30, 31) == -(2**30)  # saturated x' = INT32_MIN, times 1/2
    assert f(1, 2**30, 31) == 2**30  # 1·2^31 saturates to INT32_MAX, then ·1/2 rounds up
    assert f(-1, 2**30, 31) == -(2**30)  # -1·2^31 = INT32_MIN exactly
    # exact (2^31 - 1) / 2^32 = 0.4999... but double rounding gives 1: SRDHM rounds
    # 2^30 - 1/2 up to 2^30, then 2^30 / 2^31 = 1/2 rounds away from zero.
    assert f(INT32_MAX, 2**30, -31) == 1
    assert f(INT32_MIN, 2**30, -30) == -1  # -2^30 / 2^30 exact


def test_left_shift_saturates_beyond_31():
    """Shifts beyond 31 (never produced for sane scales) still saturate instead of wrapping."""
    x = np.array([INT32_MAX, INT32_MIN, 5, -5, -1, 0], dtype=np.int64)
    for s in (31, 32, 33, 40, 62):
        got = nm.multiply_by_quantized_multiplier(x, np.full(6, 2**30), np.full(6, s))
        assert got.tolist() == [ref_mbqm(int(v), 2**30, s) for v in x]
        got = nm.saturating_left_shift_int32(x, s)
        assert got.tolist() == [clamp(int(v) << s) for v in x]
    big = np.array([2**40, -(2**40), 2**62, -(2**63)], dtype=np.int64)
    assert nm.saturating_left_shift_int32(big, 40).tolist() == [INT32_MAX, INT32_MIN] * 2


def test_srdhm_saturation_and_ties():
    f = nm.saturating_rounding_doubling_high_mul
    assert f(INT32_MIN, INT32_MIN) == INT32_MAX
    assert f(INT32_MIN, INT32_MAX) == ref_srdhm(INT32_MIN, INT32_MAX) == -(2**31) + 1
    assert f(INT32_MAX, INT32_MAX) == INT32_MAX - 1
    # ties (a·b = (2k+1)·2^30) round half up: +0.5 -> 1, -0.5 -> 0, -1.5 -> -1
    assert f(1, 2**30) == 1 and f(-1, 2**30) == 0 and f(-3, 2**30) == -1 and f(3, 2**30) == 2
    rng = np.random.default_rng(7)
    a = rng.integers(INT32_MIN, INT32_MAX, 20000, endpoint=True)
    b = rng.integers(INT32_MIN, INT32_MAX, 20000, endpoint=True)
    a[:50] = INT32_MIN
    b[:25] = INT32_MIN
    got = f(a, b)
    assert got.tolist() == [ref_srdhm(p, q) for p, q in zip(a.tolist(), b.tolist(), strict=True)]


def tie_cases() -> list[tuple[int, int, int]]:
    """(x, M, shift) whose exact intermediate lands on .5 before SRDHM and/or before RDBPOT."""
    cases = []
    for m in (2**30 + 1, 2**30 + 2**5, 2**30 + 2**17, 3 * 2**29, 2**30, 2**31 - 1):
        t = (m & -m).bit_length() - 1  # trailing zero bits of M
        for k in (0, 1, 2, 7, 100):
            x = (2 * k + 1) << (30 - t)  # x·M = odd · 2^30: SRDHM tie
            if x <= INT32_MAX:
                cases += [(x, m, 0), (-x, m, 0)]
    # second-rounding ties: M = 2^30 halves exactly for even x; y = (2j+1)·2^(e-1) is a tie of
    # RoundingDivideByPOT(y, e); odd x makes the first rounding a tie as well.
    for e in (1, 2, 5, 13, 30):
        for j in (0, 1, 2, 3, 10):
            y = (2 * j + 1) << (e - 1)
            for x in (2 * y, -2 * y, 2 * y - 1, -2 * y - 1, 2 * y + 1, -2 * y + 1):
                if INT32_MIN <= x <= INT32_MAX:
                    cases.append((x, 2**30, -e))
    return cases


def test_multiply_by_quantized_multiplier_ties_both_signs():
    cases = tie_cases()
    x, m, s = (np.array(c, dtype=np.int64) for c in zip(*cases, strict=True))
    got = nm.multiply_by_quantized_multiplier(x, m, s)
    for i, (a, b, c) in enumerate(cases):
        assert got[i] == ref_mbqm(a, b, c), (a, b, c)
    f = nm.multiply_by_quantized_multiplier
    # x = ±3, M = 2^30 (·0.5), shift -1 (·0.5): exact ±0.75. SRDHM: 1.5 -> 2, -1.5 -> -1;
    # RDBPOT by 2: 2/2 = 1, -1/2 = -0.5 -> -1 (away).
    assert f(3, 2**30, -1) == 1 and f(-3, 2**30, -1) == -1
    # x = ±2: SRDHM exact ±1; then ±0.5 rounds away to ±1.
    assert f(2, 2**30, -1) == 1 and f(-2, 2**30, -1) == -1
    # x = -1: SRDHM(-0.5) = 0 (half up), so 0 — double rounding; exact -0.25 rounds to 0 too.
    assert f(-1, 2**30, -1) == 0
    # double rounding differs from one rounding: x = 5, M = 2^30, shift -1: exact 1.25,
    # SRDHM 2.5 -> 3, RDBPOT 1.5 -> 2.
    assert f(5, 2**30, -1) == 2


# ----------------------------------------------------------------------------------------------
# 3. Rational properties: double rounding within 1 of exact; single rounding exact
# ----------------------------------------------------------------------------------------------


def test_double_rounding_within_one_of_exact_rational():
    rng = np.random.default_rng(11)
    n = 20000
    x = random_x_int32(rng, n)
    m = random_multipliers(rng, n)
    shift = rng.integers(-31, 31, n)
    got = nm.multiply_by_quantized_multiplier(x, m, shift).tolist()
    checked = 0
    for a, b, c, g in zip(x.tolist(), m.tolist(), shift.tolist(), got, strict=True):
        if abs(a << max(c, 0)) > INT32_MAX:
            continue  # the left shift saturates: no longer an approximation of x·real
        exact = frac_round_half_away(a * b * frac_pow2(c - 31))
        assert abs(g - exact) <= 1, (a, b, c, g, exact)
        checked += 1
    assert checked > n // 2


def test_single_rounding_is_floor_plus_half_fraction():
    rng = np.random.default_rng(12)
    n = 20000
    x = random_x_int32(rng, n)
    m = random_multipliers(rng, n)
    shift = rng.integers(-31, 31, n)  # single rounding needs shift <= 30
    got = nm.multiply_by_quantized_multiplier_single(x, m, shift).tolist()
    for a, b, c, g in zip(x.tolist(), m.tolist(), shift.tolist(), got, strict=True):
        assert g == clamp(math.floor(Fraction(a * b, 2 ** (31 - c)) + HALF)), (a, b, c)


def test_single_rounding_bulk_and_difference_from_double():
    rng = np.random.default_rng(13)
    n = 1_000_000
    x = random_x_int32(rng, n)
    m = random_multipliers(rng, n)
    shift = rng.integers(-31, 31, n)
    got = nm.multiply_by_quantized_multiplier_single(x, m, shift)
    expected = np.array(
        [ref_mbqm_single(a, b, c) for a, b, c in zip(x.tolist(), m.tolist(), shift.tolist(),
                                                      strict=True)],
        dtype=np.int64,
    )
    assert np.array_equal(got, expected)
    # where nothing saturates, single and double rounding differ by at most 1
    ok = (np.abs(x << np.maximum(shift, 0)) <= INT32_MAX) & (np.abs(expected) < INT32_MAX)
    double = nm.multiply_by_quantized_multiplier(x, m, shift)
    assert np.max(np.abs(double[ok] - got[ok])) <= 1


def test_single_rounding_rejects_shift_31():
    with pytest.raises(ValueError, match="shift"):
        nm.multiply_by_quantized_multiplier_single(np.array([1]), np.array([2**30]), np.array([31]))


def test_single_rounding_edges():
    grid = [(x, m, s) for x in X_EDGES for m in M_EDGES for s in SHIFT_EDGES if s <= 30]
    x, m, s = (np.array(c, dtype=np.int64) for c in zip(*grid, strict=True))
    got = nm.multiply_by_quantized_multiplier_single(x, m, s)
    assert got.tolist() == [ref_mbqm_single(*g) for g in grid]
    # ties round half up in single rounding: -1.25 -> -1, but 2.5 -> 3 and -2.5 -> -2
    f = nm.multiply_by_quantized_multiplier_single
    assert f(5, 2**30, 0) == 3 and f(-5, 2**30, 0) == -2


# ----------------------------------------------------------------------------------------------
# 4. 16x8 (int64 accumulator) path
# ----------------------------------------------------------------------------------------------


def test_reduce_multiplier_16x8():
    m = np.array([0, 2**30, 2**30 + 2**15 - 1, 2**30 + 2**15, 0x7FFEFFFF, 0x7FFF0000 - 1,
                  0x7FFF0000, 0x7FFF7FFF, 0x7FFF8000, 2**31 - 1])
    got = nm.reduce_multiplier_16x8(m)
    assert got.tolist() == [ref_reduce_16x8(int(v)) for v in m]
    assert got[-4:].tolist() == [0x7FFF] * 4  # M >= 0x7FFF0000 -> 0x7FFF (not 0x8000)
    assert int(got.max()) <= 0x7FFF


def test_multiply_by_quantized_multiplier_16x8_bulk():
    rng = np.random.default_rng(47)
    n = 1_000_000
    bits = rng.integers(0, 48, n)
    x = rng.integers(0, 2**bits, dtype=np.int64) * rng.choice([-1, 1], n)
    x = np.clip(x, -(2**47) + 1, 2**47 - 1)
    m = random_multipliers(rng, n)
    hi = rng.random(n) < 0.05
    m[hi] = rng.integers(0x7FFE0000, 2**31, int(hi.sum()))
    shift = rng.integers(-31, 8, n)
    got = nm.multiply_by_quantized_multiplier_16x8(x, m, shift)
    expected = np.array(
        [ref_mbqm_16x8(a, b, c) for a, b, c in zip(x.tolist(), m.tolist(), shift.tolist(),
                                                    strict=True)],
        dtype=np.int64,
    )
    mismatch = np.flatnonzero(got != expected)
    assert mismatch.size == 0, [(int(x[i]), int(m[i]), int(shift[i])) for i in mismatch[:5]]


def test_multiply_by_quantized_multiplier_16x8_edges():
    xs = [-(2**47) + 1, -(2**40), -(2**31), -3, -1, 0, 1, 3, 2**31, 2**40, 2**47 - 1]
    ms = [0, 2**30, 0x7FFEFFFF, 0x7FFF0000, 2**31 - 1]
    shifts = [-31, -15, -1, 0, 1, 7]
    grid = [(x, m, s) for x in xs for m in ms for s in shifts]
    x, m, s = (np.array(c, dtype=np.int64) for c in zip(*grid, strict=True))
    got = nm.multiply_by_quantized_multiplier_16x8(x, m, s)
    assert got.tolist() == [ref_mbqm_16x8(*g) for g in grid]
    # exact rational check of the rounding (half up) on ties: x·M16 / 2^15 = ±2.5
    f = nm.multiply_by_quantized_multiplier_16x8
    assert f(5, 2**30, 0) == 3 and f(-5, 2**30, 0) == -2  # M16 = 2^14: x / 2


# ----------------------------------------------------------------------------------------------
# 5. shift_requantize, rounding_divide_by_pot, requantize
# ----------------------------------------------------------------------------------------------


@FAST
@given(
    st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=40),
    st.integers(0, 62),
)
@example([2**62, -(2**62), 3, -3, 1, -1, 0], 1)
@example([INT32_MIN, INT32_MAX, -(2**30), 2**30 - 1], 31)
def test_rounding_divide_by_pot_is_round_half_away(xs, e):
    got = nm.rounding_divide_by_pot(np.array(xs, dtype=np.int64), e)
    assert got.tolist() == [frac_round_half_away(Fraction(v, 2**e)) for v in xs]


def test_rounding_divide_by_pot_all_ties_small():
    xs = np.arange(-64, 65)
    for e in range(0, 7):
        got = nm.rounding_divide_by_pot(xs, e)
        assert got.tolist() == [frac_round_half_away(Fraction(int(v), 2**e)) for v in xs]
    # per-element exponents broadcast
    got = nm.rounding_divide_by_pot(np.array([5, -5, 6]), np.array([1, 1, 2]))
    assert got.tolist() == [3, -3, 2]


@FAST
@given(
    st.lists(st.integers(INT32_MIN, INT32_MAX), min_size=1, max_size=30),
    st.integers(-40, 40),
)
@example([INT32_MIN, INT32_MAX, 1, -1, 0, 3, -3], 31)
@example([INT32_MIN, INT32_MAX, 1, -1, 0, 3, -3], -1)
def test_shift_requantize(xs, e):
    got = nm.shift_requantize(np.array(xs, dtype=np.int64), e)
    assert got.tolist() == [clamp(frac_round_half_away(v * frac_pow2(e))) for v in xs]


@FAST
@given(st.lists(st.integers(-(2**47), 2**47), min_size=1, max_size=20), st.integers(-40, 8))
@example([2**47, -(2**47), 2**33 + 1, -(2**33) - 1], -1)
def test_shift_requantize_int64_accumulator_saturates(xs, e):
    """16x8 pow2 mode: an int64 accumulator scaled down can still exceed int32 -> saturate."""
    got = nm.shift_requantize(np.array(xs, dtype=np.int64), e)
    assert got.tolist() == [clamp(frac_round_half_away(v * frac_pow2(e))) for v in xs]


def test_apply_multiplier_pow2_mode():
    """pow2 mode with the (M, shift) of an exact power of two 2^e applies x·2^e, half away."""
    xs = np.array([-7, -6, -5, -1, 0, 1, 5, 6, 7, INT32_MAX, INT32_MIN], dtype=np.int64)
    for e in (-5, -2, -1, 0, 1, 3):
        m, shift = ref_quantize_multiplier(2.0**e)
        got = nm.apply_multiplier(xs, m, shift, rounding="pow2")
        assert got.tolist() == [clamp(frac_round_half_away(int(v) * frac_pow2(e))) for v in xs]


def test_apply_multiplier_rejects_unknown_mode():
    with pytest.raises(ValueError, match="rounding"):
        nm.apply_multiplier(np.array([1]), 2**30, 0, rounding="bankers")


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_requantize_per_channel_with_clamp(axis, rounding):
    rng = np.random.default_rng(5 + axis)
    shape = (3, 4, 5)
    acc = rng.integers(-(2**20), 2**20, shape)
    acc.flat[0] = INT32_MAX
    acc.flat[1] = INT32_MIN
    channels = shape[axis]
    reals = rng.uniform(1e-5, 3e-3, channels)
    pairs = [ref_quantize_multiplier(float(r)) for r in reals]
    m = np.array([p[0] for p in pairs], dtype=np.int32)
    s = np.array([p[1] for p in pairs], dtype=np.int32)
    zp, qmin, qmax = -5, -128, 127
    got = nm.requantize(acc, m, s, zp, qmin, qmax, rounding=rounding, axis=axis)
    assert got.shape == shape
    ref = ref_mbqm if rounding == "double" else ref_mbqm_single
    saw_clamp = False
    for idx in np.ndindex(shape):
        c = idx[axis]
        raw = ref(int(acc[idx]), int(m[c]), int(s[c])) + zp
        saw_clamp |= not qmin <= raw <= qmax
        assert got[idx] == clamp(raw, qmin, qmax), idx
    assert saw_clamp


def test_requantize_16x8_and_scalar():
    acc = np.array([-(2**40), -12345678, -1, 0, 1, 987654321, 2**40], dtype=np.int64)
    m, s = ref_quantize_multiplier(3.1e-6)
    got = nm.requantize(acc, m, s, 0, -32768, 32767, acc_bits=64)
    assert got.tolist() == [clamp(ref_mbqm_16x8(int(a), m, s), -32768, 32767) for a in acc]


# ----------------------------------------------------------------------------------------------
# 6. choose_qparams
# ----------------------------------------------------------------------------------------------


finite_range = st.tuples(
    st.floats(-1e4, 1e4, allow_subnormal=False), st.floats(-1e4, 1e4, allow_subnormal=False)
).map(sorted)


@FAST
@given(st.floats(1e-6, 1e6), st.sampled_from([4, 8, 16]))
def test_choose_qparams_symmetric_narrow(amax, bits):
    qp = nm.choose_qparams(-amax / 3, amax, bits=bits, name="w")
    qmax = 2 ** (bits - 1) - 1
    assert (qp.qmin, qp.qmax) == (-qmax, qmax)  # narrow range
    assert qp.zero_point.tolist() == [0]
    scale = float(qp.scale[0])
    assert scale == float(np.float32(scale)), "scales are float32 values"
    assert abs(Fraction(scale) - Fraction(amax) / qmax) <= Fraction(amax) / qmax * 2**-23
    q = nm.quantize(np.array([amax, -amax, 0.0]), qp)
    assert q.tolist() == [qmax, -qmax, 0]


@FAST
@given(finite_range, st.sampled_from([(8, True), (8, False), (4, False), (16, True)]))
def test_choose_qparams_affine_zero_exact_and_range_covered(rng_bounds, fmt):
    lo, hi = rng_bounds
    bits, signed = fmt
    qp = nm.choose_qparams(lo, hi, bits=bits, symmetric=False, signed=signed, name="act")
    qmin, qmax = nm.qrange(bits, signed)
    assert (qp.qmin, qp.qmax) == (qmin, qmax)
    zp = int(qp.zero_point[0])
    assert qmin <= zp <= qmax
    assert nm.dequantize(np.array([zp]), qp).tolist() == [0.0]
    assert nm.quantize(np.array([0.0, -0.0]), qp).tolist() == [zp, zp]
    scale = Fraction(float(qp.scale[0]))
    span = Fraction(max(hi, 0.0)) - Fraction(min(lo, 0.0))
    # A float32 scale below 2^-126 is subnormal and loses relative precision; such ranges
    # (|x| < 1e-30) are degenerate and only need a finite scale (see the constant-tensor test).
    assume(span == 0 or span > Fraction(1e-30))
    slack = scale / 2 + span * Fraction(1, 2**20)  # float32 rounding of the scale
    for v in (lo, hi):
        q = int(nm.quantize(np.array([v]), qp)[0])
        assert abs(scale * (q - zp) - Fraction(v)) <= slack, (v, q)


def test_choose_qparams_per_channel_and_per_block_shapes():
    lo = np.array([-1.0, -2.0, 0.0])
    hi = np.array([1.0, 0.5, 4.0])
    qp = nm.choose_qparams(lo, hi, symmetric=False, axis=0, name="w")
    assert qp.scale.shape == (3,) and qp.axis == 0
    for c in range(3):
        one = nm.choose_qparams(lo[c], hi[c], symmetric=False)
        assert qp.scale[c] == one.scale[0] and qp.zero_point[c] == one.zero_point[0]
    expected_sym = [float(np.float32(a / 127)) for a in (1.0, 2.0, 4.0)]
    assert nm.choose_qparams(absmax=np.maximum(-lo, hi), axis=0).scale.tolist() == expected_sym
    blocks = nm.choose_qparams(absmax=np.arange(1.0, 7.0).reshape(3, 2), axis=0, block_size=4)
    assert blocks.scale.shape == (3, 2) and blocks.block_size == 4
    assert blocks.scale.tolist() == [[float(np.float32(a / 127)) for a in r] for r in
                                     np.arange(1.0, 7.0).reshape(3, 2)]


@FAST
@given(st.floats(1e-30, 1e30), st.booleans())
def test_choose_qparams_power_of_two(amax, symmetric):
    plain = nm.choose_qparams(-amax / 2, amax, symmetric=symmetric)
    p2 = nm.choose_qparams(-amax / 2, amax, symmetric=symmetric, power_of_two=True)
    s, s2 = float(plain.scale[0]), float(p2.scale[0])
    mantissa, _ = math.frexp(s2)
    assert mantissa == 0.5, "a power of two"
    assert s <= s2 < 2 * s


@FAST
@given(st.floats(min_value=2.0**-1070, max_value=2.0**1000))
@example(math.ldexp(1 + 2.0**-52, 40))
@example(math.ldexp(1 + 2.0**-52, -40))
@example(2.0**-1074)
def test_round_up_to_power_of_two_exact(scale):
    p = Fraction(float(nm.round_up_to_power_of_two(np.array(scale))))
    assert p.numerator == 1 or p.denominator == 1, "2^k"
    top = max(p.numerator, p.denominator)
    assert top & (top - 1) == 0, "2^k"
    assert Fraction(scale) <= p < 2 * Fraction(scale)


@pytest.mark.parametrize(
    "lo, hi",
    [(0.0, 0.0), (3.5, 3.5), (-2.0, -2.0), (1e-44, 1e-44), (-1e-44, 1e-44), (5e-324, 5e-324)],
)
@pytest.mark.parametrize("symmetric", [True, False])
def test_choose_qparams_constant_and_zero_tensors(lo, hi, symmetric):
    qp = nm.choose_qparams(lo, hi, symmetric=symmetric, name="const")
    assert np.all(np.isfinite(qp.scale)) and np.all(qp.scale > 0)
    x = np.full(4, lo)
    q = nm.quantize(x, qp)
    r = nm.dequantize(q, qp)
    assert not np.any(np.isnan(r))
    assert np.all(np.abs(r - x) <= qp.scale[0] / 2 * (1 + 1e-12))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_val": float("nan"), "max_val": 1.0},
        {"min_val": -1.0, "max_val": float("inf")},
        {"min_val": np.array([0.0, -np.inf]), "max_val": np.array([1.0, 1.0]), "axis": 0},
        {"absmax": float("nan")},
    ],
)
def test_choose_qparams_non_finite_raises_naming_tensor(kwargs):
    with pytest.raises(ValueError, match="conv3.weight"):
        nm.choose_qparams(**kwargs, name="conv3.weight")


def test_choose_qparams_bad_calls_raise_naming_tensor():
    with pytest.raises(ValueError, match="fc1.act"):
        nm.choose_qparams(1.0, -1.0, name="fc1.act")
    with pytest.raises(ValueError, match="fc1.act"):
        nm.choose_qparams(1.0, name="fc1.act")


# ----------------------------------------------------------------------------------------------
# 7. quantize / dequantize
# ----------------------------------------------------------------------------------------------


@st.composite
def format_and_qparams(draw):
    bits = draw(st.sampled_from([4, 8, 16]))
    signed = draw(st.booleans())
    qmin, qmax = nm.qrange(bits, signed)
    scale = float(np.float32(draw(st.floats(1e-6, 1e3))))
    assume(scale > 0)
    zp = draw(st.integers(qmin, qmax))
    qp = nm.QParams(scale=scale, zero_point=zp, bits=bits, signed=signed, name="t")
    return qp, scale, zp, qmin, qmax


def exact_error_bound_holds(x: float, q: int, scale: float, zp: int) -> bool:
    """|scale·(q − zp) − x| <= scale/2, allowing the one float64 rounding of x / scale."""
    err = abs(Fraction(scale) * (q - zp) - Fraction(x))
    return err <= Fraction(scale) / 2 + abs(Fraction(x)) * Fraction(1, 2**51)


@settings(max_examples=200, deadline=None)
@given(format_and_qparams(), st.floats(0, 1), st.sampled_from(["half_even", "half_away"]))
def test_quantize_error_within_half_step(fq, t, rounding):
    qp, scale, zp, qmin, qmax = fq
    x = scale * (qmin - zp) + t * scale * (qmax - qmin)  # inside the representable range
    q = nm.quantize(np.array([x]), qp, rounding=rounding)
    assert q.dtype == nm.storage_dtype(qp.bits, qp.signed)
    qi = int(q[0])
    assert qmin <= qi <= qmax
    assert exact_error_bound_holds(x, qi, scale, zp), (x, qi)
    r = nm.dequantize(q, qp)
    assert r.dtype == np.float64 and float(r[0]) == float(Fraction(scale) * (qi - zp))


@settings(max_examples=100, deadline=None)
@given(format_and_qparams(), st.floats(1.0, 1e6), st.sampled_from(["half_even", "half_away"]))
def test_quantize_saturates_outside_range(fq, beyond, rounding):
    qp, scale, zp, qmin, qmax = fq
    above = scale * (qmax - zp + 1) * (1 + 1e-9) + beyond * scale
    below = scale * (qmin - zp - 1) * (1 + 1e-9) - beyond * scale
    assert nm.quantize(np.array([above, below]), qp, rounding=rounding).tolist() == [qmax, qmin]


@settings(max_examples=150, deadline=None)
@given(st.integers(-12, 12), st.integers(-120, 119), st.integers(-8, 8))
def test_half_even_and_half_away_differ_exactly_at_ties(k, j, zp):
    scale = 2.0**k
    qp = nm.QParams(scale=scale, zero_point=zp, bits=16)
    tie = (j + 0.5) * scale  # exact: x / scale = j + 1/2
    even = j if j % 2 == 0 else j + 1
    away = j + 1 if j >= 0 else j
    got_even = int(nm.quantize(np.array([tie]), qp, "half_even")[0])
    got_away = int(nm.quantize(np.array([tie]), qp, "half_away")[0])
    assert got_even == even + zp and got_away == away + zp
    assert (got_even != got_away) == (even != away)
    # off the tie (by a quarter step either way) they agree, with the exact nearest value
    for off in (0.25, -0.25):
        x = (j + 0.5 + off) * scale
        want = frac_round_half_away(Fraction(x) / Fraction(scale)) + zp
        assert int(nm.quantize(np.array([x]), qp, "half_even")[0]) == want
        assert int(nm.quantize(np.array([x]), qp, "half_away")[0]) == want


@FAST
@given(st.floats(-1e15, 1e15))
@example(0.49999999999999994)
@example(-0.49999999999999994)
@example(2.0**52 + 1)
@example(-(2.0**52 + 1))
@example(2.5)
@example(-2.5)
@example(-0.0)
def test_round_half_away_exact(x):
    got = float(nm.round_half_away(np.array(x)))
    assert got == frac_round_half_away(Fraction(x))


def python_round_half_even(q: Fraction) -> int:
    return round(q)  # Fraction.__round__ rounds half to even


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("rounding", ["half_even", "half_away"])
def test_quantize_per_channel_broadcast(axis, rounding):
    rng = np.random.default_rng(100 + axis)
    shape = (4, 3, 5)
    channels = shape[axis]
    exps = rng.integers(-6, 3, channels)
    scales = np.ldexp(1.0, exps)
    zps = rng.integers(-20, 20, channels)
    x = rng.integers(-600, 600, shape) * np.ldexp(1.0, exps.min() - 2)  # exact quarter steps
    qp = nm.QParams(scale=scales, zero_point=zps, bits=8, axis=axis, name="pc")
    q = nm.quantize(x, qp, rounding)
    r = nm.dequantize(q, qp)
    rnd = python_round_half_even if rounding == "half_even" else frac_round_half_away
    for idx in np.ndindex(shape):
        c = idx[axis]
        want = clamp(rnd(Fraction(x[idx]) / Fraction(scales[c])) + int(zps[c]), -128, 127)
        assert q[idx] == want, idx
        assert r[idx] == float(Fraction(scales[c]) * (want - int(zps[c])))


def block_index(idx: tuple[int, ...], shape: tuple[int, ...], ax: int, block: int) -> tuple:
    """(channel, block) of element ``idx``: the channel's slice is flattened in C order."""
    rest_idx = tuple(v for i, v in enumerate(idx) if i != ax)
    rest = tuple(s for i, s in enumerate(shape) if i != ax)
    flat = 0
    for v, s in zip(rest_idx, rest, strict=True):
        flat = flat * s + v
    return idx[ax], flat // block


BLOCK_CASES = [((3, 8), 0, 4), ((3, 10), 0, 4), ((8, 3), 1, 3), ((2, 7, 3), 1, 2),
               ((4, 2, 3, 3), 0, 5), ((2, 7, 3), -1, 14), ((5,), 0, 1)]


@pytest.mark.parametrize("shape, axis, block", BLOCK_CASES)
def test_quantize_per_block_broadcast(shape, axis, block):
    """Per-block values are (C, nblocks): blocks of each channel's C-order-flattened slice."""
    rng = np.random.default_rng(sum(shape) + block)
    ax = axis % len(shape)
    per_slice = math.prod(shape) // shape[ax]
    nblocks = -(-per_slice // block)
    exps = rng.integers(-5, 2, (shape[ax], nblocks))
    scales = np.ldexp(1.0, exps)
    zps = rng.integers(-10, 10, (shape[ax], nblocks))
    x = rng.integers(-2000, 2000, shape) * 2.0**-7  # exact in float: x / scale is exact
    qp = nm.QParams(scale=scales, zero_point=zps, bits=8, axis=axis, block_size=block, name="blk")
    q = nm.quantize(x, qp, "half_even")
    r = nm.dequantize(q, qp)
    assert q.shape == r.shape == shape
    for idx in np.ndindex(shape):
        pidx = block_index(idx, shape, ax, block)
        s, z = Fraction(float(scales[pidx])), int(zps[pidx])
        want = clamp(python_round_half_even(Fraction(x[idx]) / s) + z, -128, 127)
        assert q[idx] == want, (idx, pidx)
        assert r[idx] == float(s * (want - z))


@pytest.mark.parametrize("shape, axis, block", BLOCK_CASES)
def test_per_block_choose_then_quantize_error(shape, axis, block):
    """Per-block absmax computed here by hand -> choose_qparams -> every error <= scale/2."""
    rng = np.random.default_rng(3 * sum(shape) + block)
    ax = axis % len(shape)
    x = rng.normal(0, 1, shape) * rng.uniform(0.01, 100, shape[ax]).reshape(
        [-1 if i == ax else 1 for i in range(len(shape))]
    )
    per_slice = math.prod(shape) // shape[ax]
    amax = np.zeros((shape[ax], -(-per_slice // block)))
    for idx in np.ndindex(shape):
        pidx = block_index(idx, shape, ax, block)
        amax[pidx] = max(amax[pidx], abs(x[idx]))
    qp = nm.choose_qparams(absmax=amax, axis=axis, block_size=block, name="w")
    q = nm.quantize(x, qp)
    assert np.all(np.abs(q.astype(int)) <= 127)
    for idx in np.ndindex(shape):
        pidx = block_index(idx, shape, ax, block)
        s = float(qp.scale[pidx])
        assert exact_error_bound_holds(float(x[idx]), int(q[idx]), s, 0), idx
        if abs(x[idx]) == amax[pidx]:
            assert abs(int(q[idx])) == 127  # the block's extreme maps to the end of the range


def test_qparams_shape_mismatch_raises_naming_tensor():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="layer2.w"):
        nm.quantize(x, nm.QParams(scale=[1.0, 2.0], zero_point=[0, 0], axis=0, name="layer2.w"))
    with pytest.raises(ValueError, match="layer2.w"):
        nm.quantize(
            x, nm.QParams(scale=[1.0] * 5, zero_point=[0] * 5, axis=1, block_size=2,
                          name="layer2.w"),
        )
    with pytest.raises(ValueError, match="layer2.w"):
        nm.quantize(np.array([np.nan]), nm.QParams(scale=1.0, zero_point=0, name="layer2.w"))


@pytest.mark.parametrize("frac", [0.0, 0.03125, 0.25, 0.5, 0.7, 0.96875])
def test_stochastic_rounding_unbiased(frac):
    n = 40_000
    base = -3.0
    x = np.full(n, base + frac)
    qp = nm.QParams(scale=1.0, zero_point=0, bits=8)
    q = nm.quantize(x, qp, "stochastic", rng=np.random.default_rng(1234)).astype(np.int64)
    p = float(Fraction(base + frac) - math.floor(base + frac))
    assert set(np.unique(q).tolist()) <= {-3, -2}
    ups = (q == -2).mean()
    if p == 0.0:
        assert ups == 0.0
        return
    stderr = math.sqrt(p * (1 - p) / n)
    assert abs(ups - p) <= 5 * stderr, (ups, p, stderr)


def test_stochastic_rounding_needs_rng_and_unknown_mode_raises():
    qp = nm.QParams(scale=1.0, zero_point=0)
    with pytest.raises(ValueError, match="rng"):
        nm.quantize(np.array([0.5]), qp, "stochastic")
    with pytest.raises(ValueError, match="rounding"):
        nm.quantize(np.array([0.5]), qp, "nearest")


# ----------------------------------------------------------------------------------------------
# 8. NumPy only
# ----------------------------------------------------------------------------------------------


def test_numerics_does_not_import_torch():
    code = "import sys, intquant.numerics; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
