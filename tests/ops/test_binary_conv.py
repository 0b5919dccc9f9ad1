"""binary_conv: XNOR-popcount convolution of packed ±1 activations with packed ±1 weights,
thresholded to bits or requantized (src/intquant/ops/binary_conv.py). The reference against
exact float64 PyTorch on ±1 values, hand-checked goldens, validation, and the C kernels
(portable and the generated Cortex-M0 pixel kernels) against the reference."""

from __future__ import annotations

import numpy as np
import pytest

import intgraph_factory as F
from intquant.interpreter import run
from intquant.intgraph import IntGraph, IntGraphError, Op, TensorInfo

from .binary_helpers import float_conv, output_stage, pm1
from .conftest import (
    assert_c_o2_and_m0_equal_reference,
    assert_rejected,
    c_host_test,
    c_m0_test,
    onnx_export_test,
    ort_run,
    require_tool,
)


def decode_weights(words: np.ndarray, cin: int, kh: int, kw: int) -> np.ndarray:
    """The documented weight layout, decoded bit by bit (independently of intquant.ops._bits):
    per output channel one stream in (kh, kw, Cin) order, value i in word i // 32 at bit
    31 − i % 32, a set bit meaning −1."""
    cout = words.shape[0]
    w = np.empty((cout, cin, kh, kw), dtype=np.int64)
    for c in range(cout):
        i = 0
        for ky in range(kh):
            for kx in range(kw):
                for ci in range(cin):
                    bit = (int(words[c, i // 32]) >> (31 - i % 32)) & 1
                    w[c, ci, ky, kx] = -1 if bit else 1
                    i += 1
    return w


# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(24))
def test_binary_conv_matches_float_conv_of_pm1_exactly(seed):
    """Random geometry (1-D / 2-D, stride, padding up to 2, dilation, channel counts across word
    boundaries), bit and 8/16-bit outputs: the interpreter equals float64 conv of the ±1 values
    (float sign of the dequantized input) with zero padding, thresholded or requantized."""
    rng = np.random.default_rng(seed)
    dims, dtype = 1 + seed % 2, ("int8", "uint8", "int16")[seed % 3]
    out_bits = seed % 4 != 0
    g = F.binary_conv_graph(rng, dims=dims, dtype=dtype, out_bits=out_bits,
                            rounding=("double", "single", "pow2")[seed % 3])
    sign, conv = g.ops[0], g.ops[1]
    x = F.random_input(rng, g, 5)
    got = run(g, x, return_all=True)[conv.output]
    kh, kw = conv.attrs["kernel"]
    w = decode_weights(conv.consts["weight"], g.tensors[sign.output].shape[0], kh, kw)
    acc = float_conv(pm1(x, g, sign), w, conv.attrs)
    expected = output_stage(acc, conv, g.tensors[conv.output].dtype)
    np.testing.assert_array_equal(got, expected)


# ---- (c) goldens: worked out by hand ----------------------------------------------------------


def golden_graph(out_dtype: str) -> IntGraph:
    """x (2, 3) int8 → sign (x ≥ 0) → binary_conv 2 → 2 channels, kernel 3, padding 1.

    ±1 input: ci0 = [+1, −1, +1], ci1 = [−1, −1, +1]. Weights of channel 0: ci0 = [+1, +1, −1],
    ci1 = [−1, +1, +1]; channel 1 is its negation. Stream (kx, ci) of channel 0:
    +1 −1 | +1 +1 | −1 +1 → bits 01 00 10 → 0x48000000; channel 1: 10 11 01 → 0xB4000000.
    Accumulators (padded taps contribute 0):
      o = 0: kx1 (+1·+1 + +1·−1) + kx2 (−1·−1 + +1·−1) = 0
      o = 1: kx0 (+1 + 1) + kx1 (−1 − 1) + kx2 (−1 + 1) = 0
      o = 2: kx0 (−1 + 1) + kx1 (+1 + 1) = 2
    so channel 0 has acc [0, 0, 2], channel 1 [0, 0, −2].
    """
    t = {
        "x": TensorInfo("x", (2, 3), "int8", 0.5, 0),
        "s": TensorInfo("s", (2, 3), "bit", 1.0, 0),
        "y": TensorInfo("y", (2, 3), out_dtype, 1.0, 0),
    }
    attrs = {"kernel": [1, 3], "stride": [1, 1], "padding": [0, 1, 0, 1], "dilation": [1, 1]}
    consts = {"weight": np.array([[0x48000000], [0xB4000000]], dtype=np.uint32)}
    if out_dtype == "bit":
        consts["threshold"] = np.array([1, 0], dtype=np.int32)
    else:  # real multiplier exactly 1 (M = 2^30, shift 1): out = acc + bias
        consts.update(bias=np.array([3, 0], np.int32), multiplier=np.full(2, 2**30, np.int32),
                      shift=np.ones(2, np.int32))
        attrs.update(output_zero_point=0, act_min=-128, act_max=127)
    ops = [Op("sign", "sign", ["x"], "s", {"threshold": 0}), Op("conv", "binary_conv", ["s"], "y",
                                                                  attrs, consts)]
    out = "y"
    if out_dtype == "bit":
        t["u"] = TensorInfo("u", (2, 3), "int8", 1.0, 0)
        ops.append(Op("unpack", "unpack_bits", ["y"], "u"))
        out = "u"
    return IntGraph(t, ops, "x", out).validate()


GOLDEN_X = np.array([[[5, -3, 7], [-1, -128, 0]]], dtype=np.int8)


def test_binary_conv_golden_bits():
    """Thresholds 1 and 0: channel 0 is −1 where acc < 1, channel 1 −1 where acc < 0."""
    y = run(golden_graph("bit"), GOLDEN_X)
    np.testing.assert_array_equal(y[0], [[-1, -1, 1], [1, 1, -1]])


def test_binary_conv_golden_requantized():
    """out = acc + bias: channel 0 [0, 0, 2] + 3, channel 1 [0, 0, −2] + 0."""
    y = run(golden_graph("int8"), GOLDEN_X)
    np.testing.assert_array_equal(y[0], [[3, 3, 5], [0, 0, -2]])


# ---- (b) validation --------------------------------------------------------------------------


def _clamp_reads_bits(g: IntGraph) -> None:
    g.ops[2] = Op("c", "clamp", ["y"], "u", {"act_min": -1, "act_max": 1})


VALIDATION_CASES = [  # mutation of golden_graph("bit"), message, index of the op named
    (F.set_inputs(1, ["x"]), "input 'x' must be a packed 'bit' tensor, got int8", 1),
    (F.cast_const(1, "weight", np.int32), "const 'weight' has dtype int32, expected uint32", 1),
    (F.set_field(1, "consts", "weight", np.zeros((2, 2), np.uint32)), r"expected \[Cout, 1\]",
     1),
    (F.edit_const(1, "weight", lambda w: w | np.uint32(1)), "set bits beyond Cin·kh·kw", 1),
    (F.set_field(1, "consts", "threshold", np.array([8, 0], np.int32)),
     r"'threshold' .*must lie in \[-6, 7\]", 1),
    (F.set_field(1, "consts", "bias", np.zeros(2, np.int32)),
     "const 'bias' belongs to an 8/16-bit output", 1),
    (F.del_attr(1, "kernel"), "missing attr 'kernel'", 1),
    (_clamp_reads_bits, "has dtype 'bit' .*does not read or write", 2),
]


@pytest.mark.parametrize(("mutate", "message", "op_index"), VALIDATION_CASES)
def test_binary_conv_validation_names_the_field(mutate, message, op_index):
    assert_rejected(golden_graph("bit"), mutate, message, op_index)


def test_binary_conv_validation_bit_tensors_stay_inside_the_graph():
    """A packed output has no layout outside the arena: the graph output must be unpacked."""
    g = golden_graph("bit")
    g.output = "y"
    with pytest.raises(IntGraphError, match="packed tensors live inside the graph only"):
        g.validate()


def test_binary_conv_validation_requantized_output_rejects_a_threshold():
    assert_rejected(golden_graph("int8"), F.set_field(1, "consts", "threshold",
                                                      np.zeros(2, np.int32)),
                    "const 'threshold' belongs to a 'bit' output", 1)


# ---- (d) C vs reference: random one-op graphs, chains covering the kernel's paths -------------

test_binary_conv_c_host_equals_reference = c_host_test("binary_conv")
test_binary_conv_c_m0_equals_reference = c_m0_test("binary_conv")


def chain_1d(rng: np.random.Generator) -> IntGraph:
    """1-D layers whose fields are runs of the input (32 | Cin, no dilation) and layers that
    gather (48 channels, dilation): 3, 5, 6, 10 and 20 words per channel (20 > 15: the border
    pixels take the two-call path), bit and int8 outputs, stride 2."""
    b = F.GraphBuilder(rng, (5, 23), "int8")
    t = b.sign_conv(b.input, 32, (1, 3), padding=(0, 1, 0, 1))
    t = b.binary_conv(t, 64, (1, 3), padding=(0, 1, 0, 1))  # 3 words, contiguous
    t = b.binary_conv(t, 48, (1, 5), padding=(0, 2, 0, 2))  # 10 words, contiguous
    t = b.binary_conv(t, 128, (1, 3), (1, 2), (0, 1, 0, 1))  # 5 words, gathered, stride 2
    t = b.binary_conv(t, 40, (1, 5), padding=(0, 2, 0, 2))  # 20 words
    t = b.binary_conv(t, 33, (1, 3), dilation=(1, 2), padding=(0, 2, 0, 2))  # 6 words
    t = b.binary_conv(t, 9, (1, 3), padding=(0, 1, 0, 1), out_dtype="int8", rounding="single")
    return b.graph(t)


def chain_2d(rng: np.random.Generator) -> IntGraph:
    """2-D layers: 3x3 padded (borders on all sides), stride, dilation, a 1x1, 16-bit out."""
    b = F.GraphBuilder(rng, (3, 9, 9), "int16")
    t = b.sign_conv(b.input, 16, (3, 3), padding=(1, 1, 1, 1))
    t = b.binary_conv(t, 33, (3, 3), padding=(1, 1, 1, 1))  # 144 bits: 5 words
    t = b.binary_conv(t, 20, (2, 3), (2, 1), (1, 0, 0, 2), (1, 2))  # 297 bits: 10 words
    t = b.binary_conv(t, 7, (1, 1))
    t = b.binary_conv(t, 6, (3, 3), padding=(2, 2, 2, 2), out_dtype="int16",
                      rounding="double")
    return b.graph(t)


@pytest.mark.parametrize("dims", [1, 2])
def test_binary_conv_c_m0_chains_equal_reference(dims, tmp_path):
    """Host -O2 and Cortex-M0 (the generated pixel kernels) on the chains above."""
    rng = np.random.default_rng(dims)
    g = chain_1d(rng) if dims == 1 else chain_2d(rng)
    x = F.random_input(rng, g, 6)
    assert_c_o2_and_m0_equal_reference(g, x, tmp_path / "c")


# ----------------------------------------------------------------------------------------------
# The generated Cortex-M0 pixel kernels, one by one against a NumPy popcount (unicorn)
# ----------------------------------------------------------------------------------------------

KERNEL_WORDS = list(range(1, 25))


def _pixel_cases() -> list[tuple[int, str, int]]:
    """(K, kind, stride): bits kernels, popcounts at both strides, masked popcounts."""
    from intquant.ops import _binary_asm

    cases = []
    for k in KERNEL_WORDS:
        cases += [(k, "bits", k + 1), (k, "pops", k), (k, "pops", k + 1)]
        if k <= _binary_asm.MAX_MASKED_WORDS:
            cases.append((k, "mpops", k + 1))
    return cases


@pytest.fixture(scope="module")
def pixel_kernels(tmp_path_factory):
    """Every case compiled for Cortex-M0 into one image; call(i, field, w, cout) runs case i."""
    import subprocess
    from pathlib import Path

    from intquant.codegen.toolchain import ARM_FLAGS
    from intquant.ops import _binary_asm

    require_tool("arm-none-eabi-gcc")
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

    cases = _pixel_cases()
    src = [_binary_asm.instance_source(k, kind, s) for k, kind, s in cases]
    names = [_binary_asm.instance_name(k, kind, s) for k, kind, s in cases]
    table = ", ".join(names)
    src.append("typedef void (*fn_t)(const uint32_t*, const uint32_t*, void*, int32_t);\n"
               f"static const fn_t table[] = {{{table}}};\n"
               "void entry(const uint32_t* f, const uint32_t* w, void* out, int32_t which_cout)\n"
               "{ table[which_cout >> 16](f, w, out, which_cout & 0xFFFF); }\n")
    d = tmp_path_factory.mktemp("pixel")
    (d / "k.c").write_text("\n".join(src))
    runtime = Path(__file__).resolve().parents[2] / "src" / "intquant" / "codegen" / "runtime"
    elf = d / "k.elf"
    cmd = ["arm-none-eabi-gcc", *ARM_FLAGS, "-O2", "-I", str(runtime), "-nostdlib",
           "-Wl,-e,entry", "-Wl,-Ttext=0x0", "-o", str(elf), str(d / "k.c")]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    with open(elf, "rb") as f:
        ef = ELFFile(f)
        segs = [(s["p_paddr"], s.data()) for s in ef.iter_segments() if s["p_type"] == "PT_LOAD"]
        entry = ef.get_section_by_name(".symtab").get_symbol_by_name("entry")[0]["st_value"]
    base, ram, ret = 0x30000000, 0x20000000, 0x3FFF0000

    def call(which: int, field: np.ndarray, w: np.ndarray, cout: int, out_bytes: int) -> bytes:
        uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB)
        uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M0)
        uc.mem_map(0, 1 << 20)
        uc.mem_map(ram, 1 << 16)
        uc.mem_map(base, 1 << 20)
        uc.mem_map(ret, 0x1000)
        for addr, data in segs:
            uc.mem_write(addr, data)
        f_at, w_at, o_at = base, base + 0x1000, base + 0x80000
        uc.mem_write(f_at, field.astype("<u4").tobytes())
        uc.mem_write(w_at, w.astype("<u4").tobytes())
        for reg, v in ((UC_ARM_REG_R0, f_at), (UC_ARM_REG_R1, w_at), (UC_ARM_REG_R2, o_at),
                       (UC_ARM_REG_R3, (which << 16) | cout)):
            uc.reg_write(reg, v)
        uc.reg_write(UC_ARM_REG_SP, ram + (1 << 16))
        uc.reg_write(UC_ARM_REG_LR, ret | 1)
        uc.emu_start(entry | 1, ret, timeout=20 * 10**6)
        return bytes(uc.mem_read(o_at, out_bytes))

    return cases, call


def _popcounts(field: np.ndarray, w: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Σ_j popcount(field[j] ^ w[c, j] (& mask[j])) with NumPy's bit unpacking."""
    x = field[None, :] ^ w
    if mask is not None:
        x = x & mask[None, :]
    return np.unpackbits(x.astype(">u4").view(np.uint8), axis=1).sum(axis=1).astype(np.int64)


def test_binary_conv_c_m0_generated_pixel_kernels_match_numpy_popcount(pixel_kernels):
    """All-ones/all-zeros fields, random fields, random masks; 1 to 70 channels (output words
    with unused low bits); thresholds over the whole range R in [0, 2n + 1]."""
    cases, call = pixel_kernels
    rng = np.random.default_rng(0)
    for which, (k, kind, stride) in enumerate(cases):
        for trial in range(3):
            cout = int(rng.choice([1, 31, 33, 70])) if trial else 32
            fill = {0: np.uint32(0xFFFFFFFF), 1: np.uint32(0)}.get(trial)
            field = (np.full(k, fill, np.uint32) if fill is not None
                     else rng.integers(0, 2**32, k, dtype=np.uint64).astype(np.uint32))
            w = rng.integers(0, 2**32, (cout, stride), dtype=np.uint64).astype(np.uint32)
            n = 32 * k
            r = rng.integers(0, 2 * n + 2, cout)
            if kind == "bits":
                w[:, k] = r
            mask = (rng.integers(0, 2**32, k, dtype=np.uint64).astype(np.uint32)
                    if kind == "mpops" else None)
            f_in = field if mask is None else np.concatenate([field, mask])
            pops = _popcounts(field, w[:, :k], mask)
            where = f"K={k} {kind} stride {stride} cout {cout} trial {trial}"
            if kind == "bits":
                words = -(-cout // 32)
                got = np.frombuffer(call(which, f_in, w, cout, 4 * words), "<u4")
                bits = np.zeros(words * 32, bool)
                bits[:cout] = 2 * pops >= r
                expected = np.packbits(bits).view(">u4").astype(np.uint32)
                np.testing.assert_array_equal(got, expected, err_msg=where)
            else:
                got = np.frombuffer(call(which, f_in, w, cout, 2 * cout), "<u2")
                np.testing.assert_array_equal(got, pops, err_msg=where)


# ---- (e) ONNX: bit tensors as int8 ±1, every binary kind exact integer ops --------------------

test_binary_conv_onnx_integer_export_is_bit_exact = onnx_export_test("binary_conv")


@pytest.mark.parametrize(("dims", "dtype"), [(1, "int8"), (2, "int16")])
def test_binary_conv_onnx_export_of_binary_chains_equals_reference(dims, dtype):
    """sign_conv, binary_conv (bits and 8/16-bit out), binary_max_pool, sign, unpack_bits and
    binary_fully_connected through ONNX Runtime, equal to the interpreter in both requant
    modes (the binary kinds have one export, the same in both)."""
    rng = np.random.default_rng(dims)
    g = F.binary_chain(rng, dims=dims, dtype=dtype)
    x = F.random_input(rng, g, 16)
    for requant in ("integer", "float"):
        np.testing.assert_array_equal(ort_run(g, x, requant=requant), run(g, x))
