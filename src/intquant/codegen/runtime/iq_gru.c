/* gru: nn.GRU / GRUCell loops, one layer after the other at every step (intquant/ops/gru.py). */
#include "iq_gru.h"

void iq_gru_reset(const iq_rnn_params_t* p, void* state)
{
    int32_t l;
    for (l = 0; l < p->layers; ++l) {
        iq_rnn_copy_state((int16_t*)state + l * p->hidden, p->layer[l].h0, p->hidden);
    }
}

/* One step of layer L: input x (dtype), state h updated through hnew (scratch).
 * r = σ(Gr), z = σ(Gz), n = tanh(Gx_n + r·sat16(Gh_n)), h' = n + z·(h − n). */
static void iq_gru_layer_step(const iq_rnn_params_t* p, const iq_rnn_layer_t* L, const void* x,
                              int32_t dtype, int16_t* h, int16_t* hnew)
{
    const int32_t hid = p->hidden;
    int32_t j;
    for (j = 0; j < hid; ++j) {
        int32_t r = iq_rnn_table(p->sigmoid,
                                 iq_rnn_sat16(iq_rnn_gate_sum(L, j, x, dtype, h, hid,
                                                              p->rounding)));
        int32_t z = iq_rnn_table(p->sigmoid,
                                 iq_rnn_sat16(iq_rnn_gate_sum(L, hid + j, x, dtype, h, hid,
                                                              p->rounding)));
        int32_t gx = iq_rnn_gate(L->w_ih, L->bias_x, L->mult_x, L->shift_x, 2 * hid + j, x,
                                 dtype, L->input_size, p->rounding);
        int32_t gh = iq_rnn_gate(L->w_hh, L->bias_h, L->mult_h, L->shift_h, 2 * hid + j, h,
                                 IQ_S16, hid, p->rounding);
        int32_t n = iq_rnn_table(
            p->tanh, iq_rnn_sat16((int64_t)gx + iq_rnn_mul_q15(r, iq_rnn_sat16(gh))));
        hnew[j] = (int16_t)(n + iq_rnn_mul_q15(z, h[j] - n));
    }
    for (j = 0; j < hid; ++j) {
        h[j] = hnew[j];
    }
}

void iq_gru_run(const iq_rnn_params_t* p, const void* x, int32_t steps, void* y, void* state,
                void* scratch)
{
    int16_t* h = (int16_t*)state;
    int16_t* last = h + (p->layers - 1) * p->hidden;
    int32_t t, l;
    for (t = 0; t < steps; ++t) {
        const void* in = iq_rnn_frame(x, p->in_dtype, t, p->layer[0].input_size);
        int32_t dtype = p->in_dtype;
        for (l = 0; l < p->layers; ++l) {
            int16_t* hl = h + l * p->hidden;
            iq_gru_layer_step(p, &p->layer[l], in, dtype, hl, (int16_t*)scratch);
            in = hl;
            dtype = IQ_S16;
        }
        if (p->sequence) {
            iq_rnn_output(p, last, y, t * p->hidden);
        }
    }
    if (!p->sequence) {
        iq_rnn_output(p, last, y, 0);
    }
}
