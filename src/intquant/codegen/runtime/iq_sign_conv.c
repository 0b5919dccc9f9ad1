/*
 * sign_conv: per output pixel and group, the receptive field (in the weights' (Cin/groups, kh,
 * kw) order; a tap outside the input holds the zero point, i.e. contributes 0 to
 * acc = sum w * (x - z)), then for each output channel of the group the bit acc < threshold
 * (-1). Validation bounds sum |w| * max|x - z| < 2^31: every partial sum fits int32.
 *
 * 8-bit inputs with int8 weights (fast8) use offset binary, four channels per pass over the
 * field: with xu = x + xoff, wu = w + 128,
 *   acc = sum wu*xu - 128*sum(xu) + C_c,
 * where C_c = -xoff*sum(wu_c) + 128*xoff*K - z*sum(w_c) is folded offline into the threshold
 * (o->threshold = threshold - C_c, clamped: |sum wu*xu - 128*sum xu| < 2^31 for K < 2^15), so
 * the bit is (sum wu*xu - 128*sum xu) < o->threshold[c], computed modulo 2^32 and exact.
 * Output bits are shifted in from the bottom, channel 0 ending in bit 31 of its word.
 */
#include "iq_sign_conv.h"

#include "iq_dot.h"

/* Packed output of one pixel, filled channel by channel. */
typedef struct {
    uint32_t* y;
    uint32_t word;
    int32_t n; /* bits in word */
} iq_bit_writer_t;

static inline void iq_put_bit(iq_bit_writer_t* b, int32_t bit)
{
    b->word = (b->word << 1) | (uint32_t)bit;
    if (++b->n == 32) {
        *b->y++ = b->word;
        b->word = 0;
        b->n = 0;
    }
}

/* Append the low `count` bits of `bits` (count <= 4), most significant first. */
static inline void iq_put_bits(iq_bit_writer_t* b, uint32_t bits, int32_t count)
{
    int32_t room = 32 - b->n;
    if (count < room) {
        b->word = (b->word << count) | bits;
        b->n += count;
        return;
    }
    *b->y++ = (b->word << room) | (bits >> (count - room)); /* room in [1, count] */
    b->n = count - room;
    b->word = bits & ((1u << b->n) - 1u);
}

static inline void iq_flush_bits(iq_bit_writer_t* b)
{
    if (b->n > 0) {
        *b->y = b->word << (32 - b->n);
    }
}

/* The receptive field of (oy, ox) over input channels [c0, c0 + cin_g) as int32 values x - z
 * (taps outside the input: 0). */
static void iq_sign_conv_field(const iq_sign_conv_params_t* p, const void* x, int32_t oy,
                               int32_t ox, int32_t c0, int32_t* field)
{
    int32_t ci, ky, kx, plane = p->in_h * p->in_w, cin_g = p->in_c / p->groups;
    for (ci = c0; ci < c0 + cin_g; ++ci) {
        for (ky = 0; ky < p->k_h; ++ky) {
            int32_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
            for (kx = 0; kx < p->k_w; ++kx) {
                int32_t ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                int32_t inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
                *field++ = inside ? iq_load(x, ci * plane + iy * p->in_w + ix, p->in_dtype) -
                                        p->input_zero_point
                                  : 0;
            }
        }
    }
}

/* fast8: the field over channels [c0, c0 + cin_g) as xu = x + xoff (padded taps: z + xoff);
 * returns 128 * sum(xu). */
static uint32_t iq_sign_conv_field8(const iq_sign_conv_params_t* p, const uint8_t* x,
                                    int32_t oy, int32_t ox, int32_t c0, uint8_t* field)
{
    int32_t ci, ky, kx, plane = p->in_h * p->in_w, c1 = c0 + p->in_c / p->groups;
    int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
    uint32_t xoff = p->in_dtype == IQ_S8 ? 128u : 0u, sum = 0;
    uint8_t pad = (uint8_t)((uint32_t)p->input_zero_point + xoff);
    if (iy0 >= 0 && iy0 + (p->k_h - 1) * p->dil_h < p->in_h && ix0 >= 0 &&
        ix0 + (p->k_w - 1) * p->dil_w < p->in_w) { /* window inside: no bounds tests */
        for (ci = c0; ci < c1; ++ci) {
            for (ky = 0; ky < p->k_h; ++ky) {
                const uint8_t* row = x + ci * plane + (iy0 + ky * p->dil_h) * p->in_w + ix0;
                for (kx = 0; kx < p->k_w; ++kx) {
                    uint8_t v = (uint8_t)(row[kx * p->dil_w] ^ xoff);
                    sum += v;
                    *field++ = v;
                }
            }
        }
        return 128u * sum;
    }
    for (ci = c0; ci < c1; ++ci) {
        for (ky = 0; ky < p->k_h; ++ky) {
            int32_t iy = iy0 + ky * p->dil_h;
            int32_t row_in = iy >= 0 && iy < p->in_h;
            const uint8_t* row = row_in ? x + ci * plane + iy * p->in_w : x;
            for (kx = 0; kx < p->k_w; ++kx) {
                int32_t ix = ix0 + kx * p->dil_w;
                uint8_t v = (row_in && ix >= 0 && ix < p->in_w) ? (uint8_t)(row[ix] ^ xoff) : pad;
                sum += v;
                *field++ = v;
            }
        }
    }
    return 128u * sum;
}

