/*
 * conv / fully_connected with packed sub-byte weights (intquant/ops/_packed.py states the
 * IntGraph layouts; this file the kernels' inner loops, iq_conv_packed_impl.h the template).
 *
 * Every fast path works on 8-bit inputs moved to unsigned, xu = x + xoff (xoff = 128 for int8,
 * 0 for uint8), gathered per output position into `col` (im2col; padded taps hold z + xoff,
 * taps past K hold 0). With C[c] = bias[c] - (z + xoff) * sum_k w[c][k] folded offline,
 *     acc[c] = bias[c] + sum_k w[c][k] * (x_k - z) = C[c] + sum_k w[c][k] * xu_k,
 * and the kernels differ only in how they form sum_k w * xu:
 *
 * - binary and int2 (no multiply): the codes are bit planes, w = b0 (binary: 2*b0 - 1;
 *   int2: b0 - 2*b1). For every group of four inputs a table holds the 16 subset sums
 *   T[m] = sum of the xu whose bit is set in m; a nibble of a plane then selects its subset
 *   sum in one load: sum_k b_k * xu_k = sum_groups T_g[nibble_g]. One table set per position
 *   serves every output channel. binary: sum = 2 P - S (S = sum xu), int2: sum = P0 - 2 P1.
 * - pow2 (no multiply): per input a table of the 16 nibble values times xu (shifts and
 *   negations), P_k[n] = value(n) * xu_k; a nibble of a row selects its product.
 * - int4 with a fast multiplier: two products per MULS. Weights of eight output channels are
 *   interleaved offline per input k as one word, channel 2j in bits 4j..4j+3 and channel 2j+1
 *   in bits 16+4j..16+4j+3, as offset binary wu = w + 8 in [0, 15]. (word >> 4j) & 0x000F000F
 *   holds two channels in two 16-bit lanes; one MULS by xu in [0, 255] gives both products
 *   (each < 3825), and sixteen of them fit a lane (< 2^16) before the lanes are split into
 *   32-bit sums. sum w*xu = sum wu*xu - 8 S.
 *
 * Tables live in the op's scratch buffer (the planner counts them): subset tables for
 * IQ_PK_SUBSET_CHUNK inputs and product tables for IQ_PK_PRODUCT_CHUNK inputs at a time, with
 * the per-channel partial sums of longer rows kept in an int32 array.
 */
#ifndef IQ_CONV_PACKED_H
#define IQ_CONV_PACKED_H

#include "iq_conv.h"
#include "iq_dot.h"

#if defined(__ARM_ARCH_6M__) && defined(__GNUC__) && defined(__OPTIMIZE__)
#define IQ_PK_ASM 1 /* Thumb-1 inner loops; the portable C below computes the same sums */
#endif

/* Weight formats (macros, not an enum: the template tests them in #if). */
#define IQ_PK_INT4 1
#define IQ_PK_POW2 2
#define IQ_PK_INT2 3
#define IQ_PK_BINARY 4

#define IQ_PK_SUBSET_CHUNK 128 /* inputs per set of subset tables: 32 x 32 bytes */
#define IQ_PK_PRODUCT_CHUNK 64 /* inputs per set of product tables: 64 x 32 bytes */

/* wb: the weights of the channel blocks (word- or halfword-aligned, NULL if none); w: the
 * rows of the other channels as in IntGraph (NULL if none); per group, in group order. */
#define IQ_CONV_PACKED_DECLARE(fn, tin, tout, tbias)                                          \
    void fn(const iq_conv_params_t* p, const tin* x, const void* wb, const uint8_t* w,        \
            const tbias* bias, const int32_t* mult, const int32_t* shift, tout* y,            \
            void* scratch)
#define IQ_FC_PACKED_DECLARE(fn, tin, tout, tbias)                                            \
    void fn(const iq_fc_params_t* p, const tin* x, const void* wb, const uint8_t* w,          \
            const tbias* bias, const int32_t* mult, const int32_t* shift, tout* y,            \
            void* scratch)

/* Bytes of one packed row of k codes (the IntGraph layout; each row starts on a byte). */
static inline int32_t iq_pk_row_bytes(int32_t format, int32_t k)
{
    if (format == IQ_PK_INT4 || format == IQ_PK_POW2) {
        return (k + 1) >> 1;
    }
    return (format == IQ_PK_INT2 ? 2 : 1) * ((k + 7) >> 3);
}

