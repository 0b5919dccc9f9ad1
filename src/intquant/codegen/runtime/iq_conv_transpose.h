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

/* x (in_c, in_h, in_w), y (out_c, out_h, out_w); 1-D runs with in_h = 1. Constants (IQ_FLASH):
 * weight, swu, bias int32 (acc_bits 32) or int64 (64) [out_c], per-channel multiplier and
 * shift. scratch: 2 * k_h * k_w int32 (the taps of one output position), then what the
 * kernel gathers. Three entry points (ops/conv_transpose.fast_path picks one; the linker drops
 * the others):
 * - iq_conv_transpose8: 8-bit x, acc_bits 32; weight offset binary [group][block of 4
 *   channels][k_h][k_w][in_c/groups][4] (uint8 w + 128), swu[padded channel][k_h*k_w] its sums
 *   over the input channels; scratch + k_h * k_w * in_c/groups bytes.
 * - iq_conv_transpose16: int16 x, int8 weights, acc_bits 64; weight and swu as above; scratch
 *   + k_h * k_w uint32 + k_h * k_w * in_c/groups uint16.
 * - iq_conv_transpose: anything else; weight int8 / int16 [out_c][in_c/groups][k_h][k_w],
 *   swu NULL. */
#define IQ_CONV_TRANSPOSE_DECLARE(fn)                                                          \
    void fn(const iq_conv_transpose_params_t* p, const void* x, int32_t x_dtype, const void* w, \
            const void* swu, const void* bias, const int32_t* mult, const int32_t* shift,       \
            void* y, int32_t y_dtype, void* scratch)
IQ_CONV_TRANSPOSE_DECLARE(iq_conv_transpose8);
IQ_CONV_TRANSPOSE_DECLARE(iq_conv_transpose16);
IQ_CONV_TRANSPOSE_DECLARE(iq_conv_transpose);

#endif /* IQ_CONV_TRANSPOSE_H */
