/* binary_conv: W1A1 conv on packed bits (intquant/ops/binary_conv.py is the specification). */
#ifndef IQ_BINARY_CONV_H
#define IQ_BINARY_CONV_H

#include "iq_binary.h"

typedef struct {
    int32_t in_c, in_h, in_w, out_c, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w;
    int32_t field_words; /* ceil(in_c * k_h * k_w / 32): one output channel's weight words */
} iq_binary_conv_params_t;

/* x: packed input; w: out_c weight bit streams of field_words words; y: packed words (bit
 * output) or out_c planes of values (8/16-bit output); scratch: 2 * field_words words. */
void iq_binary_conv(const iq_binary_conv_params_t* p, const uint32_t* x, const uint32_t* w,
                    const iq_binary_out_t* o, void* y, uint32_t* scratch);

#endif /* IQ_BINARY_CONV_H */
