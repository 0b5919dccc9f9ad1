/* max_pool: maximum over each window (intquant/ops/max_pool.py). */
#ifndef IQ_MAX_POOL_H
#define IQ_MAX_POOL_H

#include "iq_pool.h"

void iq_max_pool(const iq_pool_params_t* p, const void* x, void* y, int32_t dtype);

#endif /* IQ_MAX_POOL_H */
