/* pad: constant padding (intquant/ops/pad.py). */
#ifndef IQ_PAD_H
#define IQ_PAD_H

#include "iq_kernels.h"

/* pad on tensors of rank <= 4 (shapes right-aligned, leading dims 1). */
void iq_pad(const void* x, void* y, const int32_t in_shape[4], const int32_t out_shape[4],
            const int32_t before[4], int32_t dtype, int32_t value);

#endif /* IQ_PAD_H */