/* Code k of a packed row, decoded (the reference decoding of _packed.unpack). */
static inline int32_t iq_pk_code(int32_t format, const uint8_t* row, int32_t k, int32_t kk)
{
    if (format == IQ_PK_INT4 || format == IQ_PK_POW2) {
        const int32_t n = (row[k >> 1] >> ((k & 1) << 2)) & 15;
        int32_t mag;
        if (format == IQ_PK_INT4) {
            return (n ^ 8) - 8;
        }
        mag = (n & 7) ? ((int32_t)1 << ((n & 7) - 1)) : 0;
        return (n & 8) ? -mag : mag;
    } else {
        const int32_t b0 = (row[k >> 3] >> (k & 7)) & 1;
        if (format == IQ_PK_BINARY) {
            return 2 * b0 - 1;
        }
        return b0 - 2 * ((row[((kk + 7) >> 3) + (k >> 3)] >> (k & 7)) & 1);
    }
}

/* The 1x3 interior gather of 8-bit inputs: col[3 c + j] = src[c * plane + j] ^ flip for
 * c < n (flip = 0x80 moves int8 to offset binary), returns the sum of what it stored. */
static inline uint32_t iq_pk_gather3(const uint8_t* src, int32_t plane, uint8_t* col, int32_t n,
                                     uint32_t flip)
{
    uint32_t sum = 0;
#ifdef IQ_PK_ASM
    /* 24 cycles per channel: three LDRB/EORS/STRB/ADDS and the loop. */
    uint8_t* end = col + 3 * n;
    uint32_t v;
    if (n > 0) {
        __asm__ volatile(".syntax unified\n\t"
                         "1:\n\t"
                         "ldrb %[v], [%[s], #0]\n\t"
                         "eors %[v], %[f]\n\t"
                         "strb %[v], [%[c], #0]\n\t"
                         "adds %[sum], %[sum], %[v]\n\t"
                         "ldrb %[v], [%[s], #1]\n\t"
                         "eors %[v], %[f]\n\t"
                         "strb %[v], [%[c], #1]\n\t"
                         "adds %[sum], %[sum], %[v]\n\t"
                         "ldrb %[v], [%[s], #2]\n\t"
                         "eors %[v], %[f]\n\t"
                         "strb %[v], [%[c], #2]\n\t"
                         "adds %[sum], %[sum], %[v]\n\t"
                         "adds %[s], %[s], %[p]\n\t"
                         "adds %[c], #3\n\t"
                         "cmp %[c], %[end]\n\t"
                         "bne 1b\n\t"
                         : [sum] "+l"(sum), [v] "=&l"(v), [s] "+l"(src), [c] "+l"(col)
                         : [f] "l"(flip), [p] "l"(plane), [end] "h"(end)
                         : "cc", "memory");
    }
#else
    int32_t i;
    for (i = 0; i < n; ++i, src += plane, col += 3) {
        const uint32_t a = src[0] ^ flip, b = src[1] ^ flip, c = src[2] ^ flip;
        col[0] = (uint8_t)a;
        col[1] = (uint8_t)b;
        col[2] = (uint8_t)c;
        sum += a + b + c;
    }
#endif
    return sum;
}

/* Subset-sum tables of n inputs (n a multiple of 4): t[16 g + m] = sum of col[4 g + i] over
 * the bits i set in m. */
