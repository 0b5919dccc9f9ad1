/*
 * Template: conv (1-D as H = 1, 2-D, grouped, depthwise) or, with IQ_FC_TEMPLATE defined,
 * fully_connected, for one set of element types.
 *
 * Instantiate by defining, then including this file:
 *   IQ_FN     function name
 *   IQ_TIN    input element type      IQ_TW   weight element type
 *   IQ_TOUT   output element type     IQ_ACC  32 or 64 (accumulator and bias width)
 *   IQ_CHUNK  (IQ_ACC 64 only) products that surely fit one int32 partial sum
 *
 * Method (CMSIS-NN style): for each output position the receptive field of one group is
 * gathered into `col` (im2col), padded taps holding the input zero point; each output
 * channel is then one dot product over contiguous memory. Because padding holds the zero
 * point, sum w*(x - z) == sum w*x - z*sum(w) everywhere, and the generator folds -z*sum(w)
 * into `bias` offline: the inner loop is a plain dot product, two channels per pass so each
 * input value is loaded once for two multiply-accumulates.
 */
#include "iq_kernels.h"

#define IQ_CAT_(a, b) a##b
#define IQ_CAT(a, b) IQ_CAT_(a, b)

#if IQ_ACC == 32
#define IQ_TBIAS int32_t
#else
#define IQ_TBIAS int64_t
#endif

/* Two dot products of length n sharing the same input vector. */
static void IQ_CAT(IQ_FN, _dot2)(const IQ_TIN* x, const IQ_TW* w0, const IQ_TW* w1, int32_t n,
                                 IQ_TBIAS* s0, IQ_TBIAS* s1)
{
#if IQ_ACC == 32
    int32_t a0 = 0, a1 = 0, i;
    for (i = 0; i < n; ++i) {
        int32_t xv = x[i];
        a0 += w0[i] * xv;
        a1 += w1[i] * xv;
    }
    *s0 += a0;
    *s1 += a1;
#else
    int32_t i = 0;
    while (i < n) {
        int32_t end = (n - i > IQ_CHUNK) ? i + IQ_CHUNK : n;
        int32_t a0 = 0, a1 = 0;
        for (; i < end; ++i) {
            int32_t xv = x[i];
            a0 += w0[i] * xv;
            a1 += w1[i] * xv;
        }
        *s0 += a0;
        *s1 += a1;
    }
#endif
}

static void IQ_CAT(IQ_FN, _dot1)(const IQ_TIN* x, const IQ_TW* w0, int32_t n, IQ_TBIAS* s0)
{
#if IQ_ACC == 32
    int32_t a0 = 0, i;
    for (i = 0; i < n; ++i) {
        a0 += w0[i] * (int32_t)x[i];
    }
    *s0 += a0;
#else
    int32_t i = 0;
    while (i < n) {
        int32_t end = (n - i > IQ_CHUNK) ? i + IQ_CHUNK : n;
        int32_t a0 = 0;
        for (; i < end; ++i) {
            a0 += w0[i] * (int32_t)x[i];
        }
        *s0 += a0;
    }
#endif
}

#ifndef IQ_FC_TEMPLATE
/* Gather the receptive field of output (oy, ox) for channels [c0, c0 + cin_g). */
static void IQ_CAT(IQ_FN, _im2col)(const iq_conv_params_t* p, const IQ_TIN* x, int32_t c0,
                                   int32_t cin_g, int32_t oy, int32_t ox, IQ_TIN* col)
{
    const IQ_TIN pad = (IQ_TIN)p->input_zero_point;
    const int32_t y0 = oy * p->stride_h - p->pad_top;
    const int32_t x0 = ox * p->stride_w - p->pad_left;
    int32_t ci, ky, kx;
    for (ci = 0; ci < cin_g; ++ci) {
        const IQ_TIN* plane = x + (c0 + ci) * p->in_h * p->in_w;
        for (ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = y0 + ky * p->dil_h;
            if (iy < 0 || iy >= p->in_h) {
                for (kx = 0; kx < p->k_w; ++kx) {
                    *col++ = pad;
                }
                continue;
            }
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = x0 + kx * p->dil_w;
                *col++ = (ix >= 0 && ix < p->in_w) ? plane[iy * p->in_w + ix] : pad;
            }
        }
    }
}

