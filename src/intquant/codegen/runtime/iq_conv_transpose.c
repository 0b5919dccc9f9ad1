/* conv_transpose (intquant/ops/conv_transpose.py), gather form: output (co, oy, ox) sums
 * w[co][ci][ky][kx] * (x[ci][iy][ix] - z) over the taps with oy + pad_top = iy*stride_h +
 * ky*dil_h (and the same along x) that land on a real input pixel: no zero is ever
 * multiplied. With t = oy + pad_top = qy*stride_h + ry and ky*dil_h = ay*stride_h + by, tap ky
 * lands iff by == ry, on iy = qy - ay; the kernel tracks (qy, ry) and (ay, by) by increments,
 * so it divides only once per call (Cortex-M0 has no divide instruction). */
#include "iq_conv_transpose.h"

#include "iq_dot.h"

/* The taps of output position (qy, ry; qx, rx): pairs (weight offset ky*k_w + kx, input offset
 * iy*in_w + ix) into taps[]; returns their number. */
static int32_t iq_ct_taps(const iq_conv_transpose_params_t* p, int32_t qy, int32_t ry,
                          int32_t qx, int32_t rx, int32_t* taps)
{
    int32_t n = 0, ky, kx, ay = 0, by = 0;
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = qy - ay;
        if (iy < 0) {
            break; /* ay only grows */
        }
        if (by == ry && iy < p->in_h) {
            int32_t ax = 0, bx = 0;
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = qx - ax;
                if (ix < 0) {
                    break;
                }
                if (bx == rx && ix < p->in_w) {
                    taps[2 * n] = ky * p->k_w + kx;
                    taps[2 * n + 1] = iy * p->in_w + ix;
                    ++n;
                }
                for (bx += p->dil_w; bx >= p->stride_w; bx -= p->stride_w) {
                    ++ax;
                }
            }
        }
        for (by += p->dil_h; by >= p->stride_h; by -= p->stride_h) {
            ++ay;
        }
    }
    return n;
}

static void iq_ct_store(const iq_conv_transpose_params_t* p, const int32_t* mult,
                        const int32_t* shift, int32_t co, int64_t acc, void* y, int32_t y_dtype,
                        int32_t o)
{
    const int32_t r = iq_apply_multiplier(acc, IQ_LOAD_S32(mult + co), IQ_LOAD_S32(shift + co),
                                          p->mode);
    iq_store(y, o, y_dtype,
             iq_add_zero_point_and_clamp(r, p->output_zero_point, p->act_min, p->act_max));
}

/* One kernel per (input type, weight type, accumulator): the taps of a position are found
 * once and shared by every output channel; the inner loop walks the channels of the group. */
#define IQ_CT_TYPED(NAME, TX, TW, LOADW, TACC, LOADB)                                         \
    static void NAME(const iq_conv_transpose_params_t* p, const TX* x, const TW* w,            \
                     const TACC* bias, const int32_t* mult, const int32_t* shift, void* y,     \
                     int32_t y_dtype, int32_t* taps)                                           \
    {                                                                                          \
        const int32_t hw = p->in_h * p->in_w, khw = p->k_h * p->k_w;                           \
        const int32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;              \
        const int32_t plane = p->out_h * p->out_w, z = p->input_zero_point;                    \
        const int32_t qx0 = p->pad_left / p->stride_w, rx0 = p->pad_left % p->stride_w;        \
        int32_t qy = p->pad_top / p->stride_h, ry = p->pad_top % p->stride_h;                  \
        int32_t oy, ox, co, t, ci, o = 0;                                                      \
        for (oy = 0; oy < p->out_h; ++oy) {                                                    \
            int32_t qx = qx0, rx = rx0;                                                        \
            for (ox = 0; ox < p->out_w; ++ox, ++o) {                                           \
                const int32_t n = iq_ct_taps(p, qy, ry, qx, rx, taps);                         \
                const TX* xg = x;                                                              \
                int32_t j = 0;                                                                 \
                for (co = 0; co < p->out_c; ++co) {                                            \
                    const TW* wc = w + co * cin_g * khw;                                       \
                    TACC acc = LOADB(bias + co);                                               \
                    for (t = 0; t < n; ++t) {                                                  \
                        const TX* xp = xg + taps[2 * t + 1];                                   \
                        const TW* wp = wc + taps[2 * t];                                       \
                        for (ci = 0; ci < cin_g; ++ci, xp += hw, wp += khw) {                  \
                            acc += (int32_t)LOADW(wp) * ((int32_t)*xp - z);                    \
                        }                                                                      \
                    }                                                                          \
                    iq_ct_store(p, mult, shift, co, (int64_t)acc, y, y_dtype,                  \
                                co * plane + o);                                               \
                    if (++j == cout_g) {                                                       \
                        j = 0;                                                         \
                        xg += cin_g * hw; /* the next group's input channels */                \
                    }                                                                          \
                }                                                                              \
                if (++rx == p->stride_w) {                                                     \
                    rx = 0;                                                                    \
                    ++qx;                                                                      \
                }                                                                              \
            }                                                                                  \
            if (++ry == p->stride_h) {                                                         \
                ry = 0;                                                                        \
                ++qy;                                                                          \
            }                                                                                  \
        }                                                                                      \
    }

