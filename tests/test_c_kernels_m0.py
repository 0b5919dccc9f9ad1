"""The Cortex-M0 requantization of the C runtime, shared by every requantizing op.

On ARMv6-M the runtime replaces the portable requantization (which would call libgcc's 64-bit
multiply) with Thumb-1 assembly (iq_runtime.h: iq_srdhm_asm, iq_rounding_divide_by_pot_asm).
These tests run it on unicorn's Cortex-M0 model and compare with references written here from
the gemmlowp / TFLM definitions in exact Python integer arithmetic (``fractions.Fraction``),
independent of both numerics.py and the C code. The kernels that use it (the 8-bit conv paths
of iq_conv_impl.h, the int8 pools and add) are tested per op in tests/ops/test_<kind>.py.
"""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from intquant.codegen.toolchain import ARM_FLAGS

RUNTIME = Path(__file__).resolve().parents[1] / "src" / "intquant" / "codegen" / "runtime"
I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def _require_arm() -> None:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.fail("arm-none-eabi-gcc missing: run scripts/install_toolchain.sh")


# ----------------------------------------------------------------------------------------------
# Exact references (gemmlowp fixedpoint.h / TFLM MultiplyByQuantizedMultiplier, from the text)
# ----------------------------------------------------------------------------------------------


def srdhm_ref(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul: nudge 2^30 (1 - 2^30 for a negative product), then
    C division by 2^31, which truncates toward zero."""
    if a == b == I32_MIN:
        return I32_MAX
    ab = a * b
    nudge = 2**30 if ab >= 0 else 1 - 2**30
    return int(Fraction(ab + nudge, 2**31))  # int() of a Fraction truncates toward zero


def rdbp_ref(x: int, e: int) -> int:
    """RoundingDivideByPOT: x / 2^e rounded to nearest, ties away from zero."""
    q = Fraction(abs(x), 2**e) + Fraction(1, 2)
    r = q.numerator // q.denominator
    return r if x >= 0 else -r


def mbqm_ref(x: int, m: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier: saturating x * 2^max(shift, 0), SRDHM, RDBP."""
    left, right = max(shift, 0), max(-shift, 0)
    x = min(max(x * 2**left, I32_MIN), I32_MAX)
    return rdbp_ref(srdhm_ref(x, m), right)


# ----------------------------------------------------------------------------------------------
# A bare function runner on unicorn's Cortex-M0
# ----------------------------------------------------------------------------------------------

ENTRY_C = r"""
#include "iq_runtime.h"
#ifndef IQ_REQUANT_ASM
#error "the Cortex-M0 build must use the asm requantization"
#endif
/* which: 0 = iq_mbqm_double(x, m, shift), 1 = iq_srdhm_asm(x, m), 2 = RDBP asm(x, e). */
void iq_test_entry(const int32_t* in, int32_t* out, int32_t n, int32_t which)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t* v = in + 3 * i;
        out[i] = which == 0   ? iq_mbqm_double(v[0], v[1], v[2])
                 : which == 1 ? iq_srdhm_asm(v[0], v[1])
                              : iq_rounding_divide_by_pot_asm(v[0], v[2]);
    }
}
"""

CODE, RAM, IO, RET = 0x0, 0x20000000, 0x30000000, 0x3FFF0000


@pytest.fixture(scope="module")
def m0_entry(tmp_path_factory):
    """Compile ENTRY_C for Cortex-M0 at -O2; return a function running it under unicorn."""
    _require_arm()
    from elftools.elf.elffile import ELFFile
    from unicorn import UC_ARCH_ARM, UC_MODE_THUMB, Uc
    from unicorn.arm_const import (
        UC_ARM_REG_LR,
        UC_ARM_REG_R0,
        UC_ARM_REG_R1,
        UC_ARM_REG_R2,
        UC_ARM_REG_R3,
        UC_ARM_REG_SP,
        UC_CPU_ARM_CORTEX_M0,
    )

    d = tmp_path_factory.mktemp("m0_entry")
    (d / "entry.c").write_text(ENTRY_C)
    elf = d / "entry.elf"
    cmd = ["arm-none-eabi-gcc", *ARM_FLAGS, "-O2", "-I", str(RUNTIME), "-nostdlib"]
    cmd += ["-Wl,-e,iq_test_entry", "-Wl,-Ttext=0x0", "-o", str(elf), str(d / "entry.c")]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    with open(elf, "rb") as f:
        ef = ELFFile(f)
        segs = [(s["p_paddr"], s.data()) for s in ef.iter_segments() if s["p_type"] == "PT_LOAD"]
        entry = ef.get_section_by_name(".symtab").get_symbol_by_name("iq_test_entry")[0]
        entry_addr = entry["st_value"] & ~1

    def call(triples: np.ndarray, which: int) -> np.ndarray:
        n = len(triples)
        uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB)
        uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M0)
        uc.mem_map(CODE, 1 << 20)
        uc.mem_map(RAM, 1 << 16)
        io = (n * 16 + 0xFFFF) & ~0xFFFF
        uc.mem_map(IO, io)
        uc.mem_map(RET, 0x1000)
        for addr, data in segs:
            uc.mem_write(addr, data)
        uc.mem_write(IO, np.ascontiguousarray(triples, dtype="<i4").tobytes())
        out = IO + n * 12
        for reg, v in ((UC_ARM_REG_R0, IO), (UC_ARM_REG_R1, out), (UC_ARM_REG_R2, n)):
            uc.reg_write(reg, v)
        uc.reg_write(UC_ARM_REG_R3, which)
        uc.reg_write(UC_ARM_REG_SP, RAM + (1 << 16))
        uc.reg_write(UC_ARM_REG_LR, RET | 1)
        uc.emu_start(entry_addr | 1, RET, timeout=60 * 1000 * 1000)
        return np.frombuffer(bytes(uc.mem_read(out, n * 4)), dtype="<i4").astype(np.int64)

    return call


