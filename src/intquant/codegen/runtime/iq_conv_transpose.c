/* conv_transpose (intquant/ops/conv_transpose.py), gather form: output (co, oy, ox) sums
 * w[co][ci][ky][kx] * (x[ci][iy][ix] - z) over the taps with oy + pad_top = iy*stride_h +
 * ky*dil_h (and the same along x) that land on a real input pixel: no zero is ever
 * multiplied. With t = oy + pad_top = qy*stride_h + ry and ky*dil_h = ay*stride_h + by, tap ky
 * lands iff by == ry, on iy = qy - ay; the kernel tracks (qy, ry) and (ay, by) by increments,
 * so it divides only once per call (Cortex-M0 has no divide instruction). */
#include "iq_conv_transpose.h"

/* The taps of output position (qy, ry; qx, rx): pairs (weight offset ky*k_w + kx, input offset
 * iy*in_w + ix) into taps[]; returns their number. */
static int32_t iq_ct_taps(const iq_conv_transpose_params_t* p, int32_t qy, int32_t ry,
                          int32_t qx, int32_t rx, int32_t* taps)
{
    int32_t n = 0, ky, kx, ay = 0, by = 0;
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = qy - ay;
        if (iy < 0) {
            break; /* ay only grows */
        }
        if (by == ry && iy < p->in_h) {
            int32_t ax = 0, bx = 0;
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = qx - ax;
                if (ix < 0) {
                    break;
                }
                if (bx == rx && ix < p->in_w) {
                    taps[2 * n] = ky * p->k_w + kx;
                    taps[2 * n + 1] = iy * p->in_w + ix;
                    ++n;
                }
                for (bx += p->dil_w; bx >= p->stride_w; bx -= p->stride_w) {
                    ++ax;
                }
            }
        }
        for (by += p->dil_h; by >= p->stride_h; by -= p->stride_h) {
            ++ay;
        }
    }
    return n;
}

static void iq_ct_store(const iq_conv_transpose_params_t* p, const int32_t* mult,
                        const int32_t* shift, int32_t co, int64_t acc, void* y, int32_t y_dtype,
                        int32_t o)
{
    const int32_t r = iq_apply_multiplier(acc, IQ_LOAD_S32(mult + co), IQ_LOAD_S32(shift + co),
                                          p->mode);
    iq_store(y, o, y_dtype,
             iq_add_zero_point_and_clamp(r, p->output_zero_point, p->act_min, p->act_max));
}

/* One kernel per (input type, weight type, accumulator): the taps of a position are found
 * once and shared by every output channel; the inner loop walks the channels of the group. */
#define IQ_CT_TYPED(NAME, TX, TW, LOADW, TACC, LOADB)                                         \
    static void NAME(const iq_conv_transpose_params_t* p, const TX* x, const TW* w,            \
                     const TACC* bias, const int32_t* mult, const int32_t* shift, void* y,     \
                     int32_t y_dtype, int32_t* taps)                                           \
    {                                                                                          \
        const int32_t hw = p->in_h * p->in_w, khw = p->k_h * p->k_w;                           \
        const int32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;              \
        const int32_t plane = p->out_h * p->out_w, z = p->input_zero_point;                    \
        const int32_t qx0 = p->pad_left / p->stride_w, rx0 = p->pad_left % p->stride_w;        \
        int32_t qy = p->pad_top / p->stride_h, ry = p->pad_top % p->stride_h;                  \
        int32_t oy, ox, co, t, ci, o = 0;                                                      \
        for (oy = 0; oy < p->out_h; ++oy) {                                                    \
            int32_t qx = qx0, rx = rx0;                                                        \
            for (ox = 0; ox < p->out_w; ++ox, ++o) {                                           \
                const int32_t n = iq_ct_taps(p, qy, ry, qx, rx, taps);                         \
                const TX* xg = x;                                                              \
                int32_t j = 0;                                                                 \
                for (co = 0; co < p->out_c; ++co) {                                            \
                    const TW* wc = w + co * cin_g * khw;                                       \
                    TACC acc = LOADB(bias + co);                                               \
                    for (t = 0; t < n; ++t) {                                                  \
                        const TX* xp = xg + taps[2 * t + 1];                                   \
                        const TW* wp = wc + taps[2 * t];                                       \
                        for (ci = 0; ci < cin_g; ++ci, xp += hw, wp += khw) {                  \
                            acc += (int32_t)LOADW(wp) * ((int32_t)*xp - z);                    \
                        }                                                                      \
                    }                                                                          \
                    iq_ct_store(p, mult, shift, co, (int64_t)acc, y, y_dtype,                  \
                                co * plane + o);                                               \
                    if (++j == cout_g) {                                                       \
                        j = 0;                                                         \
                        xg += cin_g * hw; /* the next group's input channels */                \
                    }                                                                          \
                }                                                                              \
                if (++rx == p->stride_w) {                                                     \
                    rx = 0;                                                                    \
                    ++qx;                                                                      \
                }                                                                              \
            }                                                                                  \
            if (++ry == p->stride_h) {                                                         \
                ry = 0;                                                                        \
                ++qy;                                                                          \
            }                                                                                  \
        }                                                                                      \
    }

