/* add_const: an activation plus a constant tensor of its shape (intquant/ops/add_const.py). */
#ifndef IQ_ADD_CONST_H
#define IQ_ADD_CONST_H

#include "iq_kernels.h"

typedef struct {
    int32_t input_zero_point, left_shift, multiplier, shift;
    int32_t output_zero_point, act_min, act_max, mode;
} iq_add_const_params_t;

void iq_add_const(const iq_add_const_params_t* p, const int32_t* addend, const void* x,
                  int32_t x_dtype, void* y, int32_t y_dtype, int32_t n);

#endif /* IQ_ADD_CONST_H */
