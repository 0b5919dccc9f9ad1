/* slice (intquant/ops/slice.py). */
#include "iq_slice.h"

/* y[o][j][i] = x[o][start + j*step][i]: one memcpy of `inner` elements per output row. */
void iq_slice(const iq_slice_params_t* p, const void* x, void* y)
{
    const uint8_t* src = (const uint8_t*)x;
    uint8_t* dst = (uint8_t*)y;
    const size_t row = (size_t)p->inner * (size_t)p->elem_size;
    int32_t o, j;
    for (o = 0; o < p->outer; ++o) {
        const uint8_t* plane = src + (size_t)o * (size_t)p->in_len * row;
        for (j = 0; j < p->count; ++j) {
            memcpy(dst, plane + (size_t)(p->start + j * p->step) * row, row);
            dst += row;
        }
    }
}
