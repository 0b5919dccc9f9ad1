"""max_pool: MaxPool1d/2d over raw values, same qparams in and out
(src/intquant/ops/max_pool.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as TF

import intgraph_factory as F
import tflm_reference as tflm
from intgraph_factory import GraphBuilder
from intquant.interpreter import run
from intquant.intgraph import TensorInfo

from .conftest import (
    POOL_CASES,
    assert_rejected,
    c_host_test,
    c_m0_int8_fast_path_test,
    c_m0_test,
    deq,
    from_nhwc,
    nhwc,
    one_op_graph,
    onnx_export_test,
    pool_graph,
    quantize_path_test,
    random_q,
    tflm_pool_kwargs,
    to_t,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_max_pool_matches_float_torch(case: tuple, dtype: str) -> None:
    """The max of raw values is the max of real values: equal, not close."""
    dims, k, s, p, d = case
    g, xi = pool_graph("max_pool", dims, k, s, p, d, dtype, {})
    xq = random_q(np.random.default_rng(13), (4, *xi.shape), dtype)
    pool = TF.max_pool1d if dims == 1 else TF.max_pool2d
    ref = pool(to_t(deq(xq, xi)), k, s, p, d).numpy()
    np.testing.assert_array_equal(deq(run(g, xq), g.tensors["y"]), ref)


test_max_pool_matches_float_after_quantize = quantize_path_test("max_pool")


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("seed", range(4))
def test_max_pool_matches_tflm_reference(dtype: str, dims: int, seed: int) -> None:
    """Bit-exact with the naive transcription of TFLM's MaxPool (tests/tflm_reference.py)."""
    rng = np.random.default_rng(5000 + seed)
    for _ in range(50):  # TFLM's max pool has no dilation: draw until the case is undilated
        g = F.max_pool_graph(rng, dims=dims, dtype=dtype)
        if g.ops[0].attrs["dilation"] == [1, 1]:
            break
    assert g.ops[0].attrs["dilation"] == [1, 1]
    x = F.random_input(rng, g, n=2)
    lowest = int(np.iinfo(dtype).min)
    ref = tflm.max_pool(nhwc(x), lowest=lowest, **tflm_pool_kwargs(g))
    np.testing.assert_array_equal(
        run(g, x).astype(np.int64), from_nhwc(ref, g.tensors[g.output].shape)
    )


# ---- (b) validation ---------------------------------------------------------------------------


def _max_pool_graph():
    b = GraphBuilder(np.random.default_rng(5), (4, 8, 8), "int8")
    b.max_pool(b.input, (2, 2), (2, 2))
    return b.graph()


def _one_d_max_pool_graph():
    b = GraphBuilder(np.random.default_rng(5), (4, 9), "int8")
    b.max_pool(b.input, (1, 3), (1, 2), (0, 1, 0, 1))
    return b.graph()


VALIDATION_CASES = [
    (F.set_field(0, "attrs", "kernel", [9, 9]), "window larger than the padded input along H"),
    (F.set_field(0, "attrs", "padding", [0, 0, 3, 0]), "window 4 along H lies entirely in the pad"),
    (F.set_field(0, "attrs", "kernel", [2]), "attr 'kernel' must have 2 entries"),
    (F.set_field(0, "attrs", "kernel", [0, 2]), "attr 'kernel' entries must be >= 1"),
    (F.set_field(0, "attrs", "stride", [0, 2]), "attr 'stride' entries must be >= 1"),
    (F.set_field(0, "attrs", "padding", [1, 1, 1]), "attr 'padding' must have 4 entries"),
    (F.set_field(0, "attrs", "dilation", [1, 0]), "attr 'dilation' entries must be >= 1"),
    (F.set_field(0, "attrs", "stride", [1, 1]), r"has shape \(4, 4, 4\), expected \(4, 7, 7\)"),
    (F.set_field(0, "attrs", "act_max", 128), "attr 'act_max' = 128 is out of range"),
    (F.del_attr(0, "dilation"), "missing attr 'dilation'"),
    (F.set_tensor(1, zero_point=127), "zero_point 127 must equal 't0' zero_point"),
    (F.set_tensor(0, shape=(4, 8, 8, 1)), r"input 't0' must have shape \(C, L\) or \(C, H, W\)"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_max_pool_validation_messages(mutate, message: str) -> None:
    assert_rejected(_max_pool_graph(), mutate, message)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (F.set_field(0, "attrs", "stride", [2, 2]), r"stride\[0\] = dilation\[0\] = 1"),
        (F.set_field(0, "attrs", "padding", [1, 1, 0, 1]), "padding top = bottom = 0"),
        (F.set_field(0, "attrs", "kernel", [2, 3]), r"1-D op must have kernel\[0\] = 1"),
    ],
)
def test_max_pool_validation_1d_conventions(mutate, message: str) -> None:
    assert_rejected(_one_d_max_pool_graph(), mutate, message)


# ---- (c) goldens ------------------------------------------------------------------------------


def _golden(attrs: dict, x: list[int], out_len: int) -> np.ndarray:
    xi = TensorInfo("x", (1, len(x)), "int8", 0.5, 0)
    yi = TensorInfo("y", (1, out_len), "int8", 0.5, 0)
    full = {"kernel": [1, 2], "stride": [1, 2], "padding": [0, 0, 0, 0], "dilation": [1, 1],
            "act_min": -128, "act_max": 127}
    g = one_op_graph("max_pool", xi, yi, {**full, **attrs})
    return run(g, np.array([[x]], dtype=np.int8))[0, 0]


def test_max_pool_golden_padding_never_wins() -> None:
    """x = [-5, -7, -3, -4, -9], kernel 2 stride 2, padding left 1 right 0: windows
    [pad, -5], [-7, -3], [-4, -9] → [-5, -3, -4] (the pad is below every value)."""
    y = _golden({"padding": [0, 1, 0, 0]}, [-5, -7, -3, -4, -9], 3)
    np.testing.assert_array_equal(y, [-5, -3, -4])


def test_max_pool_golden_dilation_and_clamp() -> None:
    """kernel 2, dilation 2, stride 1 over [1, 9, 4, -8, 6]: taps (0, 2), (1, 3), (2, 4) →
    [4, 9, 6]; act range [-128, 5] clamps them to [4, 5, 5]."""
    x = [1, 9, 4, -8, 6]
    np.testing.assert_array_equal(_golden({"stride": [1, 1], "dilation": [1, 2]}, x, 3), [4, 9, 6])
    y = _golden({"stride": [1, 1], "dilation": [1, 2], "act_max": 5}, x, 3)
    np.testing.assert_array_equal(y, [4, 5, 5])


# ---- (d) C vs reference -----------------------------------------------------------------------

test_max_pool_c_host_equals_reference = c_host_test("max_pool")
test_max_pool_c_m0_equals_reference = c_m0_test("max_pool")
test_max_pool_c_m0_int8_fast_path_equals_reference = c_m0_int8_fast_path_test("max_pool")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_max_pool_onnx_integer_export_is_bit_exact = onnx_export_test("max_pool")
