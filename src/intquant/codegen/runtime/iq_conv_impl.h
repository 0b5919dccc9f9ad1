/*
 * Template: conv (1-D as H = 1, 2-D, grouped, depthwise) or, with IQ_FC_TEMPLATE defined,
 * fully_connected, for one set of element types.
 *
 * Instantiate by defining, then including this file:
 *   IQ_FN     function name
 *   IQ_TIN    input element type      IQ_TW   weight element type (as stored)
 *   IQ_TOUT   output element type     IQ_ACC  32 or 64 (accumulator and bias width)
 *   IQ_CHUNK  (IQ_ACC 64) products that surely fit one int32 partial sum
 *   IQ_MODE   requantization mode (IQ_RQ_*): a constant, so the dispatch folds away
 *   IQ_FAST8  defined for 8-bit inputs, int8 weights and an int32 accumulator: weights are
 *             then stored as uint8 offset binary, four channels interleaved, and the bias as
 *             uint32 (see iq_dot.h); IQ_TW is uint8_t
 *   IQ_TILE   (with IQ_FAST8, conv, 8-bit output) requantize with iq_requant.h over tiles of
 *             positions (p->sign: the requantization's sign variant)
 *
 * Method (CMSIS-NN style): for each output position the receptive field of one group is
 * gathered into `col` (im2col), padded taps holding the input zero point; each output
 * channel is then one dot product over contiguous memory. Because padding holds the zero
 * point, sum w*(x - z) == sum w*x - z*sum(w) everywhere, and the generator folds -z*sum(w)
 * into `bias` offline: the inner loop is a plain dot product.
 *
 * Depthwise convs on the 8-bit path (one input and one output channel per group) skip im2col:
 * a receptive field of a few taps costs more to copy than to multiply, so each output is
 * computed from the input plane directly, its channel's weights and requantization constants
 * loaded once per channel instead of once per output.
 */
#include "iq_dot.h"
#include "iq_conv.h"
#include "iq_requant.h"

#define IQ_CAT_(a, b) a##b
#define IQ_CAT(a, b) IQ_CAT_(a, b)

#if defined(IQ_FAST8)
#define IQ_TBIAS uint32_t
#elif IQ_ACC == 32
#define IQ_TBIAS int32_t
#else
#define IQ_TBIAS int64_t
#endif

#if defined(IQ_FAST8) && !defined(IQ_TILE)
/* ---------------------------------------------------------------------------------------
 * 8-bit path: `col` holds xu = x + xoff (uint8); col_term = 128 * sum(xu), the per-position
 * term of the offset-binary identity. `count` output channels from the given pointers (weights,
 * bias, multipliers, shifts already offset to the first channel); outputs `out_stride` apart.
 */
static void IQ_CAT(IQ_FN, _channels)(const uint8_t* col, uint32_t col_term, const uint8_t* w,
                                     const uint32_t* bias, const int32_t* mult,
                                     const int32_t* shift, int32_t count, int32_t k,
                                     IQ_TOUT* out, int32_t out_stride, iq_out_stage_t o)
{
    uint32_t s[4];
    int32_t j;
    for (j = 0; j + 4 <= count; j += 4) {
        /* the accumulators start from the per-channel constants */
        s[0] = IQ_LOAD_U32(bias + 0) - col_term;
        s[1] = IQ_LOAD_U32(bias + 1) - col_term;
        s[2] = IQ_LOAD_U32(bias + 2) - col_term;
        s[3] = IQ_LOAD_U32(bias + 3) - col_term;
        iq_dot4_u8(col, w, k, s);
        w += 4 * k;
        /* unrolled: the four channels' constants are immediate-offset loads */
#define IQ_OUT1(t)                                                                             \
    *out = (IQ_TOUT)iq_requantize_out((int32_t)s[t], IQ_LOAD_S32(mult + t),                    \
                                      IQ_LOAD_S32(shift + t), IQ_MODE, &o);                    \
    out += out_stride
        IQ_OUT1(0);
        IQ_OUT1(1);
        IQ_OUT1(2);
        IQ_OUT1(3);
#undef IQ_OUT1
        bias += 4;
        mult += 4;
        shift += 4;
    }
    for (; j < count; ++j) {
        const uint32_t acc = IQ_LOAD_U32(bias++) + iq_dot1_u8(col, w, k) - col_term;
        *out = (IQ_TOUT)iq_requantize_out((int32_t)acc, IQ_LOAD_S32(mult++),
                                           IQ_LOAD_S32(shift++), IQ_MODE, &o);
        out += out_stride;
        w += k;
    }
}

