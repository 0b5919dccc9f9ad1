/*
 * The 8-bit dot products of iq_dot.h on AVR (included from there; same contract, same sums).
 *
 * The portable loop multiplies in uint32 arithmetic: on an 8-bit core that is a call to
 * libgcc's 16x16->32 multiply per MAC, with the four 32-bit sums spilled around it. Here every
 * product is one MUL (8x8 -> 16 bits, exact: wu, xu <= 255) added into a 32-bit sum, and the
 * weights stream from program memory with LPM Z+ (iq_target.h: they are IQ_FLASH):
 *     per input: LD xu; per weight: LPM, MUL, ADD/ADC/ADC/ADC  (10 cycles per MAC)
 * The sums wrap modulo 2^32 exactly like the uint32 arithmetic of the portable code.
 */
#ifndef IQ_DOT_AVR_H
#define IQ_DOT_AVR_H

#include "iq_runtime.h"

/* acc += r1:r0 (a 16-bit product) into the four bytes of a 32-bit sum; `zero` holds 0. */
#define IQ_AVR_ADD16(acc)                                                                      \
    "add %A[" #acc "], r0\n\t"                                                                 \
    "adc %B[" #acc "], r1\n\t"                                                                 \
    "adc %C[" #acc "], %[zero]\n\t"                                                            \
    "adc %D[" #acc "], %[zero]\n\t"

/* One weight from flash (Z+) times xu, into acc. */
#define IQ_AVR_MAC(acc)                                                                        \
    "lpm r0, Z+\n\t"                                                                           \
    "mul r0, %[xv]\n\t" IQ_AVR_ADD16(acc)

/* The loops out of line: the asm needs 24 registers, more than are free inside a kernel. */
#define IQ_AVR_DOT_FN __attribute__((noinline, unused)) static

/* s[j] += sum_k x[k] * w[4k + j] for j = 0..3 (modulo 2^32); w in program memory. */
IQ_AVR_DOT_FN void iq_dot4_u8(const uint8_t* x, const uint8_t* w, int32_t n, uint32_t s[4])
{
    uint32_t a0 = s[0], a1 = s[1], a2 = s[2], a3 = s[3];
    const uint8_t* const end = x + n;
    uint8_t xv, zero = 0;
    if (n > 0) {
        __asm__ volatile("1:\n\t"
                         "ld %[xv], %a[x]+\n\t" IQ_AVR_MAC(a0) IQ_AVR_MAC(a1) IQ_AVR_MAC(a2)
                             IQ_AVR_MAC(a3) "cp %A[x], %A[end]\n\t"
                                            "cpc %B[x], %B[end]\n\t"
                                            "brne 1b\n\t"
                                            "clr __zero_reg__\n\t"
                         : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
                           [x] "+e"(x), [w] "+z"(w), [xv] "=&r"(xv)
                         : [end] "r"(end), [zero] "r"(zero)
                         : "r0", "cc", "memory");
    }
    s[0] = a0;
    s[1] = a1;
    s[2] = a2;
    s[3] = a3;
}

/* sum_k x[k] * w[k] (modulo 2^32), w in program memory: the 1-3 channels after the blocks. */
IQ_AVR_DOT_FN uint32_t iq_dot1_u8(const uint8_t* x, const uint8_t* w, int32_t n)
{
    uint32_t a = 0;
    const uint8_t* const end = x + n;
    uint8_t xv, zero = 0;
    if (n > 0) {
        __asm__ volatile("1:\n\t"
                         "ld %[xv], %a[x]+\n\t" IQ_AVR_MAC(a) "cp %A[x], %A[end]\n\t"
                                                              "cpc %B[x], %B[end]\n\t"
                                                              "brne 1b\n\t"
                                                              "clr __zero_reg__\n\t"
                         : [a] "+r"(a), [x] "+e"(x), [w] "+z"(w), [xv] "=&r"(xv)
                         : [end] "r"(end), [zero] "r"(zero)
                         : "r0", "cc", "memory");
    }
    return a;
}

#undef IQ_AVR_MAC
#undef IQ_AVR_ADD16
#undef IQ_AVR_DOT_FN

#endif /* IQ_DOT_AVR_H */
