/* layer_norm (intquant/ops/layer_norm.py): centre, integer square root, one reciprocal per row,
 * per-channel affine. In-place safe: a row is read whole before any of it is written, and each
 * output element is written after its input element is read. */
#include "iq_layer_norm.h"

/* floor(sqrt(n)) for n < 2^62, digit by digit. */
static uint32_t iq_isqrt64(uint64_t n)
{
    uint64_t root = 0, bit = (uint64_t)1 << 62;
    while (bit > n) {
        bit >>= 2;
    }
    while (bit != 0) {
        if (n >= root + bit) {
            n -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    return (uint32_t)root;
}

static int32_t iq_bit_length64(uint64_t n)
{
    int32_t bits = 0;
    while (n != 0) {
        ++bits;
        n >>= 1;
    }
    return bits;
}

void iq_layer_norm(const iq_layer_norm_params_t* p, const int32_t* gamma, const int64_t* beta,
                   const void* x, int32_t x_dtype, void* y, int32_t y_dtype)
{
    const int32_t c_len = p->row_len;
    int32_t r, i;
    for (r = 0; r < p->rows; ++r) {
        const int32_t base = r * c_len;
        int32_t sum = 0, k, inv, e;
        uint64_t q = 0, n;
        for (i = 0; i < c_len; ++i) {
            sum += iq_load(x, base + i, x_dtype);
        }
        for (i = 0; i < c_len; ++i) {
            const int32_t c = c_len * iq_load(x, base + i, x_dtype) - sum;
            if (p->small_squares) {
                const uint32_t a = (uint32_t)(c < 0 ? -c : c);
                q += a * a;
            } else {
                q += (uint64_t)iq_mul_i32_i32(c, c);
            }
        }
        n = (q << p->eps_shift) + (uint64_t)p->eps_term;
        k = (62 - iq_bit_length64(n)) / 2;
        inv = (int32_t)((((uint64_t)1 << 61) - 1u) / iq_isqrt64(n << (2 * k)));
        e = 31 - k - p->eps_shift / 2;
        e = e < 1 ? 1 : e; /* e < 1: a constant row, every c is 0 */
        for (i = 0; i < c_len; ++i) {
            const int32_t c = c_len * iq_load(x, base + i, x_dtype) - sum;
            const int32_t u = (int32_t)((iq_mul_i32_i32(c, inv) + ((int64_t)1 << (e - 1))) >> e);
            const int64_t g = iq_mul_i32_i32(u, IQ_LOAD_S32(gamma + i));
            const int64_t v = (g + IQ_LOAD_S64(beta + i)) >> p->shift;
            const int32_t out = v < p->act_min ? p->act_min : (v > p->act_max ? p->act_max
                                                                              : (int32_t)v);
            iq_store(y, base + i, y_dtype, out);
        }
    }
}
