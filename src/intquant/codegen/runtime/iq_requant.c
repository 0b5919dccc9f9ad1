/*
 * Batched requantization runs (iq_requant.h). On Cortex-M0 they are Thumb-1 assembly with the
 * channel's constants in registers: per output 25 cycles in form 0, 29 in form 1, 32 in form 2,
 * 13 in form 3 (power-of-two scales), 5-6 more with the sign term, clamp included (the C loop
 * below compiles to about twice that); elsewhere the C loop.
 */
#include "iq_requant.h"

#if defined(IQ_M0_ASM) && !defined(__OPTIMIZE_SIZE__) /* -Os: the C loops, a quarter the size */
#define IQ_RQW_ASM_LOOPS 1
#endif

#ifdef IQ_RQW_ASM_LOOPS
/* r0 = u, r1 = end of u, r2 = out,
 * r3 = &{width, Mh, Ml, c_lo, c_hi, step, sh, variant, lo, u0}; variant = form + 4 * sign.
 * Registers in the loops: r8 width, r9 Mh, r10 Ml, r11 c_lo, r12 c_hi, lr step, r3 sh;
 * [sp] lo, [sp + 4] u0. The store is ST (strb or strh). */
#define IQ_RQW_ASM(ST)                                                                             \
    ".syntax unified\n\t"                                                                          \
    "push {r4, r5, r6, r7, lr}\n\t"                                                                \
    "mov r4, r8\n\t"                                                                               \
    "mov r5, r9\n\t"                                                                               \
    "mov r6, r10\n\t"                                                                              \
    "mov r7, r11\n\t"                                                                              \
    "push {r4, r5, r6, r7}\n\t"                                                                    \
    "mov r4, r12\n\t"                                                                              \
    "push {r4}\n\t"                                                                                \
    "ldm r3!, {r4, r5, r6, r7}\n\t" /* width, Mh, Ml, c_lo */                                      \
    "mov r8, r4\n\t"                                                                               \
    "mov r9, r5\n\t"                                                                               \
    "mov r10, r6\n\t"                                                                              \
    "mov r11, r7\n\t"                                                                              \
    "ldm r3!, {r4, r5, r6, r7}\n\t" /* c_hi, step, sh, variant */                                  \
    "mov r12, r4\n\t"                                                                              \
    "mov lr, r5\n\t"                                                                               \
    "ldm r3!, {r4, r5}\n\t" /* lo, u0 */                                                           \
    "mov r3, r6\n\t"                                                                               \
    "push {r4, r5}\n\t"                                                                            \
    "cmp r7, #1\n\t"                                                                               \
    "bne 91f\n\t"                                                                                  \
    "b 20f\n\t" /* B<cond> reaches +-256 bytes only */                                             \
    "91:\n\t"                                                                                      \
    "cmp r7, #2\n\t"                                                                               \
    "bne 92f\n\t"                                                                                  \
    "b 30f\n\t" /* B<cond> reaches +-256 bytes only */                                             \
    "92:\n\t"                                                                                      \
    "cmp r7, #3\n\t"                                                                               \
    "bne 93f\n\t"                                                                                  \
    "b 40f\n\t" /* B<cond> reaches +-256 bytes only */                                             \
    "93:\n\t"                                                                                      \
    "cmp r7, #4\n\t"                                                                               \
    "bne 94f\n\t"                                                                                  \
    "b 50f\n\t" /* B<cond> reaches +-256 bytes only */                                             \
    "94:\n\t"                                                                                      \
    "cmp r7, #5\n\t"                                                                               \
    "bne 95f\n\t"                                                                                  \
    "b 60f\n\t" /* B<cond> reaches +-256 bytes only */                                             \
    "95:\n\t"                                                                                      \
    "cmp r7, #6\n\t"                                                                               \
    "bne 96f\n\t"                                                                                  \
    "b 70f\n\t" /* B<cond> reaches +-256 bytes only */                                             \
    "96:\n\t"                                                                                      \
    "cmp r7, #7\n\t"                                                                               \
    "bne 97f\n\t"                                                                                  \
    "b 80f\n\t" /* B<cond> reaches +-256 bytes only */                                             \
    "97:\n\t"                                                                                      \
    /* form 0 */                                                                                   \
    "10:\n\t"                                                                                      \
    "ldm r0!, {r4}\n\t"                                                                            \
    "cmp r4, r8\n\t"                                                                               \
    "bhi 18f\n\t"                                                                                  \
    "11:\n\t"                                                                                      \
    "mov r5, r9\n\t"                                                                               \
    "muls r5, r4\n\t" /* u*Mh */                                                                   \
    "lsrs r7, r4, #16\n\t" /* uh */                                                                \
    "uxth r4, r4\n\t" /* ul */                                                                     \
    "mov r6, r10\n\t"                                                                              \
    "muls r6, r7\n\t"                                                                              \
    "adds r5, r6\n\t" /* + uh*Ml */                                                                \
    "mov r6, r10\n\t"                                                                              \
    "muls r6, r4\n\t"                                                                              \
    "add r6, r11\n\t"                                                                              \
    "lsrs r6, r6, #16\n\t"                                                                         \
    "adds r5, r6\n\t" /* + ((ul*Ml + c_lo) >> 16) */                                               \
    "add r5, r12\n\t" /* + c_hi */                                                                 \
    "lsrs r5, r3\n\t"                                                                              \
    ST " r5, [r2]\n\t"                                                                             \
    "add r2, lr\n\t"                                                                               \
    "cmp r0, r1\n\t"                                                                               \
    "bne 10b\n\t"                                                                                  \
    "b 99f\n\t"                                                                                    \
    "18:\n\t" /* u outside [0, width]: 0 below (u < 0), width above */                             \
    "asrs r5, r4, #31\n\t"                                                                         \
    "mov r4, r8\n\t"                                                                               \
    "bics r4, r5\n\t"                                                                              \
    "b 11b\n\t"                                                                                    \
    /* form 1 */                                                                                   \
    "20:\n\t"                                                                                      \
    "ldm r0!, {r4}\n\t"                                                                            \
    "cmp r4, r8\n\t"                                                                               \
    "bhi 28f\n\t"                                                                                  \
    "21:\n\t"                                                                                      \
    "lsrs r7, r4, #16\n\t" /* uh */                                                                \
    "uxth r4, r4\n\t" /* ul */                                                                     \
    "mov r5, r9\n\t"                                                                               \
    "muls r5, r4\n\t" /* ul*Mh */                                                                  \
    "mov r6, r10\n\t"                                                                              \
    "muls r6, r7\n\t"                                                                              \
    "adds r5, r6\n\t" /* + uh*Ml */                                                                \
    "mov r6, r10\n\t"                                                                              \
    "muls r6, r4\n\t"                                                                              \
    "add r6, r11\n\t"                                                                              \
    "lsrs r6, r6, #16\n\t"                                                                         \
    "adds r5, r6\n\t" /* + ((ul*Ml + c_lo) >> 16) */                                               \
    "add r5, r12\n\t" /* + c_hi */                                                                 \
    "lsrs r5, r5, #16\n\t"                                                                         \
    "mov r6, r9\n\t"                                                                               \
    "muls r6, r7\n\t"                                                                              \
    "adds r5, r6\n\t" /* H = uh*Mh + (I >> 16) */                                                  \
    "lsrs r5, r3\n\t"                                                                              \
    ST " r5, [r2]\n\t"                                                                             \
    "add r2, lr\n\t"                                                                               \
    "cmp r0, r1\n\t"                                                                               \
    "bne 20b\n\t"                                                                                  \
    "b 99f\n\t"                                                                                    \
    "28:\n\t" /* u outside [0, width]: 0 below (u < 0), width above */                             \
    "asrs r5, r4, #31\n\t"                                                                         \
    "mov r4, r8\n\t"                                                                               \
    "bics r4, r5\n\t"                                                                              \
    "b 21b\n\t"                                                                                    \
    /* form 2 (form 1, lo added) */                                                                \
    "30:\n\t"                                                                                      \
    "ldm r0!, {r4}\n\t"                                                                            \
    "cmp r4, r8\n\t"                                                                               \
    "bhi 38f\n\t"                                                                                  \
    "31:\n\t"                                                                                      \
    "lsrs r7, r4, #16\n\t" /* uh */                                                                \
    "uxth r4, r4\n\t" /* ul */                                                                     \
    "mov r5, r9\n\t"                                                                               \
    "muls r5, r4\n\t" /* ul*Mh */                                                                  \
    "mov r6, r10\n\t"                                                                              \
    "muls r6, r7\n\t"                                                                              \
    "adds r5, r6\n\t" /* + uh*Ml */                                                                \
    "mov r6, r10\n\t"                                                                              \
    "muls r6, r4\n\t"                                                                              \
    "add r6, r11\n\t"                                                                              \
    "lsrs r6, r6, #16\n\t"                                                                         \
    "adds r5, r6\n\t" /* + ((ul*Ml + c_lo) >> 16) */                                               \
    "add r5, r12\n\t" /* + c_hi */                                                                 \
    "lsrs r5, r5, #16\n\t"                                                                         \
    "mov r6, r9\n\t"                                                                               \
    "muls r6, r7\n\t"                                                                              \
    "adds r5, r6\n\t" /* H = uh*Mh + (I >> 16) */                                                  \
    "lsrs r5, r3\n\t"                                                                              \
    "ldr r6, [sp]\n\t"                                                                             \
    "adds r5, r6\n\t" /* + lo */                                                                   \
    ST " r5, [r2]\n\t"                                                                             \
    "add r2, lr\n\t"                                                                               \
    "cmp r0, r1\n\t"                                                                               \
    "bne 30b\n\t"                                                                                  \
    "b 99f\n\t"                                                                                    \
    "38:\n\t" /* u outside [0, width]: 0 below (u < 0), width above */                             \
    "asrs r5, r4, #31\n\t"                                                                         \
    "mov r4, r8\n\t"                                                                               \
    "bics r4, r5\n\t"                                                                              \
    "b 31b\n\t"                                                                                    \
    /* form 3 (shift only) */                                                                      \
    "40:\n\t"                                                                                      \
    "ldm r0!, {r4}\n\t"                                                                            \
    "cmp r4, r8\n\t"                                                                               \
    "bhi 48f\n\t"                                                                                  \
    "41:\n\t"                                                                                      \
    "add r4, r12\n\t" /* + c_hi (here all of C) */                                                 \
    "lsrs r4, r3\n\t"                                                                              \
    ST " r4, [r2]\n\t"                                                                             \
    "add r2, lr\n\t"                                                                               \
    "cmp r0, r1\n\t"                                                                               \
    "bne 40b\n\t"                                                                                  \
    "b 99f\n\t"                                                                                    \
    "48:\n\t" /* u outside [0, width]: 0 below (u < 0), width above */                             \
    "asrs r5, r4, #31\n\t"                                                                         \
    "mov r4, r8\n\t"                                                                               \
    "bics r4, r5\n\t"                                                                              \
    "b 41b\n\t"                                                                                    \
    /* form 0, sign */                                                                             \
    "50:\n\t"                                                                                      \
    "ldm r0!, {r4}\n\t"                                                                            \
    "cmp r4, r8\n\t"                                                                               \
    "bhi 58f\n\t"                                                                                  \
    "51:\n\t"                                                                                      \
    "ldr r6, [sp, #4]\n\t" /* u0 */                                                                \
    "cmp r4, r6\n\t"                                                                               \
    "sbcs r5, r5\n\t" /* u >= u0 ? 0 : -1 */                                                       \
    "lsls r5, r5, #15\n\t" /* the sign term; c_hi holds + 2^15 */                                  \
    "mov r6, r9\n\t"                                                                               \
    "muls r6, r4\n\t"                                                                              \
    "adds r5, r6\n\t" /* + u*Mh */                                                                 \
    "lsrs r7, r4, #16\n\t" /* uh */                                                                \
    "uxth r4, r4\n\t" /* ul */                                                                     \
    "mov r6, r10\n\t"                                                                              \
    "muls r6, r7\n\t"                                                                              \
    "adds r5, r6\n\t" /* + uh*Ml */                                                                \
    "mov r6, r10\n\t"                                                                              \
    "muls r6, r4\n\t"                                                                              \
    "add r6, r11\n\t"                                                                              \
    "lsrs r6, r6, #16\n\t"                                                                         \
    "adds r5, r6\n\t" /* + ((ul*Ml + c_lo) >> 16) */                                               \
    "add r5, r12\n\t" /* + c_hi */                                                                 \
    "lsrs r5, r3\n\t"                                                                              \
    ST " r5, [r2]\n\t"                                                                             \
    "add r2, lr\n\t"                                                                               \
    "cmp r0, r1\n\t"                                                                               \
    "bne 50b\n\t"                                                                                  \
    "b 99f\n\t"                                                                                    \
    "58:\n\t" /* u outside [0, width]: 0 below (u < 0), width above */                             \
    "asrs r5, r4, #31\n\t"                                                                         \
    "mov r4, r8\n\t"                                                                               \
    "bics r4, r5\n\t"                                                                              \
    "b 51b\n\t"                                                                                    \
    /* form 1, sign */                                                                             \
    "60:\n\t"                                                                                      \
    "ldm r0!, {r4}\n\t"                                                                            \
    "cmp r4, r8\n\t"                                                                               \
    "bhi 68f\n\t"                                                                                  \
    "61:\n\t"                                                                                      \
    "ldr r6, [sp, #4]\n\t" /* u0 */                                                                \
    "cmp r4, r6\n\t"                                                                               \
    "sbcs r5, r5\n\t" /* u >= u0 ? 0 : -1 */                                                       \
    "lsls r5, r5, #15\n\t" /* the sign term; c_hi holds + 2^15 */                                  \
    "lsrs r7, r4, #16\n\t" /* uh */                                                                \
    "uxth r4, r4\n\t" /* ul */                                                                     \
    "mov r6, r9\n\t"                                                                               \
    "muls r6, r4\n\t"                                                                              \
    "adds r5, r6\n\t" /* + ul*Mh */                                                                \
    "mov r6, r10\n\t"                                                                              \
    "muls r6, r7\n\t"                                                                              \
    "adds r5, r6\n\t" /* + uh*Ml */                                                                \
    "mov r6, r10\n\t"                                                                              \
    "muls r6, r4\n\t"                                                                              \
    "add r6, r11\n\t"                                                                              \
    "lsrs r6, r6, #16\n\t"                                                                         \
    "adds r5, r6\n\t" /* + ((ul*Ml + c_lo) >> 16) */                                               \
    "add r5, r12\n\t" /* + c_hi */                                                                 \
    "lsrs r5, r5, #16\n\t"                                                                         \
    "mov r6, r9\n\t"                                                                               \
    "muls r6, r7\n\t"                                                                              \
    "adds r5, r6\n\t" /* H = uh*Mh + (I >> 16) */                                                  \
    "lsrs r5, r3\n\t"                                                                              \
    ST " r5, [r2]\n\t"                                                                             \
    "add r2, lr\n\t"                                                                               \
    "cmp r0, r1\n\t"                                                                               \
    "bne 60b\n\t"                                                                                  \
    "b 99f\n\t"                                                                                    \
    "68:\n\t" /* u outside [0, width]: 0 below (u < 0), width above */                             \
    "asrs r5, r4, #31\n\t"                                                                         \
    "mov r4, r8\n\t"                                                                               \
    "bics r4, r5\n\t"                                                                              \
    "b 61b\n\t"                                                                                    \
    /* form 2 (form 1, lo added), sign */                                                          \
    "70:\n\t"                                                                                      \
    "ldm r0!, {r4}\n\t"                                                                            \
    "cmp r4, r8\n\t"                                                                               \
    "bhi 78f\n\t"                                                                                  \
    "71:\n\t"                                                                                      \
    "ldr r6, [sp, #4]\n\t" /* u0 */                                                                \
    "cmp r4, r6\n\t"                                                                               \
    "sbcs r5, r5\n\t" /* u >= u0 ? 0 : -1 */                                                       \
    "lsls r5, r5, #15\n\t" /* the sign term; c_hi holds + 2^15 */                                  \
    "lsrs r7, r4, #16\n\t" /* uh */                                                                \
    "uxth r4, r4\n\t" /* ul */                                                                     \
    "mov r6, r9\n\t"                                                                               \
    "muls r6, r4\n\t"                                                                              \
    "adds r5, r6\n\t" /* + ul*Mh */                                                                \
    "mov r6, r10\n\t"                                                                              \
    "muls r6, r7\n\t"                                                                              \
    "adds r5, r6\n\t" /* + uh*Ml */                                                                \
    "mov r6, r10\n\t"                                                                              \
    "muls r6, r4\n\t"                                                                              \
    "add r6, r11\n\t"                                                                              \
    "lsrs r6, r6, #16\n\t"                                                                         \
    "adds r5, r6\n\t" /* + ((ul*Ml + c_lo) >> 16) */                                               \
    "add r5, r12\n\t" /* + c_hi */                                                                 \
    "lsrs r5, r5, #16\n\t"                                                                         \
    "mov r6, r9\n\t"                                                                               \
    "muls r6, r7\n\t"                                                                              \
    "adds r5, r6\n\t" /* H = uh*Mh + (I >> 16) */                                                  \
    "lsrs r5, r3\n\t"                                                                              \
    "ldr r6, [sp]\n\t"                                                                             \
    "adds r5, r6\n\t" /* + lo */                                                                   \
    ST " r5, [r2]\n\t"                                                                             \
    "add r2, lr\n\t"                                                                               \
    "cmp r0, r1\n\t"                                                                               \
    "bne 70b\n\t"                                                                                  \
    "b 99f\n\t"                                                                                    \
    "78:\n\t" /* u outside [0, width]: 0 below (u < 0), width above */                             \
    "asrs r5, r4, #31\n\t"                                                                         \
    "mov r4, r8\n\t"                                                                               \
    "bics r4, r5\n\t"                                                                              \
    "b 71b\n\t"                                                                                    \
    /* form 3 (shift only), sign */                                                                \
    "80:\n\t"                                                                                      \
    "ldm r0!, {r4}\n\t"                                                                            \
    "cmp r4, r8\n\t"                                                                               \
    "bhi 88f\n\t"                                                                                  \
    "81:\n\t"                                                                                      \
    "ldr r6, [sp, #4]\n\t" /* u0 */                                                                \
    "cmp r4, r6\n\t"                                                                               \
    "sbcs r5, r5\n\t" /* u >= u0 ? 0 : -1 */                                                       \
    "adds r4, r5\n\t"                                                                              \
    "add r4, r12\n\t" /* + c_hi (here all of C) */                                                 \
    "lsrs r4, r3\n\t"                                                                              \
    ST " r4, [r2]\n\t"                                                                             \
    "add r2, lr\n\t"                                                                               \
    "cmp r0, r1\n\t"                                                                               \
    "bne 80b\n\t"                                                                                  \
    "b 99f\n\t"                                                                                    \
    "88:\n\t" /* u outside [0, width]: 0 below (u < 0), width above */                             \
    "asrs r5, r4, #31\n\t"                                                                         \
    "mov r4, r8\n\t"                                                                               \
    "bics r4, r5\n\t"                                                                              \
    "b 81b\n\t"                                                                                    \
    "99:\n\t"                                                                                      \
    "pop {r4, r5}\n\t"                                                                             \
    "pop {r4}\n\t"                                                                                 \
    "mov r12, r4\n\t"                                                                              \
    "pop {r4, r5, r6, r7}\n\t"                                                                     \
    "mov r8, r4\n\t"                                                                               \
    "mov r9, r5\n\t"                                                                               \
    "mov r10, r6\n\t"                                                                              \
    "mov r11, r7\n\t"                                                                              \
    "pop {r4, r5, r6, r7, pc}\n\t"

