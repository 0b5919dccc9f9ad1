/*
 * sign_conv: per output pixel, the receptive field x - z (0 for taps outside the input: the
 * padding holds the zero point) in the weights' (Cin, kh, kw) order, then for each output
 * channel acc = sum w * (x - z) and the bit acc < threshold (-1).
 * Validation bounds sum |w| * max|x - z| < 2^31: every partial sum fits int32.
 */
#include "iq_sign_conv.h"

/* The receptive field of (oy, ox) as int32 values x - z (taps outside the input: 0). */
static void iq_sign_conv_field(const iq_sign_conv_params_t* p, const void* x, int32_t oy,
                               int32_t ox, int32_t* field)
{
    int32_t ci, ky, kx, i = 0, plane = p->in_h * p->in_w;
    for (ci = 0; ci < p->in_c; ++ci) {
        for (ky = 0; ky < p->k_h; ++ky) {
            int32_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
            for (kx = 0; kx < p->k_w; ++kx, ++i) {
                int32_t ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                int32_t inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
                field[i] = inside ? iq_load(x, ci * plane + iy * p->in_w + ix, p->in_dtype) -
                                        p->input_zero_point
                                  : 0;
            }
        }
    }
}

void iq_sign_conv(const iq_sign_conv_params_t* p, const void* x, const void* w,
                  const iq_binary_out_t* o, uint32_t* y, void* scratch)
{
    int32_t oy, ox, c, k, n = p->in_c * p->k_h * p->k_w;
    int32_t gout = iq_bit_words(p->out_c);
    int32_t* field = (int32_t*)scratch;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            uint32_t word = 0;
            uint32_t* y_bits = y + (oy * p->out_w + ox) * gout;
            iq_sign_conv_field(p, x, oy, ox, field);
            for (c = 0; c < p->out_c; ++c) {
                int32_t acc = 0;
                if (p->w16) {
                    const int16_t* wc = (const int16_t*)w + c * n;
                    for (k = 0; k < n; ++k) {
                        acc += wc[k] * field[k];
                    }
                } else {
                    const int8_t* wc = (const int8_t*)w + c * n;
                    for (k = 0; k < n; ++k) {
                        acc += wc[k] * field[k];
                    }
                }
                iq_binary_emit(o, c, p->out_c - 1, acc, &word, y_bits, NULL, 0);
            }
        }
    }
}
