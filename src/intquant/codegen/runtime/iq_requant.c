/*
 * Batched requantization runs (iq_requant.h). On Cortex-M0 the no-sign runs are Thumb-1
 * assembly with the channel's constants in registers: 25 cycles per output in form 0 and 29 in
 * form 1, clamp included (the C loop below compiles to about twice that); elsewhere, and for
 * sign layers, the C loop.
 */
#include "iq_requant.h"

static void iq_rqw_run8_c(const int32_t* u, int32_t n, const iq_rqw_t* c, int32_t lo,
                          int32_t sign_layer, uint8_t* out, int32_t step)
{
    const uint32_t add = c->form == 2 ? (uint32_t)lo : 0u;
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i * step] = (uint8_t)(iq_rqw_value(iq_rqw_clamp(u[i], c), c, sign_layer) + add);
    }
}

#if defined(__ARM_ARCH_6M__) && defined(__GNUC__)
/* r0 = u, r1 = end of u, r2 = out, r3 = &{width, Mh, Ml, c_lo, c_hi, step, sh, form, lo} */
__attribute__((naked, noinline)) static void iq_rqw_run8_m0(const int32_t* u IQ_UNUSED,
                                                            const int32_t* end IQ_UNUSED,
                                                            uint8_t* out IQ_UNUSED,
                                                            const uint32_t* k IQ_UNUSED)
{
    __asm__ volatile(
        ".syntax unified\n\t"
        "push {r4, r5, r6, r7, lr}\n\t"
        "mov r4, r8\n\t"
        "mov r5, r9\n\t"
        "mov r6, r10\n\t"
        "mov r7, r11\n\t"
        "push {r4, r5, r6, r7}\n\t"
        "mov r4, r12\n\t"
        "push {r4}\n\t"
        "ldm r3!, {r4, r5, r6, r7}\n\t" /* width, Mh, Ml, c_lo */
        "mov r8, r4\n\t"
        "mov r9, r5\n\t"
        "mov r10, r6\n\t"
        "mov r11, r7\n\t"
        "ldm r3!, {r4, r5, r6, r7}\n\t" /* c_hi, step, sh, form */
        "mov r12, r4\n\t"
        "mov lr, r5\n\t"
        "ldr r4, [r3]\n\t" /* lo, kept at [sp] for form 2 */
        "mov r3, r6\n\t"
        "push {r4}\n\t"
        "cmp r7, #1\n\t"
        "beq 20f\n\t"
        "bhi 40f\n\t"
        /* form 0: V = u*Mh + uh*Ml + ((ul*Ml + c_lo) >> 16) + c_hi */
        "1:\n\t"
        "ldm r0!, {r4}\n\t"
        "cmp r4, r8\n\t"
        "bhi 8f\n\t"
        "2:\n\t"
        "mov r5, r9\n\t"
        "muls r5, r4\n\t"      /* u*Mh */
        "lsrs r7, r4, #16\n\t" /* uh */
        "uxth r4, r4\n\t"      /* ul */
        "mov r6, r10\n\t"
        "muls r6, r7\n\t" /* uh*Ml */
        "adds r5, r6\n\t"
        "mov r6, r10\n\t"
        "muls r6, r4\n\t" /* ul*Ml */
        "add r6, r11\n\t"
        "lsrs r6, r6, #16\n\t"
        "adds r5, r6\n\t"
        "add r5, r12\n\t"
        "lsrs r5, r3\n\t"
        "strb r5, [r2]\n\t"
        "add r2, lr\n\t"
        "cmp r0, r1\n\t"
        "bne 1b\n\t"
        "b 30f\n\t"
        "8:\n\t" /* u outside [0, width]: 0 below (u < 0), width above */
        "asrs r5, r4, #31\n\t"
        "mov r4, r8\n\t"
        "bics r4, r5\n\t"
        "b 2b\n\t"
        /* form 1: H = uh*Mh + ((ul*Mh + uh*Ml + ((ul*Ml + c_lo) >> 16) + c_hi) >> 16) */
        "20:\n\t"
        "ldm r0!, {r4}\n\t"
        "cmp r4, r8\n\t"
        "bhi 28f\n\t"
        "22:\n\t"
        "lsrs r7, r4, #16\n\t" /* uh */
        "uxth r4, r4\n\t"      /* ul */
        "mov r5, r9\n\t"
        "muls r5, r4\n\t" /* ul*Mh */
        "mov r6, r10\n\t"
        "muls r6, r7\n\t" /* uh*Ml */
        "adds r5, r6\n\t"
        "mov r6, r10\n\t"
        "muls r6, r4\n\t" /* ul*Ml */
        "add r6, r11\n\t"
        "lsrs r6, r6, #16\n\t"
        "adds r5, r6\n\t"
        "add r5, r12\n\t"
        "lsrs r5, r5, #16\n\t"
        "mov r6, r9\n\t"
        "muls r6, r7\n\t" /* uh*Mh */
        "adds r5, r6\n\t"
        "lsrs r5, r3\n\t"
        "strb r5, [r2]\n\t"
        "add r2, lr\n\t"
        "cmp r0, r1\n\t"
        "bne 20b\n\t"
        "b 30f\n\t"
        "28:\n\t"
        "asrs r5, r4, #31\n\t"
        "mov r4, r8\n\t"
        "bics r4, r5\n\t"
        "b 22b\n\t"
        /* form 2: form 1, then + lo */
        "40:\n\t"
        "ldm r0!, {r4}\n\t"
        "cmp r4, r8\n\t"
        "bhi 48f\n\t"
        "42:\n\t"
        "lsrs r7, r4, #16\n\t"
        "uxth r4, r4\n\t"
        "mov r5, r9\n\t"
        "muls r5, r4\n\t"
        "mov r6, r10\n\t"
        "muls r6, r7\n\t"
        "adds r5, r6\n\t"
        "mov r6, r10\n\t"
        "muls r6, r4\n\t"
        "add r6, r11\n\t"
        "lsrs r6, r6, #16\n\t"
        "adds r5, r6\n\t"
        "add r5, r12\n\t"
        "lsrs r5, r5, #16\n\t"
        "mov r6, r9\n\t"
        "muls r6, r7\n\t"
        "adds r5, r6\n\t"
        "lsrs r5, r3\n\t"
        "ldr r6, [sp]\n\t"
        "adds r5, r6\n\t"
        "strb r5, [r2]\n\t"
        "add r2, lr\n\t"
        "cmp r0, r1\n\t"
        "bne 40b\n\t"
        "b 30f\n\t"
        "48:\n\t"
        "asrs r5, r4, #31\n\t"
        "mov r4, r8\n\t"
        "bics r4, r5\n\t"
        "b 42b\n\t"
        "30:\n\t"
        "pop {r4}\n\t"
        "pop {r4}\n\t"
        "mov r12, r4\n\t"
        "pop {r4, r5, r6, r7}\n\t"
        "mov r8, r4\n\t"
        "mov r9, r5\n\t"
        "mov r10, r6\n\t"
        "mov r11, r7\n\t"
        "pop {r4, r5, r6, r7, pc}\n\t");
}
#endif

void iq_rqw_run8(const int32_t* u, int32_t n, const iq_rqw_t* c, int32_t lo, int32_t sign_layer,
                 uint8_t* out, int32_t step)
{
#if defined(__ARM_ARCH_6M__) && defined(__GNUC__)
    if (!sign_layer && n > 0) {
        uint32_t k[9];
        k[0] = c->width;
        k[1] = c->m >> 16;
        k[2] = c->m & 0xFFFFu;
        k[3] = c->c_lo;
        k[4] = c->c_hi;
        k[5] = (uint32_t)step;
        k[6] = c->sh;
        k[7] = c->form;
        k[8] = (uint32_t)lo;
        iq_rqw_run8_m0(u, u + n, out, k);
        return;
    }
#endif
    iq_rqw_run8_c(u, n, c, lo, sign_layer, out, step);
}