/* |w| <= 2^15 and |x - z| < 2^16: every product fits int32; acc_bits 32 bounds every partial
 * sum below 2^31 (validation), acc_bits 64 below 2^47. */
IQ_CT_TYPED(iq_ct_s8_s8_a32, int8_t, int8_t, IQ_LOAD_S8, int32_t, IQ_LOAD_S32)
IQ_CT_TYPED(iq_ct_u8_s8_a32, uint8_t, int8_t, IQ_LOAD_S8, int32_t, IQ_LOAD_S32)
IQ_CT_TYPED(iq_ct_s16_s8_a64, int16_t, int8_t, IQ_LOAD_S8, int64_t, IQ_LOAD_S64)
IQ_CT_TYPED(iq_ct_s16_s16_a64, int16_t, int16_t, IQ_LOAD_S16, int64_t, IQ_LOAD_S64)

/* Any other combination (8-bit inputs with an int64 accumulator or int16 weights): element
 * loads by type code, int64 sums. */
static void iq_ct_generic(const iq_conv_transpose_params_t* p, const void* x, int32_t x_dtype,
                          const void* w, const void* bias, const int32_t* mult,
                          const int32_t* shift, void* y, int32_t y_dtype, int32_t* taps)
{
    const int32_t hw = p->in_h * p->in_w, khw = p->k_h * p->k_w;
    const int32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    const int32_t plane = p->out_h * p->out_w, z = p->input_zero_point;
    const int32_t qx0 = p->pad_left / p->stride_w, rx0 = p->pad_left % p->stride_w;
    int32_t qy = p->pad_top / p->stride_h, ry = p->pad_top % p->stride_h;
    int32_t oy, ox, co, t, ci, o = 0;
    for (oy = 0; oy < p->out_h; ++oy) {
        int32_t qx = qx0, rx = rx0;
        for (ox = 0; ox < p->out_w; ++ox, ++o) {
            const int32_t n = iq_ct_taps(p, qy, ry, qx, rx, taps);
            int32_t x0 = 0, j = 0;
            for (co = 0; co < p->out_c; ++co) {
                const int32_t w0 = co * cin_g * khw;
                int64_t acc = p->acc64 ? IQ_LOAD_S64((const int64_t*)bias + co)
                                       : IQ_LOAD_S32((const int32_t*)bias + co);
                for (t = 0; t < n; ++t) {
                    for (ci = 0; ci < cin_g; ++ci) {
                        const int32_t wi = w0 + ci * khw + taps[2 * t];
                        const int32_t wv = p->w16 ? IQ_LOAD_S16((const int16_t*)w + wi)
                                                  : IQ_LOAD_S8((const int8_t*)w + wi);
                        acc += (int64_t)(wv * (iq_load(x, x0 + ci * hw + taps[2 * t + 1],
                                                       x_dtype) - z));
                    }
                }
                iq_ct_store(p, mult, shift, co, acc, y, y_dtype, co * plane + o);
                if (++j == cout_g) {
                    j = 0;
                    x0 += cin_g * hw;
                }
            }
            if (++rx == p->stride_w) {
                rx = 0;
                ++qx;
            }
        }
        if (++ry == p->stride_h) {
            ry = 0;
            ++qy;
        }
    }
}

void iq_conv_transpose(const iq_conv_transpose_params_t* p, const void* x, int32_t x_dtype,
                       const void* w, const void* bias, const int32_t* mult,
                       const int32_t* shift, void* y, int32_t y_dtype, int32_t* taps)
{
    if (!p->acc64 && !p->w16 && x_dtype == IQ_S8) {
        iq_ct_s8_s8_a32(p, (const int8_t*)x, (const int8_t*)w, (const int32_t*)bias, mult,
                        shift, y, y_dtype, taps);
    } else if (!p->acc64 && !p->w16 && x_dtype == IQ_U8) {
        iq_ct_u8_s8_a32(p, (const uint8_t*)x, (const int8_t*)w, (const int32_t*)bias, mult,
                        shift, y, y_dtype, taps);
    } else if (p->acc64 && !p->w16 && x_dtype == IQ_S16) {
        iq_ct_s16_s8_a64(p, (const int16_t*)x, (const int8_t*)w, (const int64_t*)bias, mult,
                         shift, y, y_dtype, taps);
    } else if (p->acc64 && p->w16 && x_dtype == IQ_S16) {
        iq_ct_s16_s16_a64(p, (const int16_t*)x, (const int16_t*)w, (const int64_t*)bias, mult,
                          shift, y, y_dtype, taps);
    } else {
        iq_ct_generic(p, x, x_dtype, w, bias, mult, shift, y, y_dtype, taps);
    }
}
