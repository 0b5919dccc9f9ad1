"""RV32IM (no FPU, no compressed instructions): riscv64-unknown-elf-gcc ``-march=rv32im
-mabi=ilp32`` with picolibc's headers and string functions, run under ``qemu-riscv32`` (user
mode); instructions counted by unicorn's RV32 model. The harness is freestanding (see
qemu_user.py): ``_start`` sets the global pointer and calls main; I/O is the Linux ``ecall``.
"""

from __future__ import annotations

from .qemu_user import QemuUserTarget, UnicornCpu

PICOLIBC = "/usr/lib/picolibc/riscv64-unknown-elf"

STARTUP_C = r"""/* RV32 start-up for QEMU user mode: global pointer, main, exit; Linux syscalls. */
#include <stdint.h>

int main(void);
long iqh_read(void* buf, long n);
long iqh_write(const void* buf, long n);
void iqh_start(void);

static long iqh_syscall3(long number, long a, long b, long c)
{
    register long a0 __asm__("a0") = a;
    register long a1 __asm__("a1") = b;
    register long a2 __asm__("a2") = c;
    register long a7 __asm__("a7") = number;
    __asm__ volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a7) : "memory");
    return a0;
}

long iqh_read(void* buf, long n)
{
    return iqh_syscall3(63, 0, (long)buf, n); /* read(0, buf, n) */
}

long iqh_write(const void* buf, long n)
{
    return iqh_syscall3(64, 1, (long)buf, n); /* write(1, buf, n) */
}

void iqh_start(void)
{
    (void)iqh_syscall3(93, main(), 0, 0); /* exit(main()) */
    for (;;) {
    }
}

__asm__(".section .text._start,\"ax\",@progbits\n"
        ".global _start\n"
        "_start:\n"
        ".option push\n"
        ".option norelax\n"
        "    la gp, __global_pointer$\n"
        ".option pop\n"
        "    andi sp, sp, -16\n"
        "    call iqh_start\n");
"""


class Riscv32Target(QemuUserTarget):
    name = "riscv32"
    summary = (
        "RV32IM, ilp32, no FPU: riscv64-unknown-elf-gcc + picolibc, QEMU user mode "
        "(qemu-riscv32), unicorn for instruction counts"
    )
    byte_order = "<"
    cc = "riscv64-unknown-elf-gcc"
    nm = "riscv64-unknown-elf-nm"
    qemu = "qemu-riscv32"
    libc_header = f"{PICOLIBC}/include/string.h"
    flags = ("-march=rv32im", "-mabi=ilp32", "-isystem", f"{PICOLIBC}/include")
    libs = (f"-L{PICOLIBC}/lib/rv32im/ilp32", "-lc", "-lgcc")
    startup_c = STARTUP_C
    machine = "QEMU user mode, qemu-riscv32 (RV32IM)"

    def unicorn_cpu(self) -> UnicornCpu:
        from unicorn import UC_ARCH_RISCV, UC_MODE_RISCV32
        from unicorn.riscv_const import (
            UC_RISCV_REG_A0,
            UC_RISCV_REG_A1,
            UC_RISCV_REG_GP,
            UC_RISCV_REG_RA,
            UC_RISCV_REG_SP,
        )

        return UnicornCpu(
            UC_ARCH_RISCV,
            UC_MODE_RISCV32,
            (UC_RISCV_REG_A0, UC_RISCV_REG_A1),
            UC_RISCV_REG_SP,
            UC_RISCV_REG_RA,
            ((UC_RISCV_REG_GP, "__global_pointer$"),),
        )
