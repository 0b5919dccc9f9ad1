/*
 * Binary (BNN / XNOR-Net) kernels: what binary_conv, binary_fully_connected and sign_conv
 * share — packed-bit helpers, XOR + popcount, and the output stage.
 *
 * Layout (intquant/ops/_bits.py is the specification): a value -1 is a set bit, +1 a clear
 * bit, bits fill 32-bit words from the most significant bit down. A "bit" tensor stores each
 * pixel's channels in ceil(C/32) whole words (unused low bits 0); a binary layer's weights are,
 * per output channel, its receptive field in (kh, kw, Cin) order as one zero-padded bit stream.
 * Since padding bits are 0 on both sides, popcount(field ^ weights) counts the mismatching
 * +-1 pairs exactly and sum x*w = n - 2 * popcount.
 */
#ifndef IQ_BINARY_H
#define IQ_BINARY_H

#include "iq_kernels.h"

/* The output stage of a binary layer (ops/_binary.py): with bits = 1, out = +1 if
 * acc >= threshold[c] else -1, packed (binary_conv / binary_fully_connected keep the
 * threshold in their weight stream instead, see iq_binary_pixel_bits); with bits = 0,
 * out = clamp(requantize(acc + bias[c]) + output_zero_point, act_min, act_max) stored as
 * out_dtype. small = 1: single rounding with |acc + bias| < 2^15 and shifts in [-15, 14], so
 * iq_mbqm_single_small applies to every channel. */
typedef struct {
    int32_t bits;
    const int32_t* threshold;
    const int32_t* bias;
    const int32_t* multiplier;
    const int32_t* shift;
    int32_t mode, small, output_zero_point, act_min, act_max, out_dtype;
} iq_binary_out_t;

/* One receptive field against every output channel (intquant/ops/_binary_asm.py): the
 * generated Cortex-M0 instance or the portable loop below. */
typedef void (*iq_binary_pixel_fn)(const uint32_t* field, const uint32_t* w, void* out,
                                   int32_t cout);

/* Words per pixel of a packed tensor with c channels. */
static inline int32_t iq_bit_words(int32_t c)
{
    return (c + 31) >> 5;
}

/* The bit of value j of a word (MSB first). */
static inline uint32_t iq_bit_at(int32_t j)
{
    return 0x80000000u >> (j & 31);
}

static inline uint32_t iq_popcount32(uint32_t v)
{
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0F0F0F0Fu;
    return (v * 0x01010101u) >> 24;
}

/* sum_j popcount(a[j] ^ b[j]) over n words. */
static inline int32_t iq_xor_popcount(const uint32_t* a, const uint32_t* b, int32_t n)
{
    int32_t j, pop = 0;
    for (j = 0; j < n; ++j) {
        pop += (int32_t)iq_popcount32(a[j] ^ b[j]);
    }
    return pop;
}

/* sum_j popcount((a[j] ^ b[j]) & m[j]): the taps a mask keeps (border pixels). */
static inline int32_t iq_xor_popcount_masked(const uint32_t* a, const uint32_t* b,
                                             const uint32_t* m, int32_t n)
{
    int32_t j, pop = 0;
    for (j = 0; j < n; ++j) {
        pop += (int32_t)iq_popcount32((a[j] ^ b[j]) & m[j]);
    }
    return pop;
}

/* OR the n values (n >= 0) of src, MSB first, into the bit stream dst at bit position pos.
 * dst must be zero there; src's bits beyond n within its last word must be 0. */
static inline void iq_bits_append(uint32_t* dst, int32_t pos, const uint32_t* src, int32_t n)
{
    while (n > 0) {
        uint32_t v = *src++;
        int32_t take = n < 32 ? n : 32;
        int32_t wi = pos >> 5, off = pos & 31;
        dst[wi] |= v >> off;
        if (off + take > 32) {
            dst[wi + 1] |= v << (32 - off);
        }
        pos += take;
        n -= take;
    }
}

/* Set n bits of the stream dst from bit position pos. */
static inline void iq_bits_set(uint32_t* dst, int32_t pos, int32_t n)
{
    while (n > 0) {
        int32_t take = n < 32 ? n : 32;
        uint32_t ones = take == 32 ? 0xFFFFFFFFu : ~(0xFFFFFFFFu >> take);
        int32_t wi = pos >> 5, off = pos & 31;
        dst[wi] |= ones >> off;
        if (off + take > 32) {
            dst[wi + 1] |= ones << (32 - off);
        }
        pos += take;
        n -= take;
    }
}

/* CMSIS-NN single rounding (iq_mbqm_single) for |x| < 2^15 and 17 <= t = 31 - shift <= 46
 * without a 64-bit product: with m = mh * 2^16 + ml,
 *   floor((x*m + 2^(t-1)) / 2^t) = floor((x*mh + 2^(t-17) + floor(x*ml / 2^16)) / 2^(t-16)),
 * (floor division by 2^16 then 2^(t-16) nests exactly), and every term fits int32:
 * |x*mh| < 2^30, |x*ml| < 2^31, 2^(t-17) <= 2^29. The result is < 2^29 in magnitude, so the
 * int32 saturation of iq_mbqm_single never applies: bit-identical. */
