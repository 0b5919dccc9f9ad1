"""sign: +1 where x ≥ threshold else −1, packed; and the float op "sign" (BNN: sign(0) = +1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import intgraph_factory as Fac
from intquant.interpreter import run
from intquant.intgraph import IntGraph, IntGraphError, Op, TensorInfo
from intquant.ops import float_op

from .binary_helpers import assert_c_equals_interpreter


@pytest.mark.parametrize("seed", range(9))
def test_reference_equals_torch_comparison(seed):
    rng = np.random.default_rng(seed)
    dtype = ("int8", "uint8", "int16")[seed % 3]
    g = Fac.sign_graph(rng, dims=1 + seed % 2, dtype=dtype)
    x = Fac.random_input(rng, g, 4)
    thr = g.ops[0].attrs["threshold"]
    expected = torch.where(torch.as_tensor(x.astype(np.int64)) >= thr, 1, -1).numpy()
    np.testing.assert_array_equal(run(g, x, return_all=True)[g.ops[0].output], expected)


def test_float_sign_maps_zero_to_plus_one():
    """The float op is BNN's sign: torch.sign(0) would be 0."""
    x = torch.tensor([[-2.5, -0.0, 0.0, 1e-30, 3.0]])
    y = float_op("sign").run(None, [x])
    assert y.tolist() == [[-1.0, 1.0, 1.0, 1.0, 1.0]]


def golden_graph() -> IntGraph:
    t = {"x": TensorInfo("x", (3,), "int8", 1.0, -1), "s": TensorInfo("s", (3,), "bit", 1.0, 0),
         "u": TensorInfo("u", (3,), "int8", 1.0, 0)}
    ops = [Op("s", "sign", ["x"], "s", {"threshold": -1}), Op("u", "unpack_bits", ["s"], "u")]
    return IntGraph(t, ops, "x", "u").validate()


def test_golden():
    """Threshold −1 (the zero point): −2 → −1, −1 → +1 (real 0), 0 → +1."""
    np.testing.assert_array_equal(run(golden_graph(), np.array([[-2, -1, 0]], np.int8)),
                                  [[-1, 1, 1]])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda g: g.ops[0].attrs.update(threshold=129), r"'threshold' = 129 is out of range"),
        (lambda g: g.tensors.update(s=TensorInfo("s", (3,), "int8", 1.0, 0)),
         "output 's' must be a 'bit' tensor"),
        (lambda g: g.tensors.update(s=TensorInfo("s", (3,), "bit", 1.0, 1)),
         "needs zero_point 0"),
    ],
)
def test_validation(mutate, message):
    g = golden_graph()
    mutate(g)
    with pytest.raises(IntGraphError, match=message):
        g.validate()


def test_c(tmp_path):
    """Channel counts across word boundaries; thresholds anywhere in the dtype range."""
    for i, (dims, dtype) in enumerate([(2, "int8"), (1, "int16")]):
        rng = np.random.default_rng(i)
        b = Fac.GraphBuilder(rng, (65, 3, 2) if dims == 2 else (33, 7), dtype)
        b.unpack_bits(b.sign(b.input, threshold=int(rng.integers(-100, 100))))
        g = b.graph()
        assert_c_equals_interpreter(g, Fac.random_input(rng, g, 5), tmp_path / f"c{i}")