__attribute__((naked, noinline)) static void iq_rqw_run8_m0(const int32_t* u IQ_UNUSED,
                                                            const int32_t* end IQ_UNUSED,
                                                            uint8_t* out IQ_UNUSED,
                                                            const uint32_t* k IQ_UNUSED)
{
    __asm__ volatile(IQ_RQW_ASM("strb"));
}

__attribute__((naked, noinline)) static void iq_rqw_run16_m0(const int32_t* u IQ_UNUSED,
                                                             const int32_t* end IQ_UNUSED,
                                                             int16_t* out IQ_UNUSED,
                                                             const uint32_t* k IQ_UNUSED)
{
    __asm__ volatile(IQ_RQW_ASM("strh"));
}

/* The constants the assembly loads, in its order. */
static void iq_rqw_pack(const iq_rqw_t* c, int32_t lo, int32_t sign_layer, int32_t step,
                        uint32_t k[10])
{
    k[0] = c->width;
    k[1] = c->m >> 16;
    k[2] = c->m & 0xFFFFu;
    k[3] = c->c_lo;
    k[4] = c->c_hi;
    k[5] = (uint32_t)step;
    k[6] = c->sh;
    k[7] = c->form + (sign_layer ? 4u : 0u);
    k[8] = (uint32_t)lo;
    k[9] = c->u0;
}
#endif

