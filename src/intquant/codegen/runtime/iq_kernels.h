/*
 * intquant kernels: one function per IntGraph op (docs/intgraph.md is the contract, the NumPy
 * interpreter the specification; every kernel here is bit-identical to it).
 *
 * conv and fully_connected are the multiply-accumulate hot spots and are instantiated per
 * (input, weight, output, accumulator) type by the generated <model>_kernels.c from the
 * templates iq_conv_impl.h / iq_fc_impl.h. The other ops move few bytes; they take a dtype
 * code and are compiled once (iq_ops.c).
 */
#ifndef IQ_KERNELS_H
#define IQ_KERNELS_H

#include "iq_runtime.h"

/* Element types of activations (codes used by the generic kernels). */
enum { IQ_S8 = 1, IQ_U8 = 2, IQ_S16 = 3, IQ_S32 = 4 };

static inline int32_t iq_load(const void* base, int32_t i, int32_t dtype)
{
    switch (dtype) {
    case IQ_U8:
        return ((const uint8_t*)base)[i];
    case IQ_S16:
        return ((const int16_t*)base)[i];
    case IQ_S32:
        return ((const int32_t*)base)[i];
    default:
        return ((const int8_t*)base)[i];
    }
}

static inline void iq_store(void* base, int32_t i, int32_t dtype, int32_t v)
{
    switch (dtype) {
    case IQ_U8:
        ((uint8_t*)base)[i] = (uint8_t)v;
        break;
    case IQ_S16:
        ((int16_t*)base)[i] = (int16_t)v;
        break;
    case IQ_S32:
        ((int32_t*)base)[i] = v;
        break;
    default:
        ((int8_t*)base)[i] = (int8_t)v;
        break;
    }
}

static inline int32_t iq_dtype_size(int32_t dtype)
{
    return dtype == IQ_S16 ? 2 : (dtype == IQ_S32 ? 4 : 1);
}

/* ---- conv / fully_connected (templates) ------------------------------------------------- */

struct iq_rqw_s; /* iq_requant.h: a channel's constants for the batched requantization */

typedef struct iq_conv_params_s {
    int32_t in_c, in_h, in_w;
    int32_t out_c, out_h, out_w;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
    int32_t dil_h, dil_w;
    int32_t groups;
    int32_t input_zero_point; /* fills the padded positions of the im2col buffer */
    int32_t output_zero_point, act_min, act_max;
    int32_t mode; /* IQ_RQ_* */
    int32_t tile;  /* positions per tile (tiled instances, iq_requant.h) */
    int32_t band;  /* output rows per band (IQ_ROWS instances) */
    int32_t row_w; /* padded input row width (IQ_ROWS instances) */
    int32_t sign;  /* the requantization's sign variant (tiled instances, iq_requant.h) */
} iq_conv_params_t;

typedef struct {
    int32_t in_features, out_features;
    int32_t output_zero_point, act_min, act_max;
    int32_t mode;
} iq_fc_params_t;

#define IQ_CONV_DECLARE(fn, tin, tw, tout, tbias)                                             \
    void fn(const iq_conv_params_t* p, const tin* x, const tw* w, const tbias* bias,          \
            const int32_t* mult, const int32_t* shift, tout* y, void* col)
#define IQ_CONV_TILE_DECLARE(fn, tin, tout)                                                    \
    void fn(const iq_conv_params_t* p, const tin* x, const uint8_t* w, const uint32_t* bias,  \
            const struct iq_rqw_s* rq, tout* y, void* col)
#define IQ_FC_DECLARE(fn, tin, tw, tout, tbias)                                               \
    void fn(const iq_fc_params_t* p, const tin* x, const tw* w, const tbias* bias,            \
            const int32_t* mult, const int32_t* shift, tout* y, void* col)

/* ---- the other ops (iq_ops.c) --------------------------------------------------------- */

typedef struct {
    int32_t a_zero_point, b_zero_point, left_shift;
    int32_t a_multiplier, a_shift, b_multiplier, b_shift;
    int32_t output_multiplier, output_shift, output_zero_point;
    int32_t act_min, act_max, mode;
} iq_add_params_t;

void iq_add(const iq_add_params_t* p, const void* a, int32_t a_dtype, const void* b,
            int32_t b_dtype, void* y, int32_t y_dtype, int32_t n);

typedef struct {
    int32_t input_zero_point_shifted, left_shift, multiplier, shift;
    int32_t output_zero_point, act_min, act_max, mode;
} iq_rescale_params_t;

void iq_rescale(const iq_rescale_params_t* p, const void* x, int32_t x_dtype, void* y,
                int32_t y_dtype, int32_t n);

void iq_clamp(const void* x, int32_t x_dtype, void* y, int32_t y_dtype, int32_t n,
              int32_t act_min, int32_t act_max);

void iq_lut8(const void* x, int32_t x_dtype, const void* table, int32_t table_dtype, void* y,
             int32_t y_dtype, int32_t n, int32_t act_min, int32_t act_max);

void iq_lut16(const int16_t* x, const int32_t* table, void* y, int32_t y_dtype, int32_t n,
              int32_t act_min, int32_t act_max);

typedef struct {
    int32_t channels, in_h, in_w, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w;
    int32_t count_include_pad, zero_point, act_min, act_max;
} iq_pool_params_t;

void iq_max_pool(const iq_pool_params_t* p, const void* x, void* y, int32_t dtype);
void iq_avg_pool(const iq_pool_params_t* p, const void* x, void* y, int32_t dtype);

typedef struct {
    int32_t rows, row_len;
    int32_t lut_shift, table_len; /* table_len = T + 1 */
    int32_t output_range, output_zero_point, act_min, act_max;
} iq_softmax_params_t;

void iq_softmax(const iq_softmax_params_t* p, const int32_t* exp_table, const void* x,
                int32_t x_dtype, void* y, int32_t y_dtype);

void iq_concat_part(void* y, const void* x, int32_t outer, int32_t inner_x, int32_t inner_y,
                    int32_t offset, int32_t elem_size);

/* pad / transpose on tensors of rank <= 4 (shapes right-aligned, leading dims 1). */
void iq_pad(const void* x, void* y, const int32_t in_shape[4], const int32_t out_shape[4],
            const int32_t before[4], int32_t dtype, int32_t value);
void iq_transpose(const void* x, void* y, const int32_t in_shape[4], const int32_t perm[4],
                  int32_t elem_size);

#endif /* IQ_KERNELS_H */
