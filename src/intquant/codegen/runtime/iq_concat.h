/* concat: one input copied into its slice of the output (intquant/ops/concat.py). */
#ifndef IQ_CONCAT_H
#define IQ_CONCAT_H

#include "iq_kernels.h"

void iq_concat_part(void* y, const void* x, int32_t outer, int32_t inner_x, int32_t inner_y,
                    int32_t offset, int32_t elem_size);

#endif /* IQ_CONCAT_H */
