/* matmul: product of two activations (intquant/ops/matmul.py). */
#ifndef IQ_MATMUL_H
#define IQ_MATMUL_H

#include "iq_kernels.h"

typedef struct {
    int32_t batch, m, k, n;
    int32_t transpose_b; /* b is [batch][n][k] instead of [batch][k][n] */
    int32_t a_zero_point, b_zero_point, output_zero_point;
    int32_t multiplier, shift, act_min, act_max, mode;
    int32_t acc64;     /* int64 accumulator (acc_bits 64) */
    int32_t product32; /* every (a - za)(b - zb) fits int32 */
} iq_matmul_params_t;

void iq_matmul(const iq_matmul_params_t* p, const void* a, int32_t a_dtype, const void* b,
               int32_t b_dtype, void* y, int32_t y_dtype);

#endif /* IQ_MATMUL_H */
