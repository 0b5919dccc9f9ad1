/*
 * Eight-channel dot products over a tile of positions (iq_dot.h), the multiply-accumulate core
 * of the tiled 8-bit convs (iq_conv_impl.h with IQ_TILE).
 *
 * One loaded input feeds eight multiply-accumulates, the eight sums in registers (four low,
 * four high: ADD to a high register costs one cycle too), the weights of the eight channels
 * interleaved offline (w[i*8 + j]) so all 32 weights of four inputs are immediate-offset byte
 * loads. On Cortex-M0: 3.25 instructions and 4.44 cycles per MAC in the loop, about 90 cycles
 * per position for the sums' set-up and stores; elsewhere the C loop.
 *
 * iq_dot8_tile reads gathered columns (im2col); iq_dot8_rows reads the input in place, from a
 * band laid out as [row][channel][column] (iq_conv_impl.h, IQ_ROWS): the receptive field is
 * then kernel-height x channels runs of kernel-width bytes, `pitch` apart, so a 3x3 or 4-wide
 * kernel needs no gathering at all (4.5 / 4.44 cycles per MAC).
 */
#include "iq_dot.h"
#include "iq_conv.h"

/* Offset-binary copy of n bytes (xor with xoff). */
static void iq_copy_xor(const uint8_t* src, uint8_t* dst, int32_t n, uint32_t xoff)
{
    uint8_t* const end4 = dst + (n & ~3);
    uint8_t* const end = dst + n;
    while (dst != end4) {
        const uint32_t a = src[0], b = src[1], c = src[2], d = src[3];
        dst[0] = (uint8_t)(a ^ xoff);
        dst[1] = (uint8_t)(b ^ xoff);
        dst[2] = (uint8_t)(c ^ xoff);
        dst[3] = (uint8_t)(d ^ xoff);
        src += 4;
        dst += 4;
    }
    while (dst != end) {
        *dst++ = (uint8_t)(*src++ ^ xoff);
    }
}

void iq_rows_copy(const iq_conv_params_t* p, const uint8_t* x, uint32_t xoff, int32_t y0,
                  int32_t used, uint8_t* buf, uint32_t* colsum)
{
    const int32_t c_in = p->in_c, row_w = p->row_w, in_w = p->in_w, plane = p->in_h * in_w;
    const uint8_t pad = (uint8_t)((uint32_t)p->input_zero_point + xoff);
    int32_t r, ci, i;
    for (r = 0; r < used; ++r) {
        const int32_t iy = y0 + r;
        uint8_t* const row = buf + r * c_in * row_w;
        uint32_t* const cs = colsum + r * row_w;
        for (ci = 0; ci < c_in; ++ci) {
            uint8_t* dst = row + ci * row_w + p->pad_left;
            if (iy >= 0 && iy < p->in_h) {
                iq_copy_xor(x + ci * plane + iy * in_w, dst, in_w, xoff);
            } else {
                memset(dst, pad, (size_t)in_w);
            }
        }
        for (i = 0; i < row_w; ++i) {
            const uint8_t* c = row + i;
            const uint8_t* const end = c + c_in * row_w;
            uint32_t sum = 0;
            for (; c != end; c += row_w) {
                sum += *c;
            }
            cs[i] = sum;
        }
    }
}

void iq_rows_copy16(const iq_conv_params_t* p, const uint16_t* x, int32_t y0, int32_t used,
                    uint16_t* buf, uint32_t* colsum)
{
    const int32_t c_in = p->in_c, row_w = p->row_w, in_w = p->in_w, plane = p->in_h * in_w;
    const uint16_t pad = (uint16_t)((uint32_t)p->input_zero_point ^ 0x8000u);
    int32_t r, ci, i;
    for (r = 0; r < used; ++r) {
        const int32_t iy = y0 + r;
        uint16_t* const row = buf + r * c_in * row_w;
        uint32_t* const cs = colsum + r * row_w;
        for (ci = 0; ci < c_in; ++ci) {
            uint16_t* dst = row + ci * row_w + p->pad_left;
            if (iy >= 0 && iy < p->in_h) {
                const uint16_t* src = x + ci * plane + iy * in_w;
                for (i = 0; i < in_w; ++i) {
                    dst[i] = (uint16_t)(src[i] ^ 0x8000u);
                }
            } else {
                for (i = 0; i < in_w; ++i) {
                    dst[i] = pad;
                }
            }
        }
        for (i = 0; i < row_w; ++i) {
            const uint16_t* c = row + i;
            const uint16_t* const end = c + c_in * row_w;
            uint32_t sum = 0;
            for (; c != end; c += row_w) {
                sum += *c;
            }
            cs[i] = sum;
        }
    }
}

