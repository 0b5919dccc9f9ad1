/*
 * Template: 16x8 conv (int16 input and output, int8 weights, groups 1) whose accumulator is
 * proved (offline, from the weights) to fit int32, so it is summed in int32 whatever the
 * contract's accumulator width, and requantized in runs by iq_requant.h (TFLM's int64 path with
 * the 16-bit multiplier is one floor of a linear function, iq_requant.h's form).
 *
 * Instantiate by defining, then including this file:
 *   IQ16_FN     function name
 *   IQ16_ROWS   defined: the in-place path (kernel width 3 or 4, no dilation); otherwise im2col
 *
 * Inputs are used as u = x + 32768 (uint16: Cortex-M0 loads halfwords with an immediate offset
 * only unsigned), weights as offset binary wu = w + 128, interleaved by eight channels, as in
 * the 8-bit path (iq_dot.h): sum w*x = sum wu*u - 32768*sum(wu) - 128*sum(u) + 128*32768*K, the
 * channel constants in `bias` (with -a_lo), 128*sum(u) per position in `terms`; all modulo
 * 2^32, exact because the true accumulator fits int32.
 */
#include "iq_dot.h"
#include "iq_conv.h"
#include "iq_requant.h"

#define IQ16_CAT_(a, b) a##b
#define IQ16_CAT(a, b) IQ16_CAT_(a, b)

/* Channels the eight-channel kernels leave (a block of four, then single ones), in C: the
 * receptive field of position q is `blocks` runs of `run` inputs, `pitch` apart, from x +
 * q * step (element strides). */
static void IQ16_CAT(IQ16_FN, _rest)(const uint16_t* x, int32_t npos, int32_t step,
                                     int32_t blocks, int32_t run, int32_t pitch,
                                     const uint8_t* w, const uint32_t* bias,
                                     const uint32_t* terms, int32_t count, int32_t* acc)
{
    int32_t q, j, b, i;
    for (q = 0; q < npos; ++q, x += step) {
        for (j = 0; j < count; ++j) {
            uint32_t s = IQ_LOAD_U32(bias + j) - terms[q];
            for (b = 0; b < blocks; ++b) {
                for (i = 0; i < run; ++i) {
                    s += (uint32_t)x[b * pitch + i] * IQ_LOAD_U8(w + (b * run + i) * count + j);
                }
            }
            acc[j * npos + q] = (int32_t)s;
        }
    }
}

/* Requantize `count` channels' sums (channel-major, npos each) into their output planes. */
static void IQ16_CAT(IQ16_FN, _store)(const int32_t* acc, int32_t npos, const iq_rqw_t* rq,
                                      int32_t count, const iq_conv_params_t* p, int16_t* out,
                                      int32_t plane)
{
    int32_t t;
    for (t = 0; t < count; ++t) {
        iq_rqw_run16(acc + t * npos, npos, rq + t, p->act_min, p->sign, out + t * plane, 1);
    }
}

