/* matmul (intquant/ops/matmul.py): y[t][i][j] = requant(sum_k (a - za)(b - zb)). */
#include "iq_matmul.h"

static void iq_matmul_store(const iq_matmul_params_t* p, void* y, int32_t y_dtype, int32_t o,
                            int64_t acc)
{
    const int32_t r = iq_apply_multiplier(acc, p->multiplier, p->shift, p->mode);
    iq_store(y, o, y_dtype,
             iq_add_zero_point_and_clamp(r, p->output_zero_point, p->act_min, p->act_max));
}

/* One typed kernel per pair of element types (one activation format; or attention's int8
 * probabilities times int16 values and the reverse); b is read with stride n (or 1 when
 * transposed) along k. int32 sums when the
 * accumulator is int32 (validation bounds every partial sum below 2^31), else int64 sums of
 * int32 products (product32) or of 64-bit products. */
#define IQ_MATMUL_TYPED(NAME, TA, TB)                                                            \
    static void NAME(const iq_matmul_params_t* p, const TA* a, const TB* b, void* y,           \
                     int32_t y_dtype)                                                          \
    {                                                                                          \
        const int32_t m = p->m, k = p->k, n = p->n, za = p->a_zero_point;                      \
        const int32_t zb = p->b_zero_point;                                                    \
        const int32_t step_k = p->transpose_b ? 1 : n, step_n = p->transpose_b ? k : 1;        \
        int32_t t, i, j, q, o = 0;                                                             \
        for (t = 0; t < p->batch; ++t) {                                                       \
            const TA* at = a + t * m * k;                                                      \
            const TB* bt = b + t * k * n;                                                      \
            for (i = 0; i < m; ++i) {                                                          \
                const TA* row = at + i * k;                                                    \
                for (j = 0; j < n; ++j) {                                                      \
                    const TB* col = bt + j * step_n;                                           \
                    if (!p->acc64) {                                                           \
                        int32_t acc = 0;                                                       \
                        for (q = 0; q < k; ++q) {                                              \
                            acc += ((int32_t)row[q] - za) * ((int32_t)col[q * step_k] - zb);   \
                        }                                                                      \
                        iq_matmul_store(p, y, y_dtype, o++, acc);                              \
                    } else if (p->product32) {                                                 \
                        int64_t acc = 0;                                                       \
                        for (q = 0; q < k; ++q) {                                              \
                            acc += ((int32_t)row[q] - za) * ((int32_t)col[q * step_k] - zb);   \
                        }                                                                      \
                        iq_matmul_store(p, y, y_dtype, o++, acc);                              \
                    } else {                                                                   \
                        int64_t acc = 0;                                                       \
                        for (q = 0; q < k; ++q) {                                              \
                            acc += iq_mul_i32_i32((int32_t)row[q] - za,                        \
                                                  (int32_t)col[q * step_k] - zb);              \
                        }                                                                      \
                        iq_matmul_store(p, y, y_dtype, o++, acc);                              \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

IQ_MATMUL_TYPED(iq_matmul_s8, int8_t, int8_t)
IQ_MATMUL_TYPED(iq_matmul_u8, uint8_t, uint8_t)
IQ_MATMUL_TYPED(iq_matmul_s16, int16_t, int16_t)
IQ_MATMUL_TYPED(iq_matmul_s8_s16, int8_t, int16_t)
IQ_MATMUL_TYPED(iq_matmul_s16_s8, int16_t, int8_t)

/* Operands of two different element types: element loads by type code. */
static void iq_matmul_mixed(const iq_matmul_params_t* p, const void* a, int32_t a_dtype,
                            const void* b, int32_t b_dtype, void* y, int32_t y_dtype)
{
    const int32_t m = p->m, k = p->k, n = p->n;
    const int32_t step_k = p->transpose_b ? 1 : n, step_n = p->transpose_b ? k : 1;
    int32_t t, i, j, q, o = 0;
    for (t = 0; t < p->batch; ++t) {
        for (i = 0; i < m; ++i) {
            for (j = 0; j < n; ++j) {
                int64_t acc = 0;
                for (q = 0; q < k; ++q) {
                    acc += iq_mul_i32_i32(iq_load(a, (t * m + i) * k + q, a_dtype) -
                                              p->a_zero_point,
                                          iq_load(b, t * k * n + j * step_n + q * step_k,
                                                  b_dtype) - p->b_zero_point);
                }
                iq_matmul_store(p, y, y_dtype, o++, acc);
            }
        }
    }
}

void iq_matmul(const iq_matmul_params_t* p, const void* a, int32_t a_dtype, const void* b,
               int32_t b_dtype, void* y, int32_t y_dtype)
{
    if (a_dtype == b_dtype && a_dtype == IQ_S8) {
        iq_matmul_s8(p, (const int8_t*)a, (const int8_t*)b, y, y_dtype);
    } else if (a_dtype == b_dtype && a_dtype == IQ_U8) {
        iq_matmul_u8(p, (const uint8_t*)a, (const uint8_t*)b, y, y_dtype);
    } else if (a_dtype == b_dtype && a_dtype == IQ_S16) {
        iq_matmul_s16(p, (const int16_t*)a, (const int16_t*)b, y, y_dtype);
    } else if (a_dtype == IQ_S8 && b_dtype == IQ_S16) {
        iq_matmul_s8_s16(p, (const int8_t*)a, (const int16_t*)b, y, y_dtype);
    } else if (a_dtype == IQ_S16 && b_dtype == IQ_S8) {
        iq_matmul_s16_s8(p, (const int16_t*)a, (const int8_t*)b, y, y_dtype);
    } else {
        iq_matmul_mixed(p, a, a_dtype, b, b_dtype, y, y_dtype);
    }
}
