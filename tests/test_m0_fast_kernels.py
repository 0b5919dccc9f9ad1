"""The batched requantization (requant.py, iq_requant.h/.c) and the kernels built on it:
depthwise row passes (iq_depthwise*), the tiled and in-place 8-bit convs (iq_dot8.c).

References are independent of the code under test: the interpreter (numerics.requantize, the
spec) for every accumulator and every layer, and hand-worked values for the golden cases.
Kernels run on the host (gcc, ASan + UBSan) and on unicorn's Cortex-M0 (the Thumb-1 paths).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import intgraph_factory as F
from intquant.codegen import export_c
from intquant.codegen.requant import (
    rqw_rows,
    rqw_value,
    window_output,
    window_requant,
)
from intquant.codegen.toolchain import (
    ARM_FLAGS,
    SANITIZE_FLAGS,
    WARN,
    compile_and_run_host,
    emulate_unicorn,
)
from intquant.interpreter import run
from intquant.intgraph import ACTIVATION_DTYPES
from intquant.numerics import quantize_multipliers, requantize

RUNTIME = Path(__file__).resolve().parents[1] / "src" / "intquant" / "codegen" / "runtime"


def _require_arm() -> None:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.fail("arm-none-eabi-gcc missing: run scripts/install_toolchain.sh")


# ----------------------------------------------------------------------------------------------
# The window form of the requantization, in Python integers
# ----------------------------------------------------------------------------------------------


def _layer(reals, rounding: str, out_dtype: str, relu: bool, bias_bound: int = 2**20):
    """Consts and attrs of a conv's requantization with the given real multipliers."""
    lo, hi = ACTIVATION_DTYPES[out_dtype]
    z = 0 if out_dtype == "int16" else (lo if relu else (lo + hi) // 2 - 7)
    if rounding == "pow2":
        shift = np.round(np.log2(np.asarray(reals))).astype(np.int32) + 1
        mult = np.full(len(reals), 2**30, dtype=np.int32)
    else:
        mult, shift = quantize_multipliers(np.asarray(reals))
    consts = {"multiplier": mult, "shift": shift}
    attrs = {
        "output_zero_point": z,
        "act_min": max(lo, z) if relu else lo,
        "act_max": hi,
        "rounding": rounding,
        "acc_bits": 32,
    }
    return consts, attrs, np.full(len(reals), bias_bound, dtype=np.int64)


def _probe_accumulators(wr, bound: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per channel: every accumulator around both window edges, around 0, and random ones."""
    rows = []
    for j in range(len(bound)):
        al, w = int(wr.a_lo[j]), int(wr.width[j])
        pts = [al + d for d in range(-40, 41)] + [al + w + d for d in range(-40, 41)]
        pts += list(range(-40, 41)) + rng.integers(-bound[j], bound[j] + 1, 300).tolist()
        rows.append(np.clip(pts, -bound[j], bound[j]))
    return np.array(rows, dtype=np.int64)


MODES = [
    ("double", "int8", False),
    ("double", "int8", True),
    ("double", "uint8", False),
    ("single", "int8", False),
    ("single", "uint8", True),
    ("pow2", "int8", False),
    ("pow2", "uint8", True),
    ("double", "int16", False),
]


@pytest.mark.parametrize("rounding,out_dtype,relu", MODES)
def test_window_form_equals_interpreter_at_every_threshold(rounding, out_dtype, relu):
    """Multipliers from 2^-2 to 2^-14 (forms 0 to 3, with and without the sign term):
    the 32-bit form, evaluated as the C code does it, gives the interpreter's output."""
    rng = np.random.default_rng(7)
    reals = 2.0 ** -rng.uniform(2, 14, 24)
    consts, attrs, bound = _layer(reals, rounding, out_dtype, relu)
    wr = window_requant(consts, attrs, bound)
    assert wr is not None
    fold = 0 if out_dtype == "int16" else 256
    fields = rqw_rows(wr, fold)
    assert fields is not None
    acc = _probe_accumulators(wr, bound, rng)
    want = requantize(
        acc.T,
        consts["multiplier"],
        consts["shift"],
        attrs["output_zero_point"],
        attrs["act_min"],
        attrs["act_max"],
        rounding=rounding,
        axis=1,
    ).T
    np.testing.assert_array_equal(window_output(wr, acc), want)
    got = np.array(
        [
            [rqw_value(fields[j], int(a), wr.needs_sign, wr.lo, fold) for a in acc[j]]
            for j in range(len(reals))
        ]
    )
    np.testing.assert_array_equal(got, want)


def test_window_constants_by_hand():
    """M = 2^30, shift -1: real multiplier 1/4, double rounding (SRDHM then a rounding
    halving), int8 output with zero point 0, no activation clamp.

    f(acc) = round half away from zero of (round half up of acc / 2) / 2. f(-510): -255 ->
    -127.5 -> -128; f(-509): -254.5 -> -254 -> -127. f(504): 252 -> 126; f(505): 252.5 -> 253
    -> 126.5 -> 127. So A_lo = -510 (the last accumulator giving -128) and A_lo + width = 505
    (the first giving 127).
    """
    consts = {
        "multiplier": np.array([2**30], dtype=np.int32),
        "shift": np.array([-1], dtype=np.int32),
    }
    attrs = {
        "output_zero_point": 0,
        "act_min": -128,
        "act_max": 127,
        "rounding": "double",
        "acc_bits": 32,
    }
    wr = window_requant(consts, attrs, np.array([10**6]))
    assert (int(wr.a_lo[0]), int(wr.a_lo[0] + wr.width[0])) == (-510, 505)
    assert wr.needs_sign  # the window holds both signs: RDBP rounds ties away from zero
    # -3: -1.5 -> -1 -> -0.5 -> -1;  -1: -0.5 -> 0;  1: 0.5 -> 1 -> 0.5 -> 1;  3: 1.5 -> 2 -> 1
    acc = np.array([[-511, -510, -509, -3, -2, -1, 0, 1, 2, 3, 503, 504, 505, 506]])
    want = [-128, -128, -127, -1, -1, 0, 0, 1, 1, 1, 126, 126, 127, 127]
    assert window_output(wr, acc)[0].tolist() == want


# ----------------------------------------------------------------------------------------------
# iq_rqw_run8 on the host (sanitizers) and on Cortex-M0 (the Thumb-1 loops)
# ----------------------------------------------------------------------------------------------

ENTRY_C = r"""
#include "iq_requant.h"
/* in: n, sign, lo, step, then the iq_rqw_t fields as 8 words, then n values acc - a_lo. */
void iq_test_entry(const int32_t* in, uint8_t* out)
{
    iq_rqw_t c;
    c.a_lo = in[4];
    c.width = (uint32_t)in[5];
    c.m = (uint32_t)in[6];
    c.c_hi = (uint32_t)in[7];
    c.u0 = (uint32_t)in[8];
    c.c_lo = (uint16_t)in[9];
    c.sh = (uint8_t)in[10];
    c.form = (uint8_t)in[11];
    iq_rqw_run8(in + 12, in[0], &c, in[2], in[1], out, in[3]);
}
"""

HOST_MAIN = r"""
#include <stdio.h>
#include <stdint.h>
void iq_test_entry(const int32_t* in, uint8_t* out);
static int32_t in[1 << 16];
static uint8_t out[1 << 18];
int main(void)
{
    int32_t head[12];
    while (fread(head, 4, 12, stdin) == 12) {
        int32_t i;
        for (i = 0; i < 12; ++i) in[i] = head[i];
        if (fread(in + 12, 4, (size_t)head[0], stdin) != (size_t)head[0]) return 3;
        iq_test_entry(in, out);
        fwrite(out, 1, (size_t)(head[0] * head[3]), stdout);
    }
    return 0;
}
"""


def _blocks(cases) -> bytes:
    """One input block per (fields, sign, lo, u values, step)."""
    raw = b""
    for fields, sign, lo, u, step in cases:
        al, w, m, c_hi, u0, c_lo, sh, form = fields
        head = [len(u), int(sign), lo, step, al, w, m, c_hi, u0, c_lo, sh, form]
        raw += np.array(head, dtype=np.int64).astype("<u4").tobytes()
        raw += np.asarray(u, dtype=np.int64).astype("<i4").tobytes()
    return raw


@pytest.fixture(scope="module")
def run8_cases():
    """Cases covering forms 0, 1, 2, sign and no sign, int8 and uint8 outputs, with the
    interpreter's outputs as the expected bytes."""
    rng = np.random.default_rng(11)
    cases, want = [], []
    for rounding, out_dtype, relu in MODES[:7]:
        reals = 2.0 ** -rng.uniform(2, 14, 16)
        consts, attrs, bound = _layer(reals, rounding, out_dtype, relu)
        wr = window_requant(consts, attrs, bound)
        fields = rqw_rows(wr, 256)
        acc = _probe_accumulators(wr, bound, rng)
        ref = requantize(
            acc.T,
            consts["multiplier"],
            consts["shift"],
            attrs["output_zero_point"],
            attrs["act_min"],
            attrs["act_max"],
            rounding=rounding,
            axis=1,
        ).T
        for j, f in enumerate(fields):
            step = 1 + j % 3  # outputs `step` bytes apart: only every step-th byte is checked
            cases.append((f, wr.needs_sign, wr.lo, acc[j] - f[0], step))
            want.append((ref[j].astype(np.int64) & 0xFF, step))
    forms = {(c[0][7], c[1]) for c in cases}  # (form, sign)
    assert forms == {(f, sign) for f in (0, 1, 2, 3) for sign in (False, True)}, forms
    return cases, want


def _check_run8(raw_out: bytes, want) -> None:
    pos = 0
    for expected, step in want:
        n = len(expected) * step
        got = np.frombuffer(raw_out[pos : pos + n], dtype=np.uint8)[::step]
        np.testing.assert_array_equal(got, expected)
        pos += n
    assert pos == len(raw_out)


def test_rqw_run8_host_sanitized(run8_cases, tmp_path):
    cases, want = run8_cases
    (tmp_path / "entry.c").write_text(ENTRY_C)
    (tmp_path / "main.c").write_text(HOST_MAIN)
    exe = tmp_path / "t"
    cmd = ["gcc", "-std=c99", "-O2", *WARN, *SANITIZE_FLAGS, "-I", str(RUNTIME), "-o", str(exe)]
    cmd += [str(tmp_path / "entry.c"), str(tmp_path / "main.c"), str(RUNTIME / "iq_requant.c")]
    subprocess.run(cmd, check=True, capture_output=True)
    res = subprocess.run([str(exe)], input=_blocks(cases), capture_output=True, check=True)
    assert res.stderr == b""
    _check_run8(res.stdout, want)


def test_rqw_run8_cortex_m0(run8_cases, tmp_path):
    """The Thumb-1 loops, one unicorn run per case."""
    _require_arm()
    from elftools.elf.elffile import ELFFile
    from unicorn import UC_ARCH_ARM, UC_MODE_THUMB, Uc
    from unicorn.arm_const import (
        UC_ARM_REG_LR,
        UC_ARM_REG_R0,
        UC_ARM_REG_R1,
        UC_ARM_REG_SP,
        UC_CPU_ARM_CORTEX_M0,
    )

    cases, want = run8_cases
    (tmp_path / "entry.c").write_text(ENTRY_C)
    elf = tmp_path / "e.elf"
    cmd = ["arm-none-eabi-gcc", *ARM_FLAGS, "-O2", "-I", str(RUNTIME), "-nostdlib"]
    cmd += ["-Wl,-e,iq_test_entry", "-Wl,-Ttext=0x0", "-o", str(elf)]
    cmd += [str(tmp_path / "entry.c"), str(RUNTIME / "iq_requant.c")]
    subprocess.run(cmd, check=True, capture_output=True)
    with open(elf, "rb") as f:
        ef = ELFFile(f)
        segs = [(s["p_paddr"], s.data()) for s in ef.iter_segments() if s["p_type"] == "PT_LOAD"]
        entry = ef.get_section_by_name(".symtab").get_symbol_by_name("iq_test_entry")[0]
    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB)
    uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M0)
    uc.mem_map(0, 1 << 20)
    uc.mem_map(0x20000000, 1 << 16)
    uc.mem_map(0x30000000, 1 << 20)
    uc.mem_map(0x3FFF0000, 0x1000)
    for addr, data in segs:
        uc.mem_write(addr, data)
    out = b""
    for case in cases:
        block = _blocks([case])
        uc.mem_write(0x30000000, block)
        dst = 0x30000000 + len(block)
        uc.reg_write(UC_ARM_REG_R0, 0x30000000)
        uc.reg_write(UC_ARM_REG_R1, dst)
        uc.reg_write(UC_ARM_REG_SP, 0x20010000)
        uc.reg_write(UC_ARM_REG_LR, 0x3FFF0000 | 1)
        uc.emu_start(entry["st_value"] | 1, 0x3FFF0000, timeout=10**7)
        out += bytes(uc.mem_read(dst, len(case[3]) * case[4]))
    _check_run8(out, want)