static inline void iq_pk_subset_tables(const uint8_t* col, int32_t n, int16_t* t)
{
#ifdef IQ_PK_ASM
    /* Pairs of entries as words: entry 2i + 1 = entry 2i + x0, so word i = E_i * 0x10001 +
     * (x0 << 16) with E_i the subset sums of (x1, x2, x3); eight words per group, stored four
     * at a time (STM needs the values in r0-r3, ascending). 37 cycles per group. */
    register uint32_t p0 __asm__("r0");
    register uint32_t p1 __asm__("r1");
    register uint32_t p2 __asm__("r2");
    register uint32_t p3 __asm__("r3");
    uint32_t v, y;
    const uint8_t* end = col + n;
    if (n > 0) {
        __asm__ volatile(".syntax unified\n\t"
                         "1:\n\t"
                         "ldrb %[v], [%[c], #0]\n\t"
                         "lsls %[p0], %[v], #16\n\t"
                         "ldrb %[v], [%[c], #1]\n\t"
                         "lsls %[y], %[v], #16\n\t"
                         "adds %[y], %[y], %[v]\n\t"
                         "adds %[p1], %[p0], %[y]\n\t"
                         "ldrb %[v], [%[c], #2]\n\t"
                         "lsls %[y], %[v], #16\n\t"
                         "adds %[y], %[y], %[v]\n\t"
                         "adds %[p2], %[p0], %[y]\n\t"
                         "adds %[p3], %[p1], %[y]\n\t"
                         "stm %[t]!, {r0-r3}\n\t"
                         "ldrb %[v], [%[c], #3]\n\t"
                         "lsls %[y], %[v], #16\n\t"
                         "adds %[y], %[y], %[v]\n\t"
                         "adds %[p0], %[p0], %[y]\n\t"
                         "adds %[p1], %[p1], %[y]\n\t"
                         "adds %[p2], %[p2], %[y]\n\t"
                         "adds %[p3], %[p3], %[y]\n\t"
                         "stm %[t]!, {r0-r3}\n\t"
                         "adds %[c], #4\n\t"
                         "cmp %[c], %[end]\n\t"
                         "bne 1b\n\t"
                         : [p0] "=&l"(p0), [p1] "=&l"(p1), [p2] "=&l"(p2), [p3] "=&l"(p3),
                           [v] "=&l"(v), [y] "=&l"(y), [c] "+l"(col), [t] "+l"(t)
                         : [end] "h"(end)
                         : "cc", "memory");
    }
#else
    const uint8_t* end = col + n;
    for (; col != end; col += 4, t += 16) {
        const int32_t x0 = col[0], x1 = col[1], x2 = col[2], x3 = col[3];
        int32_t i;
        t[0] = 0;
        t[1] = (int16_t)x0;
        t[2] = (int16_t)x1;
        t[3] = (int16_t)(x0 + x1);
        for (i = 0; i < 4; ++i) {
            t[4 + i] = (int16_t)(t[i] + x2);
        }
        for (i = 0; i < 8; ++i) {
            t[8 + i] = (int16_t)(t[i] + x3);
        }
    }
#endif
}

/* Product tables of n inputs for pow2 nibbles: t[16 k + nibble] = value(nibble) * col[k], by
 * shifts (value 2^e or -2^e, e = (nibble & 7) - 1; nibbles 0 and 8 give 0). */
static inline void iq_pk_pow2_tables(const uint8_t* col, int32_t n, int16_t* t)
{
#ifdef IQ_PK_ASM
    /* Words of entry pairs: (0, v), (2v, 4v), (8v, 16v), (32v, 64v) = A0..A3 with
     * A0 = v << 16, A1 = (v << 1) | (v << 18), A2 = A1 << 2, A3 = A2 << 2 (no overlap: 64 v <
     * 2^15); the negated pairs are (0, -v) = -A0 and, for i > 0, (-lo, -hi) = B - A_i with
     * B = 2^16 when v > 0 (the borrow of the low half), 0 when v = 0. 28 cycles per input. */
    register uint32_t p0 __asm__("r0");
    register uint32_t p1 __asm__("r1");
    register uint32_t p2 __asm__("r2");
    register uint32_t p3 __asm__("r3");
    uint32_t v, b;
    const uint8_t* end = col + n;
    if (n > 0) {
        __asm__ volatile(".syntax unified\n\t"
                         "1:\n\t"
                         "ldrb %[v], [%[c], #0]\n\t"
                         "lsls %[p0], %[v], #16\n\t"
                         "lsls %[p1], %[v], #17\n\t"
                         "adds %[p1], %[p1], %[v]\n\t"
                         "lsls %[p1], %[p1], #1\n\t"
                         "lsls %[p2], %[p1], #2\n\t"
                         "lsls %[p3], %[p2], #2\n\t"
                         "stm %[t]!, {r0-r3}\n\t"
                         "negs %[b], %[v]\n\t"
                         "asrs %[b], %[b], #31\n\t"
                         "lsls %[b], %[b], #16\n\t"
                         "negs %[b], %[b]\n\t"
                         "negs %[p0], %[p0]\n\t"
                         "subs %[p1], %[b], %[p1]\n\t"
                         "subs %[p2], %[b], %[p2]\n\t"
                         "subs %[p3], %[b], %[p3]\n\t"
                         "stm %[t]!, {r0-r3}\n\t"
                         "adds %[c], #1\n\t"
                         "cmp %[c], %[end]\n\t"
                         "bne 1b\n\t"
                         : [p0] "=&l"(p0), [p1] "=&l"(p1), [p2] "=&l"(p2), [p3] "=&l"(p3),
                           [v] "=&l"(v), [b] "=&l"(b), [c] "+l"(col), [t] "+l"(t)
                         : [end] "h"(end)
                         : "cc", "memory");
    }
#else
    const uint8_t* end = col + n;
    for (; col != end; ++col, t += 16) {
        int32_t v = *col, e;
        t[0] = 0;
        t[8] = 0;
        for (e = 1; e < 8; ++e, v <<= 1) {
            t[e] = (int16_t)v;
            t[8 + e] = (int16_t)-v;
        }
    }
#endif
}

