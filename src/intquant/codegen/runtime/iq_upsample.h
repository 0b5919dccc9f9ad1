/* upsample: integer-factor nearest, bilinear and zero insertion (intquant/ops/upsample.py). */
#ifndef IQ_UPSAMPLE_H
#define IQ_UPSAMPLE_H

#include "iq_kernels.h"

/* mode: 0 nearest, 1 bilinear (align_corners=False), 2 zero insertion. x is (c, h, w),
 * y is (c, h*fh, w*fw), or ((h-1)*fh+1, (w-1)*fw+1) for zero insertion; 1-D runs with h = 1. */
void iq_upsample(const void* x, void* y, int32_t c, int32_t h, int32_t w, int32_t fh, int32_t fw,
                 int32_t mode, int32_t zero_point, int32_t dtype);

#endif /* IQ_UPSAMPLE_H */
