/* add_const (intquant/ops/add_const.py). In-place safe (elementwise). */
#include "iq_add_const.h"

/* (x - z) * 2^left_shift + addend fits int32 (validated), then one requantization. */
void iq_add_const(const iq_add_const_params_t* p, const int32_t* addend, const void* x,
                  int32_t x_dtype, void* y, int32_t y_dtype, int32_t n)
{
    const int32_t scale_up = (int32_t)1 << p->left_shift;
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t v = (iq_load(x, i, x_dtype) - p->input_zero_point) * scale_up +
                          IQ_LOAD_S32(addend + i);
        const int32_t r = iq_apply_multiplier(v, p->multiplier, p->shift, p->mode);
        iq_store(y, i, y_dtype,
                 iq_add_zero_point_and_clamp(r, p->output_zero_point, p->act_min, p->act_max));
    }
}
