/* sign_conv: 8/16-bit conv or linear whose output is a sign, packed
 * (intquant/ops/sign_conv.py is the specification). */
#ifndef IQ_SIGN_CONV_H
#define IQ_SIGN_CONV_H

#include "iq_binary.h"

typedef struct {
    int32_t in_c, in_h, in_w, out_c, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w;
    int32_t groups, input_zero_point, in_dtype, w16;
    int32_t fast8; /* 8-bit input, int8 weights: offset-binary dot products (iq_dot.h) */
} iq_sign_conv_params_t;

/* x: input values (in_dtype). Portable form: w int8 (w16 = 0) or int16
 * [out_c][in_c/groups * k_h * k_w],
 * o->threshold the thresholds. fast8 form: w the offset-binary layout of iq_dot.h (uint8,
 * blocks of four channels within each group), o->threshold = threshold - (the channel's
 * offset-binary constant). y: packed output words; scratch: one group's receptive field (int32
 * values, or uint8 for fast8). */
void iq_sign_conv(const iq_sign_conv_params_t* p, const void* x, const void* w,
                  const iq_binary_out_t* o, uint32_t* y, void* scratch);

#endif /* IQ_SIGN_CONV_H */
