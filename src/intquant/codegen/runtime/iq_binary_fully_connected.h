/* binary_fully_connected: W1A1 Linear on a packed bit vector
 * (intquant/ops/binary_fully_connected.py is the specification). */
#ifndef IQ_BINARY_FULLY_CONNECTED_H
#define IQ_BINARY_FULLY_CONNECTED_H

#include "iq_binary.h"

typedef struct {
    int32_t in_features, out_features;
    int32_t words; /* ceil(in_features / 32) */
    iq_binary_pixel_fn pixel;
} iq_binary_fc_params_t;

/* w: per output feature its weight words, followed (bit output) by
 * R = in_features + 1 - threshold; scratch (8/16-bit output): out_features uint16. */
void iq_binary_fully_connected(const iq_binary_fc_params_t* p, const uint32_t* x,
                               const uint32_t* w, const iq_binary_out_t* o, void* y,
                               uint16_t* scratch);

#endif /* IQ_BINARY_FULLY_CONNECTED_H */
