"""binary_fully_connected: XNOR-popcount product of a packed ±1 vector with packed ±1 rows,
thresholded to bits or requantized (src/intquant/ops/binary_fully_connected.py). Reference
against exact float64 PyTorch on ±1 values, goldens, validation, the C kernels, and the
requantization shortcut of binary layers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import intgraph_factory as Fac
from intquant.interpreter import run
from intquant.intgraph import IntGraph, Op, TensorInfo

from .binary_helpers import output_stage, pm1
from .conftest import (
    assert_c_o2_and_m0_equal_reference,
    assert_rejected,
    c_host_test,
    c_m0_test,
    onnx_export_test,
)

RUNTIME = Path(__file__).resolve().parents[2] / "src" / "intquant" / "codegen" / "runtime"


def decode_rows(words: np.ndarray, n: int) -> np.ndarray:
    """Row c's value i is bit 31 − i % 32 of word i // 32 (set = −1): the documented layout."""
    bits = (words[:, :, None].astype(np.int64) >> (31 - np.arange(32))) & 1
    return np.where(bits.reshape(words.shape[0], -1)[:, :n] == 1, -1, 1)


# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_binary_fully_connected_matches_float_linear_of_pm1_exactly(seed):
    """float64 F.linear of the ±1 values (float sign of the dequantized input) and the decoded
    ±1 rows — exact, integer sums below 2^53 — thresholded or requantized: equal."""
    rng = np.random.default_rng(seed)
    dtype = ("int8", "uint8", "int16")[seed % 3]
    g = Fac.binary_fully_connected_graph(rng, dtype=dtype, out_bits=seed % 2 == 0,
                                         rounding=("double", "single")[seed % 2])
    sign, fc = g.ops[0], g.ops[1]
    x = Fac.random_input(rng, g, 6)
    got = run(g, x, return_all=True)[fc.output]
    w = torch.as_tensor(decode_rows(fc.consts["weight"], x.shape[1]).astype(np.float64))
    acc = F.linear(pm1(x, g, sign), w)
    np.testing.assert_array_equal(got, output_stage(acc, fc, g.tensors[fc.output].dtype))


# ---- (c) goldens ------------------------------------------------------------------------------


def golden_graph(out_dtype: str = "bit") -> IntGraph:
    """x = [+1, −1, −1, +1, +1] (5 features); rows [+1]*5 (word 0), [−1, −1, −1, −1, −1]
    (0xF8000000), [+1, −1, −1, +1, −1] (0x68000000): acc = 1, −1, 3. Bit output: thresholds
    1, 0, 4. 8-bit output: real multiplier exactly 1 (M = 2^30, shift 1), bias [0, 10, −2],
    act range [−128, 5]: out = clamp(acc + bias)."""
    t = {"x": TensorInfo("x", (5,), "int8", 1.0, 0), "s": TensorInfo("s", (5,), "bit", 1.0, 0),
         "y": TensorInfo("y", (3,), out_dtype, 1.0, 0)}
    w = np.array([[0], [0xF8000000], [0x68000000]], np.uint32)
    attrs: dict = {}
    consts = {"weight": w}
    if out_dtype == "bit":
        consts["threshold"] = np.array([1, 0, 4], np.int32)
    else:
        consts.update(bias=np.array([0, 10, -2], np.int32), multiplier=np.full(3, 2**30, np.int32),
                      shift=np.ones(3, np.int32))
        attrs.update(output_zero_point=0, act_min=-128, act_max=5)
    ops = [Op("s", "sign", ["x"], "s", {"threshold": 0}),
           Op("fc", "binary_fully_connected", ["s"], "y", attrs, consts)]
    out = "y"
    if out_dtype == "bit":
        t["u"] = TensorInfo("u", (3,), "int8", 1.0, 0)
        ops.append(Op("u", "unpack_bits", ["y"], "u"))
        out = "u"
    return IntGraph(t, ops, "x", out).validate()


GOLDEN_X = np.array([[3, -1, -7, 0, 100]], np.int8)


def test_binary_fully_connected_golden_bits():
    """acc 1, −1, 3 against thresholds 1, 0, 4: +1, −1, −1."""
    np.testing.assert_array_equal(run(golden_graph(), GOLDEN_X), [[1, -1, -1]])


def test_binary_fully_connected_golden_requantized():
    """acc + bias = 1, 9, 1; the act range clamps 9 to 5."""
    np.testing.assert_array_equal(run(golden_graph("int8"), GOLDEN_X), [[1, 5, 1]])


