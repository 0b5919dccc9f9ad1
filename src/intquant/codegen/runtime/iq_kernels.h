/*
 * intquant kernels: what every op's kernel shares — element type codes and typed loads/stores.
 * Each IntGraph op kind has its own runtime file iq_<op>.c / .h (the op module
 * intquant/ops/<op>.py is its specification; every kernel is bit-identical to it).
 *
 * conv and fully_connected are the multiply-accumulate hot spots and are instantiated per
 * (input, weight, output, accumulator) type by the generated <model>_kernels.c from the
 * template iq_conv_impl.h (declared in iq_conv.h). The other ops move few bytes; they take a
 * dtype code and are compiled once.
 */
#ifndef IQ_KERNELS_H
#define IQ_KERNELS_H

#include "iq_runtime.h"

/* Element types of activations (codes used by the generic kernels). */
enum { IQ_S8 = 1, IQ_U8 = 2, IQ_S16 = 3, IQ_S32 = 4 };

static inline int32_t iq_load(const void* base, int32_t i, int32_t dtype)
{
    switch (dtype) {
    case IQ_U8:
        return ((const uint8_t*)base)[i];
    case IQ_S16:
        return ((const int16_t*)base)[i];
    case IQ_S32:
        return ((const int32_t*)base)[i];
    default:
        return ((const int8_t*)base)[i];
    }
}

/* iq_load from a constant table of an activation type (IQ_FLASH: see iq_target.h). */
static inline int32_t iq_load_const(const void* base, int32_t i, int32_t dtype)
{
    switch (dtype) {
    case IQ_U8:
        return IQ_LOAD_U8((const uint8_t*)base + i);
    case IQ_S16:
        return IQ_LOAD_S16((const int16_t*)base + i);
    default:
        return IQ_LOAD_S8((const int8_t*)base + i);
    }
}

static inline void iq_store(void* base, int32_t i, int32_t dtype, int32_t v)
{
    switch (dtype) {
    case IQ_U8:
        ((uint8_t*)base)[i] = (uint8_t)v;
        break;
    case IQ_S16:
        ((int16_t*)base)[i] = (int16_t)v;
        break;
    case IQ_S32:
        ((int32_t*)base)[i] = v;
        break;
    default:
        ((int8_t*)base)[i] = (int8_t)v;
        break;
    }
}

static inline int32_t iq_dtype_size(int32_t dtype)
{
    return dtype == IQ_S16 ? 2 : (dtype == IQ_S32 ? 4 : 1);
}

#endif /* IQ_KERNELS_H */
