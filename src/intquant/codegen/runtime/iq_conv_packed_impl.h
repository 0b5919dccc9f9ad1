/*
 * Template: conv (1-D as H = 1, 2-D, grouped, depthwise) or, with IQ_FC_TEMPLATE defined,
 * fully_connected, with packed weights (iq_conv_packed.h explains the kernels).
 *
 * Instantiate by defining, then including this file:
 *   IQ_FN         function name
 *   IQ_TIN        input element type         IQ_TOUT  output element type
 *   IQ_MODE       requantization mode (IQ_RQ_*)
 *   IQ_PK_FORMAT  IQ_PK_INT4 | IQ_PK_POW2 | IQ_PK_INT2 | IQ_PK_BINARY
 *   IQ_PK_PATH    how the products are formed (chosen by the generator, which also sizes the
 *                 scratch buffer and lays out the weights for it):
 *       IQ_PK_GENERIC  any input type, acc IQ_ACC (32 or 64) bits; bias = b - z sum(w)
 *       IQ_PK_DIRECT   8-bit inputs, code by code, no multiply but for int4 (depthwise and
 *                      layers with few channels per group)
 *       IQ_PK_SUBSET   8-bit inputs, binary / int2: subset-sum tables
 *       IQ_PK_PRODUCT  8-bit inputs, pow2: product tables
 *       IQ_PK_LANES    8-bit inputs, int4: two products per MULS, eight channels per block
 *                      (weights interleaved per block, the 1-7 remaining rows as in IntGraph)
 *   IQ_ACC        (IQ_PK_GENERIC) 32 or 64
 *   IQ_PK_BLOCK4  (table paths) 1: weights in blocks of four channels (halfwords of nibbles)
 * The 8-bit paths receive C[c] = b[c] - (z + xoff) sum(w[c]) as int32 `bias`.
 */
#include "iq_conv_packed.h"

#define IQ_CAT_(a, b) a##b
#define IQ_CAT(a, b) IQ_CAT_(a, b)

#define IQ_PK_GENERIC 0
#define IQ_PK_DIRECT 1
#define IQ_PK_SUBSET 2
#define IQ_PK_PRODUCT 3
#define IQ_PK_LANES 4

#if IQ_PK_PATH == IQ_PK_GENERIC && IQ_ACC == 64
#define IQ_TBIAS int64_t
#define IQ_TACC int64_t
#else
#define IQ_TBIAS int32_t
#define IQ_TACC int32_t
#endif

#if IQ_PK_PATH == IQ_PK_GENERIC
#define IQ_TCOL IQ_TIN
#define IQ_XOFF 0
#define IQ_XU(v) (v)
#else
#define IQ_TCOL uint8_t
#define IQ_XOFF ((IQ_TIN)(-1) < 0 ? 128 : 0) /* offset making the input unsigned */
#define IQ_XU(v) ((uint8_t)((uint32_t)(uint8_t)(v) ^ (uint32_t)IQ_XOFF)) /* x + xoff */
#endif

#if IQ_PK_FORMAT == IQ_PK_INT2
#define IQ_PK_PLANES 2
#else
#define IQ_PK_PLANES 1
#endif
/* channels per weight block: 8 (lanes), 4 (table paths with IQ_PK_BLOCK4), else no blocks */
#if IQ_PK_PATH == IQ_PK_LANES
#define IQ_PK_BLOCK 8
#elif (IQ_PK_PATH == IQ_PK_SUBSET || IQ_PK_PATH == IQ_PK_PRODUCT) && IQ_PK_BLOCK4
#define IQ_PK_BLOCK 4
#else
#define IQ_PK_BLOCK 0
#endif
#if IQ_PK_PATH == IQ_PK_SUBSET
#define IQ_PK_CHUNK IQ_PK_SUBSET_CHUNK
#define IQ_PK_TABLE_BYTES(kp) (((kp) < IQ_PK_CHUNK ? (kp) : IQ_PK_CHUNK) * 8)
#elif IQ_PK_PATH == IQ_PK_PRODUCT
#define IQ_PK_CHUNK IQ_PK_PRODUCT_CHUNK
#define IQ_PK_TABLE_BYTES(kp) (((kp) < IQ_PK_CHUNK ? (kp) : IQ_PK_CHUNK) * 32)
#endif