static IQ_TOUT IQ_CAT(IQ_FN, _requantize)(const iq_conv_params_t* p, IQ_TBIAS acc, int32_t m,
                                          int32_t s)
{
    int32_t r = iq_apply_multiplier(acc, m, s, p->mode);
    return (IQ_TOUT)iq_add_zero_point_and_clamp(r, p->output_zero_point, p->act_min, p->act_max);
}

IQ_CONV_DECLARE(IQ_FN, IQ_TIN, IQ_TW, IQ_TOUT, IQ_TBIAS)
{
    const int32_t cin_g = p->in_c / p->groups;
    const int32_t cout_g = p->out_c / p->groups;
    const int32_t k = cin_g * p->k_h * p->k_w;
    const int32_t out_plane = p->out_h * p->out_w;
    int32_t g, oy, ox, co;
    for (g = 0; g < p->groups; ++g) {
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                IQ_TOUT* out = y + oy * p->out_w + ox;
                IQ_CAT(IQ_FN, _im2col)(p, x, g * cin_g, cin_g, oy, ox, col);
                for (co = g * cout_g; co + 1 < (g + 1) * cout_g; co += 2) {
                    IQ_TBIAS a0 = bias[co], a1 = bias[co + 1];
                    IQ_CAT(IQ_FN, _dot2)(col, w + co * k, w + (co + 1) * k, k, &a0, &a1);
                    out[co * out_plane] = IQ_CAT(IQ_FN, _requantize)(p, a0, mult[co], shift[co]);
                    out[(co + 1) * out_plane] =
                        IQ_CAT(IQ_FN, _requantize)(p, a1, mult[co + 1], shift[co + 1]);
                }
                if (co < (g + 1) * cout_g) {
                    IQ_TBIAS a0 = bias[co];
                    IQ_CAT(IQ_FN, _dot1)(col, w + co * k, k, &a0);
                    out[co * out_plane] = IQ_CAT(IQ_FN, _requantize)(p, a0, mult[co], shift[co]);
                }
            }
        }
    }
}
#else
/* fully_connected: the input vector is already contiguous, no im2col needed. */
IQ_FC_DECLARE(IQ_FN, IQ_TIN, IQ_TW, IQ_TOUT, IQ_TBIAS)
{
    const int32_t k = p->in_features;
    int32_t co;
    for (co = 0; co + 1 < p->out_features; co += 2) {
        IQ_TBIAS a0 = bias[co], a1 = bias[co + 1];
        IQ_CAT(IQ_FN, _dot2)(x, w + co * k, w + (co + 1) * k, k, &a0, &a1);
        y[co] = (IQ_TOUT)iq_add_zero_point_and_clamp(
            iq_apply_multiplier(a0, mult[co], shift[co], p->mode), p->output_zero_point,
            p->act_min, p->act_max);
        y[co + 1] = (IQ_TOUT)iq_add_zero_point_and_clamp(
            iq_apply_multiplier(a1, mult[co + 1], shift[co + 1], p->mode), p->output_zero_point,
            p->act_min, p->act_max);
    }
    if (co < p->out_features) {
        IQ_TBIAS a0 = bias[co];
        IQ_CAT(IQ_FN, _dot1)(x, w + co * k, k, &a0);
        y[co] = (IQ_TOUT)iq_add_zero_point_and_clamp(
            iq_apply_multiplier(a0, mult[co], shift[co], p->mode), p->output_zero_point,
            p->act_min, p->act_max);
    }
}
#endif

#undef IQ_TBIAS
#undef IQ_FN
#undef IQ_TIN
#undef IQ_TW
#undef IQ_TOUT
#undef IQ_ACC
#undef IQ_CHUNK
#undef IQ_FC_TEMPLATE
