/* lstm: nn.LSTM / LSTMCell loops, one layer after the other at every step
 * (intquant/ops/lstm.py). The state is h of every layer, then c of every layer. */
#include "iq_lstm.h"

void iq_lstm_reset(const iq_rnn_params_t* p, void* state)
{
    int16_t* s = (int16_t*)state;
    int32_t l;
    for (l = 0; l < p->layers; ++l) {
        iq_rnn_copy_state(s + l * p->hidden, p->layer[l].h0, p->hidden);
        iq_rnn_copy_state(s + (p->layers + l) * p->hidden, p->layer[l].c0, p->hidden);
    }
}

/* The cell state (scale 2^-cs) as a Q3.12 code: rounded shift down, saturating up. */
static int32_t iq_lstm_cell_q312(int32_t c, int32_t cs)
{
    if (cs > 12) {
        return (c + ((int32_t)1 << (cs - 13))) >> (cs - 12);
    }
    return iq_rnn_sat16((int64_t)c * ((int32_t)1 << (12 - cs)));
}

/* One step of layer L: i, f, o = σ, g = tanh of the gate sums; c' = f·c + i·g; h' = o·tanh(c'). */
static void iq_lstm_layer_step(const iq_rnn_params_t* p, const iq_rnn_layer_t* L, const void* x,
                               int32_t dtype, int16_t* h, int16_t* c, int16_t* hnew)
{
    const int32_t hid = p->hidden;
    const int32_t cs = L->cell_shift;
    const int32_t k = 30 - cs;
    int32_t j;
    for (j = 0; j < hid; ++j) {
        int32_t i = iq_rnn_table(
            p->sigmoid, iq_rnn_sat16(iq_rnn_gate_sum(L, j, x, dtype, h, hid, p->rounding)));
        int32_t f = iq_rnn_table(
            p->sigmoid,
            iq_rnn_sat16(iq_rnn_gate_sum(L, hid + j, x, dtype, h, hid, p->rounding)));
        int32_t g = iq_rnn_table(
            p->tanh,
            iq_rnn_sat16(iq_rnn_gate_sum(L, 2 * hid + j, x, dtype, h, hid, p->rounding)));
        int32_t o = iq_rnn_table(
            p->sigmoid,
            iq_rnn_sat16(iq_rnn_gate_sum(L, 3 * hid + j, x, dtype, h, hid, p->rounding)));
        int32_t cj = iq_rnn_sat16((int64_t)iq_rnn_mul_q15(f, c[j]) +
                                  ((i * g + ((int32_t)1 << (k - 1))) >> k));
        c[j] = (int16_t)cj;
        hnew[j] = (int16_t)iq_rnn_mul_q15(o, iq_rnn_table(p->tanh, iq_lstm_cell_q312(cj, cs)));
    }
    for (j = 0; j < hid; ++j) {
        h[j] = hnew[j];
    }
}

void iq_lstm_run(const iq_rnn_params_t* p, const void* x, int32_t steps, void* y, void* state,
                 void* scratch)
{
    int16_t* h = (int16_t*)state;
    int16_t* c = h + p->layers * p->hidden;
    int16_t* last = h + (p->layers - 1) * p->hidden;
    int32_t t, l;
    for (t = 0; t < steps; ++t) {
        const void* in = iq_rnn_frame(x, p->in_dtype, t, p->layer[0].input_size);
        int32_t dtype = p->in_dtype;
        for (l = 0; l < p->layers; ++l) {
            int16_t* hl = h + l * p->hidden;
            iq_lstm_layer_step(p, &p->layer[l], in, dtype, hl, c + l * p->hidden,
                               (int16_t*)scratch);
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