# ---- (b) validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (Fac.set_field(1, "consts", "weight", np.zeros((3, 2), np.uint32)),
         r"expected \[Cout, 1\]"),
        (Fac.edit_const(1, "weight", lambda w: w | np.uint32(4)), "padding"),
        (Fac.set_field(1, "consts", "threshold", np.array([1, 0, -6], np.int32)),
         r"'threshold' .*must lie in"),
        (Fac.set_field(1, "attrs", "act_min", 0), "attr 'act_min' belongs to an 8/16-bit output"),
        (Fac.cast_const(1, "weight", np.int32), "const 'weight' has dtype int32, expected uint32"),
        (Fac.set_inputs(1, ["x"]), "input 'x' must be a packed 'bit' tensor, got int8"),
    ],
)
def test_binary_fully_connected_validation_names_the_field(mutate, message):
    assert_rejected(golden_graph(), mutate, message, op_index=1)


def test_binary_fully_connected_validation_requantized_output_needs_its_consts():
    assert_rejected(golden_graph("int8"), lambda g: g.ops[1].consts.pop("multiplier"),
                    "missing const 'multiplier'", op_index=1)


# ---- (d) C vs reference -----------------------------------------------------------------------

test_binary_fully_connected_c_host_equals_reference = c_host_test("binary_fully_connected")
test_binary_fully_connected_c_m0_equals_reference = c_m0_test("binary_fully_connected")


def chain(rng: np.random.Generator) -> IntGraph:
    """Widths 70 → 33 → 100 → 64 → 9: 3, 2, 4 and 2 words per row, bit and int8 outputs."""
    b = Fac.GraphBuilder(rng, (70,), "int8")
    t = b.binary_fully_connected(b.sign(b.input), 33)
    t = b.binary_fully_connected(t, 100)
    t = b.binary_fully_connected(t, 64)
    t = b.binary_fully_connected(t, 9, out_dtype="int8", rounding="single")
    return b.graph(t)


def test_binary_fully_connected_c_m0_chain_equals_reference(tmp_path):
    """Host -O2 and Cortex-M0 on the chain above (ASan/UBSan: the c_host test and the binary
    chains of tests/test_c_backend.py)."""
    rng = np.random.default_rng(3)
    g = chain(rng)
    assert_c_o2_and_m0_equal_reference(g, Fac.random_input(rng, g, 8), tmp_path / "c")


# ----------------------------------------------------------------------------------------------
# The single-rounding shortcut for small accumulators (iq_mbqm_single_small, iq_binary.h)
# ----------------------------------------------------------------------------------------------

SMALL_C = r"""
#include <stdio.h>
#include "iq_binary.h"
int main(void)
{
    int32_t m, s, x;
    while (scanf("%d %d", &m, &s) == 2) {
        for (x = -32767; x <= 32767; ++x) {
            int32_t r = iq_mbqm_single_small(x, m, s);
            fwrite(&r, sizeof r, 1, stdout);
        }
    }
    return 0;
}
"""


def test_binary_fully_connected_c_host_small_single_rounding_is_exact(tmp_path):
    """Every |x| < 2^15, every shift in [−15, 14], multipliers at the ends of [2^30, 2^31) and
    random ones: equal to the exact floor((x·m + 2^(t−1)) / 2^t), t = 31 − shift."""
    (tmp_path / "t.c").write_text(SMALL_C)
    exe = tmp_path / "t"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Werror", "-fsanitize=undefined",
                    "-fno-sanitize-recover=all", "-I", str(RUNTIME), "-o", str(exe),
                    str(tmp_path / "t.c")], check=True, capture_output=True)
    rng = np.random.default_rng(0)
    pairs = [(m, s) for s in range(-15, 15)
             for m in (2**30, 2**31 - 1, int(rng.integers(2**30, 2**31)))]
    stdin = "".join(f"{m} {s}\n" for m, s in pairs).encode()
    out = subprocess.run([str(exe)], input=stdin, capture_output=True, check=True).stdout
    got = np.frombuffer(out, "<i4").reshape(len(pairs), -1).astype(np.int64)
    x = np.arange(-32767, 32768, dtype=np.int64)
    for row, (m, s) in zip(got, pairs, strict=True):
        t = 31 - s
        expected = (x * m + (1 << (t - 1))) >> t  # exact: |x·m| < 2^46, int64 floor shift
        np.testing.assert_array_equal(row, expected, err_msg=f"m={m} shift={s}")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_binary_fully_connected_onnx_integer_export_is_bit_exact = onnx_export_test(
    "binary_fully_connected")
