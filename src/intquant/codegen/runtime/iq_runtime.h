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

#include "iq_target.h"

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

/* The Thumb-1 assembly kernels (naked functions of iq_requant.c, iq_depthwise.c, iq_dot8.c). */
#if defined(__ARM_ARCH_6M__) && defined(__GNUC__)
#define IQ_M0_ASM 1
#endif

/* Parameters of the naked assembly functions (read by the asm, not by C). */
#if defined(__GNUC__)
#define IQ_UNUSED __attribute__((unused))
#else
#define IQ_UNUSED
#endif

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

#if defined(__ARM_ARCH_6M__) && defined(__GNUC__) && defined(__OPTIMIZE__)
#define IQ_REQUANT_ASM 1
/* iq_srdhm on ARMv6-M in 23 instructions (libgcc's 64-bit multiply alone costs ~40), for
 * b >= 0 and any a.
 *
 * Split a = ah*2^16 + al and b = bh*2^16 + bl with al, bl in [0, 2^16) (UXTH) and ah, bh the
 * arithmetic high halves. Then, exactly,
 *     ab + 2^30 = ah*bh*2^32 + (al*bh + 2^14)*2^16 + ah*bl*2^16 + al*bl
 * and every term fits one 32-bit register: al*bl < 2^32 (unsigned), |ah*bh| <= 2^30,
 * ah*bl in [-2^15*(2^16-1), (2^15-1)*(2^16-1)], al*bh + 2^14 in [2^14, (2^16-1)*(2^15-1)+2^14]
 * (below 2^31 - 1). Each middle term t is added to the 64-bit pair (hi:lo) as lo += t << 16
 * with carry into hi += t >> 16 (arithmetic): the pair is ab + 2^30 in two's complement, and
 * bits 31..62 of it are the floored quotient by 2^31 (== the truncated C quotient of
 * ab + nudge, see iq_srdhm), which fits int32 because b >= 0 excludes a == b == INT32_MIN. */
static inline int32_t iq_srdhm_asm(int32_t a, int32_t b)
{
    uint32_t hi, lo, mid, t;
    __asm__(".syntax unified\n\t"
            "asrs %[hi], %[a], #16\n\t"      /* hi  = ah                    */
            "uxth %[a], %[a]\n\t"            /* a   = al                    */
            "uxth %[mid], %[b]\n\t"          /* mid = bl                    */
            "movs %[lo], %[mid]\n\t"
            "muls %[lo], %[a], %[lo]\n\t"    /* lo  = al*bl                 */
            "muls %[mid], %[hi], %[mid]\n\t" /* mid = ah*bl                 */
            "asrs %[t], %[b], #16\n\t"       /* t   = bh                    */
            "muls %[a], %[t], %[a]\n\t"      /* a   = al*bh                 */
            "muls %[hi], %[t], %[hi]\n\t"    /* hi  = ah*bh                 */
            "movs %[t], #1\n\t"
            "lsls %[t], %[t], #14\n\t"
            "adds %[a], %[a], %[t]\n\t"      /* a   = al*bh + 2^14          */
            "lsls %[t], %[a], #16\n\t"
            "asrs %[a], %[a], #16\n\t"
            "adds %[lo], %[lo], %[t]\n\t"
            "adcs %[hi], %[hi], %[a]\n\t"    /* (hi:lo) += a * 2^16         */
            "lsls %[t], %[mid], #16\n\t"
            "asrs %[mid], %[mid], #16\n\t"
            "adds %[lo], %[lo], %[t]\n\t"
            "adcs %[hi], %[hi], %[mid]\n\t"  /* (hi:lo) += mid * 2^16       */
            "lsls %[hi], %[hi], #1\n\t"
            "lsrs %[lo], %[lo], #31\n\t"
            "orrs %[hi], %[hi], %[lo]\n\t"   /* bits 31..62 of (hi:lo)      */
            : [hi] "=&l"(hi), [lo] "=&l"(lo), [mid] "=&l"(mid), [t] "=&l"(t), [a] "+l"(a)
            : [b] "l"(b)
            : "cc");
    return (int32_t)hi;
}

