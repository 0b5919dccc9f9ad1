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
#include "iq_kernels.h"

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

#if defined(__ARM_ARCH_6M__) && defined(__GNUC__)
#define IQ_MAC8_ASM(xo, wo)                                                                    \
    "ldrb r0, [r2, #" #xo "]\n\t"                                                              \
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

/* Frame: [sp] positions left, +4 column, +8 k, +12 w, +16 bias, +20 acc, +24 4*npos,
 * +28 terms; the caller's stack arguments (w, bias, acc) at sp + 68. */
__attribute__((naked, noinline)) static void iq_dot8_tile_m0(
    const uint8_t* cols IQ_UNUSED, const uint32_t* terms IQ_UNUSED, int32_t npos IQ_UNUSED,
    int32_t k IQ_UNUSED, const uint8_t* w IQ_UNUSED, const uint32_t* bias IQ_UNUSED,
    int32_t* acc IQ_UNUSED)
{
    __asm__ volatile(".syntax unified\n\t"
                     "push {r4, r5, r6, r7, lr}\n\t"
                     "mov r4, r8\n\t"
                     "mov r5, r9\n\t"
                     "mov r6, r10\n\t"
                     "mov r7, r11\n\t"
                     "push {r4, r5, r6, r7}\n\t"
                     "sub sp, #32\n\t"
                     "str r2, [sp, #0]\n\t"
                     "str r0, [sp, #4]\n\t"
                     "str r3, [sp, #8]\n\t"
                     "str r1, [sp, #28]\n\t"
                     "lsls r2, r2, #2\n\t"
                     "str r2, [sp, #24]\n\t"
                     "ldr r4, [sp, #68]\n\t"
                     "str r4, [sp, #12]\n\t"
                     "ldr r4, [sp, #72]\n\t"
                     "str r4, [sp, #16]\n\t"
                     "ldr r4, [sp, #76]\n\t"
                     "str r4, [sp, #20]\n\t"
                     "cmp r2, #0\n\t"
                     "bne 1f\n\t"
                     "b 90f\n\t" /* B<cond> reaches +-256 bytes only */
                     "1:\n\t" /* next position: sums = bias - term */
                     "ldr r1, [sp, #28]\n\t"
                     "ldm r1!, {r0}\n\t"
                     "str r1, [sp, #28]\n\t"
                     "ldr r3, [sp, #16]\n\t"
                     "ldm r3!, {r4, r5, r6, r7}\n\t"
                     "subs r4, r4, r0\n\t"
                     "subs r5, r5, r0\n\t"
                     "subs r6, r6, r0\n\t"
                     "subs r7, r7, r0\n\t"
                     "ldm r3!, {r1, r2}\n\t"
                     "subs r1, r1, r0\n\t"
                     "subs r2, r2, r0\n\t"
                     "mov r8, r1\n\t"
                     "mov r9, r2\n\t"
                     "ldm r3!, {r1, r2}\n\t"
                     "subs r1, r1, r0\n\t"
                     "subs r2, r2, r0\n\t"
                     "mov r10, r1\n\t"
                     "mov r11, r2\n\t"
                     "ldr r2, [sp, #4]\n\t"
                     "ldr r1, [sp, #8]\n\t"
                     "lsrs r0, r1, #2\n\t"
                     "lsls r0, r0, #2\n\t"
                     "adds r0, r2\n\t"
                     "mov r12, r0\n\t"
                     "ldr r3, [sp, #12]\n\t"
                     "cmp r2, r12\n\t"
                     "beq 3f\n\t"
                     "2:\n\t" /* four inputs x eight channels */
                     IQ_MAC8_ASM(0, 0) IQ_MAC8_ASM(1, 8) IQ_MAC8_ASM(2, 16) IQ_MAC8_ASM(3, 24)
                     "adds r2, #4\n\t"
                     "adds r3, #32\n\t"
                     "cmp r2, r12\n\t"
                     "bne 2b\n\t"
                     "3:\n\t" /* the last k % 4 inputs */
                     "ldr r1, [sp, #8]\n\t"
                     "ldr r0, [sp, #4]\n\t"
                     "adds r0, r1\n\t"
                     "mov r12, r0\n\t"
                     "cmp r2, r12\n\t"
                     "beq 5f\n\t"
                     "4:\n\t" IQ_MAC8_ASM(0, 0)
                     "adds r2, #1\n\t"
                     "adds r3, #8\n\t"
                     "cmp r2, r12\n\t"
                     "bne 4b\n\t"
                     "5:\n\t" /* store the sums, channel-major */
                     "ldr r0, [sp, #20]\n\t"
                     "ldr r1, [sp, #24]\n\t"
                     "str r4, [r0]\n\t"
                     "adds r0, r1\n\t"
                     "str r5, [r0]\n\t"
                     "adds r0, r1\n\t"
                     "str r6, [r0]\n\t"
                     "adds r0, r1\n\t"
                     "str r7, [r0]\n\t"
                     "adds r0, r1\n\t" IQ_STORE_HIGH("r8") IQ_STORE_HIGH("r9")
                         IQ_STORE_HIGH("r10") IQ_STORE_HIGH("r11")
                     "ldr r0, [sp, #20]\n\t"
                     "adds r0, #4\n\t"
                     "str r0, [sp, #20]\n\t"
                     "ldr r0, [sp, #4]\n\t"
                     "ldr r1, [sp, #8]\n\t"
                     "adds r0, r1\n\t"
                     "str r0, [sp, #4]\n\t"
                     "ldr r0, [sp, #0]\n\t"
                     "subs r0, #1\n\t"
                     "str r0, [sp, #0]\n\t"
                     "beq 90f\n\t"
                     "b 1b\n\t"
                     "90:\n\t"
                     "add sp, #32\n\t"
                     "pop {r4, r5, r6, r7}\n\t"
                     "mov r8, r4\n\t"
                     "mov r9, r5\n\t"
                     "mov r10, r6\n\t"
                     "mov r11, r7\n\t"
                     "pop {r4, r5, r6, r7, pc}\n\t");
}
#endif

