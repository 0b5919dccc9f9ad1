"""The Cortex-M0 cycle model (codegen/cycles.py) on hand-written instruction sequences.

Expected counts are worked out by hand from the Cortex-M0 TRM timings (listed in cycles.py and
in each test's comments), not produced by the model: single instructions assembled by
arm-none-eabi-as and decoded, then whole functions run on unicorn's Cortex-M0 with the block
hook the cost report uses (conditional branches taken and not taken, loads, LDM/STM,
PUSH/POP with and without PC, BL, BX, MOV to PC, MULS with both multipliers).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from intquant.codegen.cycles import TraceCounter, block_cost, decode
from intquant.codegen.toolchain import ARM_CC

CODE, RAM, RET = 0x0, 0x20000000, 0x3FFF0000


def _require_arm() -> None:
    if shutil.which(ARM_CC) is None:
        pytest.fail("arm-none-eabi-gcc missing: run scripts/install_toolchain.sh")


def _assemble(src: str, d: Path) -> tuple[bytes, dict[str, int]]:
    """Link ``src`` (Thumb, ARMv6-M) at address 0; return the .text bytes and symbols."""
    from elftools.elf.elffile import ELFFile

    (d / "t.S").write_text(".syntax unified\n.thumb\n.text\n" + src)
    elf = d / "t.elf"
    cmd = [ARM_CC, "-mcpu=cortex-m0", "-mthumb", "-nostdlib", "-Wl,-Ttext=0x0"]
    subprocess.run([*cmd, "-Wl,-e,0", "-o", str(elf), str(d / "t.S")], check=True)
    with open(elf, "rb") as f:
        ef = ELFFile(f)
        text = ef.get_section_by_name(".text").data()
        syms = {s.name: s["st_value"] for s in ef.get_section_by_name(".symtab").iter_symbols()}
    return text, syms


SINGLE = [  # (instruction, cycles with a 1-cycle multiplier, is MULS, is B<cond>)
    ("adds r0, r1, r2", 1, False, False),
    ("movs r0, #200", 1, False, False),
    ("lsls r0, r1, #3", 1, False, False),
    ("uxth r0, r1", 1, False, False),
    ("mov r8, r0", 1, False, False),
    ("add r0, r9", 1, False, False),
    ("cmp r0, r10", 1, False, False),
    ("muls r0, r1, r0", 1, True, False),
    ("ldr r0, [r1, #4]", 2, False, False),
    ("ldrb r0, [r1, r2]", 2, False, False),
    ("ldrsb r0, [r1, r2]", 2, False, False),
    ("strh r0, [r1, #2]", 2, False, False),
    ("str r0, [sp, #8]", 2, False, False),
    ("ldr r0, =0x12345678", 2, False, False),
    ("ldm r0!, {r1, r2, r3}", 4, False, False),
    ("stm r0!, {r1, r2}", 3, False, False),
    ("push {r4, r5, r6, lr}", 5, False, False),
    ("pop {r4, r5}", 3, False, False),
    ("pop {r4, pc}", 5, False, False),  # 1 + 2 registers + 2 (branch)
    ("bx lr", 3, False, False),
    ("blx r3", 3, False, False),
    ("mov pc, lr", 3, False, False),
    ("beq .", 1, False, True),  # not taken; +2 when taken
    ("b .", 3, False, False),
    ("bl .", 4, False, False),
    ("dmb", 4, False, False),
]


def test_single_instruction_timings(tmp_path):
    _require_arm()
    src = "".join(f"{ins}\n" for ins, *_ in SINGLE) + ".ltorg\n"
    text, _ = _assemble(src, tmp_path)
    i = 0
    for ins, cycles, mul, cond in SINGLE:
        hw = text[i] | (text[i + 1] << 8)
        got = decode(hw)
        assert (got.cycles, got.mul, got.cond_branch) == (cycles, mul, cond), ins
        i += got.size
    assert i == len(text) - 4  # then the literal pool word of "ldr r0, =..."


def _run(text: bytes, entry: int, counter: TraceCounter, r0: int = RAM) -> int:
    from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_MODE_THUMB, Uc
    from unicorn.arm_const import UC_ARM_REG_LR, UC_ARM_REG_R0, UC_ARM_REG_SP, UC_CPU_ARM_CORTEX_M0

    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB)
    uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M0)
    uc.mem_map(CODE, 1 << 16)
    uc.mem_map(RAM, 1 << 16)
    uc.mem_map(RET, 0x1000)
    uc.mem_write(CODE, text)
    uc.hook_add(UC_HOOK_BLOCK, lambda u, a, s, _: counter.on_block(a, s, u))
    uc.reg_write(UC_ARM_REG_R0, r0)
    uc.reg_write(UC_ARM_REG_SP, RAM + (1 << 16))
    uc.reg_write(UC_ARM_REG_LR, RET | 1)
    counter.start()
    uc.emu_start(entry | 1, RET)
    counter.finish(RET)
    return int(uc.reg_read(UC_ARM_REG_R0))


COUNTDOWN = """
.global f
.thumb_func
f:  movs r0, #5
1:  subs r0, #1
    bne 1b
    bx lr
