/*
 * Depthwise conv kernels (iq_depthwise_impl.h): parameters, the instance declaration and the
 * row passes shared by all instances (iq_depthwise.c).
 */
#ifndef IQ_DEPTHWISE_H
#define IQ_DEPTHWISE_H

#include "iq_requant.h"

/* Geometry in the kernel's orientation: rows are the input's rows, or its columns when the
 * generator transposed the problem so that rows are the long side (then pitches, kernel,
 * strides, padding and dilations are swapped to match). */
typedef struct {
    int32_t channels, in_h, in_w, out_h, out_w;
    int32_t row_pitch, col_pitch;         /* input elements between rows / columns */
    int32_t out_row_pitch, out_col_pitch; /* output elements between rows / columns */
    int32_t k_h, k_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w;
    int32_t mult;      /* output channels per input channel */
    int32_t row_w;     /* bytes of one padded input row */
    int32_t band;      /* output rows per band */
    int32_t band_rows; /* input rows of a band: (band - 1) * stride_h + (k_h - 1) * dil_h + 1 */
    int32_t input_zero_point, act_min;
    int32_t sign; /* the requantization's sign variant (iq_requant.h) */
} iq_dw_params_t;

#define IQ_DW_DECLARE(fn, tin, tout)                                                           \
    void fn(const iq_dw_params_t* p, const tin* x, const int8_t* w, const iq_rqw_t* rq,       \
            tout* y, void* scratch)

/* One kernel row of three taps over `rows` rows of `n` outputs: for output i of row j,
 * acc[j*n + i] (+)= w[0]*x[0] + w[1]*x[1] + w[2]*x[2], x the input at byte offset
 * j*jump + i*step from r; with `init` the sums start from `base`. The field order is read by
 * the assembly. */
typedef struct {
    int32_t n, rows, step, jump;
    int32_t w[3];
    int32_t base, init;
} iq_dw_pass_t;

void iq_dw_pass3(const uint8_t* r, int32_t* acc, const iq_dw_pass_t* ps);
void iq_dw_pass3_16(const uint16_t* r, int32_t* acc, const iq_dw_pass_t* ps); /* 16-bit inputs */

#endif /* IQ_DEPTHWISE_H */