/* sum_j t[32 j + (b_j & 15)] + t[32 j + 16 + (b_j >> 4)] over n bytes b_j: each nibble of a
 * packed row selects one entry of its own 16-entry table (the tables of consecutive nibbles
 * are consecutive). */
static inline int32_t iq_pk_nibble_sum(const int16_t* t, const uint8_t* b, int32_t n)
{
    int32_t s = 0;
#ifdef IQ_PK_ASM
    /* Per byte: LDRB, two nibble indices (2 instructions each, no mask register), two
     * register-offset LDRSH from the low- and high-nibble tables, two adds, and both table
     * pointers move on by 64 bytes: 14 cycles; four bytes per iteration. */
    const int16_t* t2 = t + 16;
    const uint8_t* end4 = b + (n & ~3);
    const uint8_t* end = b + n;
    uint32_t v, u;
#define IQ_PK_NIB_BYTE(off)                                                                    \
    "ldrb %[v], [%[b], #" #off "]\n\t"                                                         \
    "lsls %[u], %[v], #28\n\t"                                                                 \
    "lsrs %[u], %[u], #27\n\t"                                                                 \
    "ldrsh %[u], [%[t], %[u]]\n\t"                                                             \
    "adds %[s], %[s], %[u]\n\t"                                                                \
    "lsrs %[u], %[v], #4\n\t"                                                                  \
    "lsls %[u], %[u], #1\n\t"                                                                  \
    "ldrsh %[u], [%[t2], %[u]]\n\t"                                                            \
    "adds %[s], %[s], %[u]\n\t"                                                                \
    "adds %[t], #64\n\t"                                                                       \
    "adds %[t2], #64\n\t"
    if (b != end4) {
        __asm__ volatile(".syntax unified\n\t"
                         "1:\n\t" IQ_PK_NIB_BYTE(0) IQ_PK_NIB_BYTE(1) IQ_PK_NIB_BYTE(2)
                             IQ_PK_NIB_BYTE(3) "adds %[b], #4\n\t"
                                               "cmp %[b], %[end]\n\t"
                                               "bne 1b\n\t"
                         : [s] "+l"(s), [v] "=&l"(v), [u] "=&l"(u), [t] "+l"(t), [t2] "+l"(t2),
                           [b] "+l"(b)
                         : [end] "h"(end4)
                         : "cc", "memory");
    }
    while (b != end) {
        __asm__ volatile(".syntax unified\n\t" IQ_PK_NIB_BYTE(0) "adds %[b], #1\n\t"
                         : [s] "+l"(s), [v] "=&l"(v), [u] "=&l"(u), [t] "+l"(t), [t2] "+l"(t2),
                           [b] "+l"(b)
                         :
                         : "cc", "memory");
    }
#undef IQ_PK_NIB_BYTE
#else
    const uint8_t* end = b + n;
    for (; b != end; ++b, t += 32) {
        const uint32_t v = *b;
        s += t[v & 15u] + t[16u + (v >> 4)];
    }
#endif
    return s;
}

/* Four channels at once: s[j] += sum_u t[16 u + nibble_j(h[u])] over n units, h[u] holding
 * the nibbles of channels 0-3 (channel j in bits 4j..4j+3) that index table u. The channels
 * share every table pointer step and every weight load. */