# ----------------------------------------------------------------------------------------------
# Whole layers: one graph per dtype chains every kernel variant (one build each)
# ----------------------------------------------------------------------------------------------


def _chain(dtype: str) -> F.IntGraph:
    rng = np.random.default_rng(3 if dtype == "int8" else 4)
    b = F.GraphBuilder(rng, (3, 11, 10), dtype)
    x = b.conv(b.input, 8, (3, 3), (1, 1), (1, 1, 1, 1), relu=True)  # in place, 3x3
    x = b.conv(x, 8, (3, 3), (1, 1), (1, 1, 1, 1), groups=8, relu=True)  # depthwise 3x3 s1
    x = b.conv(x, 16, (3, 3), (2, 2), (1, 1, 1, 1), groups=8)  # depthwise s2, x2, linear
    x = b.conv(x, 13, (1, 1))  # tiled 1x1, 8 + 4 + 1 channels, linear (sign)
    x = b.conv(x, 13, (1, 3), (1, 1), (0, 1, 0, 1), groups=13, relu=True)  # depthwise 1x3
    x = b.conv(x, 13, (3, 1), (1, 1), (1, 0, 1, 0), groups=13, relu=True)  # 3x1 (transposed)
    x = b.conv(x, 13, (5, 5), (1, 1), (2, 2, 2, 2), groups=13)  # depthwise 5x5
    x = b.conv(x, 12, (2, 4), (1, 2), (0, 2, 1, 1), relu=True)  # in place, kernel width 4
    x = b.conv(x, 9, (3, 3), (1, 1), (1, 2, 1, 0), dilation=(1, 2))  # dilated: tiled im2col
    x = b.flatten(x)
    x = b.fully_connected(x, 13)  # one position of the tiled kernel, 8 + 4 + 1 channels
    return b.graph(x)


