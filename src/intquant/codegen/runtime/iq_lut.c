/* lut: table lookup, 8-bit direct and int16 interpolated (intquant/ops/lut.py). */
#include "iq_lut.h"

/* 8-bit input: out = table[x + 128] (int8) or table[x] (uint8). */
void iq_lut8(const void* x, int32_t x_dtype, const void* table, int32_t table_dtype, void* y,
             int32_t y_dtype, int32_t n, int32_t act_min, int32_t act_max)
{
    int32_t i;
    int32_t offset = x_dtype == IQ_U8 ? 0 : 128;
    for (i = 0; i < n; ++i) {
        int32_t v = iq_load_const(table, iq_load(x, i, x_dtype) + offset, table_dtype);
        iq_store(y, i, y_dtype, iq_clamp_i32(v, act_min, act_max));
    }
}

/* 16-bit input: 513-entry table, linear interpolation on the low 7 bits (floor shift). */
void iq_lut16(const int16_t* x, const int32_t* table, void* y, int32_t y_dtype, int32_t n,
              int32_t act_min, int32_t act_max)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        int32_t u = (int32_t)x[i] + 32768;
        int32_t k = u >> 7;
        int32_t f = u & 127;
        int32_t t0 = IQ_LOAD_S32(table + k);
        int64_t delta = ((int64_t)IQ_LOAD_S32(table + k + 1) - t0) * f + 64;
        int64_t v = (int64_t)t0 + (delta >> 7);
        v = v < act_min ? act_min : (v > act_max ? act_max : v);
        iq_store(y, i, y_dtype, (int32_t)v);
    }
}
