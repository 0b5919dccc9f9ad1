/*
 * intquant kernels for the ops that are not multiply-accumulate hot spots: add, rescale,
 * clamp, lut, max/avg pool, softmax, concat, pad, transpose. Each follows the matching
 * section of docs/intgraph.md line by line. Integers only.
 */
#include "iq_dot.h"
#include "iq_kernels.h"

/* One out-of-line copy of the (asm, on Cortex-M0) requantization for the elementwise ops:
 * three inlined copies per add loop cost flash for little speed. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int32_t iq_mbqm_double_call(int32_t x, int32_t m, int32_t shift)
{
    return iq_mbqm_double(x, m, shift);
}

/* iq_add for int8 tensors in double-rounding mode (residual adds of int8 networks): the same
 * arithmetic with the dtype dispatch hoisted out of the loop and the 8-bit output stage
 * (iq_out_clamp, equal to iq_add_zero_point_and_clamp for activation-range bounds). */
static void iq_add_s8_double(const iq_add_params_t* p, const int8_t* a, const int8_t* b,
                             int8_t* y, int32_t n)
{
    const int32_t ls = p->left_shift, za = p->a_zero_point, zb = p->b_zero_point;
    const int32_t am = p->a_multiplier, as = p->a_shift, bm = p->b_multiplier;
    const int32_t bs = p->b_shift, om = p->output_multiplier, os = p->output_shift;
    const iq_out_stage_t o = iq_out_stage(p->output_zero_point, p->act_min, p->act_max);
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t av = iq_mbqm_double_call((a[i] - za) * (1 << ls), am, as);
        const int32_t bv = iq_mbqm_double_call((b[i] - zb) * (1 << ls), bm, bs);
        const int32_t r = iq_mbqm_double_call((int32_t)((int64_t)av + bv), om, os);
        y[i] = (int8_t)iq_out_clamp(r, &o);
    }
}

/* TFLM quantized add: both inputs to a common scale (left_shift, own multiplier), sum,
 * then the output multiplier. In-place safe (y may alias a or b). */
void iq_add(const iq_add_params_t* p, const void* a, int32_t a_dtype, const void* b,
            int32_t b_dtype, void* y, int32_t y_dtype, int32_t n)
{
    int32_t i;
    int32_t scale_up = (int32_t)1 << p->left_shift;
    if (p->mode == IQ_RQ_DOUBLE && a_dtype == IQ_S8 && b_dtype == IQ_S8 && y_dtype == IQ_S8) {
        iq_add_s8_double(p, (const int8_t*)a, (const int8_t*)b, (int8_t*)y, n);
        return;
    }
    for (i = 0; i < n; ++i) {
        int32_t av = (iq_load(a, i, a_dtype) - p->a_zero_point) * scale_up;
        int32_t bv = (iq_load(b, i, b_dtype) - p->b_zero_point) * scale_up;
        int32_t as = iq_apply_multiplier(av, p->a_multiplier, p->a_shift, p->mode);
        int32_t bs = iq_apply_multiplier(bv, p->b_multiplier, p->b_shift, p->mode);
        int32_t r = iq_apply_multiplier((int64_t)as + bs, p->output_multiplier,
                                        p->output_shift, p->mode);
        iq_store(y, i, y_dtype,
                 iq_add_zero_point_and_clamp(r, p->output_zero_point, p->act_min, p->act_max));
    }
}

/* Change of quantization parameters: mbqm((x << ls) - zps) + z_out. In-place safe when the
 * output element is not wider than the input element. */
void iq_rescale(const iq_rescale_params_t* p, const void* x, int32_t x_dtype, void* y,
                int32_t y_dtype, int32_t n)
{
    int32_t i;
    int32_t scale_up = (int32_t)1 << p->left_shift;
    for (i = 0; i < n; ++i) {
        int32_t v = iq_load(x, i, x_dtype) * scale_up - p->input_zero_point_shifted;
        int32_t r = iq_apply_multiplier(v, p->multiplier, p->shift, p->mode);
        iq_store(y, i, y_dtype,
                 iq_add_zero_point_and_clamp(r, p->output_zero_point, p->act_min, p->act_max));
    }
}

