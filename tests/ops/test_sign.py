"""sign: +1 where x ≥ threshold else −1 on raw values, packed into bits; and the float op "sign"
it lowers (BNN: sign(0) = +1) (src/intquant/ops/sign.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import intgraph_factory as Fac
import intquant
from intquant.interpreter import run
from intquant.intgraph import IntGraph, IntGraphError, Op, TensorInfo
from intquant.ops import float_op

from .binary_helpers import pm1
from .conftest import (
    Fn,
    assert_c_host_equals_reference,
    assert_rejected,
    c_host_test,
    c_m0_test,
    onnx_export_test,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(9))
def test_sign_matches_float_sign_of_dequantized_input(seed):
    """The float op on deq(x) − deq(threshold) (exact: see pm1) for random thresholds over
    the whole dtype range, 1-D and 2-D, int8 / uint8 / int16: equal."""
    rng = np.random.default_rng(seed)
    dtype = ("int8", "uint8", "int16")[seed % 3]
    g = Fac.sign_graph(rng, dims=1 + seed % 2, dtype=dtype)
    x = Fac.random_input(rng, g, 4)
    expected = pm1(x, g, g.ops[0]).numpy()
    np.testing.assert_array_equal(run(g, x, return_all=True)[g.ops[0].output], expected)


@pytest.mark.parametrize("act_bits", [8, 16])
def test_sign_matches_float_after_quantize(act_bits):
    """torch.sign after a max pool, captured, calibrated and lowered (threshold = the zero
    point): the integer output equals BNN's sign of the float layer on the dequantized input.
    Exact: max pooling selects, and a dequantized value s·(q − z) is 0 only where q = z."""
    module = Fn(lambda x: torch.sign(TF.max_pool1d(x, 2)))
    x = torch.randn(64, 3, 10, generator=torch.Generator().manual_seed(1))
    cfg = intquant.Config(act_bits=act_bits, weight_bits=8 if act_bits == 8 else 16,
                          calibration="minmax")
    q = intquant.quantize(module, x, cfg, progress=False)
    assert "sign" in [op.kind for op in q.graph.ops]
    x_int = q.quantize_input(x)
    info = q.input_info
    x_deq = torch.as_tensor(info.scale * (x_int.astype(np.float64) - info.zero_point))
    ref = float_op("sign").run(None, [TF.max_pool1d(x_deq, 2)]).numpy()
    np.testing.assert_array_equal(q.dequantize_output(q.run(x_int)), ref)


# ---- (b) validation ---------------------------------------------------------------------------


def golden_graph() -> IntGraph:
    t = {"x": TensorInfo("x", (3,), "int8", 1.0, -1), "s": TensorInfo("s", (3,), "bit", 1.0, 0),
         "u": TensorInfo("u", (3,), "int8", 1.0, 0)}
    ops = [Op("s", "sign", ["x"], "s", {"threshold": -1}), Op("u", "unpack_bits", ["s"], "u")]
    return IntGraph(t, ops, "x", "u").validate()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (Fac.set_field(0, "attrs", "threshold", 129), r"'threshold' = 129 is out of range"),
        (Fac.set_field(0, "attrs", "threshold", -129), r"'threshold' = -129 is out of range"),
        (Fac.del_attr(0, "threshold"), "missing attr 'threshold'"),
        (Fac.set_tensor(1, dtype="int8"), "output 's' must be a 'bit' tensor, got int8"),
        (Fac.set_tensor(1, shape=(4,)), r"has shape \(4,\), expected \(3,\)"),
        (Fac.set_inputs(0, ["x", "x"]), r"expects 1 input\(s\), got 2"),
    ],
)
def test_sign_validation_names_the_field(mutate, message):
    assert_rejected(golden_graph(), mutate, message, op_index=0)


def test_sign_validation_bit_tensor_needs_zero_point_0():
    """A tensor-level check (every 'bit' tensor holds ±1 at scale 1), named by the tensor."""
    g = golden_graph()
    Fac.set_tensor(1, zero_point=1)(g)
    with pytest.raises(IntGraphError, match=r"^tensor 's': a 'bit' tensor .*needs zero_point 0"):
        g.validate()


def test_sign_validation_refuses_a_bit_input():
    """Signing packed bits again is refused (op 1 is the second sign)."""

    def sign_of_bits(g: IntGraph) -> None:
        g.tensors["s2"] = TensorInfo("s2", (3,), "bit", 1.0, 0)
        g.ops.insert(1, Op("s2", "sign", ["s"], "s2", {"threshold": 0}))
        g.ops[2].inputs = ["s2"]

    assert_rejected(golden_graph(), sign_of_bits, "input 's' is already a 'bit' tensor", 1)


# ---- (c) goldens ------------------------------------------------------------------------------


def test_sign_golden_threshold_at_the_zero_point():
    """Threshold −1 (the zero point): −2 → −1, −1 → +1 (real 0), 0 → +1."""
    np.testing.assert_array_equal(run(golden_graph(), np.array([[-2, -1, 0]], np.int8)),
                                  [[-1, 1, 1]])


def test_sign_golden_float_op_maps_zero_to_plus_one():
    """The float op is BNN's sign: torch.sign(0) would be 0."""
    x = torch.tensor([[-2.5, -0.0, 0.0, 1e-30, 3.0]])
    y = float_op("sign").run(None, [x])
    assert y.tolist() == [[-1.0, 1.0, 1.0, 1.0, 1.0]]


# ---- (d) C vs reference -----------------------------------------------------------------------

test_sign_c_host_equals_reference = c_host_test("sign")
test_sign_c_m0_equals_reference = c_m0_test("sign")


@pytest.mark.parametrize(("dims", "dtype"), [(2, "int8"), (1, "int16")])
def test_sign_c_host_word_boundaries_equal_reference(dims, dtype, tmp_path):
    """65 and 33 channels (a last word with 1 used bit), thresholds inside the dtype range."""
    rng = np.random.default_rng(dims)
    b = Fac.GraphBuilder(rng, (65, 3, 2) if dims == 2 else (33, 7), dtype)
    b.unpack_bits(b.sign(b.input, threshold=int(rng.integers(-100, 100))))
    g = b.graph()
    assert_c_host_equals_reference(g, Fac.random_input(rng, g, 5), tmp_path / "c")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_sign_onnx_integer_export_is_bit_exact = onnx_export_test("sign")