#ifdef IQ_M0_ASM
/* One input (LD: ldrb or ldrh at byte offset xo) times eight weights at wo.. wo + 7. */
#define IQ_MAC8_ASM(LD, xo, wo)                                                                \
    LD " r0, [r2, #" #xo "]\n\t"                                                              \
    "ldrb r1, [r3, #" #wo "]\n\t"                                                              \
    "muls r1, r0\n\t"                                                                          \
    "adds r4, r1\n\t"                                                                          \
    "ldrb r1, [r3, #" #wo "+1]\n\t"                                                            \
    "muls r1, r0\n\t"                                                                          \
    "adds r5, r1\n\t"                                                                          \
    "ldrb r1, [r3, #" #wo "+2]\n\t"                                                            \
    "muls r1, r0\n\t"                                                                          \
    "adds r6, r1\n\t"                                                                          \
    "ldrb r1, [r3, #" #wo "+3]\n\t"                                                            \
    "muls r1, r0\n\t"                                                                          \
    "adds r7, r1\n\t"                                                                          \
    "ldrb r1, [r3, #" #wo "+4]\n\t"                                                            \
    "muls r1, r0\n\t"                                                                          \
    "add r8, r1\n\t"                                                                           \
    "ldrb r1, [r3, #" #wo "+5]\n\t"                                                            \
    "muls r1, r0\n\t"                                                                          \
    "add r9, r1\n\t"                                                                           \
    "ldrb r1, [r3, #" #wo "+6]\n\t"                                                            \
    "muls r1, r0\n\t"                                                                          \
    "add r10, r1\n\t"                                                                          \
    "ldrb r1, [r3, #" #wo "+7]\n\t"                                                            \
    "muls r1, r0\n\t"                                                                          \
    "add r11, r1\n\t"
#define IQ_STORE_HIGH(reg)                                                                     \
    "mov r2, " reg "\n\t"                                                                      \
    "str r2, [r0]\n\t"                                                                         \
    "adds r0, r1\n\t"

/* The tile kernel for inputs loaded by LD (ldrb / ldrh) at byte offsets 0, X1, X2, X3; STEP4
 * and STEP1 are the byte sizes of four inputs and of one, SH log2(STEP4). r0 = cols,
 * r1 = terms, r2 = npos, r3 = bytes per column; stack: w, bias, acc. Frame: [sp] positions
 * left, +4 column, +8 bytes per column, +12 w, +16 bias, +20 acc, +24 4*npos, +28 terms; the
 * caller's stack arguments at sp + 68. */
