"""Big-endian 32-bit PowerPC without FPU use: powerpc-linux-gnu-gcc ``-mcpu=powerpc
-msoft-float`` (headers from Debian's glibc cross package, no glibc code linked), run under
``qemu-ppc`` (user mode); instructions counted by unicorn's PPC32 big-endian model.

Why PowerPC: it is the big-endian core family still shipped in FPU-less MCUs (e200z0 in NXP's
MPC56xx), with 32-bit ``int`` and pointers like the other MCU targets; Debian has its cross
gcc and QEMU user mode (measured: 37 MB download, about as cheap as s390x's 34 MB, which is a
64-bit mainframe ISA). The freestanding harness brings its own ``memcpy``/``memmove``/
``memset`` (glibc's are selected at start-up by IFUNC, which a freestanding image never runs).
"""

from __future__ import annotations

from .qemu_user import QemuUserTarget, UnicornCpu

STARTUP_C = r"""/* PowerPC (32-bit, big-endian) start-up for QEMU user mode: stack frame,
 * main, exit; Linux system calls; the string functions the library and gcc may call. */
#include <stddef.h>
#include <stdint.h>

int main(void);
long iqh_read(void* buf, long n);
long iqh_write(const void* buf, long n);
void iqh_start(void);
void* memcpy(void* dst, const void* src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
void* memset(void* dst, int value, size_t n);

/* r0 = number, r3.. = arguments; on error the kernel sets CR0.SO and r3 = errno. */
static long iqh_syscall3(long number, long a, long b, long c)
{
    register long r0 __asm__("r0") = number;
    register long r3 __asm__("r3") = a;
    register long r4 __asm__("r4") = b;
    register long r5 __asm__("r5") = c;
    __asm__ volatile("sc\n\tbns+ 1f\n\tneg 3,3\n1:"
                     : "+r"(r3), "+r"(r0), "+r"(r4), "+r"(r5)
                     :
                     : "memory", "cr0", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "ctr",
                       "xer");
    return r3;
}

long iqh_read(void* buf, long n)
{
    return iqh_syscall3(3, 0, (long)buf, n); /* read(0, buf, n) */
}

long iqh_write(const void* buf, long n)
{
    return iqh_syscall3(4, 1, (long)buf, n); /* write(1, buf, n) */
}

void iqh_start(void)
{
    (void)iqh_syscall3(1, main(), 0, 0); /* exit(main()) */
    for (;;) {
    }
}

void* memcpy(void* dst, const void* src, size_t n)
{
    uint8_t* d = (uint8_t*)dst;
    const uint8_t* s = (const uint8_t*)src;
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

void* memmove(void* dst, const void* src, size_t n)
{
    uint8_t* d = (uint8_t*)dst;
    const uint8_t* s = (const uint8_t*)src;
    if (d < s) {
        while (n--) {
            *d++ = *s++;
        }
    } else {
        d += n;
        s += n;
        while (n--) {
            *--d = *--s;
        }
    }
    return dst;
}

void* memset(void* dst, int value, size_t n)
{
    uint8_t* d = (uint8_t*)dst;
    while (n--) {
        *d++ = (uint8_t)value;
    }
    return dst;
}

__asm__(".section .text._start,\"ax\",@progbits\n"
        ".global _start\n"
        "_start:\n"
        "    clrrwi 1, 1, 4\n"
        "    li 0, 0\n"
        "    stwu 1, -16(1)\n"
        "    stw 0, 0(1)\n"
        "    bl iqh_start\n");
"""


class PowerPCTarget(QemuUserTarget):
    name = "powerpc"
    summary = (
        "32-bit PowerPC, big-endian, soft-float ABI: powerpc-linux-gnu-gcc, QEMU user mode "
        "(qemu-ppc), unicorn for instruction counts"
    )
    byte_order = ">"
    cc = "powerpc-linux-gnu-gcc"
    nm = "powerpc-linux-gnu-nm"
    qemu = "qemu-ppc"
    libc_header = "/usr/powerpc-linux-gnu/include/string.h"
    # -fno-tree-loop-distribute-patterns: gcc must not turn the harness's memset loop into a
    # call to memset itself; -msdata=none: no small-data register to set up.
    flags = ("-mcpu=powerpc", "-msoft-float", "-msdata=none", "-fno-tree-loop-distribute-patterns")
    libs = ("-lgcc",)
    startup_c = STARTUP_C
    machine = "QEMU user mode, qemu-ppc (32-bit PowerPC, big-endian)"

    def unicorn_cpu(self) -> UnicornCpu:
        from unicorn import UC_ARCH_PPC, UC_MODE_BIG_ENDIAN, UC_MODE_PPC32
        from unicorn.ppc_const import UC_PPC_REG_1, UC_PPC_REG_3, UC_PPC_REG_4, UC_PPC_REG_LR

        return UnicornCpu(
            UC_ARCH_PPC,
            UC_MODE_PPC32 | UC_MODE_BIG_ENDIAN,
            (UC_PPC_REG_3, UC_PPC_REG_4),
            UC_PPC_REG_1,
            UC_PPC_REG_LR,
        )
