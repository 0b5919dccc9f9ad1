/* softmax: integer softmax along one axis (intquant/ops/softmax.py). */
#ifndef IQ_SOFTMAX_H
#define IQ_SOFTMAX_H

#include "iq_kernels.h"

typedef struct {
    int32_t rows, row_len, inner; /* element (r, i, j) at (r * row_len + i) * inner + j */
    int32_t lut_shift, table_len; /* table_len = T + 1 */
    int32_t output_range, output_zero_point, act_min, act_max;
} iq_softmax_params_t;

void iq_softmax(const iq_softmax_params_t* p, const int32_t* exp_table, const void* x,
                int32_t x_dtype, void* y, int32_t y_dtype);

#endif /* IQ_SOFTMAX_H */
