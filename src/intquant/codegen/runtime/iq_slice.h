/* slice: every step-th element of one axis from start (intquant/ops/slice.py). */
#ifndef IQ_SLICE_H
#define IQ_SLICE_H

#include "iq_kernels.h"

typedef struct {
    int32_t outer, in_len, inner; /* input viewed as [outer][in_len][inner] */
    int32_t start, step, count;   /* output [outer][count][inner] */
    int32_t elem_size;            /* bytes per element: 1 or 2 */
} iq_slice_params_t;

void iq_slice(const iq_slice_params_t* p, const void* x, void* y);

#endif /* IQ_SLICE_H */