void iq_rqw_run8(const int32_t* u, int32_t n, const iq_rqw_t* rq, int32_t lo, int32_t sign_layer,
                 uint8_t* out, int32_t step)
{
    iq_rqw_t tmp;
    const iq_rqw_t* const c = IQ_LOAD_OBJ(iq_rqw_t, rq, tmp); /* rq is IQ_FLASH */
#ifdef IQ_RQW_ASM_LOOPS
    if (n > 0) {
        uint32_t k[10];
        iq_rqw_pack(c, lo, sign_layer, step, k);
        iq_rqw_run8_m0(u, u + n, out, k);
    }
#else
    const uint32_t add = c->form == 2 ? (uint32_t)lo : 0u;
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i * step] = (uint8_t)(iq_rqw_value(iq_rqw_clamp(u[i], c), c, sign_layer) + add);
    }
#endif
}

void iq_rqw_run16(const int32_t* u, int32_t n, const iq_rqw_t* rq, int32_t lo,
                  int32_t sign_layer, int16_t* out, int32_t step)
{
    iq_rqw_t tmp;
    const iq_rqw_t* const c = IQ_LOAD_OBJ(iq_rqw_t, rq, tmp); /* rq is IQ_FLASH */
#ifdef IQ_RQW_ASM_LOOPS
    if (n > 0) {
        uint32_t k[10];
        iq_rqw_pack(c, lo, sign_layer, 2 * step, k);
        iq_rqw_run16_m0(u, u + n, out, k);
    }
#else
    const uint32_t add = c->form == 2 ? (uint32_t)lo : 0u;
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i * step] = (int16_t)(uint16_t)(iq_rqw_value(iq_rqw_clamp(u[i], c), c, sign_layer) +
                                            add);
    }
#endif
}

void iq_rqw_channels8(const int32_t* u, int32_t n, int32_t u_step, const iq_rqw_t* rq,
                      int32_t lo, int32_t sign_layer, uint8_t* out, int32_t out_step)
{
    iq_rqw_t tmp;
    int32_t t;
    for (t = 0; t < n; ++t, u += u_step, ++rq, out += out_step) {
        const iq_rqw_t* const c = IQ_LOAD_OBJ(iq_rqw_t, rq, tmp); /* rq is IQ_FLASH */
        const uint32_t add = c->form == 2 ? (uint32_t)lo : 0u;
        *out = (uint8_t)(iq_rqw_value(iq_rqw_clamp(*u, c), c, sign_layer) + add);
    }
}
