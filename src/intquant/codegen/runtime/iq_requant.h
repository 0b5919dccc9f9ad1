/*
 * Batched requantization: the outputs of one channel from a run of int32 accumulators, with
 * per-channel constants prepared offline (codegen/requant.py derives them and checks them
 * against the interpreter; the tests run them against it on the host and on Cortex-M0).
 *
 * For every requantization mode of the contract whose real multiplier is at most 1 (all but
 * rare layers), out = clamp(f(acc) + z, lo, hi) with f one floor of a linear function. Moving
 * the clamp onto the accumulator, u = clamp(acc - a_lo, 0, width) gives, exactly,
 *
 *     out = lo + floor((u*M + C + [u >= u0]*2^31) / 2^k)
 *
 * computed with 32-bit operations only. With M = Mh*2^16 + Ml, u = uh*2^16 + ul, C = c_hi*2^16
 * + c_lo and s = 2^15 where the sign term applies:
 *
 *   form 0:  V = u*Mh + uh*Ml + ((ul*Ml + c_lo) >> 16) + c_hi + s,   out = lo + (V >> (k - 16))
 *   form 1:  I = ul*Mh + uh*Ml + ((ul*Ml + c_lo) >> 16) + c_hi + s,
 *            H = uh*Mh + (I >> 16),                                  out = lo + (H >> (k - 32))
 *   form 3:  (power-of-two scales: M is 1, or 0 for a constant channel, C < 2^32 is c_hi and
 *            the sign term is 1)   V = u*M + c_hi + s,               out = lo + (V >> k)
 *
 * Every product has 16-bit factors and every sum is an exact unsigned 32-bit value (requant.py
 * picks the form and checks the bounds per channel). Cortex-M0 has a 32x32->32 multiplier
 * only: this is 3 or 4 MULS instead of a 64-bit product, and the clamp is one unsigned compare.
 * For 8-bit outputs lo mod 256 is folded into c_hi (the byte stored is the output) unless that
 * would overflow (form 2: form 1 plus lo after the shift); for wider outputs lo is added.
 *
 * The runs take acc - a_lo ("u before the clamp"): kernels start their sums from -a_lo.
 */
#ifndef IQ_REQUANT_H
#define IQ_REQUANT_H

#include "iq_runtime.h"

/* One channel, 24 bytes, in flash. */
typedef struct iq_rqw_s {
    int32_t a_lo;   /* accumulator (as the kernel computes it) whose output is act_min */
    uint32_t width; /* u above width gives act_max */
    uint32_t m;     /* M */
    uint32_t c_hi;  /* C >> 16 (8-bit outputs: lo mod 256 folded in) */
    uint32_t u0;    /* u >= u0 <=> the true accumulator >= 0 (sign layers only) */
    uint16_t c_lo;  /* C & 0xFFFF */
    uint8_t sh;     /* k - 16 (form 0), k - 32 (forms 1, 2), k (form 3) */
    uint8_t form;   /* 2: form 1 with lo not folded (added after the shift); 3: shift only */
} iq_rqw_t;

/* iq_rqw_clamp and iq_rqw_value read a record in RAM (IQ_LOAD_OBJ of iq_target.h); the runs
 * below take the IQ_FLASH records themselves. */

/* clamp(u, 0, width) for u = acc - a_lo, |acc - a_lo| < 2^31 (checked offline). */
static inline uint32_t iq_rqw_clamp(int32_t u, const iq_rqw_t* c)
{
    if ((uint32_t)u > c->width) {
        return u < 0 ? 0u : c->width;
    }
    return (uint32_t)u;
}

/* floor((u*M + C + sign) / 2^k) for u in [0, width] (plus lo where folded). */
static inline uint32_t iq_rqw_value(uint32_t u, const iq_rqw_t* c, int32_t sign_layer)
{
    const uint32_t mh = c->m >> 16, ml = c->m & 0xFFFFu;
    if (c->form == 3) { /* c_hi holds + 1: the term for a non-negative accumulator */
        return (u * c->m + c->c_hi - (sign_layer && u < c->u0 ? 1u : 0u)) >> c->sh;
    }
    const uint32_t uh = u >> 16, ul = u & 0xFFFFu;
    uint32_t v = ((ul * ml + c->c_lo) >> 16) + uh * ml + c->c_hi;
    if (sign_layer && u < c->u0) {
        v -= 1u << 15; /* c_hi holds + 2^15: the term for a non-negative accumulator */
    }
    v = c->form == 0 ? v + u * mh : uh * mh + ((v + ul * mh) >> 16);
    return v >> c->sh;
}

/* out[i * step] = the 8-bit output of u[i] (acc - a_lo), i < n, for one channel (constants
 * *rq) whose act_min is lo. */
void iq_rqw_run8(const int32_t* u, int32_t n, const iq_rqw_t* rq, int32_t lo, int32_t sign_layer,
                 uint8_t* out, int32_t step);
/* out[t * out_step] = the 8-bit output of u[t * u_step] with channel t's constants rq[t],
 * t < n: the outputs of several channels at one position (a fully_connected layer, short
 * tiles), constants loaded per output. */
void iq_rqw_channels8(const int32_t* u, int32_t n, int32_t u_step, const iq_rqw_t* rq,
                      int32_t lo, int32_t sign_layer, uint8_t* out, int32_t out_step);
/* The same for 16-bit outputs (lo mod 2^16 folded, or form 2). */
void iq_rqw_run16(const int32_t* u, int32_t n, const iq_rqw_t* rq, int32_t lo,
                  int32_t sign_layer, int16_t* out, int32_t step);

#endif /* IQ_REQUANT_H */
