/* sign_conv: 8/16-bit conv or linear whose output is a sign, packed
 * (intquant/ops/sign_conv.py is the specification). */
#ifndef IQ_SIGN_CONV_H
#define IQ_SIGN_CONV_H

#include "iq_binary.h"

typedef struct {
    int32_t in_c, in_h, in_w, out_c, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w;
    int32_t input_zero_point, in_dtype, w16;
} iq_sign_conv_params_t;

/* x: input values (in_dtype); w: int8 (w16 = 0) or int16 weights [out_c][in_c][k_h][k_w];
 * y: packed output words; scratch: one receptive field of x - z (int16 or int32 values). */
void iq_sign_conv(const iq_sign_conv_params_t* p, const void* x, const void* w,
                  const iq_binary_out_t* o, uint32_t* y, void* scratch);

#endif /* IQ_SIGN_CONV_H */
