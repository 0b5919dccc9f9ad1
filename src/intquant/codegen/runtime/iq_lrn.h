/*
 * intquant kernel: local response normalization across channels (IntGraph op `lrn`,
 * docs/intgraph.md), implemented in iq_lrn.c. Integers only.
 */
#ifndef IQ_LRN_H
#define IQ_LRN_H

#include "iq_kernels.h"

/* x and y are (channels, inner) in C order; the window runs over channels. */
typedef struct {
    int32_t channels, inner, size;
    int32_t input_zero_point, lut_shift, left_shift;
    int32_t multiplier, shift, output_zero_point, act_min, act_max;
} iq_lrn_params_t;

void iq_lrn(const iq_lrn_params_t* p, const int32_t* table, const void* x, int32_t x_dtype,
            void* y, int32_t y_dtype);

#endif /* IQ_LRN_H */
