"""Targets run as freestanding images under QEMU user mode (RV32IM, big-endian PowerPC).

The image has no C library start-up and no stdio: ``_start`` (per target, in its module) calls
``main``, which reads raw input samples from file descriptor 0 and writes raw outputs to file
descriptor 1 through the Linux system-call instruction (``ecall`` / ``sc``), in the target's
byte order. So one build serves any number of samples, and the same image runs under unicorn:
there ``<name>_run`` is called directly, its instructions counted and its stack measured.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..toolchain import (
    WARN,
    ToolchainError,
    UnicornCall,
    _check_inputs,
    _run,
    call_each_sample,
    elf_symbols,
    project_info,
    require,
    soft_float_symbols,
)
from .base import (
    Target,
    TargetBuild,
    TargetCost,
    from_target_bytes,
    library_footprint,
    to_target_bytes,
)

MAIN_C = r"""/* QEMU user-mode test main for {name} (not part of the model library): raw
 * input samples ({name}_input_t x {up}_INPUT_SIZE, target byte order) on fd 0 until EOF, each
 * raw output on fd 1. Exit code 0, 2 (the model returned an error), 3 (a partial sample),
 * 4 (write failed). */
#include <stdint.h>
#include "{name}.h"

long iqh_read(void* buf, long n);        /* system calls: the target's start-up file */
long iqh_write(const void* buf, long n);

static {name}_input_t iqh_in[{up}_INPUT_SIZE];
static {name}_output_t iqh_out[{up}_OUTPUT_SIZE];
volatile int32_t iqh_profile_op;

/* Called between ops in profiling builds (-DIQ_PROFILE); the emulator hooks its address. */
__attribute__((noinline)) void iq_profile_mark(int32_t op)
{{
    iqh_profile_op = op;
}}

static long iqh_read_full(uint8_t* p, long n)
{{
    long got = 0;
    while (got < n) {{
        long r = iqh_read(p + got, n - got);
        if (r <= 0) {{
            break;
        }}
        got += r;
    }}
    return got;
}}

static int iqh_write_full(const uint8_t* p, long n)
{{
    while (n > 0) {{
        long w = iqh_write(p, n);
        if (w <= 0) {{
            return 0;
        }}
        p += w;
        n -= w;
    }}
    return 1;
}}

