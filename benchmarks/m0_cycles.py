"""Cortex-M0 cycles from the executed instruction trace (benchmark helper, not the library).

The library's cost report counts instructions (``intquant.codegen.cost``); a cycle model with
the Cortex-M0 TRM timings is being added to ``codegen/cost.py`` by another change. Until it
lands, the binary benchmark computes cycles here, with the timings of
``../shared/notes/m0-cycles.md`` (no flash wait states):

- data processing, MOV/ADD/SUB/CMP/shifts/extends: 1 (ADD/MOV writing PC: 3)
- LDR/STR/LDRB/LDRSB/LDRH/LDRSH/STRB/STRH: 2
- LDM/STM, PUSH/POP: 1 + N registers (POP with PC: + 2)
- B<cond> taken 3, not taken 1; B 3; BL 4; BX/BLX 3
- MULS 1 with the "fast" multiplier, 32 with the "small" one.

Unicorn ends a translation block at every branch, so a block's cost is static except its last
instruction: a conditional branch is taken exactly when the next block executed does not start
right after it. Cycles are attributed to the op being run (the profiling build's marker) and
to the function containing each block.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from intquant.codegen.toolchain import build_m0, elf_symbols, project_info

MULTIPLIER = {"fast": 1, "small": 32}


@dataclass
class Cost:
    instructions: int = 0
    cycles: int = 0  # with a 1-cycle multiplier
    muls: int = 0

    def total(self, multiplier: str = "fast") -> int:
        return self.cycles + self.muls * (MULTIPLIER[multiplier] - 1)


def _timing(hw: int) -> tuple[int, int, bool, bool]:
    """(size, cycles, is MULS, is B<cond>) of the Thumb instruction starting with ``hw``."""
    if (hw >> 11) in (0x1D, 0x1E, 0x1F):  # 32-bit: BL, MSR, MRS, barriers
        return 4, 4, False, False
    if hw >> 10 == 0x10:  # data processing (op 1101 = MULS)
        return 2, 1, ((hw >> 6) & 0xF) == 0xD, False
    if hw >> 10 == 0x11:  # high-register ADD/CMP/MOV, BX/BLX
        op = (hw >> 8) & 3
        rd = ((hw >> 4) & 8) | (hw & 7)
        return 2, 3 if op == 3 or (op != 1 and rd == 15) else 1, False, False
    if hw >> 11 == 0x09 or hw >> 12 == 0x5 or hw >> 13 == 0x3 or hw >> 12 in (0x8, 0x9):
        return 2, 2, False, False  # loads and stores
    if hw >> 12 == 0xB:  # push / pop / misc
        regs = bin(hw & 0xFF).count("1")
        if (hw >> 9) & 7 == 2:
            return 2, 1 + regs + ((hw >> 8) & 1), False, False
        if (hw >> 9) & 7 == 6:
            pc = (hw >> 8) & 1
            return 2, 1 + regs + 3 * pc, False, False
        return 2, 1, False, False
    if hw >> 12 == 0xC:  # LDM / STM
        return 2, 1 + bin(hw & 0xFF).count("1"), False, False
    if hw >> 12 == 0xD:  # B<cond> (cond 14/15: UDF/SVC)
        return 2, 1, False, ((hw >> 8) & 0xF) < 0xE
    if hw >> 11 == 0x1C:  # B
        return 2, 3, False, False
    return 2, 1, False, False


def block_cost(code: bytes, address: int) -> tuple[int, int, int, int | None]:
    """(instructions, cycles, MULS, fall-through address of a final B<cond> or None)."""
    n = cycles = muls = i = 0
    cond = False
    while i + 1 < len(code):
        size, c, mul, cond = _timing(code[i] | (code[i + 1] << 8))
        n, cycles, muls, i = n + 1, cycles + c, muls + mul, i + size
    return n, cycles, muls, (address + i if cond else None)


@dataclass
class Trace:
    per_op: dict[int, Cost] = field(default_factory=dict)
    per_function: dict[str, Cost] = field(default_factory=dict)
    total: Cost = field(default_factory=Cost)


def trace_model(out_dir: str | os.PathLike, sample: np.ndarray, opt: str = "-O2") -> Trace:
    """Run ``<name>_run`` once on unicorn's Cortex-M0 (profiling build) and cost the trace."""
    from elftools.elf.elffile import ELFFile
    from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_HOOK_CODE, UC_MODE_THUMB, Uc
    from unicorn.arm_const import (
        UC_ARM_REG_LR,
        UC_ARM_REG_R0,
        UC_ARM_REG_R1,
        UC_ARM_REG_SP,
        UC_CPU_ARM_CORTEX_M0,
    )

    info = project_info(out_dir)
    build = build_m0(out_dir, sample[None], profile=True, opt=opt)
    syms = elf_symbols(build.elf)
    funcs = sorted((addr & ~1, size, name) for name, typ, addr, size in syms
                   if typ in "tTwW" and size)
    starts = [f[0] for f in funcs]

    def function_of(address: int) -> str:
        k = bisect_right(starts, address) - 1
        return funcs[k][2] if k >= 0 and address < funcs[k][0] + funcs[k][1] else "?"

    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB)
    uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M0)
    uc.mem_map(0, 4 * 2**20)
    uc.mem_map(0x20000000, build.ram_size)
    io = 0x30000000
    in_bytes = int(np.prod(info.input_shape)) * info.input_dtype.itemsize
    uc.mem_map(io, 0x10000)
    ret = 0x3FFF0000
    uc.mem_map(ret, 0x1000)
    with open(build.elf, "rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_filesz"]:
                uc.mem_write(seg["p_paddr"], seg.data())
                uc.mem_write(seg["p_vaddr"], seg.data())
    trace = Trace()
    blocks: dict[int, tuple[tuple[int, int, int, int | None], str]] = {}
    state = {"op": -1, "pending": None}

    def charge(op: int, fn: str, n: int, cycles: int, muls: int) -> None:
        for cost in (trace.total, trace.per_op.setdefault(op, Cost()),
                     trace.per_function.setdefault(fn, Cost())):
            cost.instructions += n
            cost.cycles += cycles
            cost.muls += muls

    def on_block(uc_, address, size, _user):
        pending = state["pending"]
        if pending is not None and address != pending[0]:
            charge(pending[1], pending[2], 0, 2, 0)  # the B<cond> was taken: 3 cycles, not 1
        hit = blocks.get(address)
        if hit is None:
            hit = blocks[address] = (block_cost(bytes(uc_.mem_read(address, size)), address),
                                     function_of(address))
        (n, cycles, muls, fall), fn = hit
        charge(state["op"], fn, n, cycles, muls)
        state["pending"] = None if fall is None else (fall, state["op"], fn)

    uc.hook_add(UC_HOOK_BLOCK, on_block)
    mark = next(addr for name, _, addr, _ in syms if name == "iq_profile_mark") & ~1

    def on_mark(uc_, _address, _size, _user):
        state["op"] = int(np.int32(np.uint32(uc_.reg_read(UC_ARM_REG_R0))))

    uc.hook_add(UC_HOOK_CODE, on_mark, begin=mark, end=mark)
    fn_addr = next(addr for name, _, addr, _ in syms if name == f"{info.name}_run")
    uc.mem_write(io, sample.tobytes())
    uc.reg_write(UC_ARM_REG_R0, io)
    uc.reg_write(UC_ARM_REG_R1, io + ((in_bytes + 7) & ~7))
    uc.reg_write(UC_ARM_REG_SP, 0x20000000 + build.ram_size)
    uc.reg_write(UC_ARM_REG_LR, ret | 1)
    uc.emu_start(fn_addr | 1, ret, timeout=300 * 10**6)
    return trace
