/* clamp: standalone ReLU / ReLU6 / Hardtanh (intquant/ops/clamp.py). */
#ifndef IQ_CLAMP_H
#define IQ_CLAMP_H

#include "iq_kernels.h"

void iq_clamp(const void* x, int32_t x_dtype, void* y, int32_t y_dtype, int32_t n,
              int32_t act_min, int32_t act_max);

#endif /* IQ_CLAMP_H */