#endif
#if defined(IQ_FAST8)
#define IQ_XOFF ((IQ_TIN)(-1) < 0 ? 128 : 0) /* offset making the input unsigned */

#else
/* ---------------------------------------------------------------------------------------
 * Generic path (16-bit operands or a 64-bit accumulator): two channels per pass share each
 * loaded input; with IQ_ACC 64, products are summed in int32 chunks of IQ_CHUNK terms.
 */
static IQ_TOUT IQ_CAT(IQ_FN, _requantize)(int64_t acc, int32_t m, int32_t s, int32_t zero_point,
                                          int32_t act_min, int32_t act_max)
{
    int32_t r = iq_apply_multiplier(acc, m, s, IQ_MODE);
    return (IQ_TOUT)iq_add_zero_point_and_clamp(r, zero_point, act_min, act_max);
}

static void IQ_CAT(IQ_FN, _dot2)(const IQ_TIN* x, const IQ_TW* w0, const IQ_TW* w1, int32_t n,
                                 IQ_TBIAS* s0, IQ_TBIAS* s1)
{
    int32_t i = 0;
    while (i < n) {
#if IQ_ACC == 32
        int32_t end = n;
#else
        int32_t end = (n - i > IQ_CHUNK) ? i + IQ_CHUNK : n;
#endif
        int32_t a0 = 0, a1 = 0;
        for (; i < end; ++i) {
            int32_t xv = x[i];
            a0 += IQ_LOAD_T(IQ_TW, w0 + i) * xv;
            a1 += IQ_LOAD_T(IQ_TW, w1 + i) * xv;
        }
        *s0 += a0;
        *s1 += a1;
    }
}

static void IQ_CAT(IQ_FN, _channels)(const IQ_TIN* col, const IQ_TW* w, const IQ_TBIAS* bias,
                                     const int32_t* mult, const int32_t* shift, int32_t c0,
                                     int32_t count, int32_t k, IQ_TOUT* out, int32_t out_stride,
                                     int32_t zero_point, int32_t act_min, int32_t act_max)
{
    int32_t j;
    for (j = 0; j < count; j += 2) {
        const int32_t c = c0 + j;
        const int32_t c1 = j + 1 < count ? c + 1 : c; /* odd count: the last pass twice */
        IQ_TBIAS a0 = IQ_LOAD_T(IQ_TBIAS, bias + c), a1 = IQ_LOAD_T(IQ_TBIAS, bias + c1);
        IQ_CAT(IQ_FN, _dot2)(col, w + j * k, w + (c1 - c0) * k, k, &a0, &a1);
        out[c * out_stride] =
            IQ_CAT(IQ_FN, _requantize)(a0, IQ_LOAD_S32(mult + c), IQ_LOAD_S32(shift + c),
                                       zero_point, act_min, act_max);
        out[c1 * out_stride] =
            IQ_CAT(IQ_FN, _requantize)(a1, IQ_LOAD_S32(mult + c1), IQ_LOAD_S32(shift + c1),
                                       zero_point, act_min, act_max);
    }
}
#endif

#ifndef IQ_FC_TEMPLATE
#ifndef IQ_ROWS
/* Taps [lo, hi) of a kernel axis that land inside the input for a window starting at `start`
 * (no division: kernels are short). */
