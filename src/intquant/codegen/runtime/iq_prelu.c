/* prelu: PReLU with one slope per channel (intquant/ops/prelu.py is the specification). */
#include "iq_prelu.h"

void iq_prelu(const iq_prelu_params_t* p, const void* x, int32_t x_dtype,
              const int32_t* neg_multiplier, const int32_t* neg_shift, void* y,
              int32_t y_dtype)
{
    int32_t c, i, k = 0;
    const int32_t scale_up = (int32_t)1 << p->left_shift;
    for (c = 0; c < p->channels; ++c) {
        const int32_t j = p->shared_slope ? 0 : c;
        const int32_t nm = IQ_LOAD_S32(neg_multiplier + j), ns = IQ_LOAD_S32(neg_shift + j);
        const int32_t mag = nm < 0 ? -nm : nm;
        const int32_t mask = nm < 0 ? -1 : 0; /* (v ^ mask) - mask: v or -v */
        for (i = 0; i < p->inner; ++i, ++k) {
            /* validation: |x - z| << left_shift <= 2^30 */
            const int32_t d = (iq_load(x, k, x_dtype) - p->input_zero_point) * scale_up;
            int32_t r;
            if (d >= 0) {
                r = iq_apply_multiplier(d, p->pos_multiplier, p->pos_shift, p->mode);
            } else {
                r = (iq_apply_multiplier(d, mag, ns, p->mode) ^ mask) - mask;
            }
            iq_store(y, k, y_dtype,
                     iq_add_zero_point_and_clamp(r, p->output_zero_point, p->act_min,
                                                 p->act_max));
        }
    }
}