#define IQ_DOT8_TILE_ASM(LD, X1, X2, X3, STEP4, STEP1, SH)                                     \
    ".syntax unified\n\t"                                                                      \
    "push {r4, r5, r6, r7, lr}\n\t"                                                            \
    "mov r4, r8\n\t"                                                                           \
    "mov r5, r9\n\t"                                                                           \
    "mov r6, r10\n\t"                                                                          \
    "mov r7, r11\n\t"                                                                          \
    "push {r4, r5, r6, r7}\n\t"                                                                \
    "sub sp, #32\n\t"                                                                          \
    "str r2, [sp, #0]\n\t"                                                                     \
    "str r0, [sp, #4]\n\t"                                                                     \
    "str r3, [sp, #8]\n\t"                                                                     \
    "str r1, [sp, #28]\n\t"                                                                    \
    "lsls r2, r2, #2\n\t"                                                                      \
    "str r2, [sp, #24]\n\t"                                                                    \
    "ldr r4, [sp, #68]\n\t"                                                                    \
    "str r4, [sp, #12]\n\t"                                                                    \
    "ldr r4, [sp, #72]\n\t"                                                                    \
    "str r4, [sp, #16]\n\t"                                                                    \
    "ldr r4, [sp, #76]\n\t"                                                                    \
    "str r4, [sp, #20]\n\t"                                                                    \
    "cmp r2, #0\n\t"                                                                           \
    "bne 1f\n\t"                                                                               \
    "b 90f\n\t" /* B<cond> reaches +-256 bytes only */                                         \
    "1:\n\t"    /* next position: sums = bias - term */                                        \
    "ldr r1, [sp, #28]\n\t"                                                                    \
    "ldm r1!, {r0}\n\t"                                                                        \
    "str r1, [sp, #28]\n\t"                                                                    \
    "ldr r3, [sp, #16]\n\t"                                                                    \
    "ldm r3!, {r4, r5, r6, r7}\n\t"                                                            \
    "subs r4, r4, r0\n\t"                                                                      \
    "subs r5, r5, r0\n\t"                                                                      \
    "subs r6, r6, r0\n\t"                                                                      \
    "subs r7, r7, r0\n\t"                                                                      \
    "ldm r3!, {r1, r2}\n\t"                                                                    \
    "subs r1, r1, r0\n\t"                                                                      \
    "subs r2, r2, r0\n\t"                                                                      \
    "mov r8, r1\n\t"                                                                           \
    "mov r9, r2\n\t"                                                                           \
    "ldm r3!, {r1, r2}\n\t"                                                                    \
    "subs r1, r1, r0\n\t"                                                                      \
    "subs r2, r2, r0\n\t"                                                                      \
    "mov r10, r1\n\t"                                                                          \
    "mov r11, r2\n\t"                                                                          \
    "ldr r2, [sp, #4]\n\t"                                                                     \
    "ldr r1, [sp, #8]\n\t"                                                                     \
    "lsrs r0, r1, #" SH "\n\t"                                                                 \
    "lsls r0, r0, #" SH "\n\t"                                                                 \
    "adds r0, r2\n\t"                                                                          \
    "mov r12, r0\n\t"                                                                          \
    "ldr r3, [sp, #12]\n\t"                                                                    \
    "cmp r2, r12\n\t"                                                                          \
    "beq 3f\n\t"                                                                               \
    "2:\n\t" /* four inputs x eight channels */                                                \
    IQ_MAC8_ASM(LD, 0, 0) IQ_MAC8_ASM(LD, X1, 8) IQ_MAC8_ASM(LD, X2, 16)                      \
        IQ_MAC8_ASM(LD, X3, 24)                                                                \
    "adds r2, #" STEP4 "\n\t"                                                                  \
    "adds r3, #32\n\t"                                                                         \
    "cmp r2, r12\n\t"                                                                          \
    "bne 2b\n\t"                                                                               \
    "3:\n\t" /* the last inputs, one at a time */                                              \
    "ldr r1, [sp, #8]\n\t"                                                                     \
    "ldr r0, [sp, #4]\n\t"                                                                     \
    "adds r0, r1\n\t"                                                                          \
    "mov r12, r0\n\t"                                                                          \
    "cmp r2, r12\n\t"                                                                          \
    "beq 5f\n\t"                                                                               \
    "4:\n\t" IQ_MAC8_ASM(LD, 0, 0)                                                             \
    "adds r2, #" STEP1 "\n\t"                                                                  \
    "adds r3, #8\n\t"                                                                          \
    "cmp r2, r12\n\t"                                                                          \
    "bne 4b\n\t"                                                                               \
    "5:\n\t" /* store the sums, channel-major */                                               \
    "ldr r0, [sp, #20]\n\t"                                                                    \
    "ldr r1, [sp, #24]\n\t"                                                                    \
    "str r4, [r0]\n\t"                                                                         \
    "adds r0, r1\n\t"                                                                          \
    "str r5, [r0]\n\t"                                                                         \
    "adds r0, r1\n\t"                                                                          \
    "str r6, [r0]\n\t"                                                                         \
    "adds r0, r1\n\t"                                                                          \
    "str r7, [r0]\n\t"                                                                         \
    "adds r0, r1\n\t" IQ_STORE_HIGH("r8") IQ_STORE_HIGH("r9") IQ_STORE_HIGH("r10")             \
        IQ_STORE_HIGH("r11")                                                                   \
    "ldr r0, [sp, #20]\n\t"                                                                    \
    "adds r0, #4\n\t"                                                                          \
    "str r0, [sp, #20]\n\t"                                                                    \
    "ldr r0, [sp, #4]\n\t"                                                                     \
    "ldr r1, [sp, #8]\n\t"                                                                     \
    "adds r0, r1\n\t"                                                                          \
    "str r0, [sp, #4]\n\t"                                                                     \
    "ldr r0, [sp, #0]\n\t"                                                                     \
    "subs r0, #1\n\t"                                                                          \
    "str r0, [sp, #0]\n\t"                                                                     \
    "beq 90f\n\t"                                                                              \
    "b 1b\n\t"                                                                                 \
    "90:\n\t"                                                                                  \
    "add sp, #32\n\t"                                                                          \
    "pop {r4, r5, r6, r7}\n\t"                                                                 \
    "mov r8, r4\n\t"                                                                           \
    "mov r9, r5\n\t"                                                                           \
    "mov r10, r6\n\t"                                                                          \
    "mov r11, r7\n\t"                                                                          \
    "pop {r4, r5, r6, r7, pc}\n\t"

