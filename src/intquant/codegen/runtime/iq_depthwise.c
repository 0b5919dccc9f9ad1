/*
 * Depthwise row passes (iq_depthwise.h): one kernel row of three taps over a band of output
 * rows, sums in int32. On Cortex-M0 in Thumb-1 assembly with the taps in registers: 19-20
 * cycles per output for three MACs, ~12 per row of outputs; elsewhere the C loop.
 */
#include "iq_depthwise.h"

#ifdef IQ_M0_ASM
/* r0 = first row, r1 = acc, r2 = pass (iq_dw_pass_t; step and jump in bytes); inputs
 * loaded by LD (ldrb or ldrh) at byte offsets 0, X1, X2. */
#define IQ_DW_PASS3_ASM(LD, X1, X2)                                                                \
        ".syntax unified\n\t"                                                                      \
        "push {r4, r5, r6, r7, lr}\n\t"                                                            \
        "mov r4, r8\n\t"                                                                           \
        "mov r5, r9\n\t"                                                                           \
        "mov r6, r10\n\t"                                                                          \
        "mov r7, r11\n\t"                                                                          \
        "push {r4, r5, r6, r7}\n\t"                                                                \
        "mov r11, r0\n\t"               /* row start */                                            \
        "ldm r2!, {r3, r4, r5, r6}\n\t" /* n, rows, step, jump */                                  \
        "lsls r3, r3, #2\n\t"                                                                      \
        "mov r9, r3\n\t" /* 4n */                                                                  \
        "muls r3, r4\n\t"                                                                          \
        "adds r3, r1\n\t"                                                                          \
        "mov r10, r3\n\t" /* end of acc */                                                         \
        "mov r12, r6\n\t" /* jump */                                                               \
        "mov r3, r5\n\t"  /* step */                                                               \
        "ldm r2!, {r4, r5, r6, r7}\n\t" /* w0, w1, w2, base */                                     \
        "mov lr, r7\n\t"                                                                           \
        "ldr r7, [r2]\n\t" /* init */                                                              \
        "cmp r7, #0\n\t"                                                                           \
        "bne 10f\n\t"                                                                              \
        /* accumulate: acc[i] += w0*r[0] + w1*r[1] + w2*r[2] */                                    \
        "1:\n\t"                                                                                   \
        "mov r0, r11\n\t"                                                                          \
        "mov r7, r1\n\t"                                                                           \
        "add r7, r9\n\t"                                                                           \
        "mov r8, r7\n\t"                                                                           \
        "2:\n\t"                                                                                   \
        "ldr r2, [r1]\n\t"                                                                         \
        LD " r7, [r0, #0]\n\t"                                                                     \
        "muls r7, r4\n\t"                                                                          \
        "adds r2, r7\n\t"                                                                          \
        LD " r7, [r0, #" X1 "]\n\t"                                                                \
        "muls r7, r5\n\t"                                                                          \
        "adds r2, r7\n\t"                                                                          \
        LD " r7, [r0, #" X2 "]\n\t"                                                                \
        "muls r7, r6\n\t"                                                                          \
        "adds r2, r7\n\t"                                                                          \
        "stm r1!, {r2}\n\t"                                                                        \
        "adds r0, r3\n\t"                                                                          \
        "cmp r1, r8\n\t"                                                                           \
        "bne 2b\n\t"                                                                               \
        "add r11, r12\n\t"                                                                         \
        "cmp r1, r10\n\t"                                                                          \
        "bne 1b\n\t"                                                                               \
        "b 30f\n\t"                                                                                \
        /* first kernel row: acc[i] = base + ... */                                                \
        "10:\n\t"                                                                                  \
        "mov r0, r11\n\t"                                                                          \
        "mov r7, r1\n\t"                                                                           \
        "add r7, r9\n\t"                                                                           \
        "mov r8, r7\n\t"                                                                           \
        "12:\n\t"                                                                                  \
        "mov r2, lr\n\t"                                                                           \
        LD " r7, [r0, #0]\n\t"                                                                     \
        "muls r7, r4\n\t"                                                                          \
        "adds r2, r7\n\t"                                                                          \
        LD " r7, [r0, #" X1 "]\n\t"                                                                \
        "muls r7, r5\n\t"                                                                          \
        "adds r2, r7\n\t"                                                                          \
        LD " r7, [r0, #" X2 "]\n\t"                                                                \
        "muls r7, r6\n\t"                                                                          \
        "adds r2, r7\n\t"                                                                          \
        "stm r1!, {r2}\n\t"                                                                        \
        "adds r0, r3\n\t"                                                                          \
        "cmp r1, r8\n\t"                                                                           \
        "bne 12b\n\t"                                                                              \
        "add r11, r12\n\t"                                                                         \
        "cmp r1, r10\n\t"                                                                          \
        "bne 10b\n\t"                                                                              \
        "30:\n\t"                                                                                  \
        "pop {r4, r5, r6, r7}\n\t"                                                                 \
        "mov r8, r4\n\t"                                                                           \
        "mov r9, r5\n\t"                                                                           \
        "mov r10, r6\n\t"                                                                          \
        "mov r11, r7\n\t"                                                                          \
        "pop {r4, r5, r6, r7, pc}\n\t"

