"""unpack_bits: a packed ±1 tensor to int8 ±1 (zero point 0, the input's scale), and the
storage layout of packed tensors and binary weights (ops/_bits.py) (src/intquant/ops/
unpack_bits.py): hand-checked bit patterns, round trips, validation, C, ONNX."""

from __future__ import annotations

import numpy as np
import pytest

import intgraph_factory as Fac
from intquant.interpreter import run
from intquant.intgraph import IntGraph, TensorInfo, tensor_nbytes
from intquant.ops import _bits

from .binary_helpers import pm1
from .conftest import (
    assert_c_host_equals_reference,
    assert_rejected,
    c_host_test,
    c_m0_test,
    deq,
    onnx_export_test,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_unpack_bits_matches_float_sign_of_dequantized_input(seed):
    """sign → unpack_bits: the real values of the int8 output (its scale and zero point
    included) equal the float op "sign" of deq(x) − deq(threshold) (exact: see pm1)."""
    rng = np.random.default_rng(seed)
    g = Fac.sign_graph(rng, dims=1 + seed % 2, dtype=("int8", "uint8", "int16")[seed % 3])
    x = Fac.random_input(rng, g, 4)
    y = run(g, x)
    assert y.dtype == np.int8
    np.testing.assert_array_equal(deq(y, g.tensors[g.output]), pm1(x, g, g.ops[0]).numpy())


# ---- (b) validation ---------------------------------------------------------------------------


def _unpack_graph() -> IntGraph:
    """t0 (33, 5) int8 → sign → t1 (bit) → unpack_bits → t2 (33, 5) int8."""
    b = Fac.GraphBuilder(np.random.default_rng(0), (33, 5), "int8")
    b.unpack_bits(b.sign(b.input))
    return b.graph()


VALIDATION_CASES = [
    (Fac.set_tensor(2, zero_point=1), "output 't2' must be int8 with zero_point 0"),
    (Fac.set_tensor(2, dtype="int16"), "output 't2' must be int8 with zero_point 0"),
    (Fac.set_inputs(1, ["t0"]), "input 't0' must be a 'bit' tensor, got int8"),
    (Fac.set_tensor(2, scale=2.0), "output scale 2.0 must equal input scale 1.0"),
    (Fac.set_tensor(2, shape=(33, 6)), r"has shape \(33, 6\), expected \(33, 5\)"),
    (Fac.set_inputs(1, ["t1", "t1"]), r"expects 1 input\(s\), got 2"),
]


@pytest.mark.parametrize(("mutate", "message"), VALIDATION_CASES)
def test_unpack_bits_validation_names_the_field(mutate, message):
    assert_rejected(_unpack_graph(), mutate, message, op_index=1)


# ---- (c) goldens: the packed layout by hand ---------------------------------------------------


def test_unpack_bits_golden_tensor_layout_by_hand():
    """(C=3, L=2): pixel 0 holds channels (+1, −1, −1) → bits 011 at the top of word 0 =
    0x60000000; pixel 1 holds (−1, +1, −1) → 101 → 0xA0000000."""
    v = np.array([[[1, -1], [-1, 1], [-1, -1]]], np.int8)
    np.testing.assert_array_equal(_bits.pack_tensor(v), [[0x60000000, 0xA0000000]])
    np.testing.assert_array_equal(_bits.unpack_tensor(_bits.pack_tensor(v), (3, 2)), v)


def test_unpack_bits_golden_tensor_layout_spans_words():
    """33 channels: channel 32 (−1) is bit 31 of the pixel's second word."""
    v = np.ones((1, 33), np.int8)
    v[0, 0] = v[0, 32] = -1
    np.testing.assert_array_equal(_bits.pack_tensor(v), [[0x80000000, 0x80000000]])
    assert tensor_nbytes(TensorInfo("t", (33, 5, 2), "bit", 1.0, 0)) == 5 * 2 * 2 * 4
    assert tensor_nbytes(TensorInfo("t", (33,), "bit", 1.0, 0)) == 8


def test_unpack_bits_golden_weight_stream_by_hand():
    """w[0] (Cin 2, 1x2): stream order (kx, ci) = (ci0 kx0, ci1 kx0, ci0 kx1, ci1 kx1)
    = (−1, +1, +1, −1) → bits 1001 → 0x90000000."""
    w = np.array([[[[-1, 1]], [[1, -1]]]], np.int8)  # [Cout 1, Cin 2, kh 1, kw 2]
    np.testing.assert_array_equal(_bits.pack_weights(w), [[0x90000000]])
    np.testing.assert_array_equal(_bits.unpack_weights(_bits.pack_weights(w), 2, 1, 2), w)


@pytest.mark.parametrize("shape", [(1,), (32,), (33, 4), (70, 3, 5)])
def test_unpack_bits_packed_layout_round_trips(shape):
    rng = np.random.default_rng(len(shape))
    v = rng.choice(np.array([-1, 1], np.int8), size=(3, *shape))
    packed = _bits.pack_tensor(v)
    assert packed.dtype == np.uint32
    assert packed.shape[1] * 4 == tensor_nbytes(TensorInfo("t", shape, "bit", 1.0, 0))
    np.testing.assert_array_equal(_bits.unpack_tensor(packed, shape), v)


# ---- (d) C vs reference -----------------------------------------------------------------------

test_unpack_bits_c_host_equals_reference = c_host_test("unpack_bits")
test_unpack_bits_c_m0_equals_reference = c_m0_test("unpack_bits")


def test_unpack_bits_c_host_97_channels_equal_reference(tmp_path):
    """97 channels of a uint8 vector: four words, the last with one used bit."""
    rng = np.random.default_rng(5)
    b = Fac.GraphBuilder(rng, (97,), "uint8")
    b.unpack_bits(b.sign(b.input))
    g = b.graph()
    assert_c_host_equals_reference(g, Fac.random_input(rng, g, 4), tmp_path / "c")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_unpack_bits_onnx_integer_export_is_bit_exact = onnx_export_test("unpack_bits")
