"""binary_max_pool: max of packed ±1 values (an AND of packed words, set bit = −1), same scale
in and out (src/intquant/ops/binary_max_pool.py) — reference against PyTorch's max pooling,
goldens, validation, C, ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import intgraph_factory as Fac
from intquant.interpreter import run
from intquant.intgraph import IntGraph

from .binary_helpers import pm1
from .conftest import (
    assert_c_o2_and_m0_equal_reference,
    assert_rejected,
    c_host_test,
    c_m0_test,
    onnx_export_test,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_binary_max_pool_matches_float_torch_max_pool(seed):
    """Max of ±1 values (float sign of the dequantized input): no arithmetic, so equal, not
    close. −inf padding (PyTorch's max pooling never picks padding), dilation, 1-D and 2-D."""
    rng = np.random.default_rng(seed)
    g = Fac.binary_max_pool_graph(rng, dims=1 + seed % 2)
    sign, pool = g.ops[0], g.ops[1]
    x = Fac.random_input(rng, g, 4)
    xs = pm1(x, g, sign)
    a = pool.attrs
    t, left, b, r = a["padding"]
    if xs.dim() == 3:
        y = F.max_pool1d(F.pad(xs, (left, r), value=-torch.inf), a["kernel"][1], a["stride"][1],
                         dilation=a["dilation"][1])
    else:
        y = F.max_pool2d(F.pad(xs, (left, r, t, b), value=-torch.inf), a["kernel"], a["stride"],
                         dilation=a["dilation"])
    np.testing.assert_array_equal(run(g, x, return_all=True)[pool.output], y.numpy())


# ---- (b) validation ---------------------------------------------------------------------------


def _pool_graph() -> IntGraph:
    """t0 (4, 8, 8) int8 → sign → t1 → binary_max_pool 2x2 / 2 → t2 (4, 4, 4) → unpack → t3."""
    b = Fac.GraphBuilder(np.random.default_rng(5), (4, 8, 8), "int8")
    b.unpack_bits(b.binary_max_pool(b.sign(b.input), (2, 2), (2, 2)))
    return b.graph()


VALIDATION_CASES = [
    (Fac.set_field(1, "attrs", "padding", [5, 5, 5, 5]), "lies entirely in the padding"),
    (Fac.set_tensor(2, scale=2.0), "output scale 2.0 must equal input scale"),
    (Fac.set_inputs(1, ["t0"]), "input and output must be 'bit' tensors"),
    (Fac.set_field(1, "attrs", "kernel", [0, 2]), "attr 'kernel' entries must be >= 1"),
    (Fac.set_field(1, "attrs", "stride", [1, 1]), r"has shape \(4, 4, 4\), expected \(4, 7, 7\)"),
    (Fac.del_attr(1, "dilation"), "missing attr 'dilation'"),
]


@pytest.mark.parametrize(("mutate", "message"), VALIDATION_CASES)
def test_binary_max_pool_validation_names_the_field(mutate, message):
    assert_rejected(_pool_graph(), mutate, message, op_index=1)


# ---- (c) goldens ------------------------------------------------------------------------------


def _golden(x: list[int], kernel: int, stride: int, pad: int) -> np.ndarray:
    """sign (x ≥ 0) → binary_max_pool (1-D) → unpack, on one channel."""
    b = Fac.GraphBuilder(np.random.default_rng(0), (1, len(x)), "int8")
    pool = b.binary_max_pool(b.sign(b.input, threshold=0), (1, kernel), (1, stride),
                             (0, pad, 0, pad))
    b.unpack_bits(pool)
    return run(b.graph(), np.array([[x]], np.int8))[0, 0]


def test_binary_max_pool_golden_and_of_words():
    """Windows of two: (−1, −1) → −1 (both bits set: the AND keeps it), (−1, +1) → +1."""
    np.testing.assert_array_equal(_golden([-5, -1, -3, 4], 2, 2, 0), [-1, 1])


def test_binary_max_pool_golden_padding_never_wins():
    """x = [−5, −3, 2] → ±1 [−1, −1, +1]; kernel 2, stride 1, padding 1 each side: windows
    [pad, −1], [−1, −1], [−1, +1], [+1, pad] → [−1, −1, +1, +1] (a pad read as +1, i.e. as a
    clear bit, would turn the first into +1)."""
    np.testing.assert_array_equal(_golden([-5, -3, 2], 2, 1, 1), [-1, -1, 1, 1])


# ---- (d) C vs reference -----------------------------------------------------------------------

test_binary_max_pool_c_host_equals_reference = c_host_test("binary_max_pool")
test_binary_max_pool_c_m0_equals_reference = c_m0_test("binary_max_pool")


def test_binary_max_pool_c_m0_two_word_pixels_equal_reference(tmp_path):
    """40 channels (two words per pixel), padding, stride, dilation: host -O2 and Cortex-M0."""
    rng = np.random.default_rng(2)
    b = Fac.GraphBuilder(rng, (40, 9, 7), "int8")
    t = b.binary_max_pool(b.sign(b.input), (3, 3), (2, 1), (1, 1, 1, 1))
    t = b.binary_max_pool(t, (2, 2), (1, 2), (0, 1, 1, 0), (2, 1))
    b.unpack_bits(t)
    g = b.graph()
    assert_c_o2_and_m0_equal_reference(g, Fac.random_input(rng, g, 5), tmp_path / "c")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_binary_max_pool_onnx_integer_export_is_bit_exact = onnx_export_test("binary_max_pool")
