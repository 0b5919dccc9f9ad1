/*
 * Recurrent layers (gru, lstm): what both kernels share. The specification is
 * intquant/ops/_recurrent.py with intquant/ops/gru.py and intquant/ops/lstm.py.
 *
 * Gate pre-activations are int16 Q3.12, gate outputs and the hidden state int16 Q0.15, the
 * LSTM cell state int16 with a power-of-two scale. Weights are int8 with one multiplier per
 * gate row; the first layer's input zero point is folded into its bias (generated code).
 * Validation proved every gate sum fits int32, so the dot products accumulate in int32.
 * The state (h of every layer, then c of every layer for LSTM) lives in the arena and
 * persists between calls: <model>_reset sets it, <model>_step advances it one frame.
 * Constant arrays (weights, biases, multipliers, shifts, h0/c0, tables) are read only through
 * IQ_LOAD_* (iq_target.h: program memory on AVR); products are widened to int32 first
 * (`int` is 16 bits on AVR).
 */
#ifndef IQ_RNN_H
#define IQ_RNN_H

#include "iq_kernels.h"

typedef struct {
    int32_t input_size;
    const int8_t* w_ih;     /* [rows][input_size] */
    const int8_t* w_hh;     /* [rows][hidden] */
    const int32_t* bias_x;  /* input zero point folded in (layer 0) */
    const int32_t* bias_h;
    const int32_t* mult_x;
    const int32_t* shift_x;
    const int32_t* mult_h;
    const int32_t* shift_h;
    const int16_t* h0;      /* Q0.15 */
    const int16_t* c0;      /* LSTM: cell scale 2^-cell_shift; NULL for GRU */
    int32_t cell_shift;
} iq_rnn_layer_t;

typedef struct {
    int32_t hidden;
    int32_t layers;
    int32_t sequence;  /* 1: output every step (T, H); 0: the last step (H) */
    int32_t in_dtype;
    int32_t out_dtype;
    int32_t out_zero_point;
    int32_t act_min;
    int32_t act_max;
    int32_t out_multiplier;
    int32_t out_shift;
    int32_t rounding;  /* 0: double rounding (TFLM), 1: single rounding (CMSIS-NN) */
    const iq_rnn_layer_t* layer;
    const int16_t* sigmoid;  /* 513 knots, Q3.12 -> Q0.15 */
    const int16_t* tanh;
} iq_rnn_params_t;

void iq_gru_reset(const iq_rnn_params_t* p, void* state);
void iq_gru_run(const iq_rnn_params_t* p, const void* x, int32_t steps, void* y, void* state,
                void* scratch);
void iq_lstm_reset(const iq_rnn_params_t* p, void* state);
void iq_lstm_run(const iq_rnn_params_t* p, const void* x, int32_t steps, void* y, void* state,
                 void* scratch);

/* w[k]·v[k] + ... + w[k+3]·v[k+3], each product widened to int32 first. */
#define IQ_RNN_DOT4(w, v, k)                                                                  \
    ((int32_t)IQ_LOAD_S8((w) + (k)) * (v)[k] + (int32_t)IQ_LOAD_S8((w) + (k) + 1) * (v)[(k) + 1] + \
     (int32_t)IQ_LOAD_S8((w) + (k) + 2) * (v)[(k) + 2] +                                      \
     (int32_t)IQ_LOAD_S8((w) + (k) + 3) * (v)[(k) + 3])

/* Σ w[k]·x[k] over n terms (int8 weights in flash, input of type dtype). */
static inline int32_t iq_rnn_dot(const int8_t* w, const void* x, int32_t dtype, int32_t n)
{
    int32_t acc = 0, k = 0;
    if (dtype == IQ_S16) {
        const int16_t* v = (const int16_t*)x;
        for (; k + 4 <= n; k += 4) {
            acc += IQ_RNN_DOT4(w, v, k);
        }
        for (; k < n; ++k) {
            acc += (int32_t)IQ_LOAD_S8(w + k) * v[k];
        }
    } else if (dtype == IQ_U8) {
        const uint8_t* v = (const uint8_t*)x;
        for (; k < n; ++k) {
            acc += (int32_t)IQ_LOAD_S8(w + k) * (int32_t)v[k];
        }
    } else {
        const int8_t* v = (const int8_t*)x;
        for (; k + 4 <= n; k += 4) {
            acc += IQ_RNN_DOT4(w, v, k);
        }
        for (; k < n; ++k) {
            acc += (int32_t)IQ_LOAD_S8(w + k) * v[k];
        }
    }
    return acc;
}

