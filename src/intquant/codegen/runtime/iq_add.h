/* add: TFLM quantized add / sub of two tensors, with broadcasting (intquant/ops/add.py). */
#ifndef IQ_ADD_H
#define IQ_ADD_H

#include "iq_broadcast.h"
#include "iq_kernels.h"

/* b_multiplier < 0: subtract b (TFLM's sub; the sign applies after b's rounding). */
typedef struct {
    int32_t a_zero_point, b_zero_point, left_shift;
    int32_t a_multiplier, a_shift, b_multiplier, b_shift;
    int32_t output_multiplier, output_shift, output_zero_point;
    int32_t act_min, act_max, mode;
} iq_add_params_t;

/* Same shapes: n elements. */
void iq_add(const iq_add_params_t* p, const void* a, int32_t a_dtype, const void* b,
            int32_t b_dtype, void* y, int32_t y_dtype, int32_t n);

/* Broadcasting: the output walk bc (iq_broadcast.h). */
void iq_add_broadcast(const iq_add_params_t* p, const void* a, int32_t a_dtype, const void* b,
                      int32_t b_dtype, void* y, int32_t y_dtype, const iq_bcast_t* bc);

#endif /* IQ_ADD_H */