static void IQ_CAT(IQ_FN, _valid_taps)(int32_t start, int32_t k, int32_t dil, int32_t size,
                                       int32_t* lo, int32_t* hi)
{
    int32_t a = 0, b = k;
    while (a < k && start + a * dil < 0) {
        ++a;
    }
    while (b > a && start + (b - 1) * dil >= size) {
        --b;
    }
    *lo = a;
    *hi = b;
}

/* Gather the receptive field of output (oy, ox) for channels [c0, c0 + cin_g) into col.
 * Fast path: stores x + xoff as uint8 and returns 128 * sum; generic: stores x, returns 0.
 * Row by row: the padded taps of a row are known from the window bounds, the valid ones are
 * one strided run, so the inner loop is a plain copy. */
static uint32_t IQ_CAT(IQ_FN, _im2col)(const iq_conv_params_t* p, const IQ_TIN* x, int32_t c0,
                                       int32_t cin_g, int32_t oy, int32_t ox, void* col_buf)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, k_h = p->k_h, k_w = p->k_w;
    const int32_t dil_h = p->dil_h, dil_w = p->dil_w, plane = in_h * in_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top;
    const int32_t x0 = ox * p->stride_w - p->pad_left;
    int32_t ky_lo, ky_hi, kx_lo, kx_hi, ci, ky, i;
#if defined(IQ_FAST8)
    uint8_t* col = (uint8_t*)col_buf;
    const uint8_t pad = (uint8_t)(p->input_zero_point + IQ_XOFF);
    uint32_t sum = 0, pads = 0;
#define IQ_PUT(v) (sum += (*col++ = (uint8_t)((uint32_t)(uint8_t)(v) ^ (uint32_t)IQ_XOFF)))
#else
    IQ_TIN* col = (IQ_TIN*)col_buf;
    const IQ_TIN pad = (IQ_TIN)p->input_zero_point;
    uint32_t pads = 0;
#define IQ_PUT(v) (*col++ = (v))
#endif
    IQ_CAT(IQ_FN, _valid_taps)(y0, k_h, dil_h, in_h, &ky_lo, &ky_hi);
    IQ_CAT(IQ_FN, _valid_taps)(x0, k_w, dil_w, in_w, &kx_lo, &kx_hi);
#if !defined(__OPTIMIZE_SIZE__) /* -Os: every window takes the general loop below */
    if (ky_lo == 0 && ky_hi == k_h && kx_lo == 0 && kx_hi == k_w && dil_w == 1) {
        /* Window inside the input (all but the border positions): rows of k_w contiguous
         * values, no padding; 1x1 kernels are one strided gather over the channels. */
        const IQ_TIN* src = x + c0 * plane + y0 * in_w + x0;
        const int32_t row_step = dil_h * in_w;
        if (k_h == 1 && k_w == 1) {
            for (ci = 0; ci < cin_g; ++ci) {
                IQ_PUT(*src);
                src += plane;
            }
        } else if (k_h == 1 && k_w == 3) { /* the common 1-D kernel, unrolled */
            for (ci = 0; ci < cin_g; ++ci) {
                IQ_PUT(src[0]);
                IQ_PUT(src[1]);
                IQ_PUT(src[2]);
                src += plane;
            }
        } else if (k_w == 3) { /* 3-wide rows (3x3), unrolled */
            for (ci = 0; ci < cin_g; ++ci) {
                const IQ_TIN* row = src;
                for (ky = 0; ky < k_h; ++ky) {
                    IQ_PUT(row[0]);
                    IQ_PUT(row[1]);
                    IQ_PUT(row[2]);
                    row += row_step;
                }
                src += plane;
            }
        } else {
            for (ci = 0; ci < cin_g; ++ci) {
                const IQ_TIN* row = src;
                for (ky = 0; ky < k_h; ++ky) {
                    for (i = 0; i < k_w; ++i) {
                        IQ_PUT(row[i]);
                    }
                    row += row_step;
                }
                src += plane;
            }
        }
        ci = cin_g; /* done: skip the general loop below */
    } else {
        ci = 0;
    }
