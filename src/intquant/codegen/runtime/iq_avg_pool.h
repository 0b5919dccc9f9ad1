/* avg_pool: rounded mean over each window (intquant/ops/avg_pool.py). */
#ifndef IQ_AVG_POOL_H
#define IQ_AVG_POOL_H

#include "iq_pool.h"

void iq_avg_pool(const iq_pool_params_t* p, const void* x, void* y, int32_t dtype);

#endif /* IQ_AVG_POOL_H */