static inline int32_t iq_mbqm_single_small(int32_t x, int32_t m, int32_t shift)
{
    int32_t t = 31 - shift;
    int32_t hi = x * (m >> 16);
    int32_t lo = (x * (m & 0xFFFF)) >> 16;
    return (hi + (1 << (t - 17)) + lo) >> (t - 16);
}

/* Requantizing output stage of channel c: the value to store. */
static inline int32_t iq_binary_requant(const iq_binary_out_t* o, int32_t c, int32_t acc)
{
    int32_t r;
    if (o->small) {
        r = iq_mbqm_single_small(acc + o->bias[c], o->multiplier[c], o->shift[c]);
    } else {
        r = iq_apply_multiplier((int64_t)acc + o->bias[c], o->multiplier[c], o->shift[c],
                                o->mode);
    }
    return iq_add_zero_point_and_clamp(r, o->output_zero_point, o->act_min, o->act_max);
}

/* Output stage of channel c (channels in increasing order, c = last ends the pixel): a bit
 * output ORs the channel's bit (acc < threshold[c]) into *word and stores each finished
 * 32-channel word at y_bits[c / 32]; an 8/16-bit output stores the requantized value at
 * y_vals[index]. */
static inline void iq_binary_emit(const iq_binary_out_t* o, int32_t c, int32_t last,
                                  int32_t acc, int32_t threshold, uint32_t* word,
                                  uint32_t* y_bits, void* y_vals, int32_t index)
{
    if (!o->bits) {
        iq_store(y_vals, index, o->out_dtype, iq_binary_requant(o, c, acc));
        return;
    }
    if (acc < threshold) {
        *word |= iq_bit_at(c);
    }
    if ((c & 31) == 31 || c == last) {
        y_bits[c >> 5] = *word;
        *word = 0;
    }
}

/* Portable pixel kernels (the contract of the generated Cortex-M0 instances).
 * Bits: w holds per channel k words then R = n + 1 - threshold; bit c (value -1) is set when
 * 2 * popcount(f ^ w_c) >= R, i.e. acc = n - 2 * pop < threshold; ceil(cout/32) words out. */
static inline void iq_binary_pixel_bits(const uint32_t* f, const uint32_t* w, uint32_t* y,
                                        int32_t cout, int32_t k)
{
    int32_t c;
    uint32_t word = 0;
    for (c = 0; c < cout; ++c, w += k + 1) {
        uint32_t pop2 = 2u * (uint32_t)iq_xor_popcount(f, w, k);
        if (pop2 >= w[k]) {
            word |= iq_bit_at(c);
        }
        if ((c & 31) == 31 || c == cout - 1) {
            y[c >> 5] = word;
            word = 0;
        }
    }
}

/* Pops: pops[c] = popcount(f ^ w_c) over the first k of every `stride` words. */
static inline void iq_binary_pixel_pops(const uint32_t* f, const uint32_t* w, uint16_t* pops,
                                        int32_t cout, int32_t k, int32_t stride)
{
    int32_t c;
    for (c = 0; c < cout; ++c, w += stride) {
        pops[c] = (uint16_t)iq_xor_popcount(f, w, k);
    }
}

/* Masked pops: f is followed by a k-word mask; pops[c] = popcount((f ^ w_c) & mask). */
static inline void iq_binary_pixel_masked_pops(const uint32_t* f, const uint32_t* w,
                                               uint16_t* pops, int32_t cout, int32_t k,
                                               int32_t stride)
{
    int32_t c;
    for (c = 0; c < cout; ++c, w += stride) {
        pops[c] = (uint16_t)iq_xor_popcount_masked(f, w, f + k, k);
    }
}

/* The requantizing stage over a pixel's popcounts: out[c * plane] = stage(n - 2 * pops[c]).
 * The single-rounding small-accumulator case (the usual one after QAT) is kept in registers. */
static inline void iq_binary_requant_pixel(const iq_binary_out_t* o, const uint16_t* pops,
                                           int32_t n, int32_t cout, void* y, int32_t index,
                                           int32_t plane)
{
    int32_t c;
    if (o->small && o->out_dtype == IQ_S8) {
        const int32_t* bias = o->bias;
        const int32_t* mult = o->multiplier;
        const int32_t* shift = o->shift;
        int32_t zp = o->output_zero_point, lo = o->act_min, hi = o->act_max;
        int8_t* out = (int8_t*)y + index;
        for (c = 0; c < cout; ++c, out += plane) {
            int32_t r = iq_mbqm_single_small(n - 2 * pops[c] + bias[c], mult[c], shift[c]) + zp;
            *out = (int8_t)(r < lo ? lo : (r > hi ? hi : r));
        }
        return;
    }
    for (c = 0; c < cout; ++c) {
        iq_store(y, c * plane + index, o->out_dtype, iq_binary_requant(o, c, n - 2 * pops[c]));
    }
}

#endif /* IQ_BINARY_H */
