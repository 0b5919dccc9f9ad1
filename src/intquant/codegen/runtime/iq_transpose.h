/* transpose: permutation of axes (intquant/ops/transpose.py). */
#ifndef IQ_TRANSPOSE_H
#define IQ_TRANSPOSE_H

#include "iq_kernels.h"

/* transpose on tensors of rank <= 4 (shapes right-aligned, leading dims 1). */
void iq_transpose(const void* x, void* y, const int32_t in_shape[4], const int32_t perm[4],
                  int32_t elem_size);

#endif /* IQ_TRANSPOSE_H */