#else
    ci = 0;
#endif
    for (; ci < cin_g; ++ci) {
        const IQ_TIN* src_plane = x + (c0 + ci) * plane;
        for (ky = 0; ky < k_h; ++ky) {
            const IQ_TIN* src;
            if (ky < ky_lo || ky >= ky_hi) {
                for (i = 0; i < k_w; ++i) {
                    *col++ = pad;
                }
                pads += (uint32_t)k_w;
                continue;
            }
            src = src_plane + (y0 + ky * dil_h) * in_w + x0 + kx_lo * dil_w;
            for (i = 0; i < kx_lo; ++i) {
                *col++ = pad;
            }
            if (dil_w == 1) {
                for (i = kx_lo; i < kx_hi; ++i) {
                    IQ_PUT(*src++);
                }
            } else {
                for (i = kx_lo; i < kx_hi; ++i) {
                    IQ_PUT(*src);
                    src += dil_w;
                }
            }
            for (i = kx_hi; i < k_w; ++i) {
                *col++ = pad;
            }
            pads += (uint32_t)(k_w - (kx_hi - kx_lo));
        }
    }
#undef IQ_PUT
#if defined(IQ_FAST8)
    return (sum + pads * pad) * 128u;
#else
    (void)pads;
    return 0;
#endif
}
#endif

#if defined(IQ_FAST8) && !defined(IQ_TILE)
#ifndef IQ_DW_MAX_TAPS
#define IQ_DW_MAX_TAPS 32 /* depthwise kernels up to this many taps skip im2col */
#endif
/* Depthwise on the 8-bit path. With signed weights ws = wu - 128 the offset-binary identity
 * reads acc = bias' + sum ws*(x + xoff) (padded taps: x = z), i.e.
 *     acc = base + sum_valid ws*x + z*sum_padded ws,   base = bias' + xoff*sum(ws),
 * all modulo 2^32 like the im2col path, whose value it equals. Per channel the signed weights
 * go to a small local table; outputs whose window lies inside the input (all but a
 * border of pad/stride outputs) need no bounds test, and 1x3 kernels keep their weights in
 * registers. */