void iq_clamp(const void* x, int32_t x_dtype, void* y, int32_t y_dtype, int32_t n,
              int32_t act_min, int32_t act_max)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        iq_store(y, i, y_dtype, iq_clamp_i32(iq_load(x, i, x_dtype), act_min, act_max));
    }
}

/* 8-bit input: out = table[x + 128] (int8) or table[x] (uint8). */
void iq_lut8(const void* x, int32_t x_dtype, const void* table, int32_t table_dtype, void* y,
             int32_t y_dtype, int32_t n, int32_t act_min, int32_t act_max)
{
    int32_t i;
    int32_t offset = x_dtype == IQ_U8 ? 0 : 128;
    for (i = 0; i < n; ++i) {
        int32_t v = iq_load(table, iq_load(x, i, x_dtype) + offset, table_dtype);
        iq_store(y, i, y_dtype, iq_clamp_i32(v, act_min, act_max));
    }
}

/* 16-bit input: 513-entry table, linear interpolation on the low 7 bits (floor shift). */
void iq_lut16(const int16_t* x, const int32_t* table, void* y, int32_t y_dtype, int32_t n,
              int32_t act_min, int32_t act_max)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        int32_t u = (int32_t)x[i] + 32768;
        int32_t k = u >> 7;
        int32_t f = u & 127;
        int64_t delta = ((int64_t)table[k + 1] - table[k]) * f + 64;
        int64_t v = (int64_t)table[k] + (delta >> 7);
        v = v < act_min ? act_min : (v > act_max ? act_max : v);
        iq_store(y, i, y_dtype, (int32_t)v);
    }
}

/* Window bounds [lo, hi) of the valid taps of one output position along one axis. */
static int32_t iq_window_count(int32_t start, int32_t k, int32_t dil, int32_t size)
{
    int32_t t, count = 0;
    for (t = 0; t < k; ++t) {
        int32_t pos = start + t * dil;
        count += (pos >= 0 && pos < size) ? 1 : 0;
    }
    return count;
}

/* Taps [lo, hi) of a window axis that land inside the input (no division: windows are short). */
static void iq_window_taps(int32_t start, int32_t k, int32_t dil, int32_t size, int32_t* lo,
                           int32_t* hi)
{
    int32_t a = 0, b = k;
    while (a < k && start + a * dil < 0) {
        ++a;
    }
    while (b > a && start + (b - 1) * dil >= size) {
        --b;
    }
    *lo = a;
    *hi = b;
}

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

/* exp(-(d)) from the offline table, linear interpolation on the low lut_shift bits. */
static int64_t iq_softmax_exp(const iq_softmax_params_t* p, const int32_t* table, int32_t d)
{
    int32_t i = d >> p->lut_shift;
    int32_t f = d & (((int32_t)1 << p->lut_shift) - 1);
    int64_t e0;
    if (i >= p->table_len - 1) {
        return 0;
    }
    e0 = table[i];
    return e0 + ((((int64_t)table[i + 1] - e0) * f) >> p->lut_shift);
}

