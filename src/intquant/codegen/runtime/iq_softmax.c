/* softmax from an offline exp table (intquant/ops/softmax.py). */
#include "iq_softmax.h"

/* exp(-(d)) from the offline table, linear interpolation on the low lut_shift bits. */
static int64_t iq_softmax_exp(const iq_softmax_params_t* p, const int32_t* table, int32_t d)
{
    int32_t i = d >> p->lut_shift;
    int32_t f = d & (((int32_t)1 << p->lut_shift) - 1);
    int64_t e0;
    if (i >= p->table_len - 1) {
        return 0;
    }
    e0 = IQ_LOAD_S32(table + i);
    return e0 + ((((int64_t)IQ_LOAD_S32(table + i + 1) - e0) * f) >> p->lut_shift);
}

void iq_softmax(const iq_softmax_params_t* p, const int32_t* exp_table, const void* x,
                int32_t x_dtype, void* y, int32_t y_dtype)
{
    int32_t r, i;
    for (r = 0; r < p->rows; ++r) {
        const int32_t base = r * p->row_len;
        int32_t max_v = INT32_MIN;
        int64_t sum = 0;
        for (i = 0; i < p->row_len; ++i) {
            int32_t v = iq_load(x, base + i, x_dtype);
            max_v = v > max_v ? v : max_v;
        }
        for (i = 0; i < p->row_len; ++i) {
            sum += iq_softmax_exp(p, exp_table, max_v - iq_load(x, base + i, x_dtype));
        }
        /* The outputs are written after the sum, so y may not alias x: the row is re-read. */
        for (i = 0; i < p->row_len; ++i) {
            int64_t e = iq_softmax_exp(p, exp_table, max_v - iq_load(x, base + i, x_dtype));
            int64_t q = (2 * e * p->output_range + sum) / (2 * sum);
            int32_t v = iq_clamp_i32((int32_t)q + p->output_zero_point, p->act_min, p->act_max);
            iq_store(y, base + i, y_dtype, v);
        }
    }
}
