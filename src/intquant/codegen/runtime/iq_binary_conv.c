/*
 * binary_conv: per output pixel, the receptive field as one bit stream laid out like the
 * weights ((kh, kw, Cin) order); each output channel is then k XOR + popcount steps:
 * acc = n - 2 * popcount(field ^ w), computed by the layer's pixel kernel (generated Thumb-1
 * on Cortex-M0, intquant/ops/_binary_asm.py).
 * - A pixel whose taps all lie inside the input: one pixel-kernel call with n = in_c*k_h*k_w
 *   (bits out directly, or popcounts then requantization). When the field is a contiguous run
 *   of the input (1-D, 32 | in_c, no dilation) it is read in place.
 * - A border pixel: its padded taps must contribute 0 (the float model's zero padding), so
 *   they are left out with a mask (the layer's masked popcount kernel; n = in_c * taps
 *   inside). Without one (k > 15 words), with the padded bits 0 in one field (f0) and 1 in
 *   another (f1), popcount(f0 ^ w) + popcount(f1 ^ w) = 2 * pop_inside + (bits outside),
 *   which gives the popcount over the taps inside from two calls of the fast kernel.
 */
#include "iq_binary_conv.h"

/* Gather the taps of output pixel (oy, ox) into field (padded taps 0) and, when mask is not
 * NULL, set mask's bits at the taps inside the input; returns the number of those taps. */
static int32_t iq_gather_field(const iq_binary_conv_params_t* p, const uint32_t* x,
                               int32_t oy, int32_t ox, uint32_t* field, uint32_t* mask)
{
    int32_t ky, kx, pos = 0, valid = 0;
    int32_t gin = iq_bit_words(p->in_c);
    memset(field, 0, (size_t)p->field_words * sizeof(uint32_t));
    if (mask != NULL) {
        memset(mask, 0, (size_t)p->field_words * sizeof(uint32_t));
    }
    for (ky = 0; ky < p->k_h; ++ky) {
        int32_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
        for (kx = 0; kx < p->k_w; ++kx) {
            int32_t ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
            if (iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w) {
                iq_bits_append(field, pos, x + (iy * p->in_w + ix) * gin, p->in_c);
                if (mask != NULL) {
                    iq_bits_set(mask, pos, p->in_c);
                }
                ++valid;
            }
            pos += p->in_c;
        }
    }
    return valid;
}

/* A pixel with every tap inside: the pixel kernel, then (8/16-bit output) requantization. */
static void iq_binary_conv_inner(const iq_binary_conv_params_t* p, const uint32_t* field,
                                 const uint32_t* w, const iq_binary_out_t* o, void* y,
                                 uint16_t* pops, int32_t pixel)
{
    if (o->bits) {
        p->pixel(field, w, (uint32_t*)y + pixel * iq_bit_words(p->out_c), p->out_c);
        return;
    }
    p->pixel(field, w, pops, p->out_c);
    iq_binary_requant_pixel(o, pops, p->in_c * p->k_h * p->k_w, p->out_c, y, pixel,
                            p->out_h * p->out_w);
}

/* A border pixel (valid taps of k_h*k_w inside): two pops calls (padded bits 0, then 1). */
static void iq_binary_conv_border(const iq_binary_conv_params_t* p, uint32_t* field,
                                  uint32_t* mask, int32_t valid, const uint32_t* w,
                                  const iq_binary_out_t* o, void* y, uint16_t* pops,
                                  int32_t pixel)
{
    int32_t c, j, k = p->field_words;
    int32_t n = valid * p->in_c, n_full = p->in_c * p->k_h * p->k_w;
    int32_t outside = 32 * k - n;
    uint16_t* pops1 = pops + p->out_c;
    if (p->mpops != NULL) {
        p->mpops(field, w, pops, p->out_c); /* mask = field + k */
    } else {
        p->pops(field, w, pops, p->out_c);
        for (j = 0; j < k; ++j) {
            mask[j] = field[j] | ~mask[j];
        }
        p->pops(mask, w, pops1, p->out_c);
        for (c = 0; c < p->out_c; ++c) {
            pops[c] = (uint16_t)((pops[c] + pops1[c] - outside) >> 1);
        }
    }
    if (!o->bits) {
        iq_binary_requant_pixel(o, pops, n, p->out_c, y, pixel, p->out_h * p->out_w);
        return;
    }
    {
        uint32_t word = 0;
        uint32_t* y_bits = (uint32_t*)y + pixel * iq_bit_words(p->out_c);
        for (c = 0; c < p->out_c; ++c) {
            int32_t threshold = n_full + 1 - (int32_t)w[c * (k + 1) + k];
            iq_binary_emit(o, c, p->out_c - 1, n - 2 * pops[c], threshold, &word, y_bits, y,
                           0);
        }
    }
}

void iq_binary_conv(const iq_binary_conv_params_t* p, const uint32_t* x, const uint32_t* w,
                    const iq_binary_out_t* o, void* y, uint32_t* scratch)
{
    int32_t oy, ox, k = p->field_words;
    int32_t gin = iq_bit_words(p->in_c);
    uint32_t* field = scratch;
    uint32_t* mask = scratch + k;
    uint16_t* pops = (uint16_t*)(scratch + 2 * k);
    for (oy = 0; oy < p->out_h; ++oy) {
        int32_t iy0 = oy * p->stride_h - p->pad_top;
        int32_t rows_in = iy0 >= 0 && iy0 + (p->k_h - 1) * p->dil_h < p->in_h;
        for (ox = 0; ox < p->out_w; ++ox) {
            int32_t ix0 = ox * p->stride_w - p->pad_left, pixel = oy * p->out_w + ox;
            int32_t inside = rows_in && ix0 >= 0 && ix0 + (p->k_w - 1) * p->dil_w < p->in_w;
            if (inside && p->contiguous) {
                iq_binary_conv_inner(p, x + (iy0 * p->in_w + ix0) * gin, w, o, y, pops, pixel);
            } else if (inside) {
                iq_gather_field(p, x, oy, ox, field, NULL);
                iq_binary_conv_inner(p, field, w, o, y, pops, pixel);
            } else {
                int32_t valid = iq_gather_field(p, x, oy, ox, field, mask);
                iq_binary_conv_border(p, field, mask, valid, w, o, y, pops, pixel);
            }
        }
    }
}
