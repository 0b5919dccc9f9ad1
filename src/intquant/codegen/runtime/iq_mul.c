/* mul: TFLM quantized mul (intquant/ops/mul.py is the specification). */
#include "iq_dot.h"
#include "iq_mul.h"

/* One row of int8 tensors in double-rounding mode (squeeze-excitation gates of int8
 * networks): the dtype dispatch hoisted out of the loop, the 8-bit output stage.
 * a_step / b_step: 1 along the operand, 0 where it broadcasts. */
static void iq_mul_row_s8_double(const iq_mul_params_t* p, const int8_t* a, int32_t a_step,
                                 const int8_t* b, int32_t b_step, int8_t* y, int32_t n)
{
    const int32_t za = p->a_zero_point, zb = p->b_zero_point;
    const int32_t m = p->output_multiplier, s = p->output_shift;
    const iq_out_stage_t o = iq_out_stage(p->output_zero_point, p->act_min, p->act_max);
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t prod = (*a - za) * (*b - zb); /* |prod| <= 255 * 255 */
        y[i] = (int8_t)iq_requantize_out(prod, m, s, IQ_RQ_DOUBLE, &o);
        a += a_step;
        b += b_step;
    }
}

/* One row, any dtypes and mode: a[ao + i*a_step] * b[bo + i*b_step] -> y[yo + i]. */
static void iq_mul_row(const iq_mul_params_t* p, const void* a, int32_t a_dtype, int32_t ao,
                       int32_t a_step, const void* b, int32_t b_dtype, int32_t bo,
                       int32_t b_step, void* y, int32_t y_dtype, int32_t yo, int32_t n)
{
    int32_t i;
    if (p->mode == IQ_RQ_DOUBLE && a_dtype == IQ_S8 && b_dtype == IQ_S8 && y_dtype == IQ_S8) {
        iq_mul_row_s8_double(p, (const int8_t*)a + ao, a_step, (const int8_t*)b + bo, b_step,
                             (int8_t*)y + yo, n);
        return;
    }
    for (i = 0; i < n; ++i) {
        /* validation: |(a - za) * (b - zb)| < 2^31 */
        const int32_t prod = (iq_load(a, ao + i * a_step, a_dtype) - p->a_zero_point) *
                             (iq_load(b, bo + i * b_step, b_dtype) - p->b_zero_point);
        const int32_t r = iq_apply_multiplier(prod, p->output_multiplier, p->output_shift,
                                              p->mode);
        iq_store(y, yo + i, y_dtype,
                 iq_add_zero_point_and_clamp(r, p->output_zero_point, p->act_min, p->act_max));
    }
}

void iq_mul(const iq_mul_params_t* p, const void* a, int32_t a_dtype, const void* b,
            int32_t b_dtype, void* y, int32_t y_dtype, const iq_bcast_t* bc)
{
    const int32_t last = bc->ndim - 1, n = bc->shape[last];
    const int32_t rows = iq_bcast_rows(bc);
    int32_t r;
    iq_bcast_pos_t pos;
    iq_bcast_start(&pos);
    for (r = 0; r < rows; ++r) {
        iq_mul_row(p, a, a_dtype, pos.a, bc->a_stride[last], b, b_dtype, pos.b,
                   bc->b_stride[last], y, y_dtype, r * n, n);
        iq_bcast_next_row(bc, &pos);
    }
}
