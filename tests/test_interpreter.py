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
    random_chain,
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


# ==============================================================================================
# Every op against float PyTorch: dequantized integer result within a few LSB of the float op
# ==============================================================================================

import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from intgraph_factory import GraphBuilder, add_const_op, layer_norm_op, matmul_op, slice_op  # noqa: E402
from intquant import interpreter, numerics  # noqa: E402
from intquant.interpreter import InterpreterError  # noqa: E402
from intquant.intgraph import ACTIVATION_DTYPES, IntGraph, Op, TensorInfo  # noqa: E402, F811
from intquant.ops import OPS  # noqa: E402

# The reference of every op kind (its module's ``run``) and the helpers they share.
REFERENCE_FILES = {sys.modules[d.run.__module__].__file__ for d in OPS.values()} | {
    sys.modules["intquant.ops._reference"].__file__,
    sys.modules["intquant.ops._weighted"].__file__,
}


def f32(v: float) -> float:
    """Scales are float32 values (as TFLM stores them)."""
    return float(np.float32(v))


def deq(q: np.ndarray, info: TensorInfo) -> np.ndarray:
    return info.scale * (q.astype(np.float64) - info.zero_point)


def to_t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def one_op_graph(kind: str, x: TensorInfo, y: TensorInfo, attrs: dict, consts=None) -> IntGraph:
    op = Op("layer", kind, [x.name], y.name, attrs, consts or {})
    return IntGraph({x.name: x, y.name: y}, [op], x.name, y.name).validate()


def output_qparams(ref: np.ndarray, dtype: str, name: str = "y") -> tuple[float, int]:
    """Affine int8/uint8 or symmetric int16 qparams covering the float reference output."""
    lo, hi = ACTIVATION_DTYPES[dtype]
    rmin, rmax = min(float(ref.min()), 0.0), max(float(ref.max()), 0.0)
    if dtype == "int16":
        return f32(max(abs(rmin), abs(rmax)) / hi), 0
    s = f32((rmax - rmin) / (hi - lo))
    return s, int(np.clip(round(lo - rmin / s), lo, hi))


def assert_within_lsb(
    ours: np.ndarray,
    ref_real: np.ndarray,
    info: TensorInfo,
    tol: float,
    act: tuple[int, int] | None = None,
) -> None:
    """|ours − clamp(ref/s + z)| <= tol, in units of the output scale (LSB)."""
    lo, hi = act or ACTIVATION_DTYPES[info.dtype]
    ref_q = np.clip(ref_real / info.scale + info.zero_point, lo, hi)
    err = np.abs(ours.astype(np.float64) - ref_q)
    assert err.max() <= tol, f"max error {err.max():.3f} LSB > {tol} (mean {err.mean():.3f})"


