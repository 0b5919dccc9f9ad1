/* transpose (intquant/ops/transpose.py). */
#include "iq_transpose.h"

/* y[j0, j1, j2, j3] = x[...] with out dim d = in dim perm[d]; elements of elem_size >= 1
 * bytes (1 and 2, the activation sizes, by typed copies). */
void iq_transpose(const void* x, void* y, const int32_t in_shape[4], const int32_t perm[4],
                  int32_t elem_size)
{
    int32_t in_stride[4], out_shape[4], step[4], idx[4];
    int32_t d, j0, j1, j2, j3, o = 0;
    in_stride[3] = 1;
    for (d = 2; d >= 0; --d) {
        in_stride[d] = in_stride[d + 1] * in_shape[d + 1];
    }
    for (d = 0; d < 4; ++d) {
        out_shape[d] = in_shape[perm[d]];
        step[d] = in_stride[perm[d]];
    }
    for (j0 = 0; j0 < out_shape[0]; ++j0) {
        for (j1 = 0; j1 < out_shape[1]; ++j1) {
            for (j2 = 0; j2 < out_shape[2]; ++j2) {
                for (j3 = 0; j3 < out_shape[3]; ++j3) {
                    idx[0] = j0 * step[0] + j1 * step[1] + j2 * step[2] + j3 * step[3];
                    if (elem_size == 1) {
                        ((uint8_t*)y)[o] = ((const uint8_t*)x)[idx[0]];
                    } else if (elem_size == 2) {
                        ((uint16_t*)y)[o] = ((const uint16_t*)x)[idx[0]];
                    } else { /* any other element size, byte by byte */
                        memcpy((uint8_t*)y + (size_t)o * (size_t)elem_size,
                               (const uint8_t*)x + (size_t)idx[0] * (size_t)elem_size,
                               (size_t)elem_size);
                    }
                    ++o;
                }
            }
        }
    }
}