/* Output stage: requantize, add the zero point, clamp. */
static IQ_TOUT IQ_CAT(IQ_FN, _out)(IQ_TACC acc, int32_t m, int32_t s, const iq_out_stage_t* o)
{
#if IQ_PK_PATH == IQ_PK_GENERIC
    return (IQ_TOUT)iq_out_clamp(iq_apply_multiplier(acc, m, s, IQ_MODE), o);
#else
    return (IQ_TOUT)iq_requantize_out(acc, m, s, IQ_MODE, o);
#endif
}

/* Channels [0, count) at one position: col holds the k gathered inputs (8-bit paths: xu, zero
 * up to a multiple of 8), sum_xu their sum; outputs go out_stride apart. `work` is the scratch
 * after col (tables, then the int32 partial sums). The group's weights: `wb` its blocks of
 * IQ_PK_BLOCK channels (lanes, table paths), `w` the rows of the remaining channels. */
static void IQ_CAT(IQ_FN, _channels)(const IQ_TCOL* col, int32_t sum_xu, const void* wb,
                                     const uint8_t* w, const IQ_TBIAS* bias, const int32_t* mult,
                                     const int32_t* shift, int32_t count, int32_t k,
                                     IQ_TOUT* out, int32_t out_stride, const iq_out_stage_t* o,
                                     void* work)
{
    const int32_t rb = iq_pk_row_bytes(IQ_PK_FORMAT, k);
    int32_t c = 0;
    (void)work;
    (void)sum_xu;
    (void)wb;
#if IQ_PK_PATH == IQ_PK_SUBSET || IQ_PK_PATH == IQ_PK_PRODUCT
    {
        /* Pass 1, per chunk of inputs: tables, then each row's table sum into sums[c].
         * Pass 2: requantize. Two short loops keep the channel loop free of the output
         * stage's pointers. Codes per row are rounded up to whole bytes: 8 per plane byte
         * (subset), 2 per nibble byte (product). */
        const int32_t kp = IQ_PK_PATH == IQ_PK_SUBSET ? (k + 7) & ~7 : (k + 1) & ~1;
        int16_t* tables = (int16_t*)work;
        int32_t* sums = (int32_t*)((uint8_t*)work + IQ_PK_TABLE_BYTES(kp));
#if IQ_PK_FORMAT == IQ_PK_BINARY
        const int32_t base = -sum_xu; /* sum s*xu = 2 P - S */
#else
        const int32_t base = 0;
#endif
        int32_t start;
        for (start = 0; start < kp; start += IQ_PK_CHUNK) {
            const int32_t n = kp - start < IQ_PK_CHUNK ? kp - start : IQ_PK_CHUNK;
#if IQ_PK_PATH == IQ_PK_SUBSET
            const int32_t nb = n >> 3;
            const uint8_t* row = w + (start >> 3);
            iq_pk_subset_tables(col + start, n, tables);
#else
            const int32_t nb = n >> 1;
            const uint8_t* row = w + (start >> 1);
            iq_pk_pow2_tables(col + start, n, tables);
#endif
            /* blocks of four channels: per plane, one halfword of four nibbles per unit
             * (ops/_lowbit.py block_layout), then the remaining rows as in IntGraph */
#if IQ_PK_BLOCK
            {
                const int32_t units = IQ_PK_PATH == IQ_PK_SUBSET ? 2 * (rb / IQ_PK_PLANES) : 2 * rb;
                const int32_t u0 = IQ_PK_PATH == IQ_PK_SUBSET ? start >> 2 : start;
                const uint16_t* blk = (const uint16_t*)wb;
                for (c = 0; c + 4 <= count; c += 4, blk += IQ_PK_PLANES * units) {
                    int32_t s4[4] = {0, 0, 0, 0};
                    iq_pk_block4_sum(tables, blk + u0, 2 * nb, s4);
#if IQ_PK_FORMAT == IQ_PK_INT2
                    {
                        int32_t p1[4] = {0, 0, 0, 0}, j;
                        iq_pk_block4_sum(tables, blk + units + u0, 2 * nb, p1);
                        for (j = 0; j < 4; ++j) {
                            s4[j] -= 2 * p1[j];
                        }
                    }
#endif
                    sums[c] = start == 0 ? s4[0] : sums[c] + s4[0];
                    sums[c + 1] = start == 0 ? s4[1] : sums[c + 1] + s4[1];
                    sums[c + 2] = start == 0 ? s4[2] : sums[c + 2] + s4[2];
                    sums[c + 3] = start == 0 ? s4[3] : sums[c + 3] + s4[3];
                }
            }
#endif
            for (; c < count; ++c, row += rb) {
#if IQ_PK_FORMAT == IQ_PK_INT2
                const int32_t v = iq_pk_nibble_sum(tables, row, nb) -
                                  2 * iq_pk_nibble_sum(tables, row + (rb >> 1), nb);
#else
                const int32_t v = iq_pk_nibble_sum(tables, row, nb);
#endif
                sums[c] = start == 0 ? v : sums[c] + v;
            }
        }
        for (c = 0; c < count; ++c, out += out_stride) {
#if IQ_PK_FORMAT == IQ_PK_BINARY
            const int32_t v = 2 * sums[c] + bias[c] + base;
#else
            const int32_t v = sums[c] + bias[c] + base;
#endif
            *out = IQ_CAT(IQ_FN, _out)(v, mult[c], shift[c], o);
        }
    }
#elif IQ_PK_PATH == IQ_PK_LANES
    {
        /* blocks of eight channels, then the remaining rows code by code */
        const uint32_t* blk = (const uint32_t*)wb;
        const int32_t block_words = k + (k & 1);
        int32_t s[8], i;
        for (; c + 8 <= count; c += 8, blk += block_words) {
            for (i = 0; i < 8; ++i) {
                s[i] = bias[c + i] - 8 * sum_xu;
            }
            iq_pk_int4_lanes8(col, blk, k, s);
            for (i = 0; i < 8; ++i) {
                out[(c + i) * out_stride] =
                    IQ_CAT(IQ_FN, _out)(s[i], mult[c + i], shift[c + i], o);
            }
        }
        for (; c < count; ++c, w += rb) {
            int32_t acc = bias[c];
            for (i = 0; i < k; ++i) {
                acc += iq_pk_times(IQ_PK_INT4, w, i, k, col[i]);
            }
            out[c * out_stride] = IQ_CAT(IQ_FN, _out)(acc, mult[c], shift[c], o);
        }
    }
#else
    for (c = 0; c < count; ++c, w += rb) {
        IQ_TACC acc = bias[c];
        int32_t i;
        for (i = 0; i < k; ++i) {
#if IQ_PK_PATH == IQ_PK_GENERIC
            acc += (IQ_TACC)iq_pk_code(IQ_PK_FORMAT, w, i, k) * col[i];
#else
            acc += iq_pk_times(IQ_PK_FORMAT, w, i, k, col[i]);
#endif
        }
        out[c * out_stride] = IQ_CAT(IQ_FN, _out)(acc, mult[c], shift[c], o);
    }
#endif
}