def random_q(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    lo, hi = ACTIVATION_DTYPES[dtype]
    return rng.integers(lo, hi + 1, size=shape).astype(dtype)


# -- conv / fully connected ---------------------------------------------------------------------

CONV_FLOAT_CASES = [
    # dims, cin, cout, groups, kernel, stride, padding (t, l, b, r), dilation, dtype, relu
    (1, 3, 8, 1, 5, 2, (0, 2, 0, 2), 1, "int8", False),
    (2, 4, 6, 1, 3, 1, (1, 1, 1, 1), 1, "int8", True),
    (2, 4, 4, 2, 3, 2, (2, 2, 2, 2), 2, "int8", False),  # grouped, strided, dilated
    (2, 6, 6, 6, 3, 1, (1, 1, 1, 1), 1, "int8", False),  # depthwise
    (2, 3, 6, 3, 3, 2, (1, 1, 1, 1), 1, "int8", False),  # depthwise, multiplier 2
    (2, 4, 5, 1, 3, 1, (0, 1, 2, 0), 1, "int8", False),  # asymmetric padding
    (1, 4, 6, 2, 3, 1, (0, 1, 0, 1), 2, "uint8", False),
    (1, 2, 5, 1, 3, 1, (0, 1, 0, 1), 1, "int16", False),  # 16x8, int64 accumulator
    (2, 3, 4, 1, 3, 2, (1, 1, 1, 1), 1, "int16", True),
]


@pytest.mark.parametrize("case", CONV_FLOAT_CASES)
def test_conv_matches_float_torch(case: tuple) -> None:
    dims, cin, cout, groups, k, stride, pad, dil, dtype, relu = case
    rng = np.random.default_rng(hash(case) % 2**32)
    spatial = (11,) if dims == 1 else (7, 8)
    xq = random_q(rng, (3, cin, *spatial), dtype)
    zx = 0 if dtype == "int16" else int(rng.integers(-10, 10)) + (128 if dtype == "uint8" else 0)
    xi = TensorInfo("x", (cin, *spatial), dtype, f32(0.05 if dtype != "int16" else 1e-4), zx)
    kh = 1 if dims == 1 else k
    w = rng.normal(size=(cout, cin // groups, kh, k))
    sw = np.array([f32(v) for v in np.abs(w).reshape(cout, -1).max(axis=1) / 127])
    wq = np.round(w / sw[:, None, None, None]).astype(np.int8)
    acc_bits = 64 if dtype == "int16" else 32
    bq = np.round(rng.normal(size=cout) / (xi.scale * sw)).astype(f"int{acc_bits}")
    # Float reference with the quantized weights/bias (isolates the op's integer arithmetic).
    xr = to_t(deq(xq, xi))
    wr = to_t(sw[:, None, None, None] * wq)
    br = to_t(xi.scale * sw * bq)
    t, left, b, r = pad
    if dims == 1:
        ref = F.conv1d(F.pad(xr, (left, r)), wr[:, :, 0], br, stride, 0, dil, groups)
    else:
        ref = F.conv2d(F.pad(xr, (left, r, t, b)), wr, br, stride, 0, dil, groups)
    ref = ref.numpy()
    if relu:
        ref = np.maximum(ref, 0)
    s_out, z_out = output_qparams(ref, dtype)
    yi = TensorInfo("y", ref.shape[1:], dtype, s_out, z_out)
    m, sh = numerics.quantize_multipliers(xi.scale * sw / s_out)
    lo, hi = ACTIVATION_DTYPES[dtype]
    act = (max(lo, z_out) if relu else lo, hi)
    attrs = {
        "stride": [1, stride] if dims == 1 else [stride, stride],
        "padding": list(pad),
        "dilation": [1, dil] if dims == 1 else [dil, dil],
        "groups": groups,
        "input_zero_point": zx,
        "output_zero_point": z_out,
        "act_min": act[0],
        "act_max": act[1],
        "acc_bits": acc_bits,
        "rounding": "double",
    }
    consts = {"weight": wq, "bias": bq, "multiplier": m, "shift": sh}
    g = one_op_graph("conv", xi, yi, attrs, consts)
    ours = run(g, xq)
    # double rounding: < 1 LSB; 16x8's 15-bit multiplier adds up to 2^-15 relative
    assert_within_lsb(ours, ref, yi, tol=1.0 if dtype != "int16" else 2.0, act=act)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
@pytest.mark.parametrize("rounding", ["double", "single", "pow2"])
def test_fully_connected_matches_float_torch(dtype: str, rounding: str) -> None:
    rng = np.random.default_rng(7)
    cin, cout = 20, 7
    xq = random_q(rng, (16, cin), dtype)
    zx = {"int8": -3, "uint8": 130, "int16": 0}[dtype]
    xi = TensorInfo("x", (cin,), dtype, f32(2.0**-5 if dtype != "int16" else 2.0**-12), zx)
    w = rng.normal(size=(cout, cin))
    if rounding == "pow2":  # power-of-two scales everywhere: the multiplier is a pure shift
        sw = 2.0 ** np.ceil(np.log2(np.abs(w).max(axis=1) / 127))
    else:
        sw = np.array([f32(v) for v in np.abs(w).max(axis=1) / 127])
    wq = np.round(w / sw[:, None]).astype(np.int8)
    acc_bits = 64 if dtype == "int16" else 32
    bq = np.round(rng.normal(size=cout) / (xi.scale * sw)).astype(f"int{acc_bits}")
    ref = (F.linear(to_t(deq(xq, xi)), to_t(sw[:, None] * wq), to_t(xi.scale * sw * bq))).numpy()
    s_out, z_out = output_qparams(ref, dtype)
    if rounding == "pow2":
        s_out = 2.0 ** np.ceil(np.log2(s_out))
        z_out = (
            z_out if dtype == "int16" else int(np.clip(round(-128 - ref.min() / s_out), -128, 127))
        )
        z_out = z_out if dtype != "uint8" else int(np.clip(round(-ref.min() / s_out), 0, 255))
        e = np.round(np.log2(xi.scale * sw / s_out)).astype(np.int32)
        m, sh = np.full(cout, 2**30, dtype=np.int32), (e + 1).astype(np.int32)
    else:
        m, sh = numerics.quantize_multipliers(xi.scale * sw / s_out)
    yi = TensorInfo("y", (cout,), dtype, float(s_out), z_out)
    lo, hi = ACTIVATION_DTYPES[dtype]
    attrs = {
        "input_zero_point": zx,
        "output_zero_point": z_out,
        "act_min": lo,
        "act_max": hi,
        "acc_bits": acc_bits,
        "rounding": rounding,
    }
    g = one_op_graph(
        "fully_connected", xi, yi, attrs, {"weight": wq, "bias": bq, "multiplier": m, "shift": sh}
    )
    assert_within_lsb(run(g, xq), ref, yi, tol=1.0 if dtype != "int16" else 2.0)


# -- add / rescale -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype,relu,rounding",
    [
        ("int8", False, "double"),
        ("int8", True, "single"),
        ("uint8", False, "double"),
        ("int16", False, "double"),
    ],
)
def test_add_matches_float_torch(dtype: str, relu: bool, rounding: str) -> None:
    rng = np.random.default_rng(11)
    b = GraphBuilder(rng, (3, 9), dtype)
    other = b.rescale(b.input)
    y = b.add(b.input, other, rounding=rounding, relu=relu)
    g = b.graph()
    vals = run(g, random_q(rng, (4, 3, 9), dtype), return_all=True)
    ref = torch.add(
        to_t(deq(vals[b.input], g.tensors[b.input])), to_t(deq(vals[other], g.tensors[other]))
    ).numpy()
    if relu:
        ref = np.maximum(ref, 0)
    assert_within_lsb(vals[y], ref, g.tensors[y], tol=1.0)


@pytest.mark.parametrize(
    "src,dst,z_in",
    [
        ("int8", "int8", None),
        ("uint8", "int8", 127.5),
        ("int8", "int16", None),
        ("int16", "int8", None),
    ],
)
def test_rescale_matches_float(src: str, dst: str, z_in: float | None) -> None:
    """Including a fractional input zero point (raw uint8 pixels normalised by mean 127.5)."""
    rng = np.random.default_rng(12)
    b = GraphBuilder(rng, (2, 10), src)
    y = b.rescale(b.input, out_dtype=dst, input_zero_point=z_in)
    g = b.graph()
    xq = random_q(rng, (5, 2, 10), src)
    xi = g.tensors[b.input]
    zin = xi.zero_point if z_in is None else z_in
    ref = xi.scale * (xq.astype(np.float64) - zin)
    assert_within_lsb(run(g, xq), ref, g.tensors[y], tol=1.0)


# -- pools ----------------------------------------------------------------------------------------

POOL_CASES = [  # dims, kernel, stride, pad, dilation
    (1, 3, 2, 1, 1),
    (2, 2, 2, 0, 1),
    (2, 3, 1, 1, 1),
    (2, 3, 2, 1, 2),
    (1, 4, 3, 2, 1),
]


def _pool_graph(
    kind: str, dims: int, k: int, s: int, p: int, d: int, dtype: str, attrs_extra: dict
) -> tuple[IntGraph, TensorInfo]:
    shape = (3, 13) if dims == 1 else (3, 9, 10)
    zp = {"int8": 5, "uint8": 120, "int16": 0}[dtype]
    xi = TensorInfo("x", shape, dtype, f32(0.03), zp)
    hw = [1, shape[1]] if dims == 1 else list(shape[1:])
    kk = [1, k] if dims == 1 else [k, k]
    ss = [1, s] if dims == 1 else [s, s]
    pp = [0, p, 0, p] if dims == 1 else [p, p, p, p]
    dd = [1, d] if dims == 1 else [d, d]
    out = [
        (hw[i] + 2 * pp[i + 1 - 1 if i == 0 else 1] - dd[i] * (kk[i] - 1) - 1) // ss[i] + 1
        for i in range(2)
    ]
    out = [
        (hw[0] + pp[0] + pp[2] - dd[0] * (kk[0] - 1) - 1) // ss[0] + 1,
        (hw[1] + pp[1] + pp[3] - dd[1] * (kk[1] - 1) - 1) // ss[1] + 1,
    ]
    oshape = (3, out[1]) if dims == 1 else (3, *out)
    yi = TensorInfo("y", oshape, dtype, xi.scale, zp)
    lo, hi = ACTIVATION_DTYPES[dtype]
    attrs = {"kernel": kk, "stride": ss, "padding": pp, "act_min": lo, "act_max": hi}
    if kind == "max_pool":
        attrs["dilation"] = dd
    attrs.update(attrs_extra)
    return one_op_graph(kind, xi, yi, attrs), xi


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_max_pool_matches_float_torch(case: tuple, dtype: str) -> None:
    dims, k, s, p, d = case
    g, xi = _pool_graph("max_pool", dims, k, s, p, d, dtype, {})
    xq = random_q(np.random.default_rng(13), (4, *xi.shape), dtype)
    pool = F.max_pool1d if dims == 1 else F.max_pool2d
    ref = pool(to_t(deq(xq, xi)), k, s, p, d).numpy()
    np.testing.assert_array_equal(deq(run(g, xq), g.tensors["y"]), ref)  # raw values: exact


@pytest.mark.parametrize("case", [c for c in POOL_CASES if c[4] == 1])
@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_avg_pool_matches_float_torch(case: tuple, count_include_pad: int, dtype: str) -> None:
    dims, k, s, p, _ = case
    zp = {"int8": 5, "uint8": 120, "int16": 0}[dtype]
    g, xi = _pool_graph(
        "avg_pool",
        dims,
        k,
        s,
        p,
        1,
        dtype,
        {"count_include_pad": count_include_pad, "zero_point": zp},
    )
    xq = random_q(np.random.default_rng(14), (4, *xi.shape), dtype)
    pool = F.avg_pool1d if dims == 1 else F.avg_pool2d
    ref = pool(to_t(deq(xq, xi)), k, s, p, count_include_pad=bool(count_include_pad)).numpy()
    assert_within_lsb(run(g, xq), ref, g.tensors["y"], tol=0.5 + 1e-9)  # one rounding


@pytest.mark.parametrize("dims", [1, 2])
def test_global_avg_pool_matches_adaptive_avg_pool(dims: int) -> None:
    rng = np.random.default_rng(15)
    b = GraphBuilder(rng, (4, 17) if dims == 1 else (4, 5, 7), "int8")
    y = b.global_avg_pool(b.input)
    g = b.graph()
    xq = random_q(rng, (6, *g.tensors[b.input].shape), "int8")
    pool = F.adaptive_avg_pool1d if dims == 1 else F.adaptive_avg_pool2d
    ref = pool(to_t(deq(xq, g.tensors[b.input])), 1).numpy()
    assert_within_lsb(run(g, xq), ref, g.tensors[y], tol=0.5 + 1e-9)


def test_avg_pool_rounds_half_away_from_zero() -> None:
    """Hand-worked: windows of 2 summing to ±3 and ±1 give ±2 and ±1 (C's (s ± c/2) / c)."""
    xi = TensorInfo("x", (1, 8), "int8", 1.0, 0)
    yi = TensorInfo("y", (1, 4), "int8", 1.0, 0)
    attrs = {
        "kernel": [1, 2],
        "stride": [1, 2],
        "padding": [0, 0, 0, 0],
        "count_include_pad": 0,
        "zero_point": 0,
        "act_min": -128,
        "act_max": 127,
    }
    g = one_op_graph("avg_pool", xi, yi, attrs)
    x = np.array([[[1, 2, -1, -2, 0, 1, 0, -1]]], dtype=np.int8)
    np.testing.assert_array_equal(run(g, x), [[[2, -2, 1, -1]]])


# -- data movement and clamp: raw values, exact ---------------------------------------------------


def test_concat_pad_reshape_transpose_clamp_match_torch_exactly() -> None:
    rng = np.random.default_rng(16)
    b = GraphBuilder(rng, (3, 4, 5), "int8")
    x = b.input
    c = b.clamp(x, act_min=-20, act_max=60)
    cat = b.concat([x, c, x], axis=1)
    padded = b.pad(cat, [1, 0, 0, 2, 3, 1], value=-7)
    tr = b.transpose(padded, [2, 0, 1])
    flat = b.reshape(tr, (2, -1) if False else (2, int(np.prod(b.info(tr).shape)) // 2))
    g = b.graph(flat)
    xq = random_q(rng, (2, 3, 4, 5), "int8")
    vals = run(g, xq, return_all=True)
    info = g.tensors[x]
    xr = to_t(deq(xq, info))
    lo_r, hi_r = deq(np.array(-20), info), deq(np.array(60), info)
    ref_c = torch.clamp(xr, float(lo_r), float(hi_r))
    ref_cat = torch.cat([xr, ref_c, xr], dim=2)
    ref_pad = F.pad(ref_cat, (3, 1, 0, 2, 1, 0), value=float(deq(np.array(-7), info)))
    ref_tr = ref_pad.permute(0, 3, 1, 2)
    ref_flat = ref_tr.reshape(2, 2, -1)
    for name, ref in [
        (c, ref_c),
        (cat, ref_cat),
        (padded, ref_pad),
        (tr, ref_tr),
        (flat, ref_flat),
    ]:
        np.testing.assert_array_equal(deq(vals[name], g.tensors[name]), ref.numpy(), err_msg=name)


# -- lut and softmax ----------------------------------------------------------------------------


def lut_table_8bit(f, xi: TensorInfo, yi: TensorInfo) -> np.ndarray:
    codes = np.arange(-128, 128) if xi.dtype == "int8" else np.arange(256)
    real = f(to_t(xi.scale * (codes - xi.zero_point))).numpy()
    lo, hi = ACTIVATION_DTYPES[yi.dtype]
    return np.clip(np.round(real / yi.scale) + yi.zero_point, lo, hi).astype(yi.dtype)


def lut_table_16bit(f, xi: TensorInfo, yi: TensorInfo) -> np.ndarray:
    x_at = np.arange(513) * 128 - 32768  # table[i] = f at x = i·128 − 32768
    real = f(to_t(xi.scale * (x_at - xi.zero_point))).numpy()
    lo, hi = ACTIVATION_DTYPES[yi.dtype]
    return np.clip(np.round(real / yi.scale) + yi.zero_point, lo, hi).astype(np.int32)


LUT_FUNCS = {
    "sigmoid": (torch.sigmoid, 1 / 256, -128),
    "tanh": (torch.tanh, 1 / 128, 0),
    "leaky_relu": (lambda t: F.leaky_relu(t, 0.1), 0.05, -100),
}


@pytest.mark.parametrize("fname", list(LUT_FUNCS))
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_lut_8bit_matches_float_torch(fname: str, dtype: str) -> None:
    f, s_out, z_out = LUT_FUNCS[fname]
    xi = TensorInfo("x", (2, 50), dtype, f32(0.06), 10 if dtype == "int8" else 128)
    yi = TensorInfo("y", (2, 50), "int8", f32(s_out), z_out)
    g = one_op_graph(
        "lut", xi, yi, {"act_min": -128, "act_max": 127}, {"table": lut_table_8bit(f, xi, yi)}
    )
    xq = random_q(np.random.default_rng(17), (3, 2, 50), dtype)
    ref = f(to_t(deq(xq, xi))).numpy()
    assert_within_lsb(run(g, xq), ref, yi, tol=0.5 + 1e-9)


@pytest.mark.parametrize(
    "fname,s_out,max_f2",
    [("sigmoid", 2**-15, 0.0963), ("tanh", 2**-15, 0.770), ("leaky_relu", 2**-11, 0.0)],
)
def test_lut_int16_interpolated_matches_float_torch(fname: str, s_out: float, max_f2: float):
    """Error bound: 1 LSB of rounding + linear interpolation error h²/8·max|f''| (h = 128·s_in).

    (leaky_relu's kink sits on a table point, x = 0, so interpolation is exact there.)
    """
    f = LUT_FUNCS[fname][0]
    xi = TensorInfo("x", (4, 64), "int16", 2**-12, 0)  # inputs in [−8, 8)
    yi = TensorInfo("y", (4, 64), "int16", s_out, 0)
    g = one_op_graph(
        "lut", xi, yi, {"act_min": -32768, "act_max": 32767}, {"table": lut_table_16bit(f, xi, yi)}
    )
    xq = random_q(np.random.default_rng(18), (3, 4, 64), "int16")
    ref = f(to_t(deq(xq, xi))).numpy()
    h = 128 * xi.scale
    assert_within_lsb(run(g, xq), ref, yi, tol=1.0 + h**2 / 8 * max_f2 / s_out + 1e-9)


def softmax_exp_table(s_in: float, lut_shift: int, max_d: int) -> np.ndarray:
    n = max_d // 2**lut_shift + 1
    vals = np.round(2.0**30 * np.exp(-np.arange(n) * 2**lut_shift * s_in)).astype(np.int64)
    vals = vals[: int(np.count_nonzero(vals))]
    return np.append(vals, 0).astype(np.int32)


@pytest.mark.parametrize(
    "dtype,s_in,lut_shift,tol",
    [
        ("int8", 0.1, 0, 1.0),
        ("int8", 0.02, 0, 1.0),
        ("int16", 2**-10, 5, 2.0),
        ("int16", 2**-12, 7, 3.0),
    ],
)
def test_softmax_matches_float_torch(dtype: str, s_in: float, lut_shift: int, tol: float) -> None:
    out_dtype, rng_out, z_out = ("int8", 256, -128) if dtype == "int8" else ("int16", 32768, 0)
    xi = TensorInfo("x", (3, 10), dtype, f32(s_in), 0)
    yi = TensorInfo("y", (3, 10), out_dtype, 1.0 / rng_out, z_out)
    lo, hi = ACTIVATION_DTYPES[dtype]
    table = softmax_exp_table(xi.scale, lut_shift, hi - lo)
    lo_o, hi_o = ACTIVATION_DTYPES[out_dtype]
    attrs = {
        "lut_shift": lut_shift,
        "output_zero_point": z_out,
        "output_range": rng_out,
        "act_min": lo_o,
        "act_max": hi_o,
    }
    g = one_op_graph("softmax", xi, yi, attrs, {"exp_table": table})
    rng = np.random.default_rng(19)
    xq = random_q(rng, (8, 3, 10), dtype)
    xq[0] = 0  # a uniform row: every class 1/10
    ref = torch.softmax(to_t(deq(xq, xi)), dim=-1).numpy()
    assert_within_lsb(run(g, xq), ref, yi, tol=tol)


# ==============================================================================================
# Run-path properties: errors at the edge, no float anywhere, speed
# ==============================================================================================


def test_run_rejects_wrong_dtype_and_shape() -> None:
    g = conv_graph(np.random.default_rng(20), dims=1, dtype="int8")
    x = random_input(np.random.default_rng(0), g, 2)
    with pytest.raises(InterpreterError, match="must have dtype int8, got float32; quantize"):
        run(g, x.astype(np.float32))
    with pytest.raises(InterpreterError, match="must have dtype int8, got int16"):
        run(g, x.astype(np.int16))
    with pytest.raises(InterpreterError, match="leading batch dimension"):
        run(g, x[0])


def test_run_outputs_are_stored_in_tensor_dtypes() -> None:
    g = random_chain(np.random.default_rng(21), 10, dims=2, dtype="int8")
    vals = run(g, random_input(np.random.default_rng(0), g, 2), return_all=True)
    for name, v in vals.items():
        assert v.dtype == np.dtype(g.tensors[name].dtype), name
        assert v.shape[1:] == g.tensors[name].shape, name


def every_op_graph(dtype: str) -> IntGraph:
    """One graph holding every op kind (and every rounding mode)."""
    rng = np.random.default_rng(22)
    b = GraphBuilder(rng, (3, 8, 8), dtype)
    acc = {"acc_bits": 64} if dtype == "int16" else {}
    t = b.conv(b.input, 4, (3, 3), (1, 1), (1, 1, 1, 1), relu=True, **acc)
    t = b.conv(
        t,
        4,
        (3, 3),
        (1, 1),
        (1, 1, 1, 1),
        groups=4,
        rounding="single" if dtype != "int16" else "double",
        **acc,
    )
    r = b.conv(t, 4, (1, 1), rounding="pow2", **acc)
    t = b.add(t, r)
    t = b.max_pool(t, (2, 2), (2, 2))
    t = b.avg_pool(t, (3, 3), (1, 1), (1, 1, 1, 1), count_include_pad=True)
    t = b.concat([t, b.clamp(t)], axis=0)
    t = b.pad(t, [0, 0, 1, 1, 0, 1])
    t = b.transpose(t, [0, 2, 1])
    t = b.lut(t)
    t = b.rescale(t)
    t = b.lrn(t, size=3)
    t = layer_norm_op(b, t)
    t = add_const_op(b, t)
    t = matmul_op(b, t, b.rescale(t), transpose_b=True)
    t = slice_op(b, t, 1, 1, 2, 2)
    t = b.flatten(t)
    t = b.fully_connected(t, 6, **acc)
    t = b.softmax(t)
    g = b.graph(t)
    assert {op.kind for op in g.ops} == set(OPS)
    return g


class FloatArrayTracer:
    """sys.settrace hook: inspects every ndarray local (and return value) in watched files."""

    def __init__(self, files: set[str]) -> None:
        self.files = files
        self.found: list[str] = []
        self.frames_seen = 0

    def _inspect(self, frame, values) -> None:
        for name, v in values:
            arrays = v if isinstance(v, list | tuple) else [v]
            for a in arrays:
                if isinstance(a, np.ndarray | np.generic) and a.dtype.kind not in "iub":
                    self.found.append(f"{frame.f_code.co_name}:{frame.f_lineno} {name} {a.dtype}")

    def __call__(self, frame, event, arg):
        if frame.f_code.co_filename not in self.files:
            return None
        self.frames_seen += 1
        return self._local

    def _local(self, frame, event, arg):
        self._inspect(frame, frame.f_locals.items())
        if event == "return":
            self._inspect(frame, [("<return>", arg)])
        return self._local

    def trace(self, fn, *args, **kwargs):
        old = sys.gettrace()
        sys.settrace(self)
        try:
            return fn(*args, **kwargs)
        finally:
            sys.settrace(old)


def _make_float_on_purpose(x: np.ndarray) -> np.ndarray:
    y = x / 2  # true division: float64
    return (y > 0).astype(np.int8)


def test_float_tracer_detects_a_float_array() -> None:
    """The tracer itself can fail: a function in a watched file that makes a float is caught."""
    tracer = FloatArrayTracer({__file__})
    tracer.trace(_make_float_on_purpose, np.arange(4))
    assert any("float64" in f for f in tracer.found)


@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_no_float_array_is_created_in_the_run(dtype: str) -> None:
    g = every_op_graph(dtype)
    x = random_input(np.random.default_rng(0), g, 3)
    tracer = FloatArrayTracer({interpreter.__file__, numerics.__file__, *REFERENCE_FILES})
    out = tracer.trace(run, g, x, return_all=True)
    assert tracer.frames_seen > 50  # the tracer really watched the run
    assert tracer.found == [], tracer.found[:10]
    assert all(v.dtype.kind in "iu" for v in out.values())


def small_cnn_1d() -> IntGraph:
    """conv 1→32 k5 s2 p2 on L40, conv 32→32 k3 s2 p1, conv 32→32 k3 p1, global pool, linear."""
    b = GraphBuilder(np.random.default_rng(23), (1, 40), "int8")
    t = b.conv(b.input, 32, (1, 5), (1, 2), (0, 2, 0, 2), relu=True)
    t = b.conv(t, 32, (1, 3), (1, 2), (0, 1, 0, 1), relu=True)
    t = b.conv(t, 32, (1, 3), (1, 1), (0, 1, 0, 1), relu=True)
    t = b.flatten(b.global_avg_pool(t))
    b.fully_connected(t, 10)
    return b.graph()


def test_interpreter_speed_small_1d_cnn() -> None:
    """1000 samples through a small 1-D CNN in well under 1 s.

    Measured as process CPU time (~0.1 s here), which a busy CI machine does not inflate the
    way it inflates wall-clock time; NumPy's integer kernels are single-threaded.
    """
    g = small_cnn_1d()
    x = random_input(np.random.default_rng(0), g, 1000)
    run(g, x)
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        y = run(g, x)
        best = min(best, time.process_time() - t0)
    assert y.shape == (1000, 10)
    assert best < 1.0, f"interpreter took {best:.2f} s CPU for 1000 samples"


def test_batch_chunking_does_not_change_results(monkeypatch) -> None:
    """Every op is per sample: running in chunks equals running sample by sample."""
    g = every_op_graph("int8")
    x = random_input(np.random.default_rng(1), g, 7)
    monkeypatch.setattr(interpreter, "_CHUNK_ELEMENTS", 1)  # one sample per chunk
    chunked = run(g, x, return_all=True)
    monkeypatch.setattr(interpreter, "_CHUNK_ELEMENTS", 2**30)  # whole batch at once
    whole = run(g, x, return_all=True)
    one_by_one = [run(g, x[i : i + 1]) for i in range(7)]
    assert chunked.keys() == whole.keys()
    for k in whole:
        np.testing.assert_array_equal(chunked[k], whole[k])
    np.testing.assert_array_equal(whole[g.output], np.concatenate(one_by_one))


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_random_chains_cover_every_op_kind_and_run(dtype: str) -> None:
    """The factory's chains (reused by the C back-end tests) exercise every op kind."""
    kinds: set[str] = set()
    for seed in range(8):
        g = random_chain(np.random.default_rng(seed), 10, dims=1 + seed % 2, dtype=dtype)
        y = run(g, random_input(np.random.default_rng(seed), g, 2))
        assert y.dtype == np.dtype(g.tensors[g.output].dtype)
        kinds |= {op.kind for op in g.ops}
    assert kinds == set(OPS)
