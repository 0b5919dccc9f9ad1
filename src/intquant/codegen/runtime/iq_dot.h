/*
 * 8-bit dot products in offset-binary form, the multiply-accumulate core of int8 conv and
 * fully_connected.
 *
 * Why offset binary: Cortex-M0 loads a signed byte only with a register offset (LDRSB Rt,
 * [Rn, Rm]) but an unsigned byte with an immediate offset (LDRB Rt, [Rn, #imm]). Storing the
 * weights as wu = w + 128 (offline) and the im2col'ed inputs as xu = x + xoff (xoff = 128 for
 * int8, 0 for uint8) makes every load an immediate-offset LDRB, and
 *     sum w*x = sum wu*xu - xoff*sum(wu) - 128*sum(xu) + 128*xoff*K
 * where sum(wu) and K are folded into the bias offline and sum(xu) is computed once per
 * receptive field (shared by all output channels). All of it is done in uint32 arithmetic:
 * wrap-around is well defined and the true accumulator fits int32 (checked at lowering), so
 * the final result is exact.
 *
 * Four output channels are computed per pass over the inputs, their weights interleaved
 * offline (w[k*4 + j]) so one loaded input feeds four multiply-accumulates. On Cortex-M0 the
 * loop is written in assembly (gcc does not keep the eight values in registers), eight
 * inputs per iteration: 3.375 instructions per MAC. AVR has its own loops (iq_dot_avr.h);
 * every other target uses the portable C loop below, which computes the same sums. The
 * weights are IQ_FLASH data: read through IQ_LOAD_U8 (iq_target.h).
 */
#ifndef IQ_DOT_H
#define IQ_DOT_H

#include "iq_runtime.h"

#if defined(__ARM_ARCH_6M__) && defined(__GNUC__) && defined(__OPTIMIZE__)
#define IQ_DOT4_ASM 1
#define IQ_MAC4_ASM(xo, wo)                                                                    \
    "ldrb %[xv], [%[x], #" #xo "]\n\t"                                                         \
    "ldrb %[t], [%[w], #" #wo "]\n\t"                                                          \
    "muls %[t], %[xv], %[t]\n\t"                                                               \
    "adds %[a0], %[a0], %[t]\n\t"                                                              \
    "ldrb %[t], [%[w], #" #wo "+1]\n\t"                                                        \
    "muls %[t], %[xv], %[t]\n\t"                                                               \
    "adds %[a1], %[a1], %[t]\n\t"                                                              \
    "ldrb %[t], [%[w], #" #wo "+2]\n\t"                                                        \
    "muls %[t], %[xv], %[t]\n\t"                                                               \
    "adds %[a2], %[a2], %[t]\n\t"                                                              \
    "ldrb %[t], [%[w], #" #wo "+3]\n\t"                                                        \
    "muls %[t], %[xv], %[t]\n\t"                                                               \
    "adds %[a3], %[a3], %[t]\n\t"
#endif

