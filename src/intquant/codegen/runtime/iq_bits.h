/* Packed-bit tensors: sign (pack), unpack_bits and binary_max_pool
 * (intquant/ops/sign.py, unpack_bits.py, binary_max_pool.py are the specification). */
#ifndef IQ_BITS_H
#define IQ_BITS_H

#include "iq_binary.h"
#include "iq_pool.h"

/* y = packed (x >= threshold ? +1 : -1); x holds channels planes of `pixels` values. */
void iq_sign(const void* x, int32_t dtype, int32_t channels, int32_t pixels, int32_t threshold,
             uint32_t* y);

/* y = the +-1 values of the packed x as int8 planes. */
void iq_unpack_bits(const uint32_t* x, int32_t channels, int32_t pixels, int8_t* y);

/* Max pooling of +-1 values: the AND of the in-bounds taps' words. */
void iq_binary_max_pool(const iq_pool_params_t* p, const uint32_t* x, uint32_t* y);

#endif /* IQ_BITS_H */