int main(void)
{{
    long got;
    while ((got = iqh_read_full((uint8_t*)iqh_in, (long)sizeof(iqh_in))) == (long)sizeof(iqh_in)) {{
        if ({name}_run(iqh_in, iqh_out) != 0) {{
            return 2;
        }}
        if (!iqh_write_full((const uint8_t*)iqh_out, (long)sizeof(iqh_out))) {{
            return 4;
        }}
    }}
    return got == 0 ? 0 : 3;
}}
"""


@dataclass(frozen=True)
class UnicornCpu:
    """How unicorn runs one function of the image: arch, mode, registers of the call ABI."""

    arch: int
    mode: int
    args: tuple[int, int]  # registers of the first two arguments
    sp: int
    ret: int  # link register / return-address register
    extra: tuple[tuple[int, str], ...] = ()  # registers set to a symbol's address (gp)
    insn_bytes: int = 4  # fixed-width instruction set


# Where unicorn puts the stack, the input/output buffers and the return address: above any
# address the default linker scripts use for user-mode images.
STACK_TOP = 0x7F000000
STACK_SIZE = 0x10000
IO_BASE = 0x70000000
RETURN_ADDR = 0x7FFF0000
PAGE = 0x1000


class QemuUserTarget(Target):
    """Shared build / run / cost of the user-mode targets; subclasses give the specifics."""

    cc: str
    qemu: str
    libc_header: str  # a file of the C library headers the target compiles against
    flags: tuple[str, ...]
    libs: tuple[str, ...] = ("-lgcc",)
    startup_c: str
    machine: str

    @property
    def tools(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.cc, self.nm, self.qemu, self.libc_header)

    def unicorn_cpu(self) -> UnicornCpu:
        raise NotImplementedError

    # -- build --------------------------------------------------------------------------------
    def build(
        self,
        out_dir: str | os.PathLike,
        inputs: np.ndarray | None = None,
        opt: str = "-O2",
        *,
        profile: bool = False,
    ) -> TargetBuild:
        info = project_info(out_dir)
        self.require_tools()
        build = info.out_dir / "build" / f"{self.name}{opt.lstrip('-')}{'-prof' if profile else ''}"
        build.mkdir(parents=True, exist_ok=True)
        up = info.name.upper()
        (build / "main.c").write_text(MAIN_C.format(name=info.name, up=up))
        (build / "start.c").write_text(self.startup_c)
        srcs = [str(info.out_dir / s) for s in info.library_sources]
        srcs += [str(build / "main.c"), str(build / "start.c")]
        elf = build / f"{info.name}.elf"
        cmd = [
            require(self.cc),
            *self.flags,
            "-std=c99",
            opt,
            *WARN,
            "-ffreestanding",
            "-ffunction-sections",
            "-fdata-sections",
            *(["-DIQ_PROFILE"] if profile else []),
            "-I",
            str(info.out_dir),
            "-nostdlib",
            "-nostartfiles",
            "-static",
            "-Wl,--gc-sections",
            "-o",
            str(elf),
            *srcs,
            "-Wl,--start-group",
            *self.libs,
            "-Wl,--end-group",
        ]
        _run(cmd)
        return TargetBuild(self.name, elf, soft_float_symbols(elf, self.nm), self.machine)

    # -- run under QEMU user mode ---------------------------------------------------------------
    def run(self, out_dir: str | os.PathLike, inputs: np.ndarray, opt: str = "-O2") -> np.ndarray:
        info = project_info(out_dir)
        x = _check_inputs(info, inputs)
        return self._qemu(self.build(out_dir, x, opt), info, x)

    def _qemu(self, b: TargetBuild, info: Any, x: np.ndarray) -> np.ndarray:
        """Outputs of the image under QEMU user mode (a soft-float helper in it is an error)."""
        if b.soft_float:
            raise ToolchainError(f"{b.elf} links soft-float helpers: {b.soft_float}")
        res = subprocess.run(
            [require(self.qemu), str(b.elf)],
            input=to_target_bytes(x, self.byte_order),
            capture_output=True,
            timeout=600,
        )
        if res.returncode != 0:
            err = res.stderr.decode(errors="replace")[-2000:]
            raise ToolchainError(f"{self.qemu} {b.elf} exited with {res.returncode}: {err}")
        return from_target_bytes(res.stdout, info, x.shape[0], self.byte_order)

    # -- cost under unicorn ---------------------------------------------------------------------
    def cost(self, out_dir: str | os.PathLike, inputs: np.ndarray, opt: str = "-O2") -> TargetCost:
        info = project_info(out_dir)
        x = _check_inputs(info, inputs)
        plain = self.build(out_dir, x, opt)
        prof = self.build(out_dir, x, opt, profile=True)
        outs, counts, _, stack = self.emulate(plain.elf, info, x)
        if not np.array_equal(outs, self._qemu(plain, info, x)):  # unicorn and QEMU must agree
            raise ToolchainError(f"unicorn and {self.qemu} disagree on the outputs of {plain.elf}")
        _, _, per_op, _ = self.emulate(prof.elf, info, x[:1], profile=True)
        flash, ram = library_footprint(plain.elf, self.nm)
        return TargetCost(
            machine=f"{self.machine}; counts: unicorn",
            flash_bytes=flash,
            static_ram_bytes=ram,
            stack_bytes=stack,
            counter="instructions",
            per_inference=counts,
            per_op=per_op[0],
        )

    def emulate(
        self, elf: Path, info: Any, x: np.ndarray, profile: bool = False
    ) -> tuple[np.ndarray, list[int], list[dict[int, int]], int]:
        """Call ``<name>_run`` once per sample on unicorn: (outputs, instructions per sample,
        per-op instructions per sample (profile builds), deepest stack in bytes)."""
        from elftools.elf.elffile import ELFFile
        from unicorn import Uc

        cpu = self.unicorn_cpu()
        uc = Uc(cpu.arch, cpu.mode)
        with open(elf, "rb") as f:
            for seg in ELFFile(f).iter_segments():
                if seg["p_type"] != "PT_LOAD" or not seg["p_memsz"]:
                    continue
                lo = seg["p_vaddr"] & ~(PAGE - 1)
                hi = (seg["p_vaddr"] + seg["p_memsz"] + PAGE - 1) & ~(PAGE - 1)
                uc.mem_map(lo, hi - lo)
                uc.mem_write(seg["p_vaddr"], seg.data())
        in_bytes = int(np.prod(info.input_shape)) * info.input_dtype.itemsize
        out_bytes = int(np.prod(info.output_shape)) * info.output_dtype.itemsize
        out_addr = IO_BASE + ((in_bytes + 15) & ~15)
        uc.mem_map(IO_BASE, (out_addr - IO_BASE + out_bytes + PAGE - 1) & ~(PAGE - 1))
        uc.mem_map(STACK_TOP - STACK_SIZE, STACK_SIZE)
        uc.mem_map(RETURN_ADDR, PAGE)
        syms = {name: addr for name, _, addr, _ in elf_symbols(elf, self.nm)}
        call = UnicornCall(
            entry=syms[f"{info.name}_run"],
            args=cpu.args,
            sp=cpu.sp,
            ret=cpu.ret,
            in_addr=IO_BASE,
            out_addr=out_addr,
            out_bytes=out_bytes,
            probe=(STACK_TOP - STACK_SIZE, STACK_TOP),
            sp_value=STACK_TOP - 16,  # 16-byte aligned; room for a back chain
            return_addr=RETURN_ADDR,
            extra=tuple((reg, syms[sym]) for reg, sym in cpu.extra),
        )
        samples = [to_target_bytes(s, self.byte_order) for s in x]
        mark = syms["iq_profile_mark"] if profile else None
        outs, counts, per_ops, stack = call_each_sample(
            uc, call, samples, lambda _uc, _addr, size: size // cpu.insn_bytes, mark
        )
        if stack >= STACK_SIZE - 16:
            raise ToolchainError(f"{elf}: the stack probe ({STACK_SIZE} B) overflowed")
        out = from_target_bytes(b"".join(outs), info, x.shape[0], self.byte_order)
        return out, counts, per_ops, stack
