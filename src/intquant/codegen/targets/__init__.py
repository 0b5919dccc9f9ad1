"""The targets the generated C is proven on: one module per target (toolchain, harness,
emulator), never any target code in the model library.

    host           this machine's gcc and the generated host driver
    cortex-m0      arm-none-eabi-gcc, QEMU micro:bit, unicorn (instructions)
    cortex-m0plus  the same, -mcpu=cortex-m0plus
    avr            avr-gcc + avr-libc, simavr ATmega2560 (cycles)
    riscv32        RV32IM: riscv64-unknown-elf-gcc + picolibc, qemu-riscv32, unicorn
    powerpc        32-bit big-endian PowerPC: powerpc-linux-gnu-gcc, qemu-ppc, unicorn

``scripts/install_toolchain.sh`` installs each toolchain from Debian packages; a missing tool
fails with one line naming the command that installs it.
"""

from __future__ import annotations

from .avr import AvrTarget
from .base import Target, TargetBuild, TargetCost
from .cortex_m import CortexM
from .host import HostTarget
from .powerpc import PowerPCTarget
from .riscv32 import Riscv32Target

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        HostTarget(),
        CortexM("cortex-m0"),
        CortexM("cortex-m0plus"),
        AvrTarget(),
        Riscv32Target(),
        PowerPCTarget(),
    )
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; choose one of: {', '.join(TARGETS)}")
    return TARGETS[name]


__all__ = ["TARGETS", "Target", "TargetBuild", "TargetCost", "get_target"]