"""


def test_loop_taken_and_not_taken(tmp_path):
    """movs 1 + 5 x subs 1 + bne taken 4 x 3 + bne not taken 1 + bx 3 = 22 cycles, 12 instrs."""
    _require_arm()
    text, syms = _assemble(COUNTDOWN, tmp_path)
    c = TraceCounter()
    assert _run(text, syms["f"], c) == 0
    assert (c.trace.total.instructions, c.trace.total.cycles("fast")) == (12, 22)
    assert c.trace.total.cycles("small") == 22  # no multiply


MIXED = """
.global f
.thumb_func
f:  push {r4, r5, lr}        @ 1 + 3 = 4
    movs r1, #7              @ 1
    movs r2, #6              @ 1
    muls r1, r2, r1          @ 1 (fast) / 32 (small): r1 = 42
    str r1, [r0]             @ 2
    ldrb r3, [r0]            @ 2
    stm r0!, {r1, r2, r3}    @ 1 + 3 = 4
    subs r0, #12             @ 1
    ldm r0!, {r3, r4, r5}    @ 1 + 3 = 4
    bl g                     @ 4
    cmp r3, #42              @ 1
    beq 2f                   @ taken: 3
    movs r3, #0              @ skipped
2:  cmp r3, #0               @ 1
    beq 3f                   @ not taken: 1
    adr r2, 4f               @ 1
    adds r2, #1              @ 1
    mov pc, r2               @ 3 (MOV to PC is a branch)
    nop
    .balign 4
4:  movs r0, r3              @ 1
3:  pop {r4, r5, pc}         @ 1 + 3 + 2 = 6
.thumb_func
g:  adds r4, r4, r5          @ 1
    bx lr                    @ 3
"""


def test_memory_calls_multiply_and_branches(tmp_path):
    """4+1+1+1+2+2+4+1+4+4+1+3+1+1+1+1+3+1+6 = 42 cycles in f (the MULS at 1), 1+3 in g:
    46 cycles, 19 + 2 instructions; with the 32-cycle multiplier 31 more."""
    _require_arm()
    text, syms = _assemble(MIXED, tmp_path)
    c = TraceCounter()
    assert _run(text, syms["f"], c) == 42
    t = c.trace.total
    assert t.instructions == 21
    assert t.muls == 1
    assert t.cycles("fast") == 46
    assert t.cycles("small") == 46 + 31


def test_per_key_and_per_function_attribution(tmp_path):
    """Cycles land on the key set before each block and on the function holding it."""
    _require_arm()
    from intquant.codegen.cycles import FunctionMap

    text, syms = _assemble(COUNTDOWN, tmp_path)
    c = TraceCounter(FunctionMap.from_symbols([("f", syms["f"], len(text))]))
    c.key = 3
    _run(text, syms["f"], c)
    assert c.trace.per_key == {-1: c.trace.total}  # start() resets the key
    assert c.trace.per_function["f"].cycles("fast") == 22
    assert c.trace.hot_spots()[0]["function"] == "f"


def test_block_cost_fall_through_of_conditional_branch():
    """A block ending in B<cond> records its fall-through; others do not."""
    # subs r0, #1 (0x3801); bne -4 (0xd1fd)
    b = block_cost(bytes([0x01, 0x38, 0xFD, 0xD1]), 0x100)
    assert (b.instructions, b.cycles, b.fall_through) == (2, 2, 0x104)
    # bx lr (0x4770)
    assert block_cost(bytes([0x70, 0x47]), 0x200).fall_through is None
