/* upsample (intquant/ops/upsample.py). */
#include "iq_upsample.h"

/* The two bilinear taps of output index o along an axis of length n, factor f: indices i0, i1
 * and weights w0, w1 over 2f (PyTorch's source coordinate max((o + 1/2)/f - 1/2, 0)). */
static void iq_bilinear_taps(int32_t o, int32_t f, int32_t n, int32_t* i0, int32_t* i1,
                             int32_t* w0, int32_t* w1)
{
    int32_t t = 2 * o + 1 - f;
    if (t < 0) {
        t = 0;
    }
    *i0 = t / (2 * f);
    *w1 = t % (2 * f);
    *w0 = 2 * f - *w1;
    *i1 = *i0 + 1 < n ? *i0 + 1 : n - 1;
}

void iq_upsample(const void* x, void* y, int32_t c, int32_t h, int32_t w, int32_t fh, int32_t fw,
                 int32_t mode, int32_t dtype)
{
    const int32_t ho = h * fh, wo = w * fw;
    int32_t ch, oy, ox, o = 0;
    for (ch = 0; ch < c; ++ch) {
        const int32_t base = ch * h * w;
        for (oy = 0; oy < ho; ++oy) {
            int32_t y0 = 0, y1 = 0, wy0 = 1, wy1 = 0;
            if (mode == 1) {
                iq_bilinear_taps(oy, fh, h, &y0, &y1, &wy0, &wy1);
            }
            for (ox = 0; ox < wo; ++ox, ++o) {
                int32_t v;
                if (mode == 0) {
                    v = iq_load(x, base + (oy / fh) * w + ox / fw, dtype);
                } else {
                    /* Offset by 32768 so the sum is non-negative and C's division floors;
                     * d * 65535 < 2^24 (validation bounds the factors). */
                    int32_t x0 = 0, x1 = 0, wx0 = 1, wx1 = 0, acc;
                    const int32_t d = 4 * fh * fw;
                    iq_bilinear_taps(ox, fw, w, &x0, &x1, &wx0, &wx1);
                    acc = wy0 * (wx0 * (iq_load(x, base + y0 * w + x0, dtype) + 32768) +
                                 wx1 * (iq_load(x, base + y0 * w + x1, dtype) + 32768)) +
                          wy1 * (wx0 * (iq_load(x, base + y1 * w + x0, dtype) + 32768) +
                                 wx1 * (iq_load(x, base + y1 * w + x1, dtype) + 32768));
                    v = (acc + d / 2) / d - 32768;
                }
                iq_store(y, o, dtype, v);
            }
        }
    }
}