void iq_softmax(const iq_softmax_params_t* p, const int32_t* exp_table, const void* x,
                int32_t x_dtype, void* y, int32_t y_dtype)
{
    int32_t r, i;
    for (r = 0; r < p->rows; ++r) {
        const int32_t base = r * p->row_len;
        int32_t max_v = INT32_MIN;
        int64_t sum = 0;
        for (i = 0; i < p->row_len; ++i) {
            int32_t v = iq_load(x, base + i, x_dtype);
            max_v = v > max_v ? v : max_v;
        }
        for (i = 0; i < p->row_len; ++i) {
            sum += iq_softmax_exp(p, exp_table, max_v - iq_load(x, base + i, x_dtype));
        }
        /* The outputs are written after the sum, so y may not alias x: the row is re-read. */
        for (i = 0; i < p->row_len; ++i) {
            int64_t e = iq_softmax_exp(p, exp_table, max_v - iq_load(x, base + i, x_dtype));
            int64_t q = (2 * e * p->output_range + sum) / (2 * sum);
            int32_t v = iq_clamp_i32((int32_t)q + p->output_zero_point, p->act_min, p->act_max);
            iq_store(y, base + i, y_dtype, v);
        }
    }
}

/* Copy one concat input into its slice of the output: `outer` blocks of inner_x elements
 * land at offset + k * inner_y. */
void iq_concat_part(void* y, const void* x, int32_t outer, int32_t inner_x, int32_t inner_y,
                    int32_t offset, int32_t elem_size)
{
    int32_t k;
    uint8_t* dst = (uint8_t*)y + (size_t)offset * (size_t)elem_size;
    const uint8_t* src = (const uint8_t*)x;
    for (k = 0; k < outer; ++k) {
        memcpy(dst, src, (size_t)inner_x * (size_t)elem_size);
        dst += (size_t)inner_y * (size_t)elem_size;
        src += (size_t)inner_x * (size_t)elem_size;
    }
}

void iq_pad(const void* x, void* y, const int32_t in_shape[4], const int32_t out_shape[4],
            const int32_t before[4], int32_t dtype, int32_t value)
{
    int32_t i, a, b, c;
    int32_t es = iq_dtype_size(dtype);
    int32_t total = out_shape[0] * out_shape[1] * out_shape[2] * out_shape[3];
    for (i = 0; i < total; ++i) {
        iq_store(y, i, dtype, value);
    }
    for (a = 0; a < in_shape[0]; ++a) {
        for (b = 0; b < in_shape[1]; ++b) {
            for (c = 0; c < in_shape[2]; ++c) {
                int32_t src = ((a * in_shape[1] + b) * in_shape[2] + c) * in_shape[3];
                int32_t dst = (((a + before[0]) * out_shape[1] + b + before[1]) * out_shape[2] +
                               c + before[2]) * out_shape[3] + before[3];
                memcpy((uint8_t*)y + (size_t)dst * (size_t)es,
                       (const uint8_t*)x + (size_t)src * (size_t)es,
                       (size_t)in_shape[3] * (size_t)es);
            }
        }
    }
}

/* y[j0, j1, j2, j3] = x[...] with out dim d = in dim perm[d]. */
void iq_transpose(const void* x, void* y, const int32_t in_shape[4], const int32_t perm[4],
                  int32_t elem_size)
{
    int32_t in_stride[4], out_shape[4], step[4], idx[4];
    int32_t d, j0, j1, j2, j3, o = 0;
    in_stride[3] = 1;
    for (d = 2; d >= 0; --d) {
        in_stride[d] = in_stride[d + 1] * in_shape[d + 1];
    }
    for (d = 0; d < 4; ++d) {
        out_shape[d] = in_shape[perm[d]];
        step[d] = in_stride[perm[d]];
    }
    for (j0 = 0; j0 < out_shape[0]; ++j0) {
        for (j1 = 0; j1 < out_shape[1]; ++j1) {
            for (j2 = 0; j2 < out_shape[2]; ++j2) {
                for (j3 = 0; j3 < out_shape[3]; ++j3) {
                    idx[0] = j0 * step[0] + j1 * step[1] + j2 * step[2] + j3 * step[3];
                    if (elem_size == 2) {
                        ((int16_t*)y)[o] = ((const int16_t*)x)[idx[0]];
                    } else {
                        ((int8_t*)y)[o] = ((const int8_t*)x)[idx[0]];
                    }
                    ++o;
                }
            }
        }
    }
}
