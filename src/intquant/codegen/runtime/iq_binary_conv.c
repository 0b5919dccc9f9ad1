/*
 * binary_conv: per output pixel, gather the receptive field into one bit stream laid out like
 * the weights ((kh, kw, Cin) order), then each output channel is field_words XOR + popcount
 * steps: acc = n_valid - 2 * popcount(field ^ w). A tap outside the input is left out with a
 * mask (it contributes 0, as the float model's zero padding does).
 */
#include "iq_binary_conv.h"

/* Gather the taps of output pixel (oy, ox) into field (and their mask); returns the number of
 * taps inside the input. */
static int32_t iq_gather_field(const iq_binary_conv_params_t* p, const uint32_t* x,
                               int32_t oy, int32_t ox, uint32_t* field, uint32_t* mask)
{
    int32_t ky, kx, pos = 0, valid = 0;
    int32_t gin = iq_bit_words(p->in_c);
    memset(field, 0, (size_t)p->field_words * sizeof(uint32_t));
    memset(mask, 0, (size_t)p->field_words * sizeof(uint32_t));
    for (ky = 0; ky < p->k_h; ++ky) {
        int32_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
        for (kx = 0; kx < p->k_w; ++kx) {
            int32_t ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
            if (iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w) {
                iq_bits_append(field, pos, x + (iy * p->in_w + ix) * gin, p->in_c);
                iq_bits_set(mask, pos, p->in_c);
                ++valid;
            }
            pos += p->in_c;
        }
    }
    return valid;
}

void iq_binary_conv(const iq_binary_conv_params_t* p, const uint32_t* x, const uint32_t* w,
                    const iq_binary_out_t* o, void* y, uint32_t* scratch)
{
    int32_t oy, ox, c;
    int32_t taps = p->k_h * p->k_w, k = p->field_words;
    int32_t gout = iq_bit_words(p->out_c), plane = p->out_h * p->out_w;
    uint32_t* field = scratch;
    uint32_t* mask = scratch + k;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            int32_t valid = iq_gather_field(p, x, oy, ox, field, mask);
            int32_t n = valid * p->in_c, pixel = oy * p->out_w + ox;
            uint32_t word = 0;
            uint32_t* y_bits = (uint32_t*)y + pixel * gout;
            for (c = 0; c < p->out_c; ++c) {
                const uint32_t* wc = w + c * k;
                int32_t pop = valid == taps ? iq_xor_popcount(field, wc, k)
                                            : iq_xor_popcount_masked(field, wc, mask, k);
                iq_binary_emit(o, c, p->out_c - 1, n - 2 * pop, &word, y_bits, y,
                               c * plane + pixel);
            }
        }
    }
}