/* The in-place kernel (iq_rows_t; step, span and pitch in bytes) for inputs loaded by LD at
 * byte offsets 0, X1, X2, X3 within a kernel row. Frame: [sp] positions left, +4 position's
 * first input, +8 step, +12 span, +16 w, +20 bias, +24 acc, +28 4*npos, +32 terms, +36 kw;
 * lr = pitch for the whole call. */
#define IQ_DOT8_ROWS_ASM(LD, X1, X2, X3)                                                       \
    ".syntax unified\n\t"                                                                      \
    "push {r4, r5, r6, r7, lr}\n\t"                                                            \
    "mov r4, r8\n\t"                                                                           \
    "mov r5, r9\n\t"                                                                           \
    "mov r6, r10\n\t"                                                                          \
    "mov r7, r11\n\t"                                                                          \
    "push {r4, r5, r6, r7}\n\t"                                                                \
    "sub sp, #40\n\t"                                                                          \
    "str r0, [sp, #4]\n\t"                                                                     \
    "str r2, [sp, #16]\n\t"                                                                    \
    "str r3, [sp, #24]\n\t"                                                                    \
    "ldm r1!, {r4, r5, r6, r7}\n\t" /* npos, step, span, pitch */                              \
    "str r4, [sp, #0]\n\t"                                                                     \
    "str r5, [sp, #8]\n\t"                                                                     \
    "str r6, [sp, #12]\n\t"                                                                    \
    "mov lr, r7\n\t"                                                                           \
    "lsls r4, r4, #2\n\t"                                                                      \
    "str r4, [sp, #28]\n\t"                                                                    \
    "ldm r1!, {r4, r5, r6}\n\t" /* kw, bias, terms */                                          \
    "str r4, [sp, #36]\n\t"                                                                    \
    "str r5, [sp, #20]\n\t"                                                                    \
    "str r6, [sp, #32]\n\t"                                                                    \
    "ldr r4, [sp, #0]\n\t"                                                                     \
    "cmp r4, #0\n\t"                                                                           \
    "bne 1f\n\t"                                                                               \
    "b 90f\n\t"                                                                                \
    "1:\n\t" /* next position: sums = bias - term */                                           \
    "ldr r1, [sp, #32]\n\t"                                                                    \
    "ldm r1!, {r0}\n\t"                                                                        \
    "str r1, [sp, #32]\n\t"                                                                    \
    "ldr r3, [sp, #20]\n\t"                                                                    \
    "ldm r3!, {r4, r5, r6, r7}\n\t"                                                            \
    "subs r4, r4, r0\n\t"                                                                      \
    "subs r5, r5, r0\n\t"                                                                      \
    "subs r6, r6, r0\n\t"                                                                      \
    "subs r7, r7, r0\n\t"                                                                      \
    "ldm r3!, {r1, r2}\n\t"                                                                    \
    "subs r1, r1, r0\n\t"                                                                      \
    "subs r2, r2, r0\n\t"                                                                      \
    "mov r8, r1\n\t"                                                                           \
    "mov r9, r2\n\t"                                                                           \
    "ldm r3!, {r1, r2}\n\t"                                                                    \
    "subs r1, r1, r0\n\t"                                                                      \
    "subs r2, r2, r0\n\t"                                                                      \
    "mov r10, r1\n\t"                                                                          \
    "mov r11, r2\n\t"                                                                          \
    "ldr r2, [sp, #4]\n\t"                                                                     \
    "ldr r1, [sp, #12]\n\t"                                                                    \
    "adds r1, r2\n\t"                                                                          \
    "mov r12, r1\n\t"                                                                          \
    "ldr r3, [sp, #16]\n\t"                                                                    \
    "ldr r1, [sp, #36]\n\t"                                                                    \
    "cmp r1, #4\n\t"                                                                           \
    "beq 4f\n\t"                                                                               \
    "3:\n\t" /* one kernel row of one channel: three inputs x eight channels */                \
    IQ_MAC8_ASM(LD, 0, 0) IQ_MAC8_ASM(LD, X1, 8) IQ_MAC8_ASM(LD, X2, 16)                      \
    "add r2, lr\n\t"                                                                           \
    "adds r3, #24\n\t"                                                                         \
    "cmp r2, r12\n\t"                                                                          \
    "bne 3b\n\t"                                                                               \
    "b 5f\n\t"                                                                                 \
    "4:\n\t" /* four inputs x eight channels */                                                \
    IQ_MAC8_ASM(LD, 0, 0) IQ_MAC8_ASM(LD, X1, 8) IQ_MAC8_ASM(LD, X2, 16)                      \
        IQ_MAC8_ASM(LD, X3, 24)                                                                \
    "add r2, lr\n\t"                                                                           \
    "adds r3, #32\n\t"                                                                         \
    "cmp r2, r12\n\t"                                                                          \
    "bne 4b\n\t"                                                                               \
    "5:\n\t" /* store the sums, channel-major */                                               \
    "ldr r0, [sp, #24]\n\t"                                                                    \
    "ldr r1, [sp, #28]\n\t"                                                                    \
    "str r4, [r0]\n\t"                                                                         \
    "adds r0, r1\n\t"                                                                          \
    "str r5, [r0]\n\t"                                                                         \
    "adds r0, r1\n\t"                                                                          \
    "str r6, [r0]\n\t"                                                                         \
    "adds r0, r1\n\t"                                                                          \
    "str r7, [r0]\n\t"                                                                         \
    "adds r0, r1\n\t" IQ_STORE_HIGH("r8") IQ_STORE_HIGH("r9") IQ_STORE_HIGH("r10")             \
        IQ_STORE_HIGH("r11")                                                                   \
    "ldr r0, [sp, #24]\n\t"                                                                    \
    "adds r0, #4\n\t"                                                                          \
    "str r0, [sp, #24]\n\t"                                                                    \
    "ldr r0, [sp, #4]\n\t"                                                                     \
    "ldr r1, [sp, #8]\n\t"                                                                     \
    "adds r0, r1\n\t"                                                                          \
    "str r0, [sp, #4]\n\t"                                                                     \
    "ldr r0, [sp, #0]\n\t"                                                                     \
    "subs r0, #1\n\t"                                                                          \
    "str r0, [sp, #0]\n\t"                                                                     \
    "beq 90f\n\t"                                                                              \
    "b 1b\n\t"                                                                                 \
    "90:\n\t"                                                                                  \
    "add sp, #40\n\t"                                                                          \
    "pop {r4, r5, r6, r7}\n\t"                                                                 \
    "mov r8, r4\n\t"                                                                           \
    "mov r9, r5\n\t"                                                                           \
    "mov r10, r6\n\t"                                                                          \
    "mov r11, r7\n\t"                                                                          \
    "pop {r4, r5, r6, r7, pc}\n\t"