/* fast8: the bits of `count` channels sharing one field (four per pass: their weights
 * interleaved, iq_dot.h's layout, then the remaining rows). */
static void iq_sign_conv_channels8(const uint8_t* field, uint32_t col_term, int32_t k,
                                   const uint8_t* w, const int32_t* thr, int32_t count,
                                   iq_bit_writer_t* b)
{
    int32_t c, j;
    for (c = 0; c + 4 <= count; c += 4, thr += 4) {
        uint32_t a0 = 0u - col_term, a1 = a0, a2 = a0, a3 = a0;
        for (j = 0; j < k; ++j, w += 4) {
            uint32_t xv = field[j];
            a0 += w[0] * xv;
            a1 += w[1] * xv;
            a2 += w[2] * xv;
            a3 += w[3] * xv;
        }
        iq_put_bits(b,
                    ((uint32_t)((int32_t)a0 < thr[0]) << 3) |
                        ((uint32_t)((int32_t)a1 < thr[1]) << 2) |
                        ((uint32_t)((int32_t)a2 < thr[2]) << 1) | (uint32_t)((int32_t)a3 < thr[3]),
                    4);
    }
    for (; c < count; ++c, w += k) {
        iq_put_bit(b, (int32_t)(iq_dot1_u8(field, w, k) - col_term) < *thr++);
    }
}

/* Portable: the bits of `count` channels sharing one int32 field. */
static void iq_sign_conv_channels(const iq_sign_conv_params_t* p, const int32_t* field,
                                  int32_t k, const void* w, const int32_t* thr, int32_t count,
                                  iq_bit_writer_t* b)
{
    int32_t c, j;
    for (c = 0; c < count; ++c) {
        int32_t acc = 0;
        if (p->w16) {
            const int16_t* wc = (const int16_t*)w + c * k;
            for (j = 0; j < k; ++j) {
                acc += wc[j] * field[j];
            }
        } else {
            const int8_t* wc = (const int8_t*)w + c * k;
            for (j = 0; j < k; ++j) {
                acc += wc[j] * field[j];
            }
        }
        iq_put_bit(b, acc < thr[c]);
    }
}

void iq_sign_conv(const iq_sign_conv_params_t* p, const void* x, const void* w,
                  const iq_binary_out_t* o, uint32_t* y, void* scratch)
{
    int32_t oy, ox, g;
    int32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    int32_t k = cin_g * p->k_h * p->k_w, gout = iq_bit_words(p->out_c);
    int32_t wsize = p->w16 ? 2 : 1;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            iq_bit_writer_t b;
            b.y = y + (oy * p->out_w + ox) * gout;
            b.word = 0;
            b.n = 0;
            for (g = 0; g < p->groups; ++g) {
                const int32_t* thr = o->threshold + g * cout_g;
                if (p->fast8) {
                    uint32_t term = iq_sign_conv_field8(p, (const uint8_t*)x, oy, ox,
                                                        g * cin_g, (uint8_t*)scratch);
                    iq_sign_conv_channels8((const uint8_t*)scratch, term, k,
                                           (const uint8_t*)w + g * cout_g * k, thr, cout_g, &b);
                } else {
                    iq_sign_conv_field(p, x, oy, ox, g * cin_g, (int32_t*)scratch);
                    iq_sign_conv_channels(p, (const int32_t*)scratch, k,
                                          (const uint8_t*)w + g * cout_g * k * wsize, thr,
                                          cout_g, &b);
                }
            }
            iq_flush_bits(&b);
        }
    }
}
