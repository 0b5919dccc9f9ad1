"""Cortex-M0 and Cortex-M0+ (ARMv6-M): arm-none-eabi-gcc, QEMU micro:bit, unicorn.

The harness (startup, linker scripts, semihosting main) is ``codegen/m0.py``, written into the
project's ``m0/`` folder by export. Both cores run the same instruction set, so the M0+ build
(``-mcpu=cortex-m0plus``) runs on QEMU's micro:bit and unicorn's Cortex-M0 model too; the cost
is counted in instructions (unicorn), with cycles from the executed trace and the Cortex-M0's
timings (cycles.py; the M0+'s two-stage pipeline takes a cycle less per taken branch).
"""

from __future__ import annotations

import os

import numpy as np

from .. import toolchain
from .base import Target, TargetBuild, TargetCost, library_footprint


class CortexM(Target):
    byte_order = "<"
    nm = toolchain.ARM_NM
    tools = (
        toolchain.ARM_CC,
        toolchain.ARM_NM,
        toolchain.QEMU,
        "/usr/lib/arm-none-eabi/include/string.h",
    )

    def __init__(self, cpu: str) -> None:
        self.name = cpu
        self.cpu = cpu
        self.summary = (
            f"{cpu} (ARMv6-M, no FPU): arm-none-eabi-gcc -mcpu={cpu}, QEMU micro:bit "
            "(MPS2 AN385 if it needs more than 16 KB of RAM), unicorn for instruction counts"
        )

    @staticmethod
    def _machine(build: toolchain.M0Build) -> str:
        if build.board == "microbit":
            return "QEMU micro:bit (nRF51, 16 KB RAM)"
        return "QEMU MPS2 AN385 (4 MB RAM)"

    def build(self, out_dir: str | os.PathLike, inputs: np.ndarray, opt: str) -> TargetBuild:
        self.require_tools()
        b = toolchain.build_m0(out_dir, inputs, opt=opt, cpu=self.cpu)
        return TargetBuild(self.name, b.elf, b.soft_float, self._machine(b))

    def run(self, out_dir: str | os.PathLike, inputs: np.ndarray, opt: str) -> np.ndarray:
        self.require_tools()
        return toolchain.run_on_m0(out_dir, inputs, "qemu", opt=opt, cpu=self.cpu)

    def cost(self, out_dir: str | os.PathLike, inputs: np.ndarray, opt: str) -> TargetCost:
        self.require_tools()
        plain = toolchain.emulate_unicorn(out_dir, inputs, opt=opt, cpu=self.cpu)
        prof = toolchain.emulate_unicorn(out_dir, inputs[:1], profile=True, opt=opt, cpu=self.cpu)
        flash, ram = library_footprint(plain.build.elf, toolchain.ARM_NM)
        return TargetCost(
            machine=self._machine(plain.build),
            flash_bytes=flash,
            static_ram_bytes=ram,
            stack_bytes=plain.stack_bytes,
            counter="instructions",
            per_inference=list(plain.instructions),
            per_op=prof.per_op[0],
            traces=plain.traces,
            profile_trace=prof.traces[0],
        )