#define IQ_TILE_ARGS                                                                           \
    const void* cols IQ_UNUSED, const uint32_t* terms IQ_UNUSED, int32_t npos IQ_UNUSED,       \
        int32_t bytes IQ_UNUSED, const uint8_t* w IQ_UNUSED, const uint32_t* bias IQ_UNUSED,   \
        int32_t* acc IQ_UNUSED
#define IQ_ROWS_ARGS                                                                           \
    const void* x IQ_UNUSED, const iq_rows_t* rows IQ_UNUSED, const uint8_t* w IQ_UNUSED,      \
        int32_t* acc IQ_UNUSED

__attribute__((naked, noinline)) static void iq_dot8_tile_m0(IQ_TILE_ARGS)
{
    __asm__ volatile(IQ_DOT8_TILE_ASM("ldrb", 1, 2, 3, "4", "1", "2"));
}

__attribute__((naked, noinline)) static void iq_dot16_tile_m0(IQ_TILE_ARGS)
{
    __asm__ volatile(IQ_DOT8_TILE_ASM("ldrh", 2, 4, 6, "8", "2", "3"));
}

__attribute__((naked, noinline)) static void iq_dot8_rows_m0(IQ_ROWS_ARGS)
{
    __asm__ volatile(IQ_DOT8_ROWS_ASM("ldrb", 1, 2, 3));
}

