"""Interpreter tests: bit-exact vs naive TFLM kernels, close to float PyTorch, no float in the run.

Each case builds a random one-op IntGraph (intgraph_factory), runs the NumPy interpreter, and
runs the same integer parameters through the loop-by-loop transcription of TFLM's reference
kernels in NHWC order. Outputs must be identical, element for element.
"""

from __future__ import annotations

import numpy as np
import pytest

import tflm_reference as tflm
from intgraph_factory import (
    add_graph,
    avg_pool_graph,
    conv_graph,
    fully_connected_graph,
    max_pool_graph,
    random_input,
)
from intquant.interpreter import run
from intquant.intgraph import IntGraph


def _nhwc(x: np.ndarray) -> np.ndarray:
    """(N, C, L) or (N, C, H, W) → (N, H, W, C) with H = 1 for 1-D."""
    x4 = x[:, :, None, :] if x.ndim == 3 else x
    return x4.transpose(0, 2, 3, 1)


def _from_nhwc(y: list, like_shape: tuple[int, ...]) -> np.ndarray:
    """Nested [N][Ho][Wo][C] list → the interpreter's layout (N, C, Ho, Wo) / (N, C, Lo)."""
    a = np.array(y, dtype=np.int64).transpose(0, 3, 1, 2)
    return a.reshape((a.shape[0], *like_shape))


def _out_hw(g: IntGraph) -> tuple[int, int]:
    shape = g.tensors[g.output].shape
    return (1, shape[1]) if len(shape) == 2 else (shape[1], shape[2])


def tflm_conv(g: IntGraph, x: np.ndarray) -> np.ndarray:
    op = g.ops[0]
    a = op.attrs
    w = op.consts["weight"]
    cout, cin_g, _, _ = w.shape
    cin = g.tensors[g.input].shape[0]
    common = dict(
        input_offset=-a["input_zero_point"],
        output_offset=a["output_zero_point"],
        stride=tuple(a["stride"]),
        dilation=tuple(a["dilation"]),
        pad=(a["padding"][0], a["padding"][1]),
        out_hw=_out_hw(g),
        act_min=a["act_min"],
        act_max=a["act_max"],
        int16x8=a["acc_bits"] == 64,
    )
    consts = (op.consts["bias"], op.consts["multiplier"], op.consts["shift"])
    if a["groups"] == cin and cin_g == 1 and cin > 1:
        filt = w[:, 0].transpose(1, 2, 0)[None]  # [1, kh, kw, Cin·mult]
        y = tflm.depthwise_conv_per_channel(
            _nhwc(x), filt, *consts, depth_multiplier=cout // cin, **common
        )
    else:
        y = tflm.conv_per_channel(_nhwc(x), w.transpose(0, 2, 3, 1), *consts, **common)
    return _from_nhwc(y, g.tensors[g.output].shape)


CONV_CASES = [
    dict(dims=2),
    dict(dims=1),
    dict(dims=2, groups=2),
    dict(dims=2, depthwise=True),
    dict(dims=2, depthwise=True, cin=3, cout=6),  # depth multiplier 2
    dict(dims=1, depthwise=True),
    dict(dims=2, dilation=(2, 2), kernel=(2, 3)),
    dict(dims=2, dtype="int16"),  # 16x8: int64 accumulator, reduced multiplier
    dict(dims=1, dtype="int16", depthwise=True),
    dict(dims=2, relu=True),
]


