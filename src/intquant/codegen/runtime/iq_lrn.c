/*
 * intquant kernel: local response normalization across channels (IntGraph op `lrn`,
 * docs/intgraph.md). Integers only; bit-identical to interpreter.run_lrn.
 *
 * Per element: S = sum of d^2 over the channel window (64 bits; each d^2 as an unsigned 32-bit
 * product, no 64-bit multiply), the Q30 factor f(S) linearly interpolated between 513 knots,
 * g = SRDHM(d * 2^left_shift, f), then one TFLM double-rounding requantization.
 * The window is summed directly (size multiply-adds per element): LRN layers are a few
 * hundred thousand elements next to convolutions of hundreds of millions of MACs.
 */
#include "iq_lrn.h"

/* |d|^2 as an exact unsigned product: |d| <= 65535 for every activation dtype. */
static inline uint32_t iq_square_u32(int32_t d)
{
    uint32_t a = d < 0 ? 0u - (uint32_t)d : (uint32_t)d;
    return a * a;
}

/* table[i] + floor((table[i+1] - table[i]) * r / 2^shift), i = S >> shift, r = S mod 2^shift. */
static inline int32_t iq_lrn_factor(const int32_t* table, uint64_t s, int32_t shift)
{
    int32_t i = (int32_t)(s >> shift);
    int64_t r = (int64_t)(s & ((((uint64_t)1) << shift) - 1u));
    int32_t t0 = IQ_LOAD_S32(table + i);
    int64_t delta = (int64_t)IQ_LOAD_S32(table + i + 1) - t0;
    return t0 + (int32_t)((delta * r) >> shift);
}

void iq_lrn(const iq_lrn_params_t* p, const int32_t* table, const void* x, int32_t x_dtype,
            void* y, int32_t y_dtype)
{
    int32_t c, j, k;
    int32_t before = (p->size - 1) / 2;
    int32_t after = p->size / 2;
    int32_t scale_up = (int32_t)1 << p->left_shift;
    for (c = 0; c < p->channels; ++c) {
        int32_t lo = c - before < 0 ? 0 : c - before;
        int32_t hi = c + after >= p->channels ? p->channels - 1 : c + after;
        for (k = 0; k < p->inner; ++k) {
            uint64_t s = 0;
            int32_t d, f, g, r;
            for (j = lo; j <= hi; ++j) {
                s += iq_square_u32(iq_load(x, j * p->inner + k, x_dtype) - p->input_zero_point);
            }
            d = iq_load(x, c * p->inner + k, x_dtype) - p->input_zero_point;
            f = iq_lrn_factor(table, s, p->lut_shift);
            g = iq_srdhm(d * scale_up, f); /* |d| * 2^left_shift < 2^31: validated */
            r = iq_mbqm_double(g, p->multiplier, p->shift);
            iq_store(y, c * p->inner + k, y_dtype,
                     iq_add_zero_point_and_clamp(r, p->output_zero_point, p->act_min,
                                                 p->act_max));
        }
    }
}
