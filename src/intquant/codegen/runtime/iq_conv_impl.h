/*
 * Template: conv (1-D as H = 1, 2-D, grouped, depthwise) or, with IQ_FC_TEMPLATE defined,
 * fully_connected, for one set of element types.
 *
 * Instantiate by defining, then including this file:
 *   IQ_FN     function name
 *   IQ_TIN    input element type      IQ_TW   weight element type (as stored)
 *   IQ_TOUT   output element type     IQ_ACC  32 or 64 (accumulator and bias width)
 *   IQ_CHUNK  (IQ_ACC 64) products that surely fit one int32 partial sum
 *   IQ_MODE   requantization mode (IQ_RQ_*): a constant, so the dispatch folds away
 *   IQ_FAST8  defined for 8-bit inputs, int8 weights and an int32 accumulator: weights are
 *             then stored as uint8 offset binary, four channels interleaved, and the bias as
 *             uint32 (see iq_dot.h); IQ_TW is uint8_t
 *
 * Method (CMSIS-NN style): for each output position the receptive field of one group is
 * gathered into `col` (im2col), padded taps holding the input zero point; each output
 * channel is then one dot product over contiguous memory. Because padding holds the zero
 * point, sum w*(x - z) == sum w*x - z*sum(w) everywhere, and the generator folds -z*sum(w)
 * into `bias` offline: the inner loop is a plain dot product.
 */
#include "iq_dot.h"
#include "iq_kernels.h"

#define IQ_CAT_(a, b) a##b
#define IQ_CAT(a, b) IQ_CAT_(a, b)

#if defined(IQ_FAST8)
#define IQ_TBIAS uint32_t
#elif IQ_ACC == 32
#define IQ_TBIAS int32_t
#else
#define IQ_TBIAS int64_t
#endif

static IQ_TOUT IQ_CAT(IQ_FN, _requantize)(int64_t acc, int32_t m, int32_t s, int32_t zero_point,
                                          int32_t act_min, int32_t act_max)
{
    int32_t r = iq_apply_multiplier(acc, m, s, IQ_MODE);
    return (IQ_TOUT)iq_add_zero_point_and_clamp(r, zero_point, act_min, act_max);
}

#if defined(IQ_FAST8)
/* ---------------------------------------------------------------------------------------
 * 8-bit path: `col` holds xu = x + xoff (uint8); returns 128 * sum(xu), the per-position
 * term of the offset-binary identity. Output channels of one group, from channel c0.
 */
static void IQ_CAT(IQ_FN, _channels)(const uint8_t* col, uint32_t col_term, const uint8_t* w,
                                     const uint32_t* bias, const int32_t* mult,
                                     const int32_t* shift, int32_t c0, int32_t count, int32_t k,
                                     IQ_TOUT* out, int32_t out_stride, int32_t zero_point,
                                     int32_t act_min, int32_t act_max)
{
    int32_t j, t;
    uint32_t s[4];
    for (j = 0; j + 4 <= count; j += 4) {
        iq_dot4_u8(col, w + j * k, k, s);
        for (t = 0; t < 4; ++t) {
            const int32_t c = c0 + j + t;
            const int32_t acc = (int32_t)(bias[c] + s[t] - col_term);
            out[c * out_stride] =
                IQ_CAT(IQ_FN, _requantize)(acc, mult[c], shift[c], zero_point, act_min, act_max);
        }
    }
    for (; j < count; ++j) {
        const int32_t c = c0 + j;
        const int32_t acc = (int32_t)(bias[c] + iq_dot1_u8(col, w + j * k, k) - col_term);
        out[c * out_stride] =
            IQ_CAT(IQ_FN, _requantize)(acc, mult[c], shift[c], zero_point, act_min, act_max);
    }
}

#define IQ_XOFF ((IQ_TIN)(-1) < 0 ? 128 : 0) /* offset making the input unsigned */

#else
/* ---------------------------------------------------------------------------------------
 * Generic path (16-bit operands or a 64-bit accumulator): two channels per pass share each
 * loaded input; with IQ_ACC 64, products are summed in int32 chunks of IQ_CHUNK terms.
 */
static void IQ_CAT(IQ_FN, _dot2)(const IQ_TIN* x, const IQ_TW* w0, const IQ_TW* w1, int32_t n,
                                 IQ_TBIAS* s0, IQ_TBIAS* s1)
{
    int32_t i = 0;
    while (i < n) {
#if IQ_ACC == 32
        int32_t end = n;
#else
        int32_t end = (n - i > IQ_CHUNK) ? i + IQ_CHUNK : n;
#endif
        int32_t a0 = 0, a1 = 0;
        for (; i < end; ++i) {
            int32_t xv = x[i];
            a0 += w0[i] * xv;
            a1 += w1[i] * xv;
        }
        *s0 += a0;
        *s1 += a1;
    }
}

