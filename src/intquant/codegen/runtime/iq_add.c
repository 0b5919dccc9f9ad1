/* add: TFLM quantized add (intquant/ops/add.py is the specification). */
#include "iq_dot.h"
#include "iq_add.h"

/* One out-of-line copy of the (asm, on Cortex-M0) requantization for the elementwise ops:
 * three inlined copies per add loop cost flash for little speed. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int32_t iq_mbqm_double_call(int32_t x, int32_t m, int32_t shift)
{
    return iq_mbqm_double(x, m, shift);
}

/* iq_add for int8 tensors in double-rounding mode (residual adds of int8 networks): the same
 * arithmetic with the dtype dispatch hoisted out of the loop and the 8-bit output stage
 * (iq_out_clamp, equal to iq_add_zero_point_and_clamp for activation-range bounds). */
static void iq_add_s8_double(const iq_add_params_t* p, const int8_t* a, const int8_t* b,
                             int8_t* y, int32_t n)
{
    const int32_t ls = p->left_shift, za = p->a_zero_point, zb = p->b_zero_point;
    const int32_t am = p->a_multiplier, as = p->a_shift, bm = p->b_multiplier;
    const int32_t bs = p->b_shift, om = p->output_multiplier, os = p->output_shift;
    const iq_out_stage_t o = iq_out_stage(p->output_zero_point, p->act_min, p->act_max);
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t av = iq_mbqm_double_call((a[i] - za) * ((int32_t)1 << ls), am, as);
        const int32_t bv = iq_mbqm_double_call((b[i] - zb) * ((int32_t)1 << ls), bm, bs);
        const int32_t r = iq_mbqm_double_call((int32_t)((int64_t)av + bv), om, os);
        y[i] = (int8_t)iq_out_clamp(r, &o);
    }
}

/* TFLM quantized add: both inputs to a common scale (left_shift, own multiplier), sum,
 * then the output multiplier. In-place safe (y may alias a or b). */
void iq_add(const iq_add_params_t* p, const void* a, int32_t a_dtype, const void* b,
            int32_t b_dtype, void* y, int32_t y_dtype, int32_t n)
{
    int32_t i;
    int32_t scale_up = (int32_t)1 << p->left_shift;
    if (p->mode == IQ_RQ_DOUBLE && a_dtype == IQ_S8 && b_dtype == IQ_S8 && y_dtype == IQ_S8) {
        iq_add_s8_double(p, (const int8_t*)a, (const int8_t*)b, (int8_t*)y, n);
        return;
    }
    for (i = 0; i < n; ++i) {
        int32_t av = (iq_load(a, i, a_dtype) - p->a_zero_point) * scale_up;
        int32_t bv = (iq_load(b, i, b_dtype) - p->b_zero_point) * scale_up;
        int32_t as = iq_apply_multiplier(av, p->a_multiplier, p->a_shift, p->mode);
        int32_t bs = iq_apply_multiplier(bv, p->b_multiplier, p->b_shift, p->mode);
        int32_t r = iq_apply_multiplier((int64_t)as + bs, p->output_multiplier,
                                        p->output_shift, p->mode);
        iq_store(y, i, y_dtype,
                 iq_add_zero_point_and_clamp(r, p->output_zero_point, p->act_min, p->act_max));
    }
}
