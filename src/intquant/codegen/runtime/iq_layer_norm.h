/* layer_norm: LayerNorm over the last axis in exact integer arithmetic
 * (intquant/ops/layer_norm.py). */
#ifndef IQ_LAYER_NORM_H
#define IQ_LAYER_NORM_H

#include "iq_kernels.h"

typedef struct {
    int32_t rows, row_len;
    int64_t eps_term;
    int32_t eps_shift, shift, act_min, act_max;
    int32_t small_squares; /* every c_i^2 fits 32 bits unsigned (|c_i| < 2^16) */
} iq_layer_norm_params_t;

void iq_layer_norm(const iq_layer_norm_params_t* p, const int32_t* gamma, const int64_t* beta,
                   const void* x, int32_t x_dtype, void* y, int32_t y_dtype);

#endif /* IQ_LAYER_NORM_H */
