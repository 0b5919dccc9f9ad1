/* binary_conv: W1A1 conv on packed bits (intquant/ops/binary_conv.py is the specification). */
#ifndef IQ_BINARY_CONV_H
#define IQ_BINARY_CONV_H

#include "iq_binary.h"

typedef struct {
    int32_t in_c, in_h, in_w, out_c, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w;
    int32_t field_words; /* k = ceil(in_c * k_h * k_w / 32): weight words per output channel */
    int32_t contiguous;  /* k_h = 1, dil_w = 1, 32 | in_c: a field is a run of the input */
    iq_binary_pixel_fn pixel; /* the layer's kernel: bits, or popcounts for 8/16-bit output */
    /* Border pixels (padding only): masked popcounts, or (mpops NULL: fields wider than its
     * offsets reach) two calls of plain popcounts; each with the layer's weight stride. */
    iq_binary_pixel_fn mpops;
    iq_binary_pixel_fn pops;
} iq_binary_conv_params_t;

/* x: packed input; w: per output channel its k weight words, followed (bit output) by
 * R = in_c*k_h*k_w + 1 - threshold; y: packed words (bit output) or out_c planes of values;
 * scratch: 2k words (field, then its mask), then 2 * out_c uint16 popcounts. */
void iq_binary_conv(const iq_binary_conv_params_t* p, const uint32_t* x, const uint32_t* w,
                    const iq_binary_out_t* o, void* y, uint32_t* scratch);

#endif /* IQ_BINARY_CONV_H */