static void IQ_CAT(IQ_FN, _depthwise)(const iq_conv_params_t* p, const IQ_TIN* x,
                                      const uint8_t* w, const uint32_t* bias,
                                      const int32_t* mult, const int32_t* shift, IQ_TOUT* y)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, out_h = p->out_h, out_w = p->out_w;
    const int32_t k_h = p->k_h, k_w = p->k_w, k = k_h * k_w, channels = p->out_c;
    const int32_t dil_h = p->dil_h, dil_w = p->dil_w, z = p->input_zero_point;
    const int32_t stride_h = p->stride_h, stride_w = p->stride_w, pad_left = p->pad_left;
    const iq_out_stage_t o = iq_out_stage(p->output_zero_point, p->act_min, p->act_max);
    int8_t ws[IQ_DW_MAX_TAPS]; /* wu - 128: the signed weights of one channel */
    int32_t c, oy, ox, ky, kx, t, ox_lo = 0, ox_hi = out_w;
    /* Outputs [ox_lo, ox_hi) of every row have all their taps inside the row. */
    while (ox_lo < out_w && ox_lo * stride_w - pad_left < 0) {
        ++ox_lo;
    }
    while (ox_hi > ox_lo && (ox_hi - 1) * stride_w - pad_left + (k_w - 1) * dil_w >= in_w) {
        --ox_hi;
    }
    for (c = 0; c < channels; ++c) {
        const IQ_TIN* plane = x + c * in_h * in_w;
        const int32_t m = IQ_LOAD_S32(mult + c), sh = IQ_LOAD_S32(shift + c);
        uint32_t base = IQ_LOAD_U32(bias + c);
        for (t = 0; t < k; ++t) {
            ws[t] = (int8_t)((int32_t)IQ_LOAD_U8(w + c * k + t) - 128);
            base += (uint32_t)(IQ_XOFF * (int32_t)ws[t]);
        }
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t y0 = oy * stride_h - p->pad_top;
            IQ_TOUT* out = y + (c * out_h + oy) * out_w;
            int32_t ky_lo, ky_hi;
            IQ_CAT(IQ_FN, _valid_taps)(y0, k_h, dil_h, in_h, &ky_lo, &ky_hi);
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t x0 = ox * stride_w - pad_left;
                uint32_t acc = base;
                if (ox == ox_lo && ox_lo < ox_hi && ky_lo == 0 && ky_hi == k_h) {
                    /* the interior run of this row */
                    const IQ_TIN* src = plane + y0 * in_w + x0;
                    IQ_TOUT* const end = out + ox_hi;
                    out += ox;
                    if (k == 3 && k_h == 1) {
                        const int32_t w0 = ws[0], w1 = ws[1], w2 = ws[2], d2 = 2 * dil_w;
                        while (out != end) {
                            acc = base + (uint32_t)(w0 * src[0] + w1 * src[dil_w] + w2 * src[d2]);
                            *out++ = (IQ_TOUT)iq_requantize_out((int32_t)acc, m, sh, IQ_MODE, &o);
                            src += stride_w;
                        }
                    } else {
                        const int32_t row_step = dil_h * in_w;
                        while (out != end) {
                            const IQ_TIN* row = src;
                            acc = base;
                            for (ky = 0, t = 0; ky < k_h; ++ky, row += row_step) {
                                for (kx = 0; kx < k_w; ++kx, ++t) {
                                    /* int8 x (u)int8 in int: |product| <= 128 * 255 <
                                     * 2^15, exact in a 16-bit int (one MUL on AVR) */
                                    acc += (uint32_t)(ws[t] * row[kx * dil_w]);
                                }
                            }
                            *out++ = (IQ_TOUT)iq_requantize_out((int32_t)acc, m, sh, IQ_MODE, &o);
                            src += stride_w;
                        }
                    }
                    out -= ox_hi;
                    ox = ox_hi - 1;
                    continue;
                }
                {
                    int32_t kx_lo, kx_hi;
                    IQ_CAT(IQ_FN, _valid_taps)(x0, k_w, dil_w, in_w, &kx_lo, &kx_hi);
                    for (ky = 0; ky < k_h; ++ky) {
                        const int32_t row = (y0 + ky * dil_h) * in_w;
                        const int32_t valid_row = ky >= ky_lo && ky < ky_hi;
                        for (kx = 0; kx < k_w; ++kx) {
                            const int32_t v = (valid_row && kx >= kx_lo && kx < kx_hi)
                                                  ? plane[row + x0 + kx * dil_w]
                                                  : z;
                            acc += (uint32_t)(ws[ky * k_w + kx] * v);
                        }
                    }
                }
                out[ox] = (IQ_TOUT)iq_requantize_out((int32_t)acc, m, sh, IQ_MODE, &o);
            }
        }
    }
}
#endif

#if defined(IQ_FAST8) && defined(IQ_TILE) && defined(IQ_ROWS)
/* ---------------------------------------------------------------------------------------
 * 8-bit path without im2col (groups 1, no dilation, kernel width 3 or 4): the input rows a
 * band of output rows needs are copied once, in offset binary, into `buf` laid out as
 * [row][channel][column] with the padding in place; a receptive field is then kernel-height x
 * channels runs of kernel-width bytes `row_w` apart (iq_dot8_rows reads them in place, the
 * weights reordered to (ky, ci, kx) offline). The per-position term 128 * sum(xu) comes from
 * column sums over the channels. Sums are requantized per channel in runs (iq_requant.h).
 */
