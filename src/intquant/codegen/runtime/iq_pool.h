/* max_pool / avg_pool: the window parameters and tap helpers both share. */
#ifndef IQ_POOL_H
#define IQ_POOL_H

#include "iq_kernels.h"

typedef struct {
    int32_t channels, in_h, in_w, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w;
    int32_t count_include_pad, zero_point, act_min, act_max;
} iq_pool_params_t;

/* Window bounds [lo, hi) of the valid taps of one output position along one axis. */
static inline int32_t iq_window_count(int32_t start, int32_t k, int32_t dil, int32_t size)
{
    int32_t t, count = 0;
    for (t = 0; t < k; ++t) {
        int32_t pos = start + t * dil;
        count += (pos >= 0 && pos < size) ? 1 : 0;
    }
    return count;
}

/* Taps [lo, hi) of a window axis that land inside the input (no division: windows are short). */
static inline void iq_window_taps(int32_t start, int32_t k, int32_t dil, int32_t size,
                                  int32_t* lo, int32_t* hi)
{
    int32_t a = 0, b = k;
    while (a < k && start + a * dil < 0) {
        ++a;
    }
    while (b > a && start + (b - 1) * dil >= size) {
        --b;
    }
    *lo = a;
    *hi = b;
}

#endif /* IQ_POOL_H */