#if defined(__AVR__) && defined(__GNUC__)
#include "iq_dot_avr.h" /* LPM + 8x8 MUL per MAC instead of a 32-bit multiply */
#else
/* s[j] += sum_k x[k] * w[4k + j] for j = 0..3 (modulo 2^32). */
static inline void iq_dot4_u8(const uint8_t* x, const uint8_t* w, int32_t n, uint32_t s[4])
{
    uint32_t a0 = s[0], a1 = s[1], a2 = s[2], a3 = s[3], xv;
    const uint8_t* end4 = x + (n & ~3);
#ifdef IQ_DOT4_ASM
    uint32_t t;
    const uint8_t* end8 = x + (n & ~7);
    if (x != end8) { /* eight inputs per iteration: 3.375 instructions per MAC */
        __asm__ volatile(".syntax unified\n\t"
                         "1:\n\t" IQ_MAC4_ASM(0, 0) IQ_MAC4_ASM(1, 4) IQ_MAC4_ASM(2, 8)
                             IQ_MAC4_ASM(3, 12) IQ_MAC4_ASM(4, 16) IQ_MAC4_ASM(5, 20)
                                 IQ_MAC4_ASM(6, 24) IQ_MAC4_ASM(7, 28) "adds %[x], #8\n\t"
                                                                       "adds %[w], #32\n\t"
                                                                       "cmp %[x], %[end]\n\t"
                                                                       "bne 1b\n\t"
                         : [a0] "+l"(a0), [a1] "+l"(a1), [a2] "+l"(a2), [a3] "+l"(a3),
                           [x] "+l"(x), [w] "+l"(w), [xv] "=&l"(xv), [t] "=&l"(t)
                         : [end] "h"(end8)
                         : "cc", "memory");
    }
    if (x != end4) { /* the remaining block of four */
        __asm__ volatile(".syntax unified\n\t" IQ_MAC4_ASM(0, 0) IQ_MAC4_ASM(1, 4)
                             IQ_MAC4_ASM(2, 8) IQ_MAC4_ASM(3, 12) "adds %[x], #4\n\t"
                                                                  "adds %[w], #16\n\t"
                         : [a0] "+l"(a0), [a1] "+l"(a1), [a2] "+l"(a2), [a3] "+l"(a3),
                           [x] "+l"(x), [w] "+l"(w), [xv] "=&l"(xv), [t] "=&l"(t)
                         :
                         : "cc", "memory");
    }
#else
    while (x != end4) {
        int32_t k;
        for (k = 0; k < 4; ++k) {
            xv = x[k];
            a0 += IQ_LOAD_U8(w + 4 * k) * xv;
            a1 += IQ_LOAD_U8(w + 4 * k + 1) * xv;
            a2 += IQ_LOAD_U8(w + 4 * k + 2) * xv;
            a3 += IQ_LOAD_U8(w + 4 * k + 3) * xv;
        }
        x += 4;
        w += 16;
    }
#endif
    for (n &= 3; n > 0; --n) {
        xv = *x++;
        a0 += IQ_LOAD_U8(w + 0) * xv;
        a1 += IQ_LOAD_U8(w + 1) * xv;
        a2 += IQ_LOAD_U8(w + 2) * xv;
        a3 += IQ_LOAD_U8(w + 3) * xv;
        w += 4;
    }
    s[0] = a0;
    s[1] = a1;
    s[2] = a2;
    s[3] = a3;
}

/* sum_k x[k] * w[k] (modulo 2^32): the 1-3 channels left over after the blocks of four. */
static inline uint32_t iq_dot1_u8(const uint8_t* x, const uint8_t* w, int32_t n)
{
    uint32_t a = 0;
    int32_t k;
    for (k = 0; k < n; ++k) {
        a += (uint32_t)x[k] * IQ_LOAD_U8(w + k);
    }
    return a;
}
#endif

/* Eight channels over a tile of positions (iq_dot8.c): for position q < npos and channel
 * j < 8, acc[j*npos + q] = bias[j] - terms[q] + sum_i cols[q*k + i] * w[i*8 + j] (mod 2^32). */
void iq_dot8_tile(const uint8_t* cols, const uint32_t* terms, int32_t npos, int32_t k,
                  const uint8_t* w, const uint32_t* bias, int32_t* acc);
/* The same on 16-bit columns (16x8 layers; x + 32768 as uint16). */
void iq_dot16_tile(const uint16_t* cols, const uint32_t* terms, int32_t npos, int32_t k,
                   const uint8_t* w, const uint32_t* bias, int32_t* acc);

/* Eight channels over positions of one output row, reading a [row][channel][column] band in
 * place (iq_dot8.c): for position q < npos, channel j < 8, with step, span and pitch in bytes
 * and e the element size (1, or 2 for iq_dot16_rows),
 *   acc[j*npos + q] = bias[j] - terms[q] + sum_{b < span/pitch, i < kw}
 *                         x[(q*step + b*pitch)/e + i] * w[(b*kw + i)*8 + j]     (mod 2^32).
 * The field order is read by the assembly; kw is 3 or 4. */
