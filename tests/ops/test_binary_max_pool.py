"""binary_max_pool: max of ±1 values (an AND of packed words) — reference against PyTorch's
max pooling, goldens, validation, C."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import intgraph_factory as Fac
from intquant.interpreter import run
from intquant.intgraph import IntGraphError

from .binary_helpers import assert_c_equals_interpreter, pm1


@pytest.mark.parametrize("seed", range(12))
def test_reference_equals_torch_max_pool(seed):
    """−inf padding (PyTorch's max pooling never picks padding), dilation, 1-D and 2-D."""
    rng = np.random.default_rng(seed)
    g = Fac.binary_max_pool_graph(rng, dims=1 + seed % 2)
    sign, pool = g.ops[0], g.ops[1]
    x = Fac.random_input(rng, g, 4)
    xs = pm1(x, sign.attrs["threshold"])
    a = pool.attrs
    t, left, b, r = a["padding"]
    if xs.dim() == 3:
        y = F.max_pool1d(F.pad(xs, (left, r), value=-torch.inf), a["kernel"][1], a["stride"][1],
                         dilation=a["dilation"][1])
    else:
        y = F.max_pool2d(F.pad(xs, (left, r, t, b), value=-torch.inf), a["kernel"], a["stride"],
                         dilation=a["dilation"])
    np.testing.assert_array_equal(run(g, x, return_all=True)[pool.output], y.numpy())


def test_golden():
    """Windows of two: (−1, −1) → −1 (both bits set: the AND keeps it), (−1, +1) → +1."""
    b = Fac.GraphBuilder(np.random.default_rng(0), (1, 4), "int8")
    b.unpack_bits(b.binary_max_pool(b.sign(b.input, threshold=0), (1, 2), (1, 2)))
    g = b.graph()
    np.testing.assert_array_equal(run(g, np.array([[[-5, -1, -3, 4]]], np.int8)), [[[-1, 1]]])


def test_validation():
    g = Fac.binary_max_pool_graph(np.random.default_rng(0), dims=2)
    g.ops[1].attrs["padding"] = [5, 5, 5, 5]
    with pytest.raises(IntGraphError, match="lies entirely in the padding"):
        g.validate()
    g = Fac.binary_max_pool_graph(np.random.default_rng(0), dims=2)
    g.tensors[g.ops[1].output].scale = 2.0
    with pytest.raises(IntGraphError, match="must equal input scale"):
        g.validate()


def test_c_host_and_cortex_m0(tmp_path):
    """40 channels (two words per pixel), padding, stride, dilation."""
    rng = np.random.default_rng(2)
    b = Fac.GraphBuilder(rng, (40, 9, 7), "int8")
    t = b.binary_max_pool(b.sign(b.input), (3, 3), (2, 1), (1, 1, 1, 1))
    t = b.binary_max_pool(t, (2, 2), (1, 2), (0, 1, 1, 0), (2, 1))
    b.unpack_bits(t)
    g = b.graph()
    assert_c_equals_interpreter(g, Fac.random_input(rng, g, 5), tmp_path / "c", m0=True)
