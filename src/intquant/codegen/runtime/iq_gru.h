/* gru: nn.GRU / GRUCell loops (intquant/ops/gru.py); the shared declarations are in iq_rnn.h. */
#ifndef IQ_GRU_H
#define IQ_GRU_H

#include "iq_rnn.h"

#endif /* IQ_GRU_H */