/* Channels the eight-channel kernel leaves (a block of four, then single ones), in C. */
static void IQ_CAT(IQ_FN, _rows_rest)(const uint8_t* x, const iq_rows_t* rows, const uint8_t* w,
                                      int32_t count, int32_t* acc)
{
    const int32_t blocks = rows->span / rows->pitch, kw = rows->kw, n = rows->npos;
    int32_t q, j, b, i;
    for (q = 0; q < n; ++q, x += rows->step) {
        for (j = 0; j < count; ++j) {
            uint32_t s = IQ_LOAD_U32(rows->bias + j) - rows->terms[q];
            for (b = 0; b < blocks; ++b) {
                for (i = 0; i < kw; ++i) {
                    s += (uint32_t)x[b * rows->pitch + i] *
                         IQ_LOAD_U8(w + (b * kw + i) * count + j);
                }
            }
            acc[j * n + q] = (int32_t)s;
        }
    }
}

IQ_CONV_TILE_DECLARE(IQ_FN, IQ_TIN, IQ_TOUT)
{
    const int32_t c_in = p->in_c, c_out = p->out_c, k_h = p->k_h, k_w = p->k_w;
    const int32_t k = c_in * k_h * k_w, row_w = p->row_w, out_w = p->out_w;
    const int32_t out_plane = p->out_h * out_w, tile = p->tile;
    const int32_t band_rows = (p->band - 1) * p->stride_h + k_h;
    const int32_t buf_bytes = band_rows * c_in * row_w;
    const uint8_t pad = (uint8_t)(p->input_zero_point + IQ_XOFF);
    uint8_t* const buf = (uint8_t*)col + ((4 - p->pad_left) & 3); /* interiors word-aligned */
    uint32_t* const colsum = (uint32_t*)col + (buf_bytes + 6) / 4;
    uint32_t* const terms = colsum + band_rows * row_w;
    int32_t* const acc = (int32_t*)(terms + tile); /* 8 channels x tile */
    iq_rows_t rows;
    int32_t oy0, oy, ox0, i, c, t, q, ky, kx;
    for (i = 0; i < buf_bytes; ++i) {
        buf[i] = pad; /* the padding columns keep this value */
    }
    rows.step = p->stride_w;
    rows.span = k_h * c_in * row_w;
    rows.pitch = row_w;
    rows.kw = k_w;
    rows.terms = terms;
    for (oy0 = 0; oy0 < p->out_h; oy0 += p->band) {
        const int32_t nrows = p->out_h - oy0 < p->band ? p->out_h - oy0 : p->band;
        iq_rows_copy(p, (const uint8_t*)x, (uint32_t)IQ_XOFF, oy0 * p->stride_h - p->pad_top,
                     (nrows - 1) * p->stride_h + k_h, buf, colsum);
        for (oy = oy0; oy < oy0 + nrows; ++oy) {
            const int32_t r0 = (oy - oy0) * p->stride_h;
            for (ox0 = 0; ox0 < out_w; ox0 += tile) {
                const int32_t n = out_w - ox0 < tile ? out_w - ox0 : tile;
                const uint8_t* xq = buf + r0 * c_in * row_w + ox0 * p->stride_w;
                const uint8_t* wc = w;
                uint8_t* out = (uint8_t*)(y + oy * out_w + ox0);
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
                        iq_dot8_rows(xq, &rows, wc, acc);
                    } else {
                        IQ_CAT(IQ_FN, _rows_rest)(xq, &rows, wc, count, acc);
                    }
                    for (t = 0; t < count; ++t) {
                        iq_rqw_run8(acc + t * n, n, rq + c + t, p->act_min, p->sign,
                                    out + (c + t) * out_plane, 1);
                    }
                    wc += count * k;
                    c += count;
                }
            }
        }
    }
}
#elif defined(IQ_FAST8) && defined(IQ_TILE)
/* ---------------------------------------------------------------------------------------
 * 8-bit path with the batched requantization of iq_requant.h: `tile` positions are gathered,
 * then for each block of eight channels (iq_dot8_tile; then a block of four, then single
 * channels, the weights interleaved to match) the sums of every position of the tile, stored
 * as acc - a_lo (`bias` holds bias - a_lo), are requantized in one run per channel with the
 * channel's constants in registers instead of reloaded per output.
 */
