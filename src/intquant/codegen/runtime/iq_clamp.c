/* clamp: standalone ReLU / ReLU6 / Hardtanh (intquant/ops/clamp.py). */
#include "iq_clamp.h"

void iq_clamp(const void* x, int32_t x_dtype, void* y, int32_t y_dtype, int32_t n,
              int32_t act_min, int32_t act_max)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        iq_store(y, i, y_dtype, iq_clamp_i32(iq_load(x, i, x_dtype), act_min, act_max));
    }
}
