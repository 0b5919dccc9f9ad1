/* conv_transpose: transposed convolution, gather form (intquant/ops/conv_transpose.py). */
#ifndef IQ_CONV_TRANSPOSE_H
#define IQ_CONV_TRANSPOSE_H

#include "iq_kernels.h"

typedef struct {
    int32_t in_c, in_h, in_w;
    int32_t out_c, out_h, out_w;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left; /* outputs cropped before the first one */
    int32_t dil_h, dil_w;
    int32_t groups;
    int32_t input_zero_point, output_zero_point, act_min, act_max;
    int32_t mode;  /* IQ_RQ_* */
    int32_t acc64; /* int64 bias and sums (acc_bits 64) */
    int32_t w16;   /* int16 weights (else int8) */
} iq_conv_transpose_params_t;

/* x (in_c, in_h, in_w), weight [out_c][in_c/groups][k_h][k_w] (IQ_FLASH), bias int32 or int64
 * [out_c], per-channel multiplier and shift, y (out_c, out_h, out_w); 1-D runs with in_h = 1.
 * taps: scratch of 2 * k_h * k_w int32 (the taps of one output position). */
void iq_conv_transpose(const iq_conv_transpose_params_t* p, const void* x, int32_t x_dtype,
                       const void* w, const void* bias, const int32_t* mult,
                       const int32_t* shift, void* y, int32_t y_dtype, int32_t* taps);

#endif /* IQ_CONV_TRANSPOSE_H */
