/* conv / fully_connected: parameter structs and the prototype of a template instance
 * (iq_conv_impl.h, instantiated per type in the generated <model>_kernels.c). */
#ifndef IQ_CONV_H
#define IQ_CONV_H

#include "iq_kernels.h"

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
    int32_t mode;  /* IQ_RQ_* */
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
/* 16x8 (iq_conv16_impl.h): the parameters are IQ_FLASH too (read through IQ_LOAD_OBJ). */
#define IQ_CONV16_DECLARE(fn)                                                                  \
    void fn(const iq_conv_params_t* pf, const int16_t* x, const uint8_t* w,                   \
            const uint32_t* bias, const struct iq_rqw_s* rq, int16_t* y, void* col)
#define IQ_FC_DECLARE(fn, tin, tw, tout, tbias)                                               \
    void fn(const iq_fc_params_t* p, const tin* x, const tw* w, const tbias* bias,            \
            const int32_t* mult, const int32_t* shift, tout* y, void* col)

#endif /* IQ_CONV_H */