/* 16-bit inputs: |w| <= 2^15 and |x - z| < 2^16, so every product fits int32; acc_bits 64
 * bounds every partial sum below 2^47 (validation). */
IQ_CT_TYPED(iq_ct_s16_s16_a64, int16_t, int16_t, IQ_LOAD_S16, int64_t, IQ_LOAD_S64)

/* 8-bit inputs, int8 weights, int32 accumulator: per output position and group the inputs
 * under the landing taps are gathered once into col (as xu = x + xoff, xoff = 128 for int8, 0
 * for uint8: unsigned bytes) and every block of four output channels sums them with
 * iq_dot4_u8 against offset-binary weights wu = w + 128 stored [group][block][ky][kx][ci][4]
 * (channels padded to a multiple of four with w = 0). With m = xoff + z,
 *   sum w*(x - z) = sum wu*xu - m*sum wu - 128*sum xu + 128*m*K
 * over the K = taps*cin_g landing products; swu[c][ky*k_w + kx] = sum_ci wu holds the second
 * term per tap. All in uint32 (wraps; the true accumulator fits int32). */
static void iq_ct_fast8(const iq_conv_transpose_params_t* p, const uint8_t* x, int32_t xoff,
                        const uint8_t* wu, const uint32_t* swu, const int32_t* bias,
                        const int32_t* mult, const int32_t* shift, void* y, int32_t y_dtype,
                        int32_t* taps, uint8_t* col)
{
    const int32_t hw = p->in_h * p->in_w, khw = p->k_h * p->k_w;
    const int32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    const int32_t blocks = (cout_g + 3) / 4, plane = p->out_h * p->out_w;
    const uint32_t m = (uint32_t)(xoff + p->input_zero_point);
    const int32_t qx0 = p->pad_left / p->stride_w, rx0 = p->pad_left % p->stride_w;
    int32_t qy = p->pad_top / p->stride_h, ry = p->pad_top % p->stride_h;
    int32_t oy, ox, g, b, t, ci, j, o = 0;
    for (oy = 0; oy < p->out_h; ++oy) {
        int32_t qx = qx0, rx = rx0;
        for (ox = 0; ox < p->out_w; ++ox, ++o) {
            const int32_t n = iq_ct_taps(p, qy, ry, qx, rx, taps);
            for (g = 0; g < p->groups; ++g) {
                const uint8_t* xg = x + g * cin_g * hw;
                uint32_t sum_xu = 0, base;
                uint8_t* c = col;
                for (t = 0; t < n; ++t) {
                    const uint8_t* xp = xg + taps[2 * t + 1];
                    for (ci = 0; ci < cin_g; ++ci, xp += hw) {
                        const uint8_t v = (uint8_t)(*xp + xoff);
                        *c++ = v;
                        sum_xu += v;
                    }
                }
                base = 128u * m * (uint32_t)(n * cin_g) - 128u * sum_xu;
                for (b = 0; b < blocks; ++b) {
                    const int32_t c0 = g * blocks * 4 + b * 4; /* padded channel index */
                    const uint8_t* wb = wu + (int32_t)c0 * khw * cin_g;
                    uint32_t s[4] = {0, 0, 0, 0};
                    for (t = 0; t < n; ++t) {
                        iq_dot4_u8(col + t * cin_g, wb + taps[2 * t] * cin_g * 4, cin_g, s);
                    }
                    for (j = 0; j < 4 && b * 4 + j < cout_g; ++j) {
                        const int32_t co = g * cout_g + b * 4 + j;
                        uint32_t sw = 0;
                        for (t = 0; t < n; ++t) {
                            sw += IQ_LOAD_U32(swu + (c0 + j) * khw + taps[2 * t]);
                        }
                        iq_ct_store(p, mult, shift, co,
                                    (int32_t)(s[j] + base - m * sw +
                                              (uint32_t)IQ_LOAD_S32(bias + co)),
                                    y, y_dtype, co * plane + o);
                    }
                }
            }
            if (++rx == p->stride_w) {
                rx = 0;
                ++qx;
            }
        }
        if (++ry == p->stride_h) {
            ry = 0;
            ++qy;
        }
    }
}

