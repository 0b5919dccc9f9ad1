/* lut: elementwise function as an offline table (intquant/ops/lut.py). */
#ifndef IQ_LUT_H
#define IQ_LUT_H

#include "iq_kernels.h"

void iq_lut8(const void* x, int32_t x_dtype, const void* table, int32_t table_dtype, void* y,
             int32_t y_dtype, int32_t n, int32_t act_min, int32_t act_max);

void iq_lut16(const int16_t* x, const int32_t* table, void* y, int32_t y_dtype, int32_t n,
              int32_t act_min, int32_t act_max);

#endif /* IQ_LUT_H */
