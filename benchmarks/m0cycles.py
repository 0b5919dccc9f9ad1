"""A small Cortex-M0 cycle model for the benchmarks (TRM timings on the executed trace).

Until the project's own cycle model (codegen/cost.py) lands on this branch, benchmarks/lowbit.py
counts cycles with this one: the generated project is built for Cortex-M0 (the same build as
``intquant.codegen.toolchain.emulate_unicorn``), run on unicorn, and every executed translation
block is priced with the Cortex-M0 TRM timings, no flash wait states:
data processing 1; loads/stores 2; LDM/STM/PUSH/POP 1 + N (POP with PC +2 more); B<cond>
3 taken, 1 not taken; B 3; BL 4; BX/BLX 3; MULS 1 ("fast" multiplier) or 32 ("small").
A block ends at every branch, so only its last instruction's cost depends on the trace: a
conditional branch is taken exactly when the next block does not start at the fall-through.
Cycles are returned per op (profile markers) as (instructions, cycles_fast, cycles_small).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intquant.codegen import toolchain as tc

SMALL_MUL = 32


@dataclass(frozen=True)
class _Block:
    instructions: int
    cycles: int  # fast multiplier, final conditional branch not taken
    muls: int
    fall_through: int | None


def _decode(hw: int) -> tuple[int, int, bool, bool]:
    """(size, cycles, is MULS, is B<cond>) of the Thumb instruction starting with ``hw``."""
    if (hw >> 11) in (0x1D, 0x1E, 0x1F):
        return 4, 4, False, False  # BL (and MSR/MRS/barriers: 4 as well)
    if hw >> 10 == 0x10:
        return 2, 1, ((hw >> 6) & 0xF) == 0xD, False
    if hw >> 10 == 0x11:
        op = (hw >> 8) & 3
        rd = ((hw >> 4) & 8) | (hw & 7)
        return 2, 3 if op == 3 or (op != 1 and rd == 15) else 1, False, False
    if hw >> 11 == 0x09 or hw >> 12 == 0x5 or hw >> 13 == 0x3 or hw >> 12 in (0x8, 0x9):
        return 2, 2, False, False
    n = bin(hw & 0xFF).count("1")
    if hw >> 12 == 0xB:
        if (hw >> 9) & 7 == 2:
            return 2, 1 + n + ((hw >> 8) & 1), False, False
        if (hw >> 9) & 7 == 6:
            pc = (hw >> 8) & 1
            return 2, 1 + n + 3 * pc, False, False
        return 2, 1, False, False
    if hw >> 12 == 0xC:
        return 2, 1 + n, False, False
    if hw >> 12 == 0xD:
        return 2, 1, False, ((hw >> 8) & 0xF) < 0xE
    if hw >> 11 == 0x1C:
        return 2, 3, False, False
    return 2, 1, False, False


def _block(code: bytes, address: int) -> _Block:
    n = cycles = muls = i = 0
    cond = False
    while i + 1 < len(code):
        size, c, mul, cond = _decode(code[i] | (code[i + 1] << 8))
        n, cycles, muls, i = n + 1, cycles + c, muls + mul, i + size
    return _Block(n, cycles, muls, address + i if cond else None)


def m0_cycles(out_dir: str | Path, x: np.ndarray, by_function: bool = False,
              by_block: bool = False) -> dict[int | str, tuple[int, int, int]]:
    """Per op index (−1: outside ops; with ``by_function``: per function name, ``by_block``:
    per translation block address): (instructions, cycles fast, cycles small), one sample."""
    from elftools.elf.elffile import ELFFile
    from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_HOOK_CODE, UC_MODE_THUMB, Uc
    from unicorn.arm_const import (
        UC_ARM_REG_LR,
        UC_ARM_REG_R0,
        UC_ARM_REG_R1,
        UC_ARM_REG_SP,
        UC_CPU_ARM_CORTEX_M0,
    )

    info = tc.project_info(out_dir)
    x = np.asarray(x, dtype=info.input_dtype).reshape((1, *info.input_shape))
    build = tc.build_m0(out_dir, x, profile=True)
    syms = {name: addr for name, _, addr, _ in tc.elf_symbols(build.elf)}
    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB)
    uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M0)
    uc.mem_map(0, 4 * 1024 * 1024)
    uc.mem_map(0x20000000, build.ram_size)
    in_bytes = x[0].nbytes
    uc.mem_map(tc.IO_BASE, 0x10000 + ((in_bytes + 0xFFFF) & ~0xFFFF))
    uc.mem_map(tc.RETURN_ADDR, 0x1000)
    with open(build.elf, "rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_filesz"]:
                uc.mem_write(seg["p_paddr"], seg.data())
                uc.mem_write(seg["p_vaddr"], seg.data())
    funcs = sorted((addr & ~1, size, name) for name, typ, addr, size in tc.elf_symbols(build.elf)
                   if typ in "tT" and size > 0)

    def function_of(address: int) -> str:
        for start, size, name in funcs:
            if start <= address < start + size:
                return name
        return "?"

    blocks: dict[int, _Block] = {}
    names: dict[int, str] = {}
    tally: dict[int, list[int]] = {}
    state = {"op": -1, "pending": None}

    def on_block(uc_, address, size, _user):
        pend = state["pending"]
        if pend is not None and address != pend[0]:
            pend[1][1] += 2  # the previous block's conditional branch was taken
        b = blocks.get(address)
        if b is None:
            b = blocks[address] = _block(bytes(uc_.mem_read(address, size)), address)
        key = address if by_block else state["op"]
        if by_function:
            key = names.get(address) or names.setdefault(address, function_of(address))
        t = tally.setdefault(key, [0, 0, 0])
        t[0] += b.instructions
        t[1] += b.cycles
        t[2] += b.muls
        state["pending"] = None if b.fall_through is None else (b.fall_through, t)

    def on_mark(uc_, _address, _size, _user):
        state["op"] = int(np.int32(np.uint32(uc_.reg_read(UC_ARM_REG_R0))))

    uc.hook_add(UC_HOOK_BLOCK, on_block)
    mark = syms["iq_profile_mark"] & ~1
    uc.hook_add(UC_HOOK_CODE, on_mark, begin=mark, end=mark)
    uc.mem_write(tc.IO_BASE, x[0].tobytes())
    uc.reg_write(UC_ARM_REG_R0, tc.IO_BASE)
    uc.reg_write(UC_ARM_REG_R1, tc.IO_BASE + ((in_bytes + 7) & ~7))
    uc.reg_write(UC_ARM_REG_SP, 0x20000000 + build.ram_size)
    uc.reg_write(UC_ARM_REG_LR, tc.RETURN_ADDR | 1)
    uc.emu_start(syms[f"{info.name}_run"] | 1, tc.RETURN_ADDR, timeout=300 * 1000 * 1000)
    return {op: (n, c, c + m * (SMALL_MUL - 1)) for op, (n, c, m) in tally.items()}