#ifndef IQ_FC_TEMPLATE
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

/* Gather the receptive field of output (oy, ox) for channels [c0, c0 + cin_g): padded taps
 * hold the input zero point. 8-bit paths store xu = x + xoff and return their sum. The valid
 * taps of a row are one strided run, known once per position. */
static int32_t IQ_CAT(IQ_FN, _im2col)(const iq_conv_params_t* p, const IQ_TIN* x, int32_t c0,
                                      int32_t cin_g, int32_t oy, int32_t ox, IQ_TCOL* col)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, k_h = p->k_h, k_w = p->k_w;
    const int32_t dil_w = p->dil_w, plane = in_h * in_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    const IQ_TCOL pad = (IQ_TCOL)(p->input_zero_point + IQ_XOFF);
    int32_t ky_lo, ky_hi, kx_lo, kx_hi, pads, ci, ky, i;
    uint32_t sum = 0;
    IQ_CAT(IQ_FN, _valid_taps)(y0, k_h, p->dil_h, in_h, &ky_lo, &ky_hi);
    IQ_CAT(IQ_FN, _valid_taps)(x0, k_w, dil_w, in_w, &kx_lo, &kx_hi);
    if (ky_lo == 0 && ky_hi == k_h && kx_lo == 0 && kx_hi == k_w && dil_w == 1) {
        /* interior: rows of k_w contiguous inputs, no padding */
        const IQ_TIN* src = x + c0 * plane + y0 * in_w + x0;
        const int32_t row_step = p->dil_h * in_w;
#if IQ_PK_PATH != IQ_PK_GENERIC
        if (k_h == 1 && k_w == 3) { /* the common 1-D kernel */
            return (int32_t)iq_pk_gather3((const uint8_t*)src, plane, col, cin_g, IQ_XOFF);
        }
#endif
        for (ci = 0; ci < cin_g; ++ci, src += plane) {
            const IQ_TIN* row = src;
            for (ky = 0; ky < k_h; ++ky, row += row_step) {
                for (i = 0; i < k_w; ++i) {
                    const IQ_TCOL v = IQ_XU(row[i]);
                    *col++ = v;
                    sum += (uint32_t)v;
                }
            }
        }
        return (int32_t)sum;
    }
    pads = (k_h - (ky_hi - ky_lo)) * k_w + (ky_hi - ky_lo) * (k_w - (kx_hi - kx_lo));
    for (ci = 0; ci < cin_g; ++ci) {
        const IQ_TIN* src_plane = x + (c0 + ci) * plane + x0 + kx_lo * dil_w;
        for (ky = 0; ky < k_h; ++ky) {
            const IQ_TIN* src = src_plane + (y0 + ky * p->dil_h) * in_w;
            if (ky < ky_lo || ky >= ky_hi) {
                for (i = 0; i < k_w; ++i) {
                    *col++ = pad;
                }
                continue;
            }
            for (i = 0; i < kx_lo; ++i) {
                *col++ = pad;
            }
            for (i = kx_lo; i < kx_hi; ++i, src += dil_w) {
                const IQ_TCOL v = IQ_XU(*src);
                *col++ = v;
                sum += (uint32_t)v;
            }
            for (i = kx_hi; i < k_w; ++i) {
                *col++ = pad;
            }
        }
    }
    return (int32_t)(sum + (uint32_t)(cin_g * pads) * (uint32_t)pad);
}

