/*
 * sign_conv: per output pixel, the receptive field (in the weights' (Cin, kh, kw) order; a tap
 * outside the input holds the zero point, i.e. contributes 0 to acc = sum w * (x - z)), then
 * for each output channel the bit acc < threshold (-1).
 * Validation bounds sum |w| * max|x - z| < 2^31: every partial sum fits int32.
 *
 * 8-bit inputs with int8 weights (fast8) use the offset-binary dot products of iq_dot.h, four
 * channels per pass over the field: with xu = x + xoff, wu = w + 128,
 *   acc = sum wu*xu - 128*sum(xu) + C_c,
 * where C_c = -xoff*sum(wu_c) + 128*xoff*K - z*sum(w_c) is folded offline into the threshold
 * (o->threshold = threshold - C_c, clamped: |sum wu*xu - 128*sum xu| < 2^31 for K < 2^15), so
 * the bit is (sum wu*xu - 128*sum xu) < o->threshold[c], computed modulo 2^32 and exact.
 */
#include "iq_sign_conv.h"

#include "iq_dot.h"

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

/* fast8: the field as xu = x + xoff (padded taps: z + xoff); returns 128 * sum(xu). */
static uint32_t iq_sign_conv_field8(const iq_sign_conv_params_t* p, const uint8_t* x,
                                    int32_t oy, int32_t ox, uint8_t* field)
{
    int32_t ci, ky, kx, plane = p->in_h * p->in_w;
    int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
    uint32_t xoff = p->in_dtype == IQ_S8 ? 128u : 0u, sum = 0;
    uint8_t pad = (uint8_t)((uint32_t)p->input_zero_point + xoff);
    if (iy0 >= 0 && iy0 + (p->k_h - 1) * p->dil_h < p->in_h && ix0 >= 0 &&
        ix0 + (p->k_w - 1) * p->dil_w < p->in_w) { /* window inside: no bounds tests */
        for (ci = 0; ci < p->in_c; ++ci) {
            for (ky = 0; ky < p->k_h; ++ky) {
                const uint8_t* row = x + ci * plane + (iy0 + ky * p->dil_h) * p->in_w + ix0;
                for (kx = 0; kx < p->k_w; ++kx) {
                    uint8_t v = (uint8_t)(row[kx * p->dil_w] ^ xoff);
                    sum += v;
                    *field++ = v;
                }
            }
        }
        return 128u * sum;
    }
    for (ci = 0; ci < p->in_c; ++ci) {
        for (ky = 0; ky < p->k_h; ++ky) {
            int32_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
            int32_t row_in = iy >= 0 && iy < p->in_h;
            const uint8_t* row = row_in ? x + ci * plane + iy * p->in_w : x;
            for (kx = 0; kx < p->k_w; ++kx) {
                int32_t ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                uint8_t v = (row_in && ix >= 0 && ix < p->in_w) ? (uint8_t)(row[ix] ^ xoff) : pad;
                sum += v;
                *field++ = v;
            }
        }
    }
    return 128u * sum;
}

/* fast8: bits of one pixel. Four channels per pass over the field (their weights interleaved,
 * iq_dot.h's layout); each bit is shifted in from the bottom, channel 0 ending in bit 31. */
static void iq_sign_conv_pixel8(const iq_sign_conv_params_t* p, const uint8_t* field,
                                uint32_t col_term, const uint8_t* w, const int32_t* thr,
                                uint32_t* y)
{
    int32_t c, j, k = p->in_c * p->k_h * p->k_w, n = 0;
    uint32_t word = 0;
    for (c = 0; c + 4 <= p->out_c; c += 4, thr += 4) {
        uint32_t a0 = 0u - col_term, a1 = a0, a2 = a0, a3 = a0;
        for (j = 0; j < k; ++j, w += 4) {
            uint32_t xv = field[j];
            a0 += w[0] * xv;
            a1 += w[1] * xv;
            a2 += w[2] * xv;
            a3 += w[3] * xv;
        }
        word = (word << 1) | ((int32_t)a0 < thr[0]);
        word = (word << 1) | ((int32_t)a1 < thr[1]);
        word = (word << 1) | ((int32_t)a2 < thr[2]);
        word = (word << 1) | ((int32_t)a3 < thr[3]);
        n += 4;
        if (n == 32) {
            *y++ = word;
            word = 0;
            n = 0;
        }
    }
    for (; c < p->out_c; ++c, w += k) {
        word = (word << 1) | ((int32_t)(iq_dot1_u8(field, w, k) - col_term) < *thr++);
        if (++n == 32) {
            *y++ = word;
            word = 0;
            n = 0;
        }
    }
    if (n > 0) {
        *y = word << (32 - n);
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
            if (p->fast8) {
                uint32_t term = iq_sign_conv_field8(p, (const uint8_t*)x, oy, ox,
                                                    (uint8_t*)scratch);
                iq_sign_conv_pixel8(p, (const uint8_t*)scratch, term, (const uint8_t*)w,
                                    o->threshold, y_bits);
                continue;
            }
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
                iq_binary_emit(o, c, p->out_c - 1, acc, o->threshold[c], &word, y_bits,
                               NULL, 0);
            }
        }
    }
}