def _edge_values() -> list[int]:
    v = {0, 1, -1, 2, -2, I32_MIN, I32_MIN + 1, I32_MAX, I32_MAX - 1}
    for k in (14, 15, 16, 17, 30, 31):
        for d in (-1, 0, 1):
            v.update({2**k + d, -(2**k) + d})
    v.update({0xFFFF, -0xFFFF, 0x7FFF8000, -0x7FFF8000, 0x12345678, -0x12345678})
    return sorted(x for x in v if I32_MIN <= x <= I32_MAX)


def _multipliers(rng: np.random.Generator) -> list[int]:
    """The validated multiplier range [0, 2^31): its edges, the usual [2^30, 2^31) and random."""
    edges = [0, 1, 0xFFFF, 0x10000, 2**30 - 1, 2**30, 2**30 + 1, I32_MAX, 0x7FFF0000, 0x40008000]
    return edges + [int(v) for v in rng.integers(0, 2**31, 6)]


def test_srdhm_asm_equals_exact_reference(m0_entry):
    """Every product of the edge set with the multiplier edges, plus 20000 random pairs."""
    rng = np.random.default_rng(1)
    xs, ms = _edge_values(), _multipliers(rng)
    pairs = [(x, m) for x in xs for m in ms]
    rx = rng.integers(I32_MIN, I32_MAX, 20000, endpoint=True)
    rm = rng.integers(0, 2**31, 20000)
    pairs += list(zip(rx.tolist(), rm.tolist(), strict=True))
    triples = np.array([(x, m, 0) for x, m in pairs], dtype=np.int64)
    got = m0_entry(triples, 1)
    want = np.array([srdhm_ref(x, m) for x, m in pairs])
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"srdhm_asm wrong for (x, m) = {pairs[bad[0]]}: {got[bad[0]]}"


def test_rounding_divide_by_pot_asm_equals_exact_reference(m0_entry):
    """Every exponent 0..31 on the edge set (x > INT32_MIN) and on random values; the ties
    x = (2k + 1) * 2^(e-1) of both signs and their neighbours for every e."""
    rng = np.random.default_rng(2)
    xs = [x for x in _edge_values() if x > I32_MIN]
    xs += [int(v) for v in rng.integers(I32_MIN + 1, I32_MAX, 300, endpoint=True)]
    triples = [(x, 0, e) for x in xs for e in range(32)]
    for e in range(1, 32):
        for k in (0, 1, 5):
            for sign in (1, -1):
                tie = sign * (2 * k + 1) * 2 ** (e - 1)
                if I32_MIN < tie <= I32_MAX:
                    triples += [(tie, 0, e), (tie - 1, 0, e), (tie + 1, 0, e)]
    arr = np.array(triples, dtype=np.int64)
    got = m0_entry(arr, 2)
    want = np.array([rdbp_ref(x, e) for x, _, e in triples])
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"rdbp_asm wrong for (x, e) = {triples[bad[0]][::2]}: {got[bad[0]]}"


def test_mbqm_double_equals_exact_reference_every_shift(m0_entry):
    """The dispatcher: asm fast path (shift <= 0) and the out-of-line path (shift > 0), over
    the whole validated shift range."""
    rng = np.random.default_rng(3)
    xs, ms = _edge_values(), _multipliers(rng)
    triples = [(x, m, s) for x in xs[::3] for m in ms[::2] for s in range(-31, 31, 3)]
    n = 20000
    rx = rng.integers(I32_MIN, I32_MAX, n, endpoint=True)
    small = rng.integers(-(2**20), 2**20, n)  # accumulator-sized values, which shifts move less
    rx = np.where(rng.random(n) < 0.5, rx, small)
    rm = rng.integers(2**30, 2**31, n)
    rs = rng.integers(-31, 31, n)
    triples += list(zip(rx.tolist(), rm.tolist(), rs.tolist(), strict=True))
    got = m0_entry(np.array(triples, dtype=np.int64), 0)
    want = np.array([mbqm_ref(*t) for t in triples])
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"iq_mbqm_double wrong for (x, m, shift) = {triples[bad[0]]}"


def test_references_agree_with_known_values():
    """Hand-checked anchors, so a wrong reference cannot make the asm tests pass vacuously."""
    assert srdhm_ref(2**30, 2**30) == 2**29  # 2 * 2^60 / 2^32
    assert srdhm_ref(I32_MIN, I32_MIN) == I32_MAX
    assert srdhm_ref(1, 2**30) == 1  # 2^30 / 2^31 = 0.5 rounds up
    assert srdhm_ref(-1, 2**30) == 0  # -0.5: the negative nudge 1 - 2^30 truncates to 0
    assert srdhm_ref(-3, 2**30) == -1  # -1.5 -> -1 (gemmlowp rounds ties up)
    assert rdbp_ref(5, 1) == 3 and rdbp_ref(-5, 1) == -3 and rdbp_ref(-4, 1) == -2
    assert rdbp_ref(-6, 2) == -2 and rdbp_ref(-5, 2) == -1 and rdbp_ref(7, 0) == 7
    assert mbqm_ref(100, 2**30, 0) == 50 and mbqm_ref(100, 2**30, -2) == 13
    assert mbqm_ref(2**30, 2**30, 3) == 2**30  # 2^33 saturates to 2^31 - 1 first