#if IQ_PK_PATH == IQ_PK_DIRECT
#ifndef IQ_PK_DW_MAX_TAPS
#define IQ_PK_DW_MAX_TAPS 32 /* depthwise kernels up to this many taps: decoded once */
#endif
/* Depthwise (one input and one output channel per group), 8-bit: each channel's taps are
 * decoded once, then every output reads its window from the input plane (padded taps hold
 * z + xoff). int4 multiplies; the other formats (codes 0, +-2^e) shift, mask and negate:
 * w * v = (((v << e) & m) ^ s) - s, no multiply. */
static void IQ_CAT(IQ_FN, _depthwise)(const iq_conv_params_t* p, const IQ_TIN* x,
                                      const uint8_t* w, const IQ_TBIAS* bias,
                                      const int32_t* mult, const int32_t* shift, IQ_TOUT* y,
                                      const iq_out_stage_t* o)
{
    const int32_t in_h = p->in_h, in_w = p->in_w, out_h = p->out_h, out_w = p->out_w;
    const int32_t k_h = p->k_h, k_w = p->k_w, k = k_h * k_w;
    const int32_t rb = iq_pk_row_bytes(IQ_PK_FORMAT, k);
    const int32_t pad = (uint8_t)(p->input_zero_point + IQ_XOFF);
    int32_t sh[IQ_PK_DW_MAX_TAPS]; /* int4: the code; else the exponent e */
#if IQ_PK_FORMAT != IQ_PK_INT4
    int32_t mk[IQ_PK_DW_MAX_TAPS], sg[IQ_PK_DW_MAX_TAPS];
#endif
    int32_t c, t, oy, ox, ky, kx, ox_lo = 0, ox_hi = out_w;
    /* outputs [ox_lo, ox_hi) of every row have all their taps inside the row */
    while (ox_lo < out_w && ox_lo * p->stride_w - p->pad_left < 0) {
        ++ox_lo;
    }
    while (ox_hi > ox_lo &&
           (ox_hi - 1) * p->stride_w - p->pad_left + (k_w - 1) * p->dil_w >= in_w) {
        --ox_hi;
    }
    for (c = 0; c < p->out_c; ++c, w += rb) {
        const IQ_TIN* plane = x + c * in_h * in_w;
        for (t = 0; t < k; ++t) {
            const int32_t code = iq_pk_code(IQ_PK_FORMAT, w, t, k);
            const int32_t mag = code < 0 ? -code : code;
            int32_t e = 0;
            while ((1 << e) < mag) {
                ++e;
            }
#if IQ_PK_FORMAT == IQ_PK_INT4
            (void)e;
            sh[t] = code;
#else
            sh[t] = e;
            mk[t] = code != 0 ? -1 : 0;
            sg[t] = code < 0 ? -1 : 0;
#endif
        }
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            int32_t ky_lo, ky_hi;
            IQ_CAT(IQ_FN, _valid_taps)(y0, k_h, p->dil_h, in_h, &ky_lo, &ky_hi);
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                int32_t acc = bias[c];
                if (ox == ox_lo && ox_lo < ox_hi && ky_lo == 0 && ky_hi == k_h) {
                    /* the interior run of this row: no tap is padding */
                    const IQ_TIN* src = plane + y0 * in_w + x0;
                    const int32_t step = p->stride_w, d = p->dil_w, rs = p->dil_h * in_w;
                    if (k == 3 && k_h == 1) { /* 1x3: the taps' constants in locals */
#if IQ_PK_FORMAT == IQ_PK_INT4
                        const int32_t w0 = sh[0], w1 = sh[1], w2 = sh[2];
                        for (; ox < ox_hi; ++ox, src += step) {
                            acc = bias[c] + w0 * IQ_XU(src[0]) + w1 * IQ_XU(src[d]) +
                                  w2 * IQ_XU(src[2 * d]);
                            *y++ = IQ_CAT(IQ_FN, _out)(acc, mult[c], shift[c], o);
                        }
#else
#define IQ_PK_TAP(v, t) ((((int32_t)((uint32_t)(v) << sh[t])) & mk[t]) ^ sg[t]) - sg[t]
                        for (; ox < ox_hi; ++ox, src += step) {
                            acc = bias[c] + IQ_PK_TAP(IQ_XU(src[0]), 0) +
                                  IQ_PK_TAP(IQ_XU(src[d]), 1) + IQ_PK_TAP(IQ_XU(src[2 * d]), 2);
                            *y++ = IQ_CAT(IQ_FN, _out)(acc, mult[c], shift[c], o);
                        }
#endif
                    } else {
                        for (; ox < ox_hi; ++ox, src += step) {
                            const IQ_TIN* r = src;
                            acc = bias[c];
                            for (ky = 0, t = 0; ky < k_h; ++ky, r += rs) {
                                for (kx = 0; kx < k_w; ++kx, ++t) {
#if IQ_PK_FORMAT == IQ_PK_INT4
                                    acc += sh[t] * IQ_XU(r[kx * d]);
#else
                                    acc += IQ_PK_TAP(IQ_XU(r[kx * d]), t);
#endif
                                }
                            }
                            *y++ = IQ_CAT(IQ_FN, _out)(acc, mult[c], shift[c], o);
                        }
                    }
                    --ox; /* the for loop steps past the run's last output */
                    continue;
                }
                for (ky = 0, t = 0; ky < k_h; ++ky) {
                    const int32_t iy = y0 + ky * p->dil_h;
                    const int32_t row_in = iy >= 0 && iy < in_h;
                    for (kx = 0; kx < k_w; ++kx, ++t) {
                        const int32_t ix = x0 + kx * p->dil_w;
                        const int32_t v = (row_in && ix >= 0 && ix < in_w)
                                              ? (int32_t)IQ_XU(plane[iy * in_w + ix])
                                              : pad;
#if IQ_PK_FORMAT == IQ_PK_INT4
                        acc += sh[t] * v;
#else
                        acc += IQ_PK_TAP(v, t);
#endif
                    }
                }
                *y++ = IQ_CAT(IQ_FN, _out)(acc, mult[c], shift[c], o);
            }
        }
    }
