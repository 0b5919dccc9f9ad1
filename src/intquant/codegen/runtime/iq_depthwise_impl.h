/*
 * Template: depthwise conv (groups = in_c, any channel multiplier) on 8- or 16-bit inputs with
 * int8 weights and an accumulator proved (offline) to fit int32, with the batched
 * requantization of iq_requant.h.
 *
 * Instantiate by defining, then including this file:
 *   IQ_DW_FN     function name
 *   IQ_DW_TIN    int8_t, uint8_t or int16_t (input; IQ_DW_TIN_IS_16 defined for int16_t)
 *   IQ_DW_TOUT   int8_t, uint8_t or int16_t (output; IQ_DW_TOUT_IS_16 defined for int16_t)
 *
 * Method. Output rows are processed in bands (all of them when the scratch allows). The input
 * rows of a band are copied once per input channel into a padded buffer, as unsigned bytes
 * x + xoff (xoff = 128 for int8, 0 for uint8, 32768 for int16: Cortex-M0 loads unsigned bytes
 * and halfwords with an immediate offset, signed ones only with a register offset), the padding
 * holding z + xoff. Then, for
 * every output channel of that input channel, each kernel row is one pass over the band with
 * its taps in registers (iq_dw_pass3), accumulating int32 sums, and the band is requantized in
 * one batch with the channel's constants (iq_rqw_run8). The sums start from -a_lo: the batch
 * takes acc - a_lo, where the kernel's acc is the true accumulator minus
 * bias - (z + xoff) * sum(w), which codegen/requant.py folds into a_lo. Weights and the
 * constants rq are IQ_FLASH: read through IQ_LOAD_* (iq_target.h).
 */
#include "iq_depthwise.h"

#define IQ_DW_CAT_(a, b) a##b
#define IQ_DW_CAT(a, b) IQ_DW_CAT_(a, b)
#define IQ_DW_WIDE (sizeof(IQ_DW_TIN) == 2)
/* The input as unsigned: x + 128 (int8), x (uint8), x + 32768 (int16), as the band holds it. */
#define IQ_DW_XOFF (IQ_DW_WIDE ? 32768u : ((IQ_DW_TIN)(-1) < 0 ? 128u : 0u))
#if defined(IQ_DW_TIN_IS_16)
typedef uint16_t IQ_DW_CAT(IQ_DW_FN, _elem_t);
#else
typedef uint8_t IQ_DW_CAT(IQ_DW_FN, _elem_t);
#endif
#define IQ_DW_ELEM IQ_DW_CAT(IQ_DW_FN, _elem_t)

/* One kernel row over a band (iq_dw_pass_t, byte strides): three taps of dilation 1 in
 * iq_dw_pass3 / iq_dw_pass3_16, other widths and dilations here. */
static void IQ_DW_CAT(IQ_DW_FN, _pass)(const IQ_DW_ELEM* r, int32_t* acc, const iq_dw_pass_t* ps,
                                       const int8_t* w, int32_t taps, int32_t dil)
{
    const int32_t step = ps->step / (int32_t)sizeof(IQ_DW_ELEM);
    const int32_t jump = ps->jump / (int32_t)sizeof(IQ_DW_ELEM);
    int32_t row, i, t;
    if (taps == 3 && dil == 1) {
#if defined(IQ_DW_TIN_IS_16)
        iq_dw_pass3_16(r, acc, ps);
#else
        iq_dw_pass3(r, acc, ps);
#endif
        return;
    }
    for (row = 0; row < ps->rows; ++row, r += jump) {
        const IQ_DW_ELEM* x = r;
        for (i = 0; i < ps->n; ++i, x += step) {
            int32_t s = ps->init ? ps->base : *acc;
            for (t = 0; t < taps; ++t) { /* widened: int is 16 bits on AVR */
                s += (int32_t)IQ_LOAD_S8(w + t) * (int32_t)x[t * dil];
            }
            *acc++ = s;
        }
    }
}

/* Offset-binary copy of the band's input rows (from row y0 on, `used` rows of in_w elements;
 * consecutive elements `col_pitch` apart, rows `row_pitch` apart) into the interior of the
 * padded rows; rows outside the input hold the padding value. */
