#include "iq_bits.h"

void iq_sign(const void* x, int32_t dtype, int32_t channels, int32_t pixels, int32_t threshold,
             uint32_t* y)
{
    int32_t p, c, words = iq_bit_words(channels);
    for (p = 0; p < pixels; ++p) {
        uint32_t* out = y + p * words;
        for (c = 0; c < words; ++c) {
            out[c] = 0;
        }
        for (c = 0; c < channels; ++c) {
            if (iq_load(x, c * pixels + p, dtype) < threshold) {
                out[c >> 5] |= iq_bit_at(c);
            }
        }
    }
}

void iq_unpack_bits(const uint32_t* x, int32_t channels, int32_t pixels, int8_t* y)
{
    int32_t p, c, words = iq_bit_words(channels);
    for (p = 0; p < pixels; ++p) {
        const uint32_t* in = x + p * words;
        for (c = 0; c < channels; ++c) {
            y[c * pixels + p] = (in[c >> 5] & iq_bit_at(c)) ? -1 : 1;
        }
    }
}

void iq_binary_max_pool(const iq_pool_params_t* p, const uint32_t* x, uint32_t* y)
{
    int32_t oy, ox, g, words = iq_bit_words(p->channels);
    for (oy = 0; oy < p->out_h; ++oy) {
        int32_t y0 = oy * p->stride_h - p->pad_top, ky0, ky1;
        iq_window_taps(y0, p->k_h, p->dil_h, p->in_h, &ky0, &ky1);
        for (ox = 0; ox < p->out_w; ++ox) {
            int32_t x0 = ox * p->stride_w - p->pad_left, kx0, kx1, ky, kx;
            uint32_t* out = y + (oy * p->out_w + ox) * words;
            iq_window_taps(x0, p->k_w, p->dil_w, p->in_w, &kx0, &kx1);
            for (g = 0; g < words; ++g) {
                uint32_t acc = 0xFFFFFFFFu;
                for (ky = ky0; ky < ky1; ++ky) {
                    for (kx = kx0; kx < kx1; ++kx) {
                        int32_t iy = y0 + ky * p->dil_h, ix = x0 + kx * p->dil_w;
                        acc &= x[(iy * p->in_w + ix) * words + g];
                    }
                }
                out[g] = acc;
            }
        }
    }
}
