/* upsample: integer-factor nearest and bilinear (intquant/ops/upsample.py). */
#ifndef IQ_UPSAMPLE_H
#define IQ_UPSAMPLE_H

#include "iq_kernels.h"

/* mode: 0 nearest, 1 bilinear (align_corners=False). x is (c, h, w), y is (c, h*fh, w*fw);
 * 1-D runs with h = 1. */
void iq_upsample(const void* x, void* y, int32_t c, int32_t h, int32_t w, int32_t fh, int32_t fw,
                 int32_t mode, int32_t dtype);

#endif /* IQ_UPSAMPLE_H */