__attribute__((naked, noinline)) static void iq_dw_pass3_m0(const uint8_t* r IQ_UNUSED,
                                                            int32_t* acc IQ_UNUSED,
                                                            const iq_dw_pass_t* ps IQ_UNUSED)
{
    __asm__ volatile(IQ_DW_PASS3_ASM("ldrb", "1", "2"));
}

__attribute__((naked, noinline)) static void iq_dw_pass3_16_m0(const uint16_t* r IQ_UNUSED,
                                                               int32_t* acc IQ_UNUSED,
                                                               const iq_dw_pass_t* ps IQ_UNUSED)
{
    __asm__ volatile(IQ_DW_PASS3_ASM("ldrh", "2", "4"));
}
#endif

#ifndef IQ_M0_ASM
/* The portable loop (size = 1 or 2 bytes per input). */
static void iq_dw_pass3_c(const void* r, int32_t* acc, const iq_dw_pass_t* ps, int32_t size)
{
    int32_t row, i;
    for (row = 0; row < ps->rows; ++row) {
        const int32_t at = row * ps->jump / size;
        for (i = 0; i < ps->n; ++i) {
            const int32_t j = at + i * ps->step / size;
            const int32_t x0 = size == 1 ? ((const uint8_t*)r)[j] : ((const uint16_t*)r)[j];
            const int32_t x1 = size == 1 ? ((const uint8_t*)r)[j + 1] : ((const uint16_t*)r)[j + 1];
            const int32_t x2 = size == 1 ? ((const uint8_t*)r)[j + 2] : ((const uint16_t*)r)[j + 2];
            *acc = (ps->init ? ps->base : *acc) + ps->w[0] * x0 + ps->w[1] * x1 + ps->w[2] * x2;
            ++acc;
        }
    }
}
#endif

void iq_dw_pass3(const uint8_t* r, int32_t* acc, const iq_dw_pass_t* ps)
{
    if (ps->n > 0 && ps->rows > 0) {
#ifdef IQ_M0_ASM
        iq_dw_pass3_m0(r, acc, ps);
#else
        iq_dw_pass3_c(r, acc, ps, 1);
#endif
    }
}

void iq_dw_pass3_16(const uint16_t* r, int32_t* acc, const iq_dw_pass_t* ps)
{
    if (ps->n > 0 && ps->rows > 0) {
#ifdef IQ_M0_ASM
        iq_dw_pass3_16_m0(r, acc, ps);
#else
        iq_dw_pass3_c(r, acc, ps, 2);
#endif
    }
}