#if defined(IQ16_ROWS)
IQ_CONV16_DECLARE(IQ16_FN)
{
    iq_conv_params_t pt;
    const iq_conv_params_t* const p = IQ_LOAD_OBJ(iq_conv_params_t, pf, pt); /* IQ_FLASH */
    const int32_t c_in = p->in_c, c_out = p->out_c, k_h = p->k_h, k_w = p->k_w;
    const int32_t k = c_in * k_h * k_w, row_w = p->row_w, out_w = p->out_w;
    const int32_t out_plane = p->out_h * out_w, tile = p->tile;
    const int32_t band_rows = (p->band - 1) * p->stride_h + k_h;
    const int32_t buf_elems = band_rows * c_in * row_w;
    uint16_t* const buf = (uint16_t*)col;
    uint32_t* const colsum = (uint32_t*)col + (buf_elems + 1) / 2;
    uint32_t* const terms = colsum + band_rows * row_w;
    int32_t* const acc = (int32_t*)(terms + tile); /* 8 channels x tile */
    const uint16_t pad = (uint16_t)((uint32_t)p->input_zero_point ^ 0x8000u);
    iq_rows_t rows;
    int32_t oy0, oy, ox0, i, c, q, ky, kx;
    for (i = 0; i < buf_elems; ++i) {
        buf[i] = pad; /* the padding columns keep this value */
    }
    rows.step = 2 * p->stride_w;
    rows.span = 2 * k_h * c_in * row_w;
    rows.pitch = 2 * row_w;
    rows.kw = k_w;
    rows.terms = terms;
    for (oy0 = 0; oy0 < p->out_h; oy0 += p->band) {
        const int32_t nrows = p->out_h - oy0 < p->band ? p->out_h - oy0 : p->band;
        iq_rows_copy16(p, (const uint16_t*)x, oy0 * p->stride_h - p->pad_top,
                       (nrows - 1) * p->stride_h + k_h, buf, colsum);
        for (oy = oy0; oy < oy0 + nrows; ++oy) {
            const int32_t r0 = (oy - oy0) * p->stride_h;
            for (ox0 = 0; ox0 < out_w; ox0 += tile) {
                const int32_t n = out_w - ox0 < tile ? out_w - ox0 : tile;
                const uint16_t* xq = buf + r0 * c_in * row_w + ox0 * p->stride_w;
                const uint8_t* wc = w;
                for (q = 0; q < n; ++q) {
                    const uint32_t* cs = colsum + r0 * row_w + (ox0 + q) * p->stride_w;
                    uint32_t sum = 0;
                    for (ky = 0; ky < k_h; ++ky, cs += row_w) {
                        for (kx = 0; kx < k_w; ++kx) {
                            sum += cs[kx];
                        }
                    }
                    terms[q] = sum * 128u;
                }
                rows.npos = n;
                for (c = 0; c < c_out;) {
                    const int32_t count = c_out - c >= 8 ? 8 : (c_out - c >= 4 ? 4 : 1);
                    rows.bias = bias + c;
                    if (count == 8) {
                        iq_dot16_rows(xq, &rows, wc, acc);
                    } else {
                        IQ16_CAT(IQ16_FN, _rest)(xq, n, p->stride_w, k_h * c_in, k_w, row_w, wc,
                                                 bias + c, terms, count, acc);
                    }
                    IQ16_CAT(IQ16_FN, _store)(acc, n, rq + c, count, p,
                                              y + c * out_plane + oy * out_w + ox0, out_plane);
                    wc += count * k;
                    c += count;
                }
            }
        }
    }
}
#else
/* Gather the receptive field of output (oy, ox) as u = x + 32768 (padding: z + 32768);
 * returns 128 * sum(u). */
static uint32_t IQ16_CAT(IQ16_FN, _im2col)(const iq_conv_params_t* p, const int16_t* x,
                                           int32_t oy, int32_t ox, uint16_t* col)
{
    const int32_t plane = p->in_h * p->in_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    const uint16_t pad = (uint16_t)((uint32_t)p->input_zero_point ^ 0x8000u);
    uint32_t sum = 0;
    int32_t ci, ky, kx;
    for (ci = 0; ci < p->in_c; ++ci) {
        for (ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = y0 + ky * p->dil_h;
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = x0 + kx * p->dil_w;
                const uint16_t u = (iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w)
                                       ? (uint16_t)((uint16_t)x[ci * plane + iy * p->in_w + ix] ^
                                                    0x8000u)
                                       : pad;
                *col++ = u;
                sum += u;
            }
        }
    }
    return sum * 128u;
}

IQ_CONV16_DECLARE(IQ16_FN)
{
    iq_conv_params_t pt;
    const iq_conv_params_t* const p = IQ_LOAD_OBJ(iq_conv_params_t, pf, pt); /* IQ_FLASH */
    const int32_t c_out = p->out_c, k = p->in_c * p->k_h * p->k_w;
    const int32_t out_plane = p->out_h * p->out_w, tile = p->tile;
    uint16_t* const cols = (uint16_t*)col;
    uint32_t* const terms = (uint32_t*)col + (tile * k + 1) / 2;
    int32_t* const acc = (int32_t*)(terms + tile); /* 8 channels x tile */
    int32_t pos, q, oy = 0, ox = 0, c;
    for (pos = 0; pos < out_plane; pos += tile) {
        const int32_t npos = out_plane - pos < tile ? out_plane - pos : tile;
        const uint8_t* wc = w;
        for (q = 0; q < npos; ++q) {
            terms[q] = IQ16_CAT(IQ16_FN, _im2col)(p, x, oy, ox, cols + q * k);
            if (++ox == p->out_w) {
                ox = 0;
                ++oy;
            }
        }
        for (c = 0; c < c_out;) {
            const int32_t count = c_out - c >= 8 ? 8 : (c_out - c >= 4 ? 4 : 1);
            if (count == 8) {
                iq_dot16_tile(cols, terms, npos, k, wc, bias + c, acc);
            } else {
                IQ16_CAT(IQ16_FN, _rest)(cols, npos, k, 1, k, k, wc, bias + c, terms, count, acc);
            }
            IQ16_CAT(IQ16_FN, _store)(acc, npos, rq + c, count, p,
                                      y + c * out_plane + pos, out_plane);
            wc += count * k;
            c += count;
        }
    }
}
#endif

#undef IQ16_FN
#undef IQ16_ROWS