__attribute__((naked, noinline)) static void iq_dot16_rows_m0(IQ_ROWS_ARGS)
{
    __asm__ volatile(IQ_DOT8_ROWS_ASM("ldrh", 2, 4, 6));
}
#endif

#ifndef IQ_M0_ASM
/* The portable loops: x is a uint8_t or uint16_t array (size = 1 or 2 bytes). */
static uint32_t iq_elem(const void* x, int32_t i, int32_t size)
{
    return size == 1 ? ((const uint8_t*)x)[i] : ((const uint16_t*)x)[i];
}

static void iq_tile_c(const void* cols, const uint32_t* terms, int32_t npos, int32_t k,
                      const uint8_t* w, const uint32_t* bias, int32_t* acc, int32_t size)
{
    int32_t q, j, i;
    for (q = 0; q < npos; ++q) {
        for (j = 0; j < 8; ++j) {
            uint32_t s = IQ_LOAD_U32(bias + j) - terms[q];
            for (i = 0; i < k; ++i) {
                s += iq_elem(cols, q * k + i, size) * IQ_LOAD_U8(w + i * 8 + j);
            }
            acc[j * npos + q] = (int32_t)s;
        }
    }
}

static void iq_rows_c(const void* x, const iq_rows_t* rows, const uint8_t* w, int32_t* acc,
                      int32_t size)
{
    const int32_t blocks = rows->span / rows->pitch, kw = rows->kw, n = rows->npos;
    int32_t q, j, b, i;
    for (q = 0; q < n; ++q) {
        const int32_t at = q * rows->step / size;
        for (j = 0; j < 8; ++j) {
            uint32_t s = IQ_LOAD_U32(rows->bias + j) - rows->terms[q];
            for (b = 0; b < blocks; ++b) {
                for (i = 0; i < kw; ++i) {
                    s += iq_elem(x, at + b * rows->pitch / size + i, size) *
                         IQ_LOAD_U8(w + (b * kw + i) * 8 + j);
                }
            }
            acc[j * n + q] = (int32_t)s;
        }
    }
}

#endif

void iq_dot8_tile(const uint8_t* cols, const uint32_t* terms, int32_t npos, int32_t k,
                  const uint8_t* w, const uint32_t* bias, int32_t* acc)
{
#ifdef IQ_M0_ASM
    iq_dot8_tile_m0(cols, terms, npos, k, w, bias, acc);
#else
    iq_tile_c(cols, terms, npos, k, w, bias, acc, 1);
#endif
}

void iq_dot16_tile(const uint16_t* cols, const uint32_t* terms, int32_t npos, int32_t k,
                   const uint8_t* w, const uint32_t* bias, int32_t* acc)
{
#ifdef IQ_M0_ASM
    iq_dot16_tile_m0(cols, terms, npos, 2 * k, w, bias, acc);
#else
    iq_tile_c(cols, terms, npos, k, w, bias, acc, 2);
#endif
}

void iq_dot8_rows(const uint8_t* x, const iq_rows_t* rows, const uint8_t* w, int32_t* acc)
{
#ifdef IQ_M0_ASM
    iq_dot8_rows_m0(x, rows, w, acc);
#else
    iq_rows_c(x, rows, w, acc, 1);
#endif
}

void iq_dot16_rows(const uint16_t* x, const iq_rows_t* rows, const uint8_t* w, int32_t* acc)
{
#ifdef IQ_M0_ASM
    iq_dot16_rows_m0(x, rows, w, acc);
#else
    iq_rows_c(x, rows, w, acc, 2);
#endif
}
