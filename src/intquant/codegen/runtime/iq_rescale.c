/* rescale: change of quantization parameters (intquant/ops/rescale.py). */
#include "iq_rescale.h"

/* Change of quantization parameters: mbqm((x << ls) - zps) + z_out. In-place safe when the
 * output element is not wider than the input element. */
void iq_rescale(const iq_rescale_params_t* p, const void* x, int32_t x_dtype, void* y,
                int32_t y_dtype, int32_t n)
{
    int32_t i;
    int32_t scale_up = (int32_t)1 << p->left_shift;
    for (i = 0; i < n; ++i) {
        int32_t v = iq_load(x, i, x_dtype) * scale_up - p->input_zero_point_shifted;
        int32_t r = iq_apply_multiplier(v, p->multiplier, p->shift, p->mode);
        iq_store(y, i, y_dtype,
                 iq_add_zero_point_and_clamp(r, p->output_zero_point, p->act_min, p->act_max));
    }
}
