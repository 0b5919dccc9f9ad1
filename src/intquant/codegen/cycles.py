"""Cortex-M0 cycle model: ARMv6-M instruction timings applied to an executed trace.

Instruction counts (unicorn) are deterministic but treat a 2-cycle load, a 4-cycle BL and a
1-cycle add alike; on an M0 the difference decides which kernel is faster. This module turns
the trace into cycles with the timings of the Cortex-M0 Technical Reference Manual (table
"Cortex-M0 instruction summary"), for a system without flash wait states:

- data processing, MOV/ADD/SUB/CMP/shifts/extends/REV: 1; ADD or MOV writing PC: 3
- every load and store (LDR/STR/LDRB/LDRSB/LDRH/LDRSH/STRB/STRH, any addressing): 2
- LDM/STM/PUSH/POP: 1 + N registers; POP with PC: 1 + N + 2 (it is a branch)
- B<cond>: 3 taken, 1 not taken; B: 3; BL: 4; BX/BLX: 3
- MULS: 1 with the "fast" (single-cycle) multiplier, 32 with the "small" iterative one;
  silicon vendors choose one when they integrate the core
- DMB/DSB/ISB, MRS, MSR: 4

A unicorn translation block ends at every branch, so a block's cost is static except for its
last instruction: a conditional branch is taken exactly when the next block executed does
not start at the fall-through address. `TraceCounter.on_block` applies that rule.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

MULTIPLIER_CYCLES = {"fast": 1, "small": 32}
TAKEN_EXTRA = 2  # a taken conditional branch costs 3 instead of 1


def check_multiplier(multiplier: str) -> int:
    if multiplier not in MULTIPLIER_CYCLES:
        raise ValueError(f"multiplier must be 'fast' or 'small', got {multiplier!r}")
    return MULTIPLIER_CYCLES[multiplier]


@dataclass(frozen=True)
class Instr:
    """One decoded instruction: byte size, cycles with a 1-cycle multiplier (a conditional
    branch counted as not taken), whether it is a MULS and whether it is a B<cond>."""

    size: int
    cycles: int
    mul: bool = False
    cond_branch: bool = False


def _is_32bit(hw: int) -> bool:
    return (hw >> 11) in (0x1D, 0x1E, 0x1F)


def _reglist_count(hw: int) -> int:
    return bin(hw & 0xFF).count("1")


def decode(hw: int) -> Instr:
    """Timing class of the Thumb instruction whose first halfword is ``hw``."""
    if _is_32bit(hw):
        # ARMv6-M's 32-bit encodings: BL (4 cycles), MSR, MRS, DMB, DSB, ISB (4 each).
        return Instr(4, 4)
    top5 = hw >> 11
    if hw >> 10 == 0x10:  # 010000: data processing; op 1101 is MULS
        return Instr(2, 1, mul=((hw >> 6) & 0xF) == 0xD)
    if hw >> 10 == 0x11:  # 010001: ADD/CMP/MOV on high registers, BX/BLX
        op = (hw >> 8) & 3
        if op == 3:
            return Instr(2, 3)  # BX / BLX
        rd = ((hw >> 4) & 8) | (hw & 7)
        return Instr(2, 3 if (op != 1 and rd == 15) else 1)
    if top5 == 0x09 or hw >> 12 == 0x5 or hw >> 13 == 0x3 or hw >> 12 in (0x8, 0x9):
        return Instr(2, 2)  # LDR literal, register-offset, immediate-offset, SP-relative
    if hw >> 12 == 0xB:  # 1011: miscellaneous
        if (hw >> 9) & 0x7 == 0x2:  # 1011 010R: PUSH
            return Instr(2, 1 + _reglist_count(hw) + ((hw >> 8) & 1))
        if (hw >> 9) & 0x7 == 0x6:  # 1011 110P: POP
            pc = (hw >> 8) & 1
            return Instr(2, 1 + _reglist_count(hw) + pc + 2 * pc)
        return Instr(2, 1)  # ADD/SUB SP, extends, REV, CPS, hints, BKPT
    if hw >> 12 == 0xC:  # LDM / STM
        return Instr(2, 1 + _reglist_count(hw))
    if hw >> 12 == 0xD:  # B<cond>, UDF, SVC
        cond = (hw >> 8) & 0xF
        return Instr(2, 1, cond_branch=cond < 0xE)
    if top5 == 0x1C:  # B
        return Instr(2, 3)
    return Instr(2, 1)  # shifts, add/sub, mov/cmp/add/sub immediate, ADR, ADD SP


@dataclass(frozen=True)
class BlockCost:
    """Static cost of one translation block: instructions, cycles (1-cycle multiplier,
    conditional branch not taken), MULS count, and the conditional-branch fall-through."""

    instructions: int
    cycles: int
    muls: int
    fall_through: int | None  # address after a final B<cond>, else None


def block_cost(code: bytes, address: int) -> BlockCost:
    n = cycles = muls = 0
    i = 0
    last: Instr | None = None
    while i + 1 < len(code):
        hw = code[i] | (code[i + 1] << 8)
        last = decode(hw)
        n += 1
        cycles += last.cycles
        muls += last.mul
        i += last.size
    fall = address + i if last is not None and last.cond_branch else None
    return BlockCost(n, cycles, muls, fall)


@dataclass
class Tally:
    """Instructions, cycles with a 1-cycle multiplier (taken branches included) and MULS."""

    instructions: int = 0
    base_cycles: int = 0
    muls: int = 0

    def cycles(self, multiplier: str = "fast") -> int:
        return self.base_cycles + self.muls * (check_multiplier(multiplier) - 1)

    def add(self, instructions: int, cycles: int, muls: int) -> None:
        self.instructions += instructions
        self.base_cycles += cycles
        self.muls += muls


@dataclass
class FunctionMap:
    """Address -> name of the function containing it (from the ELF's FUNC symbols)."""

    starts: list[int]
    ends: list[int]
    names: list[str]

    @classmethod
    def from_symbols(cls, symbols: list[tuple[str, int, int]]) -> FunctionMap:
        rows = sorted((addr & ~1, size, name) for name, addr, size in symbols if size > 0)
        return cls([r[0] for r in rows], [r[0] + r[1] for r in rows], [r[2] for r in rows])

    def name_of(self, address: int) -> str:
        k = bisect_right(self.starts, address) - 1
        if k >= 0 and address < self.ends[k]:
            return self.names[k]
        return "?"


@dataclass
class Trace:
    """The cost of one run: total, per key (the op being run), per function."""

    total: Tally = field(default_factory=Tally)
    per_key: dict[int, Tally] = field(default_factory=dict)
    per_function: dict[str, Tally] = field(default_factory=dict)

    def hot_spots(self, multiplier: str = "fast", top: int = 5) -> list[dict]:
        """The ``top`` functions by cycles: name, cycles, instructions, share of the run."""
        total = max(1, self.total.cycles(multiplier))
        rows = sorted(self.per_function.items(), key=lambda kv: -kv[1].cycles(multiplier))
        return [
            {
                "function": name,
                "cycles": t.cycles(multiplier),
                "instructions": t.instructions,
                "share": t.cycles(multiplier) / total,
            }
            for name, t in rows[:top]
        ]


class TraceCounter:
    """Turns a unicorn block trace into a `Trace` (call `on_block` from a UC_HOOK_BLOCK)."""

    def __init__(self, functions: FunctionMap | None = None) -> None:
        self.functions = functions
        self.key = -1  # set by the caller (the profiling marker) to attribute what follows
        self.trace = Trace()
        self._blocks: dict[int, tuple[BlockCost, str]] = {}
        self._pending: tuple[int, int, str] | None = None  # fall-through, key, fn of a B<cond>

    def start(self) -> None:
        """Begin a new run (a fresh `Trace`; decoded blocks are kept)."""
        self.trace, self.key, self._pending = Trace(), -1, None

    def _charge(self, key: int, fn: str, n: int, cycles: int, muls: int) -> None:
        t = self.trace
        t.total.add(n, cycles, muls)
        t.per_key.setdefault(key, Tally()).add(n, cycles, muls)
        if self.functions is not None:
            t.per_function.setdefault(fn, Tally()).add(n, cycles, muls)

    def _settle(self, address: int) -> None:
        if self._pending is not None:
            fall, key, fn = self._pending
            if address != fall:
                self._charge(key, fn, 0, TAKEN_EXTRA, 0)
            self._pending = None

    def on_block(self, address: int, size: int, memory) -> None:
        """Call at the start of every executed block (``memory.mem_read`` gives its bytes)."""
        pending = self._pending
        if pending is not None:
            self._pending = None
            if address != pending[0]:
                self._charge(pending[1], pending[2], 0, TAKEN_EXTRA, 0)
        hit = self._blocks.get(address)
        if hit is None:
            fn = self.functions.name_of(address) if self.functions is not None else "?"
            code = bytes(memory.mem_read(address, size))
            hit = self._blocks[address] = (block_cost(code, address), fn)
        cost, fn = hit
        self._charge(self.key, fn, cost.instructions, cost.cycles, cost.muls)
        if cost.fall_through is not None:
            self._pending = (cost.fall_through, self.key, fn)

    def finish(self, address: int) -> Trace:
        """The run stopped before executing ``address``: settle a pending B<cond>."""
        self._settle(address)
        return self.trace