static void IQ_CAT(IQ_FN, _channels)(const IQ_TIN* col, const IQ_TW* w, const IQ_TBIAS* bias,
                                     const int32_t* mult, const int32_t* shift, int32_t c0,
                                     int32_t count, int32_t k, IQ_TOUT* out, int32_t out_stride,
                                     int32_t zero_point, int32_t act_min, int32_t act_max)
{
    int32_t j;
    for (j = 0; j < count; j += 2) {
        const int32_t c = c0 + j;
        const int32_t c1 = j + 1 < count ? c + 1 : c; /* odd count: the last pass twice */
        IQ_TBIAS a0 = bias[c], a1 = bias[c1];
        IQ_CAT(IQ_FN, _dot2)(col, w + j * k, w + (c1 - c0) * k, k, &a0, &a1);
        out[c * out_stride] =
            IQ_CAT(IQ_FN, _requantize)(a0, mult[c], shift[c], zero_point, act_min, act_max);
        out[c1 * out_stride] =
            IQ_CAT(IQ_FN, _requantize)(a1, mult[c1], shift[c1], zero_point, act_min, act_max);
    }
}
#endif

#ifndef IQ_FC_TEMPLATE
/* Gather the receptive field of output (oy, ox) for channels [c0, c0 + cin_g) into col.
 * Fast path: stores x + xoff as uint8 and returns 128 * sum; generic: stores x, returns 0. */
static uint32_t IQ_CAT(IQ_FN, _im2col)(const iq_conv_params_t* p, const IQ_TIN* x, int32_t c0,
                                       int32_t cin_g, int32_t oy, int32_t ox, void* col_buf)
{
#if defined(IQ_FAST8)
    uint8_t* col = (uint8_t*)col_buf;
    const uint8_t pad = (uint8_t)(p->input_zero_point + IQ_XOFF);
    uint32_t sum = 0;
#define IQ_PUT(v) (sum += (*col++ = (uint8_t)((v) + IQ_XOFF)))
#define IQ_PUT_PAD() (sum += (*col++ = pad))
#else
    IQ_TIN* col = (IQ_TIN*)col_buf;
    const IQ_TIN pad = (IQ_TIN)p->input_zero_point;
    const uint32_t sum = 0;
#define IQ_PUT(v) (*col++ = (v))
#define IQ_PUT_PAD() (*col++ = pad)
#endif
    const int32_t y0 = oy * p->stride_h - p->pad_top;
    const int32_t x0 = ox * p->stride_w - p->pad_left;
    int32_t ci, ky, kx;
    for (ci = 0; ci < cin_g; ++ci) {
        const IQ_TIN* plane = x + (c0 + ci) * p->in_h * p->in_w;
        for (ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = y0 + ky * p->dil_h;
            if (iy < 0 || iy >= p->in_h) {
                for (kx = 0; kx < p->k_w; ++kx) {
                    IQ_PUT_PAD();
                }
                continue;
            }
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = x0 + kx * p->dil_w;
                if (ix >= 0 && ix < p->in_w) {
                    IQ_PUT(plane[iy * p->in_w + ix]);
                } else {
                    IQ_PUT_PAD();
                }
            }
        }
    }
#undef IQ_PUT
#undef IQ_PUT_PAD
    return sum * 128u;
}

IQ_CONV_DECLARE(IQ_FN, IQ_TIN, IQ_TW, IQ_TOUT, IQ_TBIAS)
{
    const int32_t cin_g = p->in_c / p->groups;
    const int32_t cout_g = p->out_c / p->groups;
    const int32_t k = cin_g * p->k_h * p->k_w;
    const int32_t out_plane = p->out_h * p->out_w;
    int32_t g, oy, ox;
    for (g = 0; g < p->groups; ++g) {
        const IQ_TW* wg = w + g * cout_g * k;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                IQ_TOUT* out = y + oy * p->out_w + ox;
                const uint32_t term = IQ_CAT(IQ_FN, _im2col)(p, x, g * cin_g, cin_g, oy, ox, col);
#if defined(IQ_FAST8)
                IQ_CAT(IQ_FN, _channels)((const uint8_t*)col, term, wg, bias, mult, shift,
                                         g * cout_g, cout_g, k, out, out_plane,
                                         p->output_zero_point, p->act_min, p->act_max);
#else
                (void)term;
                IQ_CAT(IQ_FN, _channels)(col, wg, bias, mult, shift, g * cout_g, cout_g, k, out,
                                         out_plane, p->output_zero_point, p->act_min,
                                         p->act_max);
#endif
            }
        }
    }
}
#else
/* fully_connected: one "position"; the fast path first converts x to offset binary in col. */
IQ_FC_DECLARE(IQ_FN, IQ_TIN, IQ_TW, IQ_TOUT, IQ_TBIAS)
{
#if defined(IQ_FAST8)
    uint8_t* xu = (uint8_t*)col;
    uint32_t sum = 0;
    int32_t i;
    for (i = 0; i < p->in_features; ++i) {
        sum += (xu[i] = (uint8_t)(x[i] + IQ_XOFF));
    }
    IQ_CAT(IQ_FN, _channels)(xu, sum * 128u, w, bias, mult, shift, 0, p->out_features,
                             p->in_features, y, 1, p->output_zero_point, p->act_min, p->act_max);
#else
    (void)col;
    IQ_CAT(IQ_FN, _channels)(x, w, bias, mult, shift, 0, p->out_features, p->in_features, y, 1,
                             p->output_zero_point, p->act_min, p->act_max);
#endif
}
#endif

#undef IQ_XOFF
#undef IQ_TBIAS
#undef IQ_FN
#undef IQ_TIN
#undef IQ_TW
#undef IQ_TOUT
#undef IQ_ACC
#undef IQ_CHUNK
#undef IQ_MODE
#undef IQ_FAST8
#undef IQ_FC_TEMPLATE
