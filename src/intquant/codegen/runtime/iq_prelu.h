/* prelu: PReLU with one slope per channel (intquant/ops/prelu.py). */
#ifndef IQ_PRELU_H
#define IQ_PRELU_H

#include "iq_kernels.h"

typedef struct {
    int32_t input_zero_point, left_shift, output_zero_point, pos_multiplier, pos_shift;
    int32_t act_min, act_max, mode;
    int32_t channels, inner;  /* x is (channels, inner) per sample */
    int32_t shared_slope;     /* 1: one (neg_multiplier, neg_shift) for every channel */
} iq_prelu_params_t;

/* neg_multiplier < 0: a negative slope (its sign applies after the rounding). In-place safe. */
void iq_prelu(const iq_prelu_params_t* p, const void* x, int32_t x_dtype,
              const int32_t* neg_multiplier, const int32_t* neg_shift, void* y,
              int32_t y_dtype);

#endif /* IQ_PRELU_H */