static inline void iq_pk_block4_sum(const int16_t* t, const uint16_t* h, int32_t n,
                                    int32_t s[4])
{
#ifdef IQ_PK_ASM
    /* Per unit: LDRH, then per channel two instructions for the index, LDRSH, ADD into a
     * high-register accumulator: 23 cycles for four lookups, two units per iteration. */
    uint32_t a0 = (uint32_t)s[0], a1 = (uint32_t)s[1], a2 = (uint32_t)s[2], a3 = (uint32_t)s[3];
    const uint16_t* end2 = h + (n & ~1);
    const uint32_t mask = 0x1Eu;
    uint32_t v, x;
#define IQ_PK_B4_LOOK(op, sh, acc)                                                             \
    #op " %[x], %[v], #" #sh "\n\t"                                                              \
    "ands %[x], %[m]\n\t"                                                                        \
    "ldrsh %[x], [%[t], %[x]]\n\t"                                                               \
    "add %[" #acc "], %[x]\n\t"
#define IQ_PK_B4_UNIT(off)                                                                     \
    "ldrh %[v], [%[h], #" #off "]\n\t" IQ_PK_B4_LOOK(lsls, 1, a0) IQ_PK_B4_LOOK(lsrs, 3, a1)  \
        IQ_PK_B4_LOOK(lsrs, 7, a2) IQ_PK_B4_LOOK(lsrs, 11, a3) "adds %[t], #32\n\t"
    if (h != end2) {
        __asm__ volatile(".syntax unified\n\t"
                         "1:\n\t" IQ_PK_B4_UNIT(0) IQ_PK_B4_UNIT(2) "adds %[h], #4\n\t"
                                                                     "cmp %[h], %[end]\n\t"
                                                                     "bne 1b\n\t"
                         : [a0] "+h"(a0), [a1] "+h"(a1), [a2] "+h"(a2), [a3] "+h"(a3),
                           [v] "=&l"(v), [x] "=&l"(x), [t] "+l"(t), [h] "+l"(h)
                         : [m] "l"(mask), [end] "l"(end2)
                         : "cc", "memory");
    }
    if (n & 1) {
        __asm__ volatile(".syntax unified\n\t" IQ_PK_B4_UNIT(0)
                         : [a0] "+h"(a0), [a1] "+h"(a1), [a2] "+h"(a2), [a3] "+h"(a3),
                           [v] "=&l"(v), [x] "=&l"(x), [t] "+l"(t)
                         : [m] "l"(mask), [h] "l"(h)
                         : "cc", "memory");
    }
#undef IQ_PK_B4_UNIT
#undef IQ_PK_B4_LOOK
    s[0] = (int32_t)a0;
    s[1] = (int32_t)a1;
    s[2] = (int32_t)a2;
    s[3] = (int32_t)a3;
#else
    int32_t u, j;
    for (u = 0; u < n; ++u, t += 16) {
        for (j = 0; j < 4; ++j) {
            s[j] += t[(h[u] >> (4 * j)) & 15u];
        }
    }
#endif
}

/* Eight channels of int4 weights in lanes (see the top of the file): s[c] += sum_k wu*xu for
 * n inputs, w holding one interleaved word per input. Split every 16 inputs. */