typedef struct {
    int32_t npos, step, span, pitch, kw;
    const uint32_t* bias;
    const uint32_t* terms;
} iq_rows_t;

void iq_dot8_rows(const uint8_t* x, const iq_rows_t* rows, const uint8_t* w, int32_t* acc);
void iq_dot16_rows(const uint16_t* x, const iq_rows_t* rows, const uint8_t* w, int32_t* acc);

/* The band of the in-place path (iq_dot8.c): input rows y0 .. y0 + used - 1 of every channel
 * into buf as [row][channel][column] (interiors at pad_left; rows outside the input hold the
 * padding value), x ^ xoff, and colsum[row][column] = the sum over channels. */
struct iq_conv_params_s;
void iq_rows_copy(const struct iq_conv_params_s* p, const uint8_t* x, uint32_t xoff, int32_t y0,
                  int32_t used, uint8_t* buf, uint32_t* colsum);
/* The same for int16 inputs (as x + 32768). */
void iq_rows_copy16(const struct iq_conv_params_s* p, const uint16_t* x, int32_t y0, int32_t used,
                    uint16_t* buf, uint32_t* colsum);

/* ---- 8-bit output stage --------------------------------------------------------------------
 *
 * out = clamp(r + z, lo, hi) with r the requantized accumulator. The contract first clamps r to
 * +-2^30 so that the addition cannot overflow (iq_add_zero_point_and_clamp); here the bounds are
 * moved instead: clamp(r, lo - z, hi - z) + z is the same value for every int32 r, because z,
 * lo and hi lie in the 8/16-bit activation ranges (validated by IntGraph), so lo - z and hi - z
 * lie strictly inside +-2^30 and (i) r in [lo - z, hi - z] gives r + z on both sides, (ii) below
 * (above) that interval both sides give lo (hi). One subtraction per layer, none per output. */
typedef struct {
    int32_t zero_point, lo, hi; /* lo = act_min - z, hi = act_max - z */
} iq_out_stage_t;

static inline iq_out_stage_t iq_out_stage(int32_t zero_point, int32_t act_min, int32_t act_max)
{
    iq_out_stage_t o;
    o.zero_point = zero_point;
    o.lo = act_min - zero_point;
    o.hi = act_max - zero_point;
    return o;
}

static inline int32_t iq_out_clamp(int32_t r, const iq_out_stage_t* o)
{
    r = r < o->lo ? o->lo : (r > o->hi ? o->hi : r);
    return r + o->zero_point;
}

#ifdef IQ_REQUANT_ASM
/* The double-rounding output stage out of line on Cortex-M0: the asm needs six low registers,
 * and a call boundary lets the kernels keep their loop state in callee-saved registers
 * instead of spilling it around the inlined sequence. */
__attribute__((noinline, unused)) static int32_t iq_requantize_double_out(int32_t acc, int32_t m,
                                                                         int32_t shift,
                                                                         const iq_out_stage_t* o)
{
    return iq_out_clamp(iq_mbqm_double(acc, m, shift), o);
}
#endif

/* Requantize an int32 accumulator (mode folds away: a constant in every template instance). */
static inline int32_t iq_requantize_out(int32_t acc, int32_t m, int32_t shift, int32_t mode,
                                        const iq_out_stage_t* o)
{
#ifdef IQ_REQUANT_ASM
    if (mode == IQ_RQ_DOUBLE) {
        return iq_requantize_double_out(acc, m, shift, o);
    }
#endif
    return iq_out_clamp(mode == IQ_RQ_DOUBLE ? iq_mbqm_double(acc, m, shift)
                                             : iq_apply_multiplier(acc, m, shift, mode),
                        o);
}

#endif /* IQ_DOT_H */