static inline int32_t iq_rnn_requant(int32_t acc, int32_t m, int32_t shift, int32_t rounding)
{
    return rounding ? iq_mbqm_single(acc, m, shift) : iq_mbqm_double(acc, m, shift);
}

/* One gate term in Q3.12: MBQM(bias[row] + Σ w[row]·x; mult[row], shift[row]). */
static inline int32_t iq_rnn_gate(const int8_t* w, const int32_t* bias, const int32_t* mult,
                                  const int32_t* shift, int32_t row, const void* x,
                                  int32_t dtype, int32_t n, int32_t rounding)
{
    int32_t acc = IQ_LOAD_S32(bias + row) + iq_rnn_dot(w + row * n, x, dtype, n);
    return iq_rnn_requant(acc, IQ_LOAD_S32(mult + row), IQ_LOAD_S32(shift + row), rounding);
}

/* Gx + Gh of gate row `row` of layer L: input x (dtype, n values), state h. */
static inline int64_t iq_rnn_gate_sum(const iq_rnn_layer_t* L, int32_t row, const void* x,
                                      int32_t dtype, const int16_t* h, int32_t hidden,
                                      int32_t rounding)
{
    int32_t gx = iq_rnn_gate(L->w_ih, L->bias_x, L->mult_x, L->shift_x, row, x, dtype,
                             L->input_size, rounding);
    int32_t gh = iq_rnn_gate(L->w_hh, L->bias_h, L->mult_h, L->shift_h, row, h, IQ_S16, hidden,
                             rounding);
    return (int64_t)gx + gh;
}

static inline int32_t iq_rnn_sat16(int64_t v)
{
    return v < -32768 ? -32768 : (v > 32767 ? 32767 : (int32_t)v);
}

/* a·b / 2^15 rounded half up; validation keeps |a·b| + 2^14 below 2^31. */
static inline int32_t iq_rnn_mul_q15(int32_t a, int32_t b)
{
    return (a * b + ((int32_t)1 << 14)) >> 15;
}

/* The 513-knot table at the int16 code g, linear interpolation on the low 7 bits. */
static inline int32_t iq_rnn_table(const int16_t* t, int32_t g)
{
    int32_t u = g + 32768;
    int32_t i = u >> 7;
    int32_t f = u & 127;
    int32_t t0 = IQ_LOAD_S16(t + i);
    int32_t t1 = IQ_LOAD_S16(t + i + 1);
    return t0 + (((t1 - t0) * f + 64) >> 7);
}

/* The last layer's Q0.15 state h (hidden values) in the output format, at y[offset...]. */
static inline void iq_rnn_output(const iq_rnn_params_t* p, const int16_t* h, void* y,
                                 int32_t offset)
{
    int32_t j;
    for (j = 0; j < p->hidden; ++j) {
        int32_t v = iq_rnn_requant(h[j], p->out_multiplier, p->out_shift, p->rounding);
        iq_store(y, offset + j, p->out_dtype,
                 iq_add_zero_point_and_clamp(v, p->out_zero_point, p->act_min, p->act_max));
    }
}

/* state[0..n) = init[0..n) (a constant array). */
static inline void iq_rnn_copy_state(int16_t* state, const int16_t* init, int32_t n)
{
    int32_t j;
    for (j = 0; j < n; ++j) {
        state[j] = IQ_LOAD_S16(init + j);
    }
}

/* The input of frame t: steps of `n` values of type dtype. */
static inline const void* iq_rnn_frame(const void* x, int32_t dtype, int32_t t, int32_t n)
{
    return (const int8_t*)x + t * n * iq_dtype_size(dtype);
}

#endif /* IQ_RNN_H */