# int8: host under ASan + UBSan, Cortex-M0 at -O2 and -Os (-Os builds take smaller C paths,
# __OPTIMIZE_SIZE__); uint8: host and Cortex-M0 at -O2.
CHAIN_BUILDS = {
    "int8": (("host-san", "-O2"), ("m0", "-O2"), ("m0", "-Os")),
    "uint8": (("host", "-O2"), ("m0", "-O2")),
}


@pytest.mark.parametrize("dtype", sorted(CHAIN_BUILDS))
def test_chain_of_fast_kernels_equals_interpreter(dtype, tmp_path):
    """Every kernel variant, bit-exact with the interpreter."""
    _require_arm()
    g = _chain(dtype)
    x = F.random_input(np.random.default_rng(9), g, 3)
    ref = run(g, x)
    assert np.unique(ref).size > 12, "degenerate case: outputs do not vary"
    res = export_c(g, tmp_path / "c", name="net")
    src = (res.out_dir / "net.c").read_text() + (res.out_dir / "net_kernels.c").read_text()
    for what in ("iq_dw_", "IQ_ROWS", "_tile"):
        assert what in src, what  # the kernels this test is about are the ones emitted
    for where, opt in CHAIN_BUILDS[dtype]:
        if where == "m0":
            got = emulate_unicorn(res.out_dir, x, opt=opt).outputs.reshape(ref.shape)
        else:
            got = compile_and_run_host(res.out_dir, x, opt=opt, sanitize=where == "host-san")
        np.testing.assert_array_equal(got, ref, err_msg=f"{where} {opt}")


