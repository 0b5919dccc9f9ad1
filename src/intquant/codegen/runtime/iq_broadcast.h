/* Broadcasting walk of a two-operand elementwise op (add, mul): intquant/ops/_broadcast.py.
 *
 * The output is walked in row-major order over at most IQ_BCAST_MAX_DIMS merged axes; each
 * operand has an element stride per axis (0 where it broadcasts). A row is the last axis: the
 * kernels run it as one loop with the two operands' last strides (0 or 1), and
 * iq_bcast_next_row moves both operands' offsets to the next row. */
#ifndef IQ_BROADCAST_H
#define IQ_BROADCAST_H

#include "iq_kernels.h"

#define IQ_BCAST_MAX_DIMS 4

typedef struct {
    int32_t ndim;
    int32_t shape[IQ_BCAST_MAX_DIMS];
    int32_t a_stride[IQ_BCAST_MAX_DIMS];
    int32_t b_stride[IQ_BCAST_MAX_DIMS];
} iq_bcast_t;

/* Position of the current row: its index along each outer axis and the operands' offsets. */
typedef struct {
    int32_t idx[IQ_BCAST_MAX_DIMS];
    int32_t a, b;
} iq_bcast_pos_t;

static inline void iq_bcast_start(iq_bcast_pos_t* pos)
{
    int32_t d;
    for (d = 0; d < IQ_BCAST_MAX_DIMS; ++d) {
        pos->idx[d] = 0;
    }
    pos->a = 0;
    pos->b = 0;
}

/* Rows of the walk: the product of every axis but the last. */
static inline int32_t iq_bcast_rows(const iq_bcast_t* bc)
{
    int32_t d, rows = 1;
    for (d = 0; d + 1 < bc->ndim; ++d) {
        rows *= bc->shape[d];
    }
    return rows;
}

/* Advance to the next row: an odometer over the outer axes. */
static inline void iq_bcast_next_row(const iq_bcast_t* bc, iq_bcast_pos_t* pos)
{
    int32_t d;
    for (d = bc->ndim - 2; d >= 0; --d) {
        pos->a += bc->a_stride[d];
        pos->b += bc->b_stride[d];
        if (++pos->idx[d] < bc->shape[d]) {
            return;
        }
        pos->a -= bc->a_stride[d] * bc->shape[d];
        pos->b -= bc->b_stride[d] * bc->shape[d];
        pos->idx[d] = 0;
    }
}

#endif /* IQ_BROADCAST_H */
