/* rescale: change of quantization parameters (intquant/ops/rescale.py). */
#ifndef IQ_RESCALE_H
#define IQ_RESCALE_H

#include "iq_kernels.h"

typedef struct {
    int32_t input_zero_point_shifted, left_shift, multiplier, shift;
    int32_t output_zero_point, act_min, act_max, mode;
} iq_rescale_params_t;

void iq_rescale(const iq_rescale_params_t* p, const void* x, int32_t x_dtype, void* y,
                int32_t y_dtype, int32_t n);

#endif /* IQ_RESCALE_H */