/* iq_rounding_divide_by_pot on ARMv6-M in 5 instructions, for 0 <= e <= 31, x > INT32_MIN.
 *
 * Half away from zero, x / 2^e rounds to floor((x + 2^(e-1)) / 2^e) for x >= 0 and to
 * floor((x - 1 + 2^(e-1)) / 2^e) for x < 0 (e >= 1). With x' = x - (x < 0) (no overflow:
 * x > INT32_MIN) both are floor((q + 1) / 2) = (q >> 1) + (q & 1) where q = x' >> (e - 1):
 * that is x' >> e plus bit e-1 of x', exactly the carry that ASRS by a register leaves.
 * e = 0: ADDS x, (x >> 31) sets C = (x < 0) (adding 0xFFFFFFFF to a negative x carries, adding
 * 0 never does), MOVS #imm and ASRS by 0 leave C alone, so the result is x' + (x < 0) = x. */
static inline int32_t iq_rounding_divide_by_pot_asm(int32_t x, int32_t e)
{
    int32_t t;
    __asm__(".syntax unified\n\t"
            "asrs %[t], %[x], #31\n\t"
            "adds %[x], %[x], %[t]\n\t" /* x' = x - (x < 0)              */
            "movs %[t], #0\n\t"         /* MOVS #imm leaves C untouched  */
            "asrs %[x], %[x], %[e]\n\t" /* x' >> e, C = bit e-1 of x'     */
            "adcs %[x], %[x], %[t]\n\t"
            : [x] "+l"(x), [t] "=&l"(t)
            : [e] "l"(e)
            : "cc");
    return x;
}
#endif

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
static inline int32_t iq_mbqm_double_portable(int32_t x, int32_t m, int32_t shift)
{
    int32_t left = shift > 0 ? shift : 0;
    int32_t right = shift > 0 ? 0 : -shift;
    return iq_rounding_divide_by_pot(iq_srdhm(iq_saturating_left_shift(x, left), m), right);
}

#ifdef IQ_REQUANT_ASM
/* Out of line: multipliers >= 1 (shift > 0) are rare in 8-bit layers, and keeping the 64-bit
 * saturating shift out of the hot loop keeps its registers free. */
__attribute__((noinline, unused)) static int32_t iq_mbqm_double_rare(int32_t x, int32_t m,
                                                                     int32_t shift)
{
    return iq_mbqm_double_portable(x, m, shift);
}
#endif

static inline int32_t iq_mbqm_double(int32_t x, int32_t m, int32_t shift)
{
#ifdef IQ_REQUANT_ASM
    /* Fast path: m >= 0 (always: intgraph validates multipliers to [0, 2^31)) and
     * shift <= 0, i.e. no left shift and e = -shift in [0, 31]. For m >= 0 the SRDHM result is
     * at least floor((-2^31 * (2^31 - 1) + 2^30) / 2^31) = 1 - 2^31 > INT32_MIN, as the asm
     * RDBP needs. One sign test covers both conditions. */
    int32_t e = (int32_t)(0u - (uint32_t)shift);
    if ((m | e) >= 0) {
        return iq_rounding_divide_by_pot_asm(iq_srdhm_asm(x, m), e);
    }
    return iq_mbqm_double_rare(x, m, shift);
#else
    return iq_mbqm_double_portable(x, m, shift);
#endif
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
    int64_t m16 = m < 0x7FFF0000 ? (((int64_t)m + ((int32_t)1 << 15)) >> 16) : 0x7FFF;
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
    r = iq_clamp_i32(r, -((int32_t)1 << 30), (int32_t)1 << 30);
    return iq_clamp_i32(r + zero_point, lo, hi);
}

#endif /* IQ_RUNTIME_H */