static void IQ_DW_CAT(IQ_DW_FN, _copy_band)(const IQ_DW_TIN* chan, const iq_dw_params_t* p,
                                            int32_t y0, int32_t used, IQ_DW_ELEM* band)
{
    const uint32_t xoff = IQ_DW_XOFF;
    const IQ_DW_ELEM pad = (IQ_DW_ELEM)((uint32_t)p->input_zero_point + IQ_DW_XOFF);
    const int32_t n = p->in_w, col = p->col_pitch;
    int32_t b, i;
    for (b = 0; b < used; ++b) {
        IQ_DW_ELEM* dst = band + b * p->row_w + p->pad_left;
        const int32_t iy = y0 + b;
        if (iy >= 0 && iy < p->in_h) {
            const IQ_DW_TIN* s = chan + iy * p->row_pitch;
            i = 0;
#if !defined(__OPTIMIZE_SIZE__)
            for (; i + 4 <= n; i += 4, s += 4 * col) {
                dst[i] = (IQ_DW_ELEM)((uint32_t)(IQ_DW_ELEM)s[0] ^ xoff);
                dst[i + 1] = (IQ_DW_ELEM)((uint32_t)(IQ_DW_ELEM)s[col] ^ xoff);
                dst[i + 2] = (IQ_DW_ELEM)((uint32_t)(IQ_DW_ELEM)s[2 * col] ^ xoff);
                dst[i + 3] = (IQ_DW_ELEM)((uint32_t)(IQ_DW_ELEM)s[3 * col] ^ xoff);
            }
#endif
            for (; i < n; ++i, s += col) {
                dst[i] = (IQ_DW_ELEM)((uint32_t)(IQ_DW_ELEM)s[0] ^ xoff);
            }
        } else {
            for (i = 0; i < n; ++i) {
                dst[i] = pad;
            }
        }
    }
}

void IQ_DW_FN(const iq_dw_params_t* p, const IQ_DW_TIN* x, const int8_t* w,
              const iq_rqw_t* rq, IQ_DW_TOUT* y, void* scratch)
{
    const int32_t out_h = p->out_h, out_w = p->out_w, esz = (int32_t)sizeof(IQ_DW_ELEM);
    const int32_t k_h = p->k_h, k_w = p->k_w, mult = p->mult, row_w = p->row_w;
    const int32_t plane = p->in_h * p->in_w, out_plane = out_h * out_w;
    const int32_t contiguous = p->out_col_pitch == 1 && p->out_row_pitch == out_w;
    const IQ_DW_ELEM pad = (IQ_DW_ELEM)((uint32_t)p->input_zero_point + IQ_DW_XOFF);
    int32_t* const acc = (int32_t*)scratch;
    IQ_DW_ELEM* const band = (IQ_DW_ELEM*)(acc + p->band * out_w);
    iq_dw_pass_t ps;
    int32_t c, j, oy0, ky, i;
    for (i = 0; i < p->band_rows * row_w; ++i) {
        band[i] = pad;
    }
    ps.n = out_w;
    ps.step = p->stride_w * esz;
    ps.jump = p->stride_h * row_w * esz;
    for (c = 0; c < p->channels; ++c) {
        for (oy0 = 0; oy0 < out_h; oy0 += p->band) {
            const int32_t rows = out_h - oy0 < p->band ? out_h - oy0 : p->band;
            const int32_t y0 = oy0 * p->stride_h - p->pad_top;
            const int32_t used = (rows - 1) * p->stride_h + (k_h - 1) * p->dil_h + 1;
            IQ_DW_CAT(IQ_DW_FN, _copy_band)(x + c * plane, p, y0, used, band);
            ps.rows = rows;
            for (j = 0; j < mult; ++j) {
                const int32_t oc = c * mult + j;
                const int8_t* wc = w + oc * k_h * k_w;
                IQ_DW_TOUT* out = y + oc * out_plane + oy0 * p->out_row_pitch;
                ps.base = -IQ_LOAD_S32(&rq[oc].a_lo); /* the runs take acc - a_lo */
                for (ky = 0; ky < k_h; ++ky) {
                    ps.init = ky == 0;
                    ps.w[0] = IQ_LOAD_S8(wc + ky * k_w);
                    ps.w[1] = k_w > 1 ? IQ_LOAD_S8(wc + ky * k_w + 1) : 0;
                    ps.w[2] = k_w > 2 ? IQ_LOAD_S8(wc + ky * k_w + 2) : 0;
                    IQ_DW_CAT(IQ_DW_FN, _pass)(band + ky * p->dil_h * row_w, acc, &ps,
                                               wc + ky * k_w, k_w, p->dil_w);
                }
                for (i = 0; i < rows; ++i) {
                    const int32_t n = contiguous ? rows * out_w : out_w;
#if defined(IQ_DW_TOUT_IS_16)
                    iq_rqw_run16(acc + i * out_w, n, rq + oc, p->act_min, p->sign,
                                 (int16_t*)out + i * p->out_row_pitch, p->out_col_pitch);
#else
                    iq_rqw_run8(acc + i * out_w, n, rq + oc, p->act_min, p->sign,
                                (uint8_t*)out + i * p->out_row_pitch, p->out_col_pitch);
#endif
                    if (contiguous) {
                        break;
                    }
                }
            }
        }
    }
}

#undef IQ_DW_ELEM
#undef IQ_DW_WIDE
#undef IQ_DW_XOFF
#undef IQ_DW_FN
#undef IQ_DW_TIN
#undef IQ_DW_TOUT
#undef IQ_DW_TIN_IS_16
#undef IQ_DW_TOUT_IS_16