#undef IQ_PK_TAP
}
#endif

IQ_CONV_PACKED_DECLARE(IQ_FN, IQ_TIN, IQ_TOUT, IQ_TBIAS)
{
    const int32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    const int32_t k = cin_g * p->k_h * p->k_w, kp = (k + 7) & ~7;
    const int32_t out_plane = p->out_h * p->out_w;
    /* per group: the blocks (bytes of IQ_PK_BLOCK rows each) in wb, the other rows in w */
    const int32_t rb = iq_pk_row_bytes(IQ_PK_FORMAT, k);
    const int32_t blocks = IQ_PK_BLOCK ? cout_g / (IQ_PK_BLOCK ? IQ_PK_BLOCK : 1) : 0;
    const int32_t block_bytes = IQ_PK_BLOCK * rb, rest = cout_g - blocks * IQ_PK_BLOCK;
    const iq_out_stage_t o = iq_out_stage(p->output_zero_point, p->act_min, p->act_max);
    IQ_TCOL* col = (IQ_TCOL*)scratch;
    void* work = (uint8_t*)scratch + ((kp * (int32_t)sizeof(IQ_TCOL) + 3) & ~3);
    int32_t g, oy, ox, i;
#if IQ_PK_PATH == IQ_PK_DIRECT
    if (cin_g == 1 && cout_g == 1 && k <= IQ_PK_DW_MAX_TAPS) {
        (void)col;
        (void)work;
        IQ_CAT(IQ_FN, _depthwise)(p, x, w, bias, mult, shift, y, &o);
        return;
    }
#endif
    for (i = k; i < kp; ++i) {
        col[i] = 0; /* taps past k: the tables see zeros */
    }
    for (g = 0; g < p->groups; ++g) {
        const int32_t c0 = g * cout_g;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t sum = IQ_CAT(IQ_FN, _im2col)(p, x, g * cin_g, cin_g, oy, ox, col);
                IQ_CAT(IQ_FN, _channels)(col, sum, (const uint8_t*)wb + g * blocks * block_bytes,
                                         w + g * rest * rb, bias + c0, mult + c0, shift + c0,
                                         cout_g, k,
                                         y + c0 * out_plane + oy * p->out_w + ox, out_plane, &o,
                                         work);
            }
        }
    }
}
#else
IQ_FC_PACKED_DECLARE(IQ_FN, IQ_TIN, IQ_TOUT, IQ_TBIAS)
{
    const int32_t k = p->in_features, kp = (k + 7) & ~7;
    const iq_out_stage_t o = iq_out_stage(p->output_zero_point, p->act_min, p->act_max);
    IQ_TCOL* col = (IQ_TCOL*)scratch;
    void* work = (uint8_t*)scratch + ((kp * (int32_t)sizeof(IQ_TCOL) + 3) & ~3);
    int32_t sum = 0, i;
    for (i = 0; i < kp; ++i) {
        const IQ_TCOL v = i < k ? IQ_XU(x[i]) : 0;
        col[i] = v;
        sum += v;
    }
    IQ_CAT(IQ_FN, _channels)(col, sum, wb, w, bias, mult, shift, p->out_features, k, y, 1, &o,
                             work);
}
#endif

#undef IQ_PK_CHUNK
#undef IQ_PK_PLANES
#undef IQ_PK_BLOCK
#undef IQ_PK_TABLE_BYTES
#undef IQ_TCOL
#undef IQ_TACC
#undef IQ_XOFF
#undef IQ_XU
#undef IQ_TBIAS
#undef IQ_PK_GENERIC
#undef IQ_PK_DIRECT
#undef IQ_PK_SUBSET
#undef IQ_PK_PRODUCT
#undef IQ_PK_LANES
#undef IQ_FN
#undef IQ_TIN
#undef IQ_TOUT
#undef IQ_ACC
#undef IQ_MODE
#undef IQ_PK_FORMAT
#undef IQ_PK_PATH
#undef IQ_PK_BLOCK4
#undef IQ_FC_TEMPLATE
