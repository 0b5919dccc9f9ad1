/* mul: TFLM quantized mul of two tensors, with broadcasting (intquant/ops/mul.py). */
#ifndef IQ_MUL_H
#define IQ_MUL_H

#include "iq_broadcast.h"
#include "iq_kernels.h"

typedef struct {
    int32_t a_zero_point, b_zero_point;
    int32_t output_multiplier, output_shift, output_zero_point;
    int32_t act_min, act_max, mode;
} iq_mul_params_t;

/* y = clamp(mbqm((a - a_zp) * (b - b_zp)) + y_zp) over the output walk bc (iq_broadcast.h).
 * In-place safe for an operand of the output's shape. */
void iq_mul(const iq_mul_params_t* p, const void* a, int32_t a_dtype, const void* b,
            int32_t b_dtype, void* y, int32_t y_dtype, const iq_bcast_t* bc);

#endif /* IQ_MUL_H */
