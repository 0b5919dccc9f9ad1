/* max_pool (intquant/ops/max_pool.py). */
#include "iq_max_pool.h"

/* max_pool on int8 tensors (uint8 could be instantiated alike): typed loads, only the in-bounds taps visited (the same maximum:
 * padding never wins), parameters in locals. */
#define IQ_DEFINE_MAX_POOL8(fn, T)                                                            \
    static void fn(const iq_pool_params_t* p, const T* x, T* y)                                \
    {                                                                                          \
        const int32_t in_h = p->in_h, in_w = p->in_w, k_h = p->k_h, k_w = p->k_w;             \
        const int32_t dil_h = p->dil_h, dil_w = p->dil_w, lo = p->act_min, hi = p->act_max;   \
        int32_t c, oy, ox, ky, kx, ky_lo, ky_hi, kx_lo, kx_hi;                                 \
        for (c = 0; c < p->channels; ++c) {                                                    \
            const T* plane = x + c * in_h * in_w;                                              \
            for (oy = 0; oy < p->out_h; ++oy) {                                                \
                const int32_t y0 = oy * p->stride_h - p->pad_top;                              \
                iq_window_taps(y0, k_h, dil_h, in_h, &ky_lo, &ky_hi);                          \
                for (ox = 0; ox < p->out_w; ++ox) {                                            \
                    const int32_t x0 = ox * p->stride_w - p->pad_left;                         \
                    int32_t best = INT32_MIN;                                                  \
                    iq_window_taps(x0, k_w, dil_w, in_w, &kx_lo, &kx_hi);                      \
                    for (ky = ky_lo; ky < ky_hi; ++ky) {                                       \
                        const T* row = plane + (y0 + ky * dil_h) * in_w + x0;                  \
                        for (kx = kx_lo; kx < kx_hi; ++kx) {                                   \
                            const int32_t v = row[kx * dil_w];                                 \
                            best = v > best ? v : best;                                        \
                        }                                                                      \
                    }                                                                          \
                    *y++ = (T)(best < lo ? lo : (best > hi ? hi : best));                      \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

IQ_DEFINE_MAX_POOL8(iq_max_pool_s8, int8_t)

void iq_max_pool(const iq_pool_params_t* p, const void* x, void* y, int32_t dtype)
{
    int32_t c, oy, ox, ky, kx;
    int32_t out_index = 0;
    if (dtype == IQ_S8) {
        iq_max_pool_s8(p, (const int8_t*)x, (int8_t*)y);
        return;
    }
    for (c = 0; c < p->channels; ++c) {
        const int32_t plane = c * p->in_h * p->in_w;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                int32_t y0 = oy * p->stride_h - p->pad_top;
                int32_t x0 = ox * p->stride_w - p->pad_left;
                int32_t best = INT32_MIN;
                for (ky = 0; ky < p->k_h; ++ky) {
                    int32_t iy = y0 + ky * p->dil_h;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->k_w; ++kx) {
                        int32_t ix = x0 + kx * p->dil_w;
                        int32_t v;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        v = iq_load(x, plane + iy * p->in_w + ix, dtype);
                        best = v > best ? v : best;
                    }
                }
                iq_store(y, out_index++, dtype, iq_clamp_i32(best, p->act_min, p->act_max));
            }
        }
    }
}