static void IQ_CAT(IQ_FN, _tile_channels)(const uint8_t* cols, const uint32_t* terms,
                                          int32_t npos, const uint8_t* w, const uint32_t* bias,
                                          const iq_rqw_t* rq, int32_t count, int32_t k,
                                          uint8_t* out, int32_t out_plane, int32_t lo,
                                          int32_t sign, int32_t* acc)
{
    uint32_t s[4];
    int32_t j, q, t;
    for (j = 0; j + 8 <= count; j += 8) {
        iq_dot8_tile(cols, terms, npos, k, w, bias, acc);
        if (npos == 1) { /* one position (fully_connected): the eight channels in one call */
            iq_rqw_channels8(acc, 8, 1, rq, lo, sign, out, out_plane);
        }
        for (t = 0; t < 8 && npos > 1; ++t) {
            iq_rqw_run8(acc + t * npos, npos, rq + t, lo, sign, out + t * out_plane, 1);
        }
        w += 8 * k;
        bias += 8;
        rq += 8;
        out += 8 * out_plane;
    }
#if defined(__OPTIMIZE_SIZE__) /* -Os: the channels past the blocks of eight in one C loop */
    for (; j < count; j += t) {
        const int32_t n = count - j >= 4 ? 4 : 1;
        for (q = 0; q < npos; ++q) {
            for (t = 0; t < n; ++t) {
                const uint8_t* x = cols + q * k;
                uint32_t sum = IQ_LOAD_U32(bias + t) - terms[q];
                int32_t i;
                for (i = 0; i < k; ++i) {
                    sum += (uint32_t)x[i] * IQ_LOAD_U8(w + i * n + t);
                }
                acc[t * npos + q] = (int32_t)sum;
            }
        }
        for (t = 0; t < n; ++t) {
            iq_rqw_run8(acc + t * npos, npos, rq + t, lo, sign, out + t * out_plane, 1);
        }
        w += n * k;
        bias += n;
        rq += n;
        out += n * out_plane;
    }
    (void)s;
#else
    for (; j + 4 <= count; j += 4) {
        for (q = 0; q < npos; ++q) {
            for (t = 0; t < 4; ++t) {
                s[t] = IQ_LOAD_U32(bias + t) - terms[q];
            }
            iq_dot4_u8(cols + q * k, w, k, s);
            for (t = 0; t < 4; ++t) {
                acc[t * npos + q] = (int32_t)s[t];
            }
        }
        for (t = 0; t < 4; ++t) {
            iq_rqw_run8(acc + t * npos, npos, rq + t, lo, sign, out + t * out_plane, 1);
        }
        w += 4 * k;
        bias += 4;
        rq += 4;
        out += 4 * out_plane;
    }
    for (; j < count; ++j) {
        for (q = 0; q < npos; ++q) {
            acc[q] = (int32_t)(IQ_LOAD_U32(bias) + iq_dot1_u8(cols + q * k, w, k) - terms[q]);
        }
        iq_rqw_run8(acc, npos, rq, lo, sign, out, 1);
        w += k;
        ++bias;
        ++rq;
        out += out_plane;
    }
#endif
}