static inline void iq_pk_int4_lanes8(const uint8_t* col, const uint32_t* w, int32_t n,
                                     int32_t s[8])
{
    int32_t k = 0;
    while (k < n) {
        const int32_t end = (n - k > 16) ? k + 16 : n;
        uint32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#ifdef IQ_PK_ASM
        /* Per input: LDRB x, LDR word, then per channel pair two instructions isolate the two
         * nibbles into their lanes, one MULS, one ADD into a high-register accumulator:
         * 20 cycles for eight MACs; four inputs per iteration. */
        const uint8_t* c = col + k;
        const uint8_t* c_end4 = c + ((end - k) & ~3);
        const uint8_t* c_end = col + end;
        const uint32_t* wk = w + k;
        const uint32_t mask = 0x000F000Fu;
        uint32_t xv, wv, t;
#define IQ_PK_LANE(shift, acc)                                                                 \
    "lsrs %[t], %[wv], #" #shift "\n\t"                                                          \
    "ands %[t], %[m]\n\t"                                                                        \
    "muls %[t], %[xv], %[t]\n\t"                                                                 \
    "add %[" #acc "], %[t]\n\t"
#define IQ_PK_LANES_K(xo, wo)                                                                  \
    "ldrb %[xv], [%[c], #" #xo "]\n\t"                                                           \
    "ldr %[wv], [%[w], #" #wo "]\n\t"                                                            \
    "movs %[t], %[wv]\n\t"                                                                       \
    "ands %[t], %[m]\n\t"                                                                        \
    "muls %[t], %[xv], %[t]\n\t"                                                                 \
    "add %[a0], %[t]\n\t" IQ_PK_LANE(4, a1) IQ_PK_LANE(8, a2) IQ_PK_LANE(12, a3)
        if (c != c_end4) {
            __asm__ volatile(".syntax unified\n\t"
                             "1:\n\t" IQ_PK_LANES_K(0, 0) IQ_PK_LANES_K(1, 4) IQ_PK_LANES_K(2, 8)
                                 IQ_PK_LANES_K(3, 12) "adds %[c], #4\n\t"
                                                      "adds %[w], #16\n\t"
                                                      "cmp %[c], %[end]\n\t"
                                                      "bne 1b\n\t"
                             : [a0] "+h"(a0), [a1] "+h"(a1), [a2] "+h"(a2), [a3] "+h"(a3),
                               [xv] "=&l"(xv), [wv] "=&l"(wv), [t] "=&l"(t), [c] "+l"(c),
                               [w] "+l"(wk)
                             : [m] "l"(mask), [end] "l"(c_end4)
                             : "cc", "memory");
        }
        while (c != c_end) {
            __asm__ volatile(".syntax unified\n\t" IQ_PK_LANES_K(0, 0) "adds %[c], #1\n\t"
                                                                        "adds %[w], #4\n\t"
                             : [a0] "+h"(a0), [a1] "+h"(a1), [a2] "+h"(a2), [a3] "+h"(a3),
                               [xv] "=&l"(xv), [wv] "=&l"(wv), [t] "=&l"(t), [c] "+l"(c),
                               [w] "+l"(wk)
                             : [m] "l"(mask)
                             : "cc", "memory");
        }
#undef IQ_PK_LANES_K
#undef IQ_PK_LANE
        k = end;
#else
        for (; k < end; ++k) {
            const uint32_t xv = col[k], wv = w[k];
            a0 += (wv & 0x000F000Fu) * xv;
            a1 += ((wv >> 4) & 0x000F000Fu) * xv;
            a2 += ((wv >> 8) & 0x000F000Fu) * xv;
            a3 += ((wv >> 12) & 0x000F000Fu) * xv;
        }
#endif
        s[0] += (int32_t)(a0 & 0xFFFFu);
        s[1] += (int32_t)(a0 >> 16);
        s[2] += (int32_t)(a1 & 0xFFFFu);
        s[3] += (int32_t)(a1 >> 16);
        s[4] += (int32_t)(a2 & 0xFFFFu);
        s[5] += (int32_t)(a2 >> 16);
        s[6] += (int32_t)(a3 & 0xFFFFu);
        s[7] += (int32_t)(a3 >> 16);
    }
}

/* w * v for code k of a packed row without a multiply (but for int4): every code of the
 * other formats is 0 or +-2^e, and w * v = (((v << e) & m) ^ s) - s with m = 0 for a zero
 * code (else all ones) and s = -1 for a negative one (else 0). */
static inline int32_t iq_pk_times(int32_t format, const uint8_t* row, int32_t k, int32_t kk,
                                  int32_t v)
{
    int32_t e, m, s;
    if (format == IQ_PK_INT4 || format == IQ_PK_POW2) {
        const int32_t n = (row[k >> 1] >> ((k & 1) << 2)) & 15, f = n & 7;
        if (format == IQ_PK_INT4) {
            return ((n ^ 8) - 8) * v;
        }
        m = -(int32_t)(f != 0);
        e = (f - 1) & 7;
        s = -(n >> 3);
    } else {
        const int32_t b0 = (row[k >> 3] >> (k & 7)) & 1;
        if (format == IQ_PK_BINARY) {
            m = -1;
            e = 0;
            s = b0 - 1;
        } else {
            const int32_t b1 = (row[((kk + 7) >> 3) + (k >> 3)] >> (k & 7)) & 1;
            m = -(b0 | b1);
            e = b1 & (b0 ^ 1);
            s = -b1;
        }
    }
    return ((((int32_t)((uint32_t)v << e)) & m) ^ s) - s;
}

#endif /* IQ_CONV_PACKED_H */