/* s[j] += sum_k x[k] * w[4k + j], j = 0..3, for 16-bit x (modulo 2^32; the callers keep the
 * true sums below 2^32). */
static void iq_dot4_u16(const uint16_t* x, const uint8_t* w, int32_t n, uint32_t s[4])
{
    uint32_t a0 = s[0], a1 = s[1], a2 = s[2], a3 = s[3];
    int32_t k;
    for (k = 0; k < n; ++k, w += 4) {
        const uint32_t xv = x[k];
        a0 += IQ_LOAD_U8(w) * xv;
        a1 += IQ_LOAD_U8(w + 1) * xv;
        a2 += IQ_LOAD_U8(w + 2) * xv;
        a3 += IQ_LOAD_U8(w + 3) * xv;
    }
    s[0] = a0;
    s[1] = a1;
    s[2] = a2;
    s[3] = a3;
}

/* 16-bit inputs, int8 weights (16x8): the same gather and offset-binary weights as
 * iq_ct_fast8, inputs as xu = x + 32768 (uint16). Per tap t, P = sum_ci wu*xu < 2^32 (the
 * emitter checks cin_g * 255 * 65535 < 2^32) and, with m = 32768 + z,
 *   sum_ci w*(x - z) = P - m*swu[c][tap] - 128*sum_ci xu + 128*m*cin_g,
 * summed over the taps in int64. */
static void iq_ct_fast16(const iq_conv_transpose_params_t* p, const int16_t* x,
                         const uint8_t* wu, const uint32_t* swu, const int64_t* bias,
                         const int32_t* mult, const int32_t* shift, void* y, int32_t y_dtype,
                         int32_t* taps)
{
    const int32_t hw = p->in_h * p->in_w, khw = p->k_h * p->k_w;
    const int32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    const int32_t blocks = (cout_g + 3) / 4, plane = p->out_h * p->out_w;
    const int64_t m = 32768 + (int64_t)p->input_zero_point;
    uint32_t* sum_xu = (uint32_t*)(taps + 2 * khw);        /* one per tap */
    uint16_t* col = (uint16_t*)(void*)(taps + 3 * khw); /* the inputs under the taps */
    const int32_t qx0 = p->pad_left / p->stride_w, rx0 = p->pad_left % p->stride_w;
    int32_t qy = p->pad_top / p->stride_h, ry = p->pad_top % p->stride_h;
    int32_t oy, ox, g, b, t, ci, j, o = 0;
    for (oy = 0; oy < p->out_h; ++oy) {
        int32_t qx = qx0, rx = rx0;
        for (ox = 0; ox < p->out_w; ++ox, ++o) {
            const int32_t n = iq_ct_taps(p, qy, ry, qx, rx, taps);
            for (g = 0; g < p->groups; ++g) {
                const int16_t* xg = x + g * cin_g * hw;
                int64_t base = 0;
                uint16_t* c = col;
                for (t = 0; t < n; ++t) {
                    const int16_t* xp = xg + taps[2 * t + 1];
                    uint32_t sx = 0;
                    for (ci = 0; ci < cin_g; ++ci, xp += hw) {
                        const uint16_t v = (uint16_t)(*xp + 32768);
                        *c++ = v;
                        sx += v;
                    }
                    sum_xu[t] = sx;
                    base += 128 * m * cin_g - 128 * (int64_t)sx;
                }
                for (b = 0; b < blocks; ++b) {
                    const int32_t c0 = g * blocks * 4 + b * 4; /* padded channel index */
                    const uint8_t* wb = wu + (int32_t)c0 * khw * cin_g;
                    int64_t acc[4] = {0, 0, 0, 0};
                    for (t = 0; t < n; ++t) {
                        uint32_t s[4] = {0, 0, 0, 0};
                        iq_dot4_u16(col + t * cin_g, wb + taps[2 * t] * cin_g * 4, cin_g, s);
                        for (j = 0; j < 4; ++j) {
                            acc[j] += (int64_t)s[j] -
                                      m * (int64_t)IQ_LOAD_U32(swu + (c0 + j) * khw + taps[2 * t]);
                        }
                    }
                    for (j = 0; j < 4 && b * 4 + j < cout_g; ++j) {
                        const int32_t co = g * cout_g + b * 4 + j;
                        iq_ct_store(p, mult, shift, co, acc[j] + base + IQ_LOAD_S64(bias + co),
                                    y, y_dtype, co * plane + o);
                    }
                }
            }
            if (++rx == p->stride_w) {
                rx = 0;
                ++qx;
            }
        }
        if (++ry == p->stride_h) {
            ry = 0;
            ++qy;
        }
    }
}

