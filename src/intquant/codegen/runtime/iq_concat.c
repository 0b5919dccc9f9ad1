/* concat (intquant/ops/concat.py). */
#include "iq_concat.h"

/* Copy one concat input into its slice of the output: `outer` blocks of inner_x elements
 * land at offset + k * inner_y. */
void iq_concat_part(void* y, const void* x, int32_t outer, int32_t inner_x, int32_t inner_y,
                    int32_t offset, int32_t elem_size)
{
    int32_t k;
    uint8_t* dst = (uint8_t*)y + (size_t)offset * (size_t)elem_size;
    const uint8_t* src = (const uint8_t*)x;
    for (k = 0; k < outer; ++k) {
        memcpy(dst, src, (size_t)inner_x * (size_t)elem_size);
        dst += (size_t)inner_y * (size_t)elem_size;
        src += (size_t)inner_x * (size_t)elem_size;
    }
}
