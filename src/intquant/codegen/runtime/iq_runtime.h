/*
 * intquant runtime: integer primitives shared by every kernel.
 *
 * Portable C99, integers only: no float, no double, no malloc, nothing from libc but
 * <stdint.h>, <stddef.h> and <string.h>. Each function mirrors one function of
 * intquant/numerics.py (the contract), itself written after TFLite-Micro's
 * quantization_util / gemmlowp's fixedpoint.h, so results are bit-identical.
 *
 * Assumption checked below: '>>' on a negative signed integer is an arithmetic shift
 * (true of gcc, clang, armcc and every compiler for the targets we care about).
 */
#ifndef IQ_RUNTIME_H
#define IQ_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if ((-1) >> 1) != -1
#error "intquant runtime needs an arithmetic right shift of negative integers"
#endif

/* Requantization modes: which accumulator -> output-scale function an op applies. */
enum {
    IQ_RQ_DOUBLE = 0, /* TFLM MultiplyByQuantizedMultiplier, int32 accumulator (default) */
    IQ_RQ_SINGLE = 1, /* CMSIS-NN single rounding, int32 accumulator */
    IQ_RQ_X16 = 2,    /* TFLM int64 path with the reduced 16-bit multiplier (acc_bits 64) */
    IQ_RQ_POW2 = 3    /* power-of-two scale: shift only, no multiply */
};

#define IQ_ERR_NULL_ARGUMENT (-1)

static inline int32_t iq_clamp_i32(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

static inline int32_t iq_saturate_i64_to_i32(int64_t x)
{
    return x < INT32_MIN ? INT32_MIN : (x > INT32_MAX ? INT32_MAX : (int32_t)x);
}

/* Signed 32x32 -> 64-bit product. Cortex-M0 has only a 32x32->32 multiplier and libgcc's
 * generic 64x64 multiply costs ~40 instructions; four 16x16 products cost ~20. */
static inline int64_t iq_mul_i32_i32(int32_t a, int32_t b)
{
#if defined(__ARM_ARCH_6M__)
    uint32_t ua = a < 0 ? 0u - (uint32_t)a : (uint32_t)a;
    uint32_t ub = b < 0 ? 0u - (uint32_t)b : (uint32_t)b;
    uint32_t al = ua & 0xFFFFu, ah = ua >> 16, bl = ub & 0xFFFFu, bh = ub >> 16;
    uint32_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint32_t mid = (ll >> 16) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    uint32_t lo = (ll & 0xFFFFu) | (mid << 16);
    uint32_t hi = hh + (lh >> 16) + (hl >> 16) + (mid >> 16);
    uint64_t p = ((uint64_t)hi << 32) | lo;
    return ((a < 0) != (b < 0)) ? -(int64_t)p : (int64_t)p;
#else
    return (int64_t)a * (int64_t)b;
#endif
}

/* gemmlowp SaturatingRoundingDoublingHighMul: high word of 2ab, round half up (nudge),
 * then C division by 2^31 (truncation toward zero). For ab >= 0 that is (ab + 2^30) >> 31;
 * for ab < 0 the truncated quotient of ab + 1 - 2^30 equals the floored quotient of
 * ab + 1 - 2^30 + (2^31 - 1) = ab + 2^30: one formula, no branch. */
static inline int32_t iq_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    return (int32_t)((iq_mul_i32_i32(a, b) + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: x / 2^e rounded half away from zero (0 <= e <= 31). */
static inline int32_t iq_rounding_divide_by_pot(int32_t x, int32_t e)
{
    int32_t mask = (int32_t)((((uint32_t)1) << e) - 1u);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (remainder > threshold ? 1 : 0);
}

/* The same on a 64-bit value (power-of-two requantization of an int64 accumulator). */
static inline int64_t iq_rounding_divide_by_pot64(int64_t x, int32_t e)
{
    int64_t mask = (int64_t)((((uint64_t)1) << e) - 1u);
    int64_t remainder = x & mask;
    int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (remainder > threshold ? 1 : 0);
}

/* x * 2^e saturated to int32, e >= 0 (multiplication, not '<<': shifting a negative value
 * left is undefined in C). */
static inline int32_t iq_saturating_left_shift(int64_t x, int32_t e)
{
    if (x == 0) {
        return 0;
    }
    if (e >= 32) {
        return x > 0 ? INT32_MAX : INT32_MIN;
    }
    if (x > ((int64_t)INT32_MAX >> e)) {
        return INT32_MAX;
    }
    if (x < ((int64_t)INT32_MIN >> e)) {
        return INT32_MIN;
    }
    return (int32_t)(x * ((int64_t)1 << e));
}

/* TFLM MultiplyByQuantizedMultiplier ("double rounding"). */
static inline int32_t iq_mbqm_double(int32_t x, int32_t m, int32_t shift)
{
    int32_t left = shift > 0 ? shift : 0;
    int32_t right = shift > 0 ? 0 : -shift;
    return iq_rounding_divide_by_pot(iq_srdhm(iq_saturating_left_shift(x, left), m), right);
}

/* CMSIS-NN single rounding: (x*M + 2^(30-shift)) >> (31-shift), shift <= 30. */
static inline int32_t iq_mbqm_single(int32_t x, int32_t m, int32_t shift)
{
    int32_t total = 31 - shift;
    int64_t p = iq_mul_i32_i32(x, m) + ((int64_t)1 << (total - 1));
    return iq_saturate_i64_to_i32(p >> total);
}

/* TFLM int64 path: reduced 16-bit multiplier, (x*M16 + 2^(14-shift)) >> (15-shift). */
static inline int32_t iq_mbqm_x16(int64_t x, int32_t m, int32_t shift)
{
    int32_t total = 15 - shift;
    int64_t m16 = m < 0x7FFF0000 ? (((int64_t)m + (1 << 15)) >> 16) : 0x7FFF;
    int64_t p = x * m16 + ((int64_t)1 << (total - 1));
    return iq_saturate_i64_to_i32(p >> total);
}

/* Power-of-two requantization: acc * 2^(shift-1), rounding half away from zero. */
static inline int32_t iq_shift_requantize(int64_t x, int32_t shift)
{
    int32_t e = shift - 1;
    if (e >= 0) {
        return iq_saturating_left_shift(x, e);
    }
    return iq_saturate_i64_to_i32(iq_rounding_divide_by_pot64(x, -e));
}

/* Accumulator -> output scale, dispatching on the op's requantization mode. The int32
 * modes receive an accumulator that fits in int32 (guaranteed by lowering's bound check). */
static inline int32_t iq_apply_multiplier(int64_t acc, int32_t m, int32_t shift, int32_t mode)
{
    switch (mode) {
    case IQ_RQ_SINGLE:
        return iq_mbqm_single((int32_t)acc, m, shift);
    case IQ_RQ_X16:
        return iq_mbqm_x16(acc, m, shift);
    case IQ_RQ_POW2:
        return iq_shift_requantize(acc, shift);
    default:
        return iq_mbqm_double((int32_t)acc, m, shift);
    }
}

/* out = clamp(r + zero_point, act_min, act_max). The bounds lie inside int16, so clamping r
 * to +-2^30 first keeps the addition in int32 without changing the result. */
static inline int32_t iq_add_zero_point_and_clamp(int32_t r, int32_t zero_point, int32_t lo,
                                                  int32_t hi)
{
    r = iq_clamp_i32(r, -(1 << 30), 1 << 30);
    return iq_clamp_i32(r + zero_point, lo, hi);
}

#endif /* IQ_RUNTIME_H */