void iq_dot8_tile(const uint8_t* cols, const uint32_t* terms, int32_t npos, int32_t k,
                  const uint8_t* w, const uint32_t* bias, int32_t* acc)
{
#if defined(__ARM_ARCH_6M__) && defined(__GNUC__)
    iq_dot8_tile_m0(cols, terms, npos, k, w, bias, acc);
#else
    int32_t q, j, i;
    for (q = 0; q < npos; ++q) {
        const uint8_t* x = cols + q * k;
        for (j = 0; j < 8; ++j) {
            uint32_t s = bias[j] - terms[q];
            for (i = 0; i < k; ++i) {
                s += (uint32_t)x[i] * w[i * 8 + j];
            }
            acc[j * npos + q] = (int32_t)s;
        }
    }
#endif
}

#if defined(__ARM_ARCH_6M__) && defined(__GNUC__)
/* Frame: [sp] positions left, +4 position's first input, +8 step, +12 span, +16 w, +20 bias,
 * +24 acc, +28 4*npos, +32 terms, +36 kw; lr = pitch for the whole call. */
__attribute__((naked, noinline)) static void iq_dot8_rows_m0(const uint8_t* x IQ_UNUSED,
                                                             const iq_rows_t* rows IQ_UNUSED,
                                                             const uint8_t* w IQ_UNUSED,
                                                             int32_t* acc IQ_UNUSED)
{
    __asm__ volatile(".syntax unified\n\t"
                     "push {r4, r5, r6, r7, lr}\n\t"
                     "mov r4, r8\n\t"
                     "mov r5, r9\n\t"
                     "mov r6, r10\n\t"
                     "mov r7, r11\n\t"
                     "push {r4, r5, r6, r7}\n\t"
                     "sub sp, #40\n\t"
                     "str r0, [sp, #4]\n\t"
                     "str r2, [sp, #16]\n\t"
                     "str r3, [sp, #24]\n\t"
                     "ldm r1!, {r4, r5, r6, r7}\n\t" /* npos, step, span, pitch */
                     "str r4, [sp, #0]\n\t"
                     "str r5, [sp, #8]\n\t"
                     "str r6, [sp, #12]\n\t"
                     "mov lr, r7\n\t"
                     "lsls r4, r4, #2\n\t"
                     "str r4, [sp, #28]\n\t"
                     "ldm r1!, {r4, r5, r6}\n\t" /* kw, bias, terms */
                     "str r4, [sp, #36]\n\t"
                     "str r5, [sp, #20]\n\t"
                     "str r6, [sp, #32]\n\t"
                     "ldr r4, [sp, #0]\n\t"
                     "cmp r4, #0\n\t"
                     "bne 1f\n\t"
                     "b 90f\n\t"
                     "1:\n\t" /* next position: sums = bias - term */
                     "ldr r1, [sp, #32]\n\t"
                     "ldm r1!, {r0}\n\t"
                     "str r1, [sp, #32]\n\t"
                     "ldr r3, [sp, #20]\n\t"
                     "ldm r3!, {r4, r5, r6, r7}\n\t"
                     "subs r4, r4, r0\n\t"
                     "subs r5, r5, r0\n\t"
                     "subs r6, r6, r0\n\t"
                     "subs r7, r7, r0\n\t"
                     "ldm r3!, {r1, r2}\n\t"
                     "subs r1, r1, r0\n\t"
                     "subs r2, r2, r0\n\t"
                     "mov r8, r1\n\t"
                     "mov r9, r2\n\t"
                     "ldm r3!, {r1, r2}\n\t"
                     "subs r1, r1, r0\n\t"
                     "subs r2, r2, r0\n\t"
                     "mov r10, r1\n\t"
                     "mov r11, r2\n\t"
                     "ldr r2, [sp, #4]\n\t"
                     "ldr r1, [sp, #12]\n\t"
                     "adds r1, r2\n\t"
                     "mov r12, r1\n\t"
                     "ldr r3, [sp, #16]\n\t"
                     "ldr r1, [sp, #36]\n\t"
                     "cmp r1, #4\n\t"
                     "beq 4f\n\t"
                     "3:\n\t" /* one kernel row of one channel: three inputs x eight channels */
                     "ldrb r0, [r2, #0]\n\t"
                     "ldrb r1, [r3, #0]\n\t"
                     "muls r1, r0\n\t"
                     "adds r4, r1\n\t"
                     "ldrb r1, [r3, #1]\n\t"
                     "muls r1, r0\n\t"
                     "adds r5, r1\n\t"
                     "ldrb r1, [r3, #2]\n\t"
                     "muls r1, r0\n\t"
                     "adds r6, r1\n\t"
                     "ldrb r1, [r3, #3]\n\t"
                     "muls r1, r0\n\t"
                     "adds r7, r1\n\t"
                     "ldrb r1, [r3, #4]\n\t"
                     "muls r1, r0\n\t"
                     "add r8, r1\n\t"
                     "ldrb r1, [r3, #5]\n\t"
                     "muls r1, r0\n\t"
                     "add r9, r1\n\t"
                     "ldrb r1, [r3, #6]\n\t"
                     "muls r1, r0\n\t"
                     "add r10, r1\n\t"
                     "ldrb r1, [r3, #7]\n\t"
                     "muls r1, r0\n\t"
                     "add r11, r1\n\t"
                     "ldrb r0, [r2, #1]\n\t"
                     "ldrb r1, [r3, #8]\n\t"
                     "muls r1, r0\n\t"
                     "adds r4, r1\n\t"
                     "ldrb r1, [r3, #9]\n\t"
                     "muls r1, r0\n\t"
                     "adds r5, r1\n\t"
                     "ldrb r1, [r3, #10]\n\t"
                     "muls r1, r0\n\t"
                     "adds r6, r1\n\t"
                     "ldrb r1, [r3, #11]\n\t"
                     "muls r1, r0\n\t"
                     "adds r7, r1\n\t"
                     "ldrb r1, [r3, #12]\n\t"
                     "muls r1, r0\n\t"
                     "add r8, r1\n\t"
                     "ldrb r1, [r3, #13]\n\t"
                     "muls r1, r0\n\t"
                     "add r9, r1\n\t"
                     "ldrb r1, [r3, #14]\n\t"
                     "muls r1, r0\n\t"
                     "add r10, r1\n\t"
                     "ldrb r1, [r3, #15]\n\t"
                     "muls r1, r0\n\t"
                     "add r11, r1\n\t"
                     "ldrb r0, [r2, #2]\n\t"
                     "ldrb r1, [r3, #16]\n\t"
                     "muls r1, r0\n\t"
                     "adds r4, r1\n\t"
                     "ldrb r1, [r3, #17]\n\t"
                     "muls r1, r0\n\t"
                     "adds r5, r1\n\t"
                     "ldrb r1, [r3, #18]\n\t"
                     "muls r1, r0\n\t"
                     "adds r6, r1\n\t"
                     "ldrb r1, [r3, #19]\n\t"
                     "muls r1, r0\n\t"
                     "adds r7, r1\n\t"
                     "ldrb r1, [r3, #20]\n\t"
                     "muls r1, r0\n\t"
                     "add r8, r1\n\t"
                     "ldrb r1, [r3, #21]\n\t"
                     "muls r1, r0\n\t"
                     "add r9, r1\n\t"
                     "ldrb r1, [r3, #22]\n\t"
                     "muls r1, r0\n\t"
                     "add r10, r1\n\t"
                     "ldrb r1, [r3, #23]\n\t"
                     "muls r1, r0\n\t"
                     "add r11, r1\n\t"
                     "add r2, lr\n\t"
                     "adds r3, #24\n\t"
                     "cmp r2, r12\n\t"
                     "bne 3b\n\t"
                     "b 5f\n\t"
                     "4:\n\t" /* four inputs x eight channels */
                     "ldrb r0, [r2, #0]\n\t"
                     "ldrb r1, [r3, #0]\n\t"
                     "muls r1, r0\n\t"
                     "adds r4, r1\n\t"
                     "ldrb r1, [r3, #1]\n\t"
                     "muls r1, r0\n\t"
                     "adds r5, r1\n\t"
                     "ldrb r1, [r3, #2]\n\t"
                     "muls r1, r0\n\t"
                     "adds r6, r1\n\t"
                     "ldrb r1, [r3, #3]\n\t"
                     "muls r1, r0\n\t"
                     "adds r7, r1\n\t"
                     "ldrb r1, [r3, #4]\n\t"
                     "muls r1, r0\n\t"
                     "add r8, r1\n\t"
                     "ldrb r1, [r3, #5]\n\t"
                     "muls r1, r0\n\t"
                     "add r9, r1\n\t"
                     "ldrb r1, [r3, #6]\n\t"
                     "muls r1, r0\n\t"
                     "add r10, r1\n\t"
                     "ldrb r1, [r3, #7]\n\t"
                     "muls r1, r0\n\t"
                     "add r11, r1\n\t"
                     "ldrb r0, [r2, #1]\n\t"
                     "ldrb r1, [r3, #8]\n\t"
                     "muls r1, r0\n\t"
                     "adds r4, r1\n\t"
                     "ldrb r1, [r3, #9]\n\t"
                     "muls r1, r0\n\t"
                     "adds r5, r1\n\t"
                     "ldrb r1, [r3, #10]\n\t"
                     "muls r1, r0\n\t"
                     "adds r6, r1\n\t"
                     "ldrb r1, [r3, #11]\n\t"
                     "muls r1, r0\n\t"
                     "adds r7, r1\n\t"
                     "ldrb r1, [r3, #12]\n\t"
                     "muls r1, r0\n\t"
                     "add r8, r1\n\t"
                     "ldrb r1, [r3, #13]\n\t"
                     "muls r1, r0\n\t"
                     "add r9, r1\n\t"
                     "ldrb r1, [r3, #14]\n\t"
                     "muls r1, r0\n\t"
                     "add r10, r1\n\t"
                     "ldrb r1, [r3, #15]\n\t"
                     "muls r1, r0\n\t"
                     "add r11, r1\n\t"
                     "ldrb r0, [r2, #2]\n\t"
                     "ldrb r1, [r3, #16]\n\t"
                     "muls r1, r0\n\t"
                     "adds r4, r1\n\t"
                     "ldrb r1, [r3, #17]\n\t"
                     "muls r1, r0\n\t"
                     "adds r5, r1\n\t"
                     "ldrb r1, [r3, #18]\n\t"
                     "muls r1, r0\n\t"
                     "adds r6, r1\n\t"
                     "ldrb r1, [r3, #19]\n\t"
                     "muls r1, r0\n\t"
                     "adds r7, r1\n\t"
                     "ldrb r1, [r3, #20]\n\t"
                     "muls r1, r0\n\t"
                     "add r8, r1\n\t"
                     "ldrb r1, [r3, #21]\n\t"
                     "muls r1, r0\n\t"
                     "add r9, r1\n\t"
                     "ldrb r1, [r3, #22]\n\t"
                     "muls r1, r0\n\t"
                     "add r10, r1\n\t"
                     "ldrb r1, [r3, #23]\n\t"
                     "muls r1, r0\n\t"
                     "add r11, r1\n\t"
                     "ldrb r0, [r2, #3]\n\t"
                     "ldrb r1, [r3, #24]\n\t"
                     "muls r1, r0\n\t"
                     "adds r4, r1\n\t"
                     "ldrb r1, [r3, #25]\n\t"
                     "muls r1, r0\n\t"
                     "adds r5, r1\n\t"
                     "ldrb r1, [r3, #26]\n\t"
                     "muls r1, r0\n\t"
                     "adds r6, r1\n\t"
                     "ldrb r1, [r3, #27]\n\t"
                     "muls r1, r0\n\t"
                     "adds r7, r1\n\t"
                     "ldrb r1, [r3, #28]\n\t"
                     "muls r1, r0\n\t"
                     "add r8, r1\n\t"
                     "ldrb r1, [r3, #29]\n\t"
                     "muls r1, r0\n\t"
                     "add r9, r1\n\t"
                     "ldrb r1, [r3, #30]\n\t"
                     "muls r1, r0\n\t"
                     "add r10, r1\n\t"
                     "ldrb r1, [r3, #31]\n\t"
                     "muls r1, r0\n\t"
                     "add r11, r1\n\t"
                     "add r2, lr\n\t"
                     "adds r3, #32\n\t"
                     "cmp r2, r12\n\t"
                     "bne 4b\n\t"
                     "5:\n\t" /* store the sums, channel-major */
                     "ldr r0, [sp, #24]\n\t"
                     "ldr r1, [sp, #28]\n\t"
                     "str r4, [r0]\n\t"
                     "adds r0, r1\n\t"
                     "str r5, [r0]\n\t"
                     "adds r0, r1\n\t"
                     "str r6, [r0]\n\t"
                     "adds r0, r1\n\t"
                     "str r7, [r0]\n\t"
                     "adds r0, r1\n\t"
                     "mov r2, r8\n\t"
                     "str r2, [r0]\n\t"
                     "adds r0, r1\n\t"
                     "mov r2, r9\n\t"
                     "str r2, [r0]\n\t"
                     "adds r0, r1\n\t"
                     "mov r2, r10\n\t"
                     "str r2, [r0]\n\t"
                     "adds r0, r1\n\t"
                     "mov r2, r11\n\t"
                     "str r2, [r0]\n\t"
                     "adds r0, r1\n\t"
                     "ldr r0, [sp, #24]\n\t"
                     "adds r0, #4\n\t"
                     "str r0, [sp, #24]\n\t"
                     "ldr r0, [sp, #4]\n\t"
                     "ldr r1, [sp, #8]\n\t"
                     "adds r0, r1\n\t"
                     "str r0, [sp, #4]\n\t"
                     "ldr r0, [sp, #0]\n\t"
                     "subs r0, #1\n\t"
                     "str r0, [sp, #0]\n\t"
                     "beq 90f\n\t"
                     "b 1b\n\t"
                     "90:\n\t"
                     "add sp, #40\n\t"
                     "pop {r4, r5, r6, r7}\n\t"
                     "mov r8, r4\n\t"
                     "mov r9, r5\n\t"
                     "mov r10, r6\n\t"
                     "mov r11, r7\n\t"
                     "pop {r4, r5, r6, r7, pc}\n\t");
}
#endif

void iq_dot8_rows(const uint8_t* x, const iq_rows_t* rows, const uint8_t* w, int32_t* acc)
{
#if defined(__ARM_ARCH_6M__) && defined(__GNUC__)
    iq_dot8_rows_m0(x, rows, w, acc);
#else
    const int32_t blocks = rows->span / rows->pitch, kw = rows->kw;
    int32_t q, j, b, i;
    for (q = 0; q < rows->npos; ++q, x += rows->step) {
        for (j = 0; j < 8; ++j) {
            uint32_t s = rows->bias[j] - rows->terms[q];
            for (b = 0; b < blocks; ++b) {
                for (i = 0; i < kw; ++i) {
                    s += (uint32_t)x[b * rows->pitch + i] * w[(b * kw + i) * 8 + j];
                }
            }
            acc[j * rows->npos + q] = (int32_t)s;
        }
    }
#endif
}
