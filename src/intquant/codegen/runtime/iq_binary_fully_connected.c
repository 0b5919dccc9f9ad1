/* binary_fully_connected: acc[c] = in_features - 2 * popcount(x ^ w[c]) (the pixel kernel of
 * the layer), then the threshold (inside the pixel kernel) or requantization. */
#include "iq_binary_fully_connected.h"

void iq_binary_fully_connected(const iq_binary_fc_params_t* p, const uint32_t* x,
                               const uint32_t* w, const iq_binary_out_t* o, void* y,
                               uint16_t* scratch)
{
    if (o->bits) {
        p->pixel(x, w, y, p->out_features);
        return;
    }
    p->pixel(x, w, scratch, p->out_features);
    iq_binary_requant_pixel(o, scratch, p->in_features, p->out_features, y, 0, 1);
}