def test_depthwise_golden_by_hand(tmp_path):
    """One channel, 3x3 kernel of ones, zero bias, input zero point 0, padding 1 on a 3x3
    input 1..9: each output is the sum of the input's 3x3 neighbourhood (with the padding as
    zeros), scaled by 1/8 (M = 2^30, shift -2: SRDHM halves with ties up, RDBP halves twice
    with ties away from zero), output zero point 0.

        sums          /8 (double rounding)
        12 21 16      2 3 2       12/2 = 6 -> 6/4 = 1.5 -> 2;  21/2 = 10.5 -> 11 -> 2.75 -> 3
        27 45 33      4 6 4       27/2 = 13.5 -> 14 -> 3.5 -> 4;  33/2 = 16.5 -> 17 -> 4.25 -> 4
        24 39 28      3 5 4       39/2 = 19.5 -> 20 -> 5;  28/2 = 14 -> 3.5 -> 4
    """
    from intquant.intgraph import IntGraph, Op, TensorInfo

    x = TensorInfo("x", (1, 3, 3), "int8", 1.0, 0)
    x2 = TensorInfo("x2", (2, 3, 3), "int8", 1.0, 0)
    y = TensorInfo("y", (2, 3, 3), "int8", 1.0, 0)
    # the kernel needs two input channels (one input channel takes the im2col path): the
    # second channel is a copy of the first, through a 1x1 conv of weight 1 and multiplier 1
    copy = Op(
        "copy",
        "conv",
        ["x"],
        "x2",
        {
            "stride": [1, 1],
            "padding": [0, 0, 0, 0],
            "dilation": [1, 1],
            "groups": 1,
            "input_zero_point": 0,
            "output_zero_point": 0,
            "act_min": -128,
            "act_max": 127,
            "acc_bits": 32,
            "rounding": "double",
        },
        {
            "weight": np.ones((2, 1, 1, 1), dtype=np.int8),
            "bias": np.zeros(2, dtype=np.int32),
            "multiplier": np.full(2, 2**30, dtype=np.int32),
            "shift": np.full(2, 1, dtype=np.int32),
        },
    )
    dw = Op(
        "dw",
        "conv",
        ["x2"],
        "y",
        {
            "stride": [1, 1],
            "padding": [1, 1, 1, 1],
            "dilation": [1, 1],
            "groups": 2,
            "input_zero_point": 0,
            "output_zero_point": 0,
            "act_min": -128,
            "act_max": 127,
            "acc_bits": 32,
            "rounding": "double",
        },
        {
            "weight": np.ones((2, 1, 3, 3), dtype=np.int8),
            "bias": np.zeros(2, dtype=np.int32),
            "multiplier": np.full(2, 2**30, dtype=np.int32),
            "shift": np.full(2, -2, dtype=np.int32),
        },
    )
    g = IntGraph({"x": x, "x2": x2, "y": y}, [copy, dw], "x", "y").validate()
    inp = np.arange(1, 10, dtype=np.int8).reshape(1, 1, 3, 3)
    want = np.array([[2, 3, 2], [4, 6, 4], [3, 5, 4]])
    assert (run(g, inp)[0] == want).all()
    res = export_c(g, tmp_path / "c", name="net")
    assert "iq_dw_" in (res.out_dir / "net.c").read_text()
    for out in (
        compile_and_run_host(res.out_dir, inp),
        emulate_unicorn(res.out_dir, inp).outputs.reshape(1, 2, 3, 3),
    ):
        assert (out[0] == want).all()
