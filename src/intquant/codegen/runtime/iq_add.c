/* add: TFLM quantized add / sub (intquant/ops/add.py is the specification). */
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

/* |b_multiplier| and the mask that negates b' for a subtraction (-1: subtract, 0: add):
 * (v ^ mask) - mask is v or -v without a branch (|v| <= 2^30, no overflow). */
static int32_t iq_add_b_sign_mask(const iq_add_params_t* p)
{
    return p->b_multiplier < 0 ? -1 : 0;
}

static int32_t iq_add_b_magnitude(const iq_add_params_t* p)
{
    return p->b_multiplier < 0 ? -p->b_multiplier : p->b_multiplier;
}

/* One row of int8 tensors in double-rounding mode (residual adds of int8 networks): the same
 * arithmetic with the dtype dispatch hoisted out of the loop and the 8-bit output stage
 * (iq_out_clamp, equal to iq_add_zero_point_and_clamp for activation-range bounds).
 * a_step / b_step: 1 along the operand, 0 where it broadcasts. In-place safe (y may alias a
 * or b where that operand has the output's shape). */
static void iq_add_row_s8_double(const iq_add_params_t* p, const int8_t* a, int32_t a_step,
                                 const int8_t* b, int32_t b_step, int8_t* y, int32_t n)
{
    const int32_t ls = p->left_shift, za = p->a_zero_point, zb = p->b_zero_point;
    const int32_t am = p->a_multiplier, as = p->a_shift, bm = iq_add_b_magnitude(p);
    const int32_t bs = p->b_shift, om = p->output_multiplier, os = p->output_shift;
    const int32_t neg = iq_add_b_sign_mask(p);
    const iq_out_stage_t o = iq_out_stage(p->output_zero_point, p->act_min, p->act_max);
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t av = iq_mbqm_double_call((*a - za) * ((int32_t)1 << ls), am, as);
        const int32_t bv =
            (iq_mbqm_double_call((*b - zb) * ((int32_t)1 << ls), bm, bs) ^ neg) - neg;
        const int32_t r = iq_mbqm_double_call((int32_t)((int64_t)av + bv), om, os);
        y[i] = (int8_t)iq_out_clamp(r, &o);
        a += a_step;
        b += b_step;
    }
}

/* One row, any dtypes and mode: elements a[ao + i*a_step], b[bo + i*b_step], y[yo + i]. */
static void iq_add_row(const iq_add_params_t* p, const void* a, int32_t a_dtype, int32_t ao,
                       int32_t a_step, const void* b, int32_t b_dtype, int32_t bo,
                       int32_t b_step, void* y, int32_t y_dtype, int32_t yo, int32_t n)
{
    int32_t i;
    const int32_t scale_up = (int32_t)1 << p->left_shift;
    const int32_t bm = iq_add_b_magnitude(p), neg = iq_add_b_sign_mask(p);
    if (p->mode == IQ_RQ_DOUBLE && a_dtype == IQ_S8 && b_dtype == IQ_S8 && y_dtype == IQ_S8) {
        iq_add_row_s8_double(p, (const int8_t*)a + ao, a_step, (const int8_t*)b + bo, b_step,
                             (int8_t*)y + yo, n);
        return;
    }
    for (i = 0; i < n; ++i) {
        int32_t av = (iq_load(a, ao + i * a_step, a_dtype) - p->a_zero_point) * scale_up;
        int32_t bv = (iq_load(b, bo + i * b_step, b_dtype) - p->b_zero_point) * scale_up;
        int32_t as = iq_apply_multiplier(av, p->a_multiplier, p->a_shift, p->mode);
        int32_t bs = (iq_apply_multiplier(bv, bm, p->b_shift, p->mode) ^ neg) - neg;
        int32_t r = iq_apply_multiplier((int64_t)as + bs, p->output_multiplier,
                                        p->output_shift, p->mode);
        iq_store(y, yo + i, y_dtype,
                 iq_add_zero_point_and_clamp(r, p->output_zero_point, p->act_min, p->act_max));
    }
}

/* TFLM quantized add: both inputs to a common scale (left_shift, own multiplier), sum (or
 * difference), then the output multiplier. In-place safe (y may alias a or b). */
void iq_add(const iq_add_params_t* p, const void* a, int32_t a_dtype, const void* b,
            int32_t b_dtype, void* y, int32_t y_dtype, int32_t n)
{
    iq_add_row(p, a, a_dtype, 0, 1, b, b_dtype, 0, 1, y, y_dtype, 0, n);
}

void iq_add_broadcast(const iq_add_params_t* p, const void* a, int32_t a_dtype, const void* b,
                      int32_t b_dtype, void* y, int32_t y_dtype, const iq_bcast_t* bc)
{
    const int32_t last = bc->ndim - 1, n = bc->shape[last];
    const int32_t rows = iq_bcast_rows(bc);
    int32_t r;
    iq_bcast_pos_t pos;
    iq_bcast_start(&pos);
    for (r = 0; r < rows; ++r) {
        iq_add_row(p, a, a_dtype, pos.a, bc->a_stride[last], b, b_dtype, pos.b,
                   bc->b_stride[last], y, y_dtype, r * n, n);
        iq_bcast_next_row(bc, &pos);
    }
}