IQ_CONV_TILE_DECLARE(IQ_FN, IQ_TIN, IQ_TOUT)
{
    const int32_t cin_g = p->in_c / p->groups;
    const int32_t cout_g = p->out_c / p->groups;
    const int32_t k = cin_g * p->k_h * p->k_w;
    const int32_t out_plane = p->out_h * p->out_w;
    const int32_t tile = p->tile;
    uint8_t* const cols = (uint8_t*)col;
    uint32_t* const terms = (uint32_t*)col + (tile * k + 3) / 4;
    int32_t* const acc = (int32_t*)(terms + tile); /* 8 channels x tile */
    int32_t g, pos, q, oy, ox;
    for (g = 0; g < p->groups; ++g) {
        const int32_t c0 = g * cout_g;
        oy = ox = 0;
        for (pos = 0; pos < out_plane; pos += tile) {
            const int32_t npos = out_plane - pos < tile ? out_plane - pos : tile;
            for (q = 0; q < npos; ++q) {
                terms[q] = IQ_CAT(IQ_FN, _im2col)(p, x, g * cin_g, cin_g, oy, ox, cols + q * k);
                if (++ox == p->out_w) {
                    ox = 0;
                    ++oy;
                }
            }
            IQ_CAT(IQ_FN, _tile_channels)(cols, terms, npos, w + c0 * k, bias + c0, rq + c0,
                                          cout_g, k, (uint8_t*)(y + c0 * out_plane + pos),
                                          out_plane, p->act_min, p->sign, acc);
        }
    }
}
#else
IQ_CONV_DECLARE(IQ_FN, IQ_TIN, IQ_TW, IQ_TOUT, IQ_TBIAS)
{
    const int32_t cin_g = p->in_c / p->groups;
    const int32_t cout_g = p->out_c / p->groups;
    const int32_t k = cin_g * p->k_h * p->k_w;
    const int32_t out_plane = p->out_h * p->out_w;
    int32_t g, oy, ox;
#if defined(IQ_FAST8)
    const iq_out_stage_t o = iq_out_stage(p->output_zero_point, p->act_min, p->act_max);
    if (cin_g == 1 && cout_g == 1 && k <= IQ_DW_MAX_TAPS) {
        (void)col;
        IQ_CAT(IQ_FN, _depthwise)(p, x, w, bias, mult, shift, y);
        return;
    }
#endif
    for (g = 0; g < p->groups; ++g) {
        const IQ_TW* wg = w + g * cout_g * k;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                IQ_TOUT* out = y + oy * p->out_w + ox;
                const uint32_t term = IQ_CAT(IQ_FN, _im2col)(p, x, g * cin_g, cin_g, oy, ox, col);
#if defined(IQ_FAST8)
                const int32_t c0 = g * cout_g;
                IQ_CAT(IQ_FN, _channels)((const uint8_t*)col, term, wg, bias + c0, mult + c0,
                                         shift + c0, cout_g, k, out + c0 * out_plane, out_plane,
                                         o);
#else
                (void)term;
                IQ_CAT(IQ_FN, _channels)(col, wg, bias, mult, shift, g * cout_g, cout_g, k, out,
                                         out_plane, p->output_zero_point, p->act_min,
                                         p->act_max);
#endif
            }
        }
    }
}
#endif
#else
/* fully_connected: one "position"; the fast path first converts x to offset binary in col. */
IQ_FC_DECLARE(IQ_FN, IQ_TIN, IQ_TW, IQ_TOUT, IQ_TBIAS)
{
#if defined(IQ_FAST8)
    uint8_t* xu = (uint8_t*)col;
    uint32_t sum = 0;
    int32_t i;
    const int32_t n = p->in_features;
    for (i = 0; i < n; ++i) {
        sum += (xu[i] = (uint8_t)(x[i] + IQ_XOFF));
    }
    IQ_CAT(IQ_FN, _channels)(xu, sum * 128u, w, bias, mult, shift, p->out_features, n, y, 1,
                             iq_out_stage(p->output_zero_point, p->act_min, p->act_max));
#else
    (void)col;
    IQ_CAT(IQ_FN, _channels)(x, w, bias, mult, shift, 0, p->out_features, p->in_features, y, 1,
                             p->output_zero_point, p->act_min, p->act_max);
#endif
}
#endif

#undef IQ_XOFF
#undef IQ_TBIAS
#undef IQ_FN
#undef IQ_TIN
#undef IQ_TW
#undef IQ_TOUT
#undef IQ_ACC
#undef IQ_CHUNK
#undef IQ_MODE
#undef IQ_FAST8
#undef IQ_FC_TEMPLATE
#undef IQ_TILE
#undef IQ_ROWS
