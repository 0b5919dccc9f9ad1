/* lstm: nn.LSTM / LSTMCell loops (intquant/ops/lstm.py); the shared declarations are in
 * iq_rnn.h. */
#ifndef IQ_LSTM_H
#define IQ_LSTM_H

#include "iq_rnn.h"

#endif /* IQ_LSTM_H */
