/* avg_pool (intquant/ops/avg_pool.py). */
#include "iq_avg_pool.h"

/* The average of one window from the sum of its `valid` in-bounds raw values: padded taps
 * hold the zero point when count_include_pad; divide rounding half away from zero (C division
 * truncates toward zero); clamp. One place for the rule both avg_pool paths share. */
static int32_t iq_avg_of_window(const iq_pool_params_t* p, int32_t sum, int32_t valid)
{
    int32_t count = valid, q;
    if (p->count_include_pad) {
        count = p->k_h * p->k_w;
        sum += (count - valid) * p->zero_point;
    }
    if (count <= 0) {
        count = 1;
    }
    q = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
    return iq_clamp_i32(q, p->act_min, p->act_max);
}

/* avg_pool on int8 tensors: the generic loop below with typed loads over the in-bounds taps
 * only (their count is the product of the two axes' tap counts, as iq_window_count gives). */
static void iq_avg_pool_s8(const iq_pool_params_t* p, const int8_t* x, int8_t* y)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, k_h = p->k_h, k_w = p->k_w;
    const int32_t dil_h = p->dil_h, dil_w = p->dil_w;
    int32_t c, oy, ox, ky, kx, ky_lo, ky_hi, kx_lo, kx_hi;
    for (c = 0; c < p->channels; ++c) {
        const int8_t* plane = x + c * in_h * in_w;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            iq_window_taps(y0, k_h, dil_h, in_h, &ky_lo, &ky_hi);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                int32_t sum = 0, valid;
                iq_window_taps(x0, k_w, dil_w, in_w, &kx_lo, &kx_hi);
                for (ky = ky_lo; ky < ky_hi; ++ky) {
                    const int8_t* row = plane + (y0 + ky * dil_h) * in_w + x0;
                    for (kx = kx_lo; kx < kx_hi; ++kx) {
                        sum += row[kx * dil_w];
                    }
                }
                valid = (ky_hi - ky_lo) * (kx_hi - kx_lo);
                *y++ = (int8_t)iq_avg_of_window(p, sum, valid);
            }
        }
    }
}

/* Sum over the valid window, divide by the count rounding half away from zero. */
void iq_avg_pool(const iq_pool_params_t* p, const void* x, void* y, int32_t dtype)
{
    int32_t c, oy, ox, ky, kx;
    int32_t out_index = 0;
    if (dtype == IQ_S8) {
        iq_avg_pool_s8(p, (const int8_t*)x, (int8_t*)y);
        return;
    }
    for (c = 0; c < p->channels; ++c) {
        const int32_t plane = c * p->in_h * p->in_w;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                int32_t y0 = oy * p->stride_h - p->pad_top;
                int32_t x0 = ox * p->stride_w - p->pad_left;
                int32_t valid = iq_window_count(y0, p->k_h, p->dil_h, p->in_h) *
                                iq_window_count(x0, p->k_w, p->dil_w, p->in_w);
                int32_t sum = 0;
                for (ky = 0; ky < p->k_h; ++ky) {
                    int32_t iy = y0 + ky * p->dil_h;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->k_w; ++kx) {
                        int32_t ix = x0 + kx * p->dil_w;
                        if (ix >= 0 && ix < p->in_w) {
                            sum += iq_load(x, plane + iy * p->in_w + ix, dtype);
                        }
                    }
                }
                iq_store(y, out_index++, dtype, iq_avg_of_window(p, sum, valid));
            }
        }
    }
}
