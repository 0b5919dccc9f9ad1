"""unpack_bits, and the storage layout of packed tensors and binary weights (ops/_bits.py):
hand-checked bit patterns, round trips, validation, C."""

from __future__ import annotations

import numpy as np
import pytest

import intgraph_factory as Fac
from intquant.interpreter import run
from intquant.intgraph import IntGraph, IntGraphError, Op, TensorInfo, tensor_nbytes
from intquant.ops import _bits

from .binary_helpers import assert_c_equals_interpreter


def test_tensor_layout_by_hand():
    """(C=3, L=2): pixel 0 holds channels (+1, −1, −1) → bits 011 at the top of word 0 =
    0x60000000; pixel 1 holds (−1, +1, −1) → 101 → 0xA0000000."""
    v = np.array([[[1, -1], [-1, 1], [-1, -1]]], np.int8)
    np.testing.assert_array_equal(_bits.pack_tensor(v), [[0x60000000, 0xA0000000]])
    np.testing.assert_array_equal(_bits.unpack_tensor(_bits.pack_tensor(v), (3, 2)), v)


def test_tensor_layout_spans_words():
    """33 channels: channel 32 (−1) is bit 31 of the pixel's second word."""
    v = np.ones((1, 33), np.int8)
    v[0, 0] = v[0, 32] = -1
    np.testing.assert_array_equal(_bits.pack_tensor(v), [[0x80000000, 0x80000000]])
    assert tensor_nbytes(TensorInfo("t", (33, 5, 2), "bit", 1.0, 0)) == 5 * 2 * 2 * 4
    assert tensor_nbytes(TensorInfo("t", (33,), "bit", 1.0, 0)) == 8


def test_weight_stream_by_hand():
    """w[0] (Cin 2, 1x2): stream order (kx, ci) = (ci0 kx0, ci1 kx0, ci0 kx1, ci1 kx1)
    = (−1, +1, +1, −1) → bits 1001 → 0x90000000."""
    w = np.array([[[[-1, 1]], [[1, -1]]]], np.int8)  # [Cout 1, Cin 2, kh 1, kw 2]
    np.testing.assert_array_equal(_bits.pack_weights(w), [[0x90000000]])
    np.testing.assert_array_equal(_bits.unpack_weights(_bits.pack_weights(w), 2, 1, 2), w)


@pytest.mark.parametrize("shape", [(1,), (32,), (33, 4), (70, 3, 5)])
def test_round_trips(shape):
    rng = np.random.default_rng(len(shape))
    v = rng.choice(np.array([-1, 1], np.int8), size=(3, *shape))
    packed = _bits.pack_tensor(v)
    assert packed.dtype == np.uint32
    assert packed.shape[1] * 4 == tensor_nbytes(TensorInfo("t", shape, "bit", 1.0, 0))
    np.testing.assert_array_equal(_bits.unpack_tensor(packed, shape), v)


def test_reference_keeps_the_values():
    g = Fac.sign_graph(np.random.default_rng(0), dims=2)
    x = Fac.random_input(np.random.default_rng(1), g, 3)
    vals = run(g, x, return_all=True)
    np.testing.assert_array_equal(vals[g.output], vals[g.ops[0].output])
    assert vals[g.output].dtype == np.int8


def test_validation():
    g = Fac.sign_graph(np.random.default_rng(0), dims=1)
    g.tensors[g.output].zero_point = 1
    with pytest.raises(IntGraphError, match="must be int8 with zero_point 0"):
        g.validate()
    g = Fac.sign_graph(np.random.default_rng(0), dims=1)
    g.ops[1] = Op("u", "unpack_bits", [g.input], g.output)
    with pytest.raises(IntGraphError, match="must be a 'bit' tensor"):
        g.validate()


def test_c(tmp_path):
    rng = np.random.default_rng(5)
    b = Fac.GraphBuilder(rng, (97,), "uint8")
    b.unpack_bits(b.sign(b.input))
    g: IntGraph = b.graph()
    assert_c_equals_interpreter(g, Fac.random_input(rng, g, 4), tmp_path / "c")