/* Any other combination (8-bit inputs with an int64 accumulator or int16 weights): element
 * loads by type code, int64 sums. */
static void iq_ct_generic(const iq_conv_transpose_params_t* p, const void* x, int32_t x_dtype,
                          const void* w, const void* bias, const int32_t* mult,
                          const int32_t* shift, void* y, int32_t y_dtype, int32_t* taps)
{
    const int32_t hw = p->in_h * p->in_w, khw = p->k_h * p->k_w;
    const int32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    const int32_t plane = p->out_h * p->out_w, z = p->input_zero_point;
    const int32_t qx0 = p->pad_left / p->stride_w, rx0 = p->pad_left % p->stride_w;
    int32_t qy = p->pad_top / p->stride_h, ry = p->pad_top % p->stride_h;
    int32_t oy, ox, co, t, ci, o = 0;
    for (oy = 0; oy < p->out_h; ++oy) {
        int32_t qx = qx0, rx = rx0;
        for (ox = 0; ox < p->out_w; ++ox, ++o) {
            const int32_t n = iq_ct_taps(p, qy, ry, qx, rx, taps);
            int32_t x0 = 0, j = 0;
            for (co = 0; co < p->out_c; ++co) {
                const int32_t w0 = co * cin_g * khw;
                int64_t acc = p->acc64 ? IQ_LOAD_S64((const int64_t*)bias + co)
                                       : IQ_LOAD_S32((const int32_t*)bias + co);
                for (t = 0; t < n; ++t) {
                    for (ci = 0; ci < cin_g; ++ci) {
                        const int32_t wi = w0 + ci * khw + taps[2 * t];
                        const int32_t wv = p->w16 ? IQ_LOAD_S16((const int16_t*)w + wi)
                                                  : IQ_LOAD_S8((const int8_t*)w + wi);
                        acc += (int64_t)(wv * (iq_load(x, x0 + ci * hw + taps[2 * t + 1],
                                                       x_dtype) - z));
                    }
                }
                iq_ct_store(p, mult, shift, co, acc, y, y_dtype, co * plane + o);
                if (++j == cout_g) {
                    j = 0;
                    x0 += cin_g * hw;
                }
            }
            if (++rx == p->stride_w) {
                rx = 0;
                ++qx;
            }
        }
        if (++ry == p->stride_h) {
            ry = 0;
            ++qy;
        }
    }
}

void iq_conv_transpose8(const iq_conv_transpose_params_t* p, const void* x, int32_t x_dtype,
                        const void* w, const void* swu, const void* bias, const int32_t* mult,
                        const int32_t* shift, void* y, int32_t y_dtype, void* scratch)
{
    int32_t* taps = (int32_t*)scratch;
    iq_ct_fast8(p, (const uint8_t*)x, x_dtype == IQ_S8 ? 128 : 0, (const uint8_t*)w,
                (const uint32_t*)swu, (const int32_t*)bias, mult, shift, y, y_dtype, taps,
                (uint8_t*)(taps + 2 * p->k_h * p->k_w));
}

void iq_conv_transpose16(const iq_conv_transpose_params_t* p, const void* x, int32_t x_dtype,
                         const void* w, const void* swu, const void* bias, const int32_t* mult,
                         const int32_t* shift, void* y, int32_t y_dtype, void* scratch)
{
    (void)x_dtype;
    iq_ct_fast16(p, (const int16_t*)x, (const uint8_t*)w, (const uint32_t*)swu,
                 (const int64_t*)bias, mult, shift, y, y_dtype, (int32_t*)scratch);
}

void iq_conv_transpose(const iq_conv_transpose_params_t* p, const void* x, int32_t x_dtype,
                       const void* w, const void* swu, const void* bias, const int32_t* mult,
                       const int32_t* shift, void* y, int32_t y_dtype, void* scratch)
{
    (void)swu;
    if (p->acc64 && p->w16 && x_dtype == IQ_S16) {
        iq_ct_s16_s16_a64(p, (const int16_t*)x, (const int16_t*)w, (const int64_t*)bias, mult,
                          shift, y, y_dtype, (int32_t*)scratch);
    } else {
        iq_ct_generic(p, x, x_dtype, w, bias, mult, shift, y, y_dtype, (int32_t*)scratch);
    }
}