@pytest.mark.parametrize(
    "case", CONV_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items())
)
@pytest.mark.parametrize("seed", range(3))
def test_conv_bit_exact_with_tflm(case: dict, seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    g = conv_graph(rng, **case)
    x = random_input(rng, g, n=2)
    ours = run(g, x)
    assert ours.dtype == np.dtype(g.tensors[g.output].dtype)
    np.testing.assert_array_equal(ours.astype(np.int64), tflm_conv(g, x))
    assert len(np.unique(ours)) > 3, "degenerate case: outputs do not vary"


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("seed", range(4))
def test_fully_connected_bit_exact_with_tflm(dtype: str, seed: int) -> None:
    rng = np.random.default_rng(2000 + seed)
    g = fully_connected_graph(rng, dtype=dtype, cin=int(rng.integers(8, 40)), cout=6)
    x = random_input(rng, g, n=5)
    op = g.ops[0]
    a = op.attrs
    ref = tflm.fully_connected_per_channel(
        x,
        op.consts["weight"],
        op.consts["bias"],
        op.consts["multiplier"],
        op.consts["shift"],
        input_offset=-a["input_zero_point"],
        output_offset=a["output_zero_point"],
        act_min=a["act_min"],
        act_max=a["act_max"],
        int16x8=a["acc_bits"] == 64,
    )
    np.testing.assert_array_equal(run(g, x).astype(np.int64), np.array(ref))


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("seed", range(4))
def test_add_bit_exact_with_tflm(dtype: str, seed: int) -> None:
    rng = np.random.default_rng(3000 + seed)
    g = add_graph(rng, dtype=dtype, dims=1 + seed % 2, relu=bool(seed % 2))
    x = random_input(rng, g, n=3)
    vals = run(g, x, return_all=True)
    op = g.ops[-1]
    a = op.attrs
    ref = tflm.add_elementwise(
        vals[op.inputs[0]].ravel(),
        vals[op.inputs[1]].ravel(),
        input1_offset=-a["a_zero_point"],
        input2_offset=-a["b_zero_point"],
        left_shift=a["left_shift"],
        input1_multiplier=a["a_multiplier"],
        input1_shift=a["a_shift"],
        input2_multiplier=a["b_multiplier"],
        input2_shift=a["b_shift"],
        output_multiplier=a["output_multiplier"],
        output_shift=a["output_shift"],
        output_offset=a["output_zero_point"],
        act_min=a["act_min"],
        act_max=a["act_max"],
    )
    np.testing.assert_array_equal(vals[op.output].ravel().astype(np.int64), np.array(ref))


def _pool_kwargs(g: IntGraph) -> dict:
    a = g.ops[0].attrs
    return dict(
        filter_hw=tuple(a["kernel"]),
        stride=tuple(a["stride"]),
        pad=(a["padding"][0], a["padding"][1]),
        out_hw=_out_hw(g),
        act_min=a["act_min"],
        act_max=a["act_max"],
    )


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("seed", range(4))
def test_avg_pool_bit_exact_with_tflm(dtype: str, dims: int, seed: int) -> None:
    rng = np.random.default_rng(4000 + seed)
    g = avg_pool_graph(rng, dims=dims, dtype=dtype, count_include_pad=False)
    x = random_input(rng, g, n=2)
    ref = tflm.average_pool(_nhwc(x), **_pool_kwargs(g))
    np.testing.assert_array_equal(
        run(g, x).astype(np.int64), _from_nhwc(ref, g.tensors[g.output].shape)
    )


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("seed", range(4))
def test_max_pool_bit_exact_with_tflm(dtype: str, dims: int, seed: int) -> None:
    rng = np.random.default_rng(5000 + seed)
    for _ in range(50):  # TFLM's max pool has no dilation: draw until the case is undilated
        g = max_pool_graph(rng, dims=dims, dtype=dtype)
        if g.ops[0].attrs["dilation"] == [1, 1]:
            break
    assert g.ops[0].attrs["dilation"] == [1, 1]
    x = random_input(rng, g, n=2)
    lowest = int(np.iinfo(dtype).min)
    ref = tflm.max_pool(_nhwc(x), lowest=lowest, **_pool_kwargs(g))
    np.testing.assert_array_equal(
        run(g, x).astype(np.int64), _from_nhwc(ref, g.tensors[g.output].shape)
    )


def test_reference_rounding_primitives_match_known_values() -> None:
    """Spot values of gemmlowp's primitives, worked by hand, guard the reference itself."""
    # SRDHM(2^30, 2^30) = round(2·2^60 / 2^32) = 2^29
    assert tflm.saturating_rounding_doubling_high_mul(2**30, 2**30) == 2**29
    assert tflm.saturating_rounding_doubling_high_mul(-(2**31), -(2**31)) == 2**31 - 1
    # RoundingDivideByPOT rounds half away from zero: 5/2 → 3, −5/2 → −3, −3/2 → −2, 3/4 → 1
    assert [tflm.rounding_divide_by_pot(v, e) for v, e in [(5, 1), (-5, 1), (-3, 1), (3, 2)]] == [
        3,
        -3,
        -2,
        1,
    ]
    # M = 2^30, shift 0 is a real multiplier of 1/2; SRDHM rounds ties up: 3.5 → 4, −3.5 → −3
    assert tflm.multiply_by_quantized_multiplier(7, 2**30, 0) == 4
    assert tflm.multiply_by_quantized_multiplier(-7, 2**30, 0) == -3
    # shift −1 moves the rounding into RoundingDivideByPOT (half away): −7/4 = −1.75 → −2,
    # −6/4 = −1.5 → −2
    assert tflm.multiply_by_quantized_multiplier(-7, 2**30, -1) == -2
    assert tflm.multiply_by_quantized_multiplier(-6, 2**30, -1) == -2
