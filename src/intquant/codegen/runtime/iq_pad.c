/* pad (intquant/ops/pad.py). */
#include "iq_pad.h"

void iq_pad(const void* x, void* y, const int32_t in_shape[4], const int32_t out_shape[4],
            const int32_t before[4], int32_t dtype, int32_t value)
{
    int32_t i, a, b, c;
    int32_t es = iq_dtype_size(dtype);
    int32_t total = out_shape[0] * out_shape[1] * out_shape[2] * out_shape[3];
    for (i = 0; i < total; ++i) {
        iq_store(y, i, dtype, value);
    }
    for (a = 0; a < in_shape[0]; ++a) {
        for (b = 0; b < in_shape[1]; ++b) {
            for (c = 0; c < in_shape[2]; ++c) {
                int32_t src = ((a * in_shape[1] + b) * in_shape[2] + c) * in_shape[3];
                int32_t dst = (((a + before[0]) * out_shape[1] + b + before[1]) * out_shape[2] +
                               c + before[2]) * out_shape[3] + before[3];
                memcpy((uint8_t*)y + (size_t)dst * (size_t)es,
                       (const uint8_t*)x + (size_t)src * (size_t)es,
                       (size_t)in_shape[3] * (size_t)es);
            }
        }
    }
}
