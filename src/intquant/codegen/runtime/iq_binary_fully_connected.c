/* binary_fully_connected: acc[c] = in_features - 2 * popcount(x ^ w[c]) over the words. */
#include "iq_binary_fully_connected.h"

void iq_binary_fully_connected(const iq_binary_fc_params_t* p, const uint32_t* x,
                               const uint32_t* w, const iq_binary_out_t* o, void* y)
{
    int32_t c;
    uint32_t word = 0;
    for (c = 0; c < p->out_features; ++c) {
        int32_t pop = iq_xor_popcount(x, w + c * p->words, p->words);
        iq_binary_emit(o, c, p->out_features - 1, p->in_features - 2 * pop, &word,
                       (uint32_t*)y, y, c);
    }
}
