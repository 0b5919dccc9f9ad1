"""conv: Conv1d / Conv2d, depthwise, grouped, with per-channel requantization
(src/intquant/ops/conv.py; shared with fully_connected in ops/_weighted.py)."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest
import torch.nn.functional as TF

import intgraph_factory as F
import tflm_reference as tflm
from intgraph_factory import GraphBuilder
from intquant import numerics
from intquant.interpreter import run
from intquant.intgraph import ACTIVATION_DTYPES, IntGraph, TensorInfo

from .conftest import (
    assert_c_o2_and_m0_equal_reference,
    assert_rejected,
    assert_within_lsb,
    c_host_test,
    c_m0_test,
    deq,
    f32,
    from_nhwc,
    nhwc,
    one_op_graph,
    onnx_export_test,
    onnx_float_mode_test,
    onnx_int8_products_test,
    out_hw,
    output_qparams,
    quantize_path_test,
    random_q,
    round_half_away,
    round_half_up,
    seeded_rng,
    to_t,
    weighted_onnx_variant,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------

FLOAT_CASES = [
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


@pytest.mark.parametrize("case", FLOAT_CASES)
def test_conv_matches_float_torch(case: tuple) -> None:
    """Float reference with the quantized weights and bias (isolates the integer arithmetic):
    double rounding < 1 LSB; 16x8's 15-bit multiplier adds up to 2^-15 relative."""
    dims, cin, cout, groups, k, stride, pad, dil, dtype, relu = case
    rng = seeded_rng(*case)
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
    xr = to_t(deq(xq, xi))
    wr = to_t(sw[:, None, None, None] * wq)
    br = to_t(xi.scale * sw * bq)
    t, left, b, r = pad
    if dims == 1:
        ref = TF.conv1d(TF.pad(xr, (left, r)), wr[:, :, 0], br, stride, 0, dil, groups)
    else:
        ref = TF.conv2d(TF.pad(xr, (left, r, t, b)), wr, br, stride, 0, dil, groups)
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
    assert_within_lsb(run(g, xq), ref, yi, tol=1.0 if dtype != "int16" else 2.0, act=act)


test_conv_matches_float_after_quantize = quantize_path_test("conv")


def tflm_conv(g: IntGraph, x: np.ndarray) -> np.ndarray:
    """The graph's conv through TFLM's ConvPerChannel / DepthwiseConvPerChannel (NHWC)."""
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
        out_hw=out_hw(g),
        act_min=a["act_min"],
        act_max=a["act_max"],
        int16x8=a["acc_bits"] == 64,
    )
    consts = (op.consts["bias"], op.consts["multiplier"], op.consts["shift"])
    if a["groups"] == cin and cin_g == 1 and cin > 1:
        filt = w[:, 0].transpose(1, 2, 0)[None]  # [1, kh, kw, Cin·mult]
        y = tflm.depthwise_conv_per_channel(
            nhwc(x), filt, *consts, depth_multiplier=cout // cin, **common
        )
    else:
        y = tflm.conv_per_channel(nhwc(x), w.transpose(0, 2, 3, 1), *consts, **common)
    return from_nhwc(y, g.tensors[g.output].shape)


TFLM_CASES = [
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
    "case", TFLM_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items())
)
@pytest.mark.parametrize("seed", range(3))
def test_conv_matches_tflm_reference(case: dict, seed: int) -> None:
    """Bit-exact with the naive transcription of TFLM's conv kernels (tests/tflm_reference.py)."""
    rng = np.random.default_rng(1000 + seed)
    g = F.conv_graph(rng, **case)
    x = F.random_input(rng, g, n=2)
    ours = run(g, x)
    assert ours.dtype == np.dtype(g.tensors[g.output].dtype)
    np.testing.assert_array_equal(ours.astype(np.int64), tflm_conv(g, x))
    assert len(np.unique(ours)) > 3, "degenerate case: outputs do not vary"


# ---- (b) validation ---------------------------------------------------------------------------


def _conv() -> IntGraph:
    """One-op conv (x: (4, 6, 6) int8 → y), acc_bits 32, Cout 4, groups 2."""
    b = GraphBuilder(np.random.default_rng(4), (4, 6, 6), "int8")
    b.conv(b.input, 4, (3, 3), (1, 1), (1, 1, 1, 1), groups=2)
    return b.graph()


CONV = re.escape("op 0 'conv_0' (conv): ")
VALIDATION_CASES = [
    (F.cast_const(0, "bias", np.float32), CONV + "const 'bias' has dtype float32, expected int32"),
    (F.cast_const(0, "bias", np.int64), CONV + "const 'bias' has dtype int64, expected int32"),
    (F.cast_const(0, "weight", np.int32), "const 'weight' has dtype int32, expected int8 or int16"),
    (F.cast_const(0, "multiplier", np.int64), "const 'multiplier' has dtype int64, expected int32"),
    (F.edit_const(0, "weight", lambda w: w[:, :, 0]), "const 'weight' must be 4-D"),
    (F.edit_const(0, "bias", lambda b: b[:3]), "const 'bias' has 3 entries, expected Cout = 4"),
    (F.edit_const(0, "shift", lambda s: s[:2]), "const 'shift' has 2 entries, expected Cout = 4"),
    (F.edit_const(0, "multiplier", lambda m: -m), "const 'multiplier' values must be in"),
    (F.edit_const(0, "shift", lambda s: s * 0 + 31), r"'shift' values must be in \[-31, 30\]"),
    (F.edit_const(0, "weight", lambda w: w[:, :1]), "dim 1 must be Cin/groups = 2"),
    (F.set_field(0, "attrs", "act_min", 10), None),  # fine on its own (act_max is 127)
    (F.set_field(0, "attrs", "act_max", 200), "attr 'act_max' = 200 is out of range"),
    (F.set_field(0, "attrs", "act_max", -129), "attr 'act_max' = -129 is out of range"),
    (F.set_field(0, "attrs", "input_zero_point", 300), "attr 'input_zero_point' = 300 is out of"),
    (F.set_field(0, "attrs", "output_zero_point", 126), "differs from tensor 't1' zero_point"),
    (F.set_field(0, "attrs", "groups", 3), "attr 'groups' = 3 must divide Cin = 4"),
    (F.set_field(0, "attrs", "groups", 0), "attr 'groups' = 0 is out of range"),
    (F.set_field(0, "attrs", "stride", [0, 1]), "attr 'stride' entries must be >= 1"),
    (F.set_field(0, "attrs", "padding", [1, -1, 1, 1]), "attr 'padding' entries must be >= 0"),
    (F.set_field(0, "attrs", "padding", [1, 1, 1]), "attr 'padding' must have 4 entries"),
    (F.set_field(0, "attrs", "dilation", [2, 2]), r"output tensor 't1' has shape \(4, 6, 6\), exp"),
    (F.set_field(0, "attrs", "stride", [2, 2]), r"expected \(4, 3, 3\)"),
    (F.set_field(0, "attrs", "acc_bits", 16), "attr 'acc_bits' = 16, expected 32 or 64"),
    (F.set_field(0, "attrs", "acc_bits", True), "attr 'acc_bits' must be an integer, got True"),
    (F.set_field(0, "attrs", "act_min", 1.5), "attr 'act_min' must be an integer, got 1.5"),
    (F.set_field(0, "attrs", "rounding", "nearest"), "attr 'rounding' = 'nearest'"),
    (F.set_field(0, "attrs", "rounding", "pow2"), "rounding 'pow2' needs every const 'multiplier'"),
    (F.set_field(0, "attrs", "strides", [1, 1]), r"unknown attr\(s\) \['strides'\]"),
    (F.set_field(0, "consts", "zero_point", np.zeros(4, np.int32)), r"unknown const\(s\)"),
    (F.del_attr(0, "act_min"), "missing attr 'act_min'"),
    (F.set_field(0, "attrs", "rounding", "single"), None),
    (F.edit_const(0, "bias", lambda b: F.set_item(b, 0, 2**31 - 1)), "accumulator bound"),
    (F.set_field(0, "attrs", "kernel", [3, 3]), r"unknown attr\(s\) \['kernel'\]"),
    (F.set_tensor(0, shape=(4, 6, 6, 1)), r"input 't0' must have shape \(C, L\) or \(C, H, W\)"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_conv_validation_messages(mutate, message: str | None) -> None:
    assert_rejected(_conv(), mutate, message)


def test_conv_validation_accumulator_bound_needs_acc_bits_64() -> None:
    """int16 weights on int16 activations overflow an int32 accumulator: the check says so."""
    g = F.conv_graph(
        np.random.default_rng(8),
        dtype="int16",
        w_dtype="int16",
        cin=4,
        cout=4,
        groups=1,
        kernel=(3, 3),
        dilation=(1, 1),
        padding=(1, 1, 1, 1),
    )
    assert g.ops[0].attrs["acc_bits"] == 64

    def to_acc32(g_):
        g_.ops[0].attrs["acc_bits"] = 32
        g_.ops[0].consts["bias"] = g_.ops[0].consts["bias"].astype(np.int32)

    assert_rejected(g, to_acc32, r"accumulator bound \d+ >= 2\^31 for acc_bits 32; use")


def test_conv_validation_16x8_shift_limit_and_bias_dtype() -> None:
    g = F.conv_graph(np.random.default_rng(8), dtype="int16")
    assert g.ops[0].attrs["acc_bits"] == 64
    assert_rejected(g, F.edit_const(0, "shift", lambda s: s * 0 + 8),
                    r"const 'shift' values must be in \[-31, 7\]")
    assert_rejected(g, F.cast_const(0, "bias", np.int32),
                    "const 'bias' has dtype int32, expected int64")


def test_conv_validation_1d_weight_has_kh_1() -> None:
    g = F.conv_graph(np.random.default_rng(2), dims=1, kernel=(1, 3))
    assert_rejected(g, F.edit_const(0, "weight", lambda w: np.concatenate([w, w], axis=2)),
                    "1-D conv needs const 'weight' with kh = 1")


# ---- (c) goldens ------------------------------------------------------------------------------


def _conv_golden(x: np.ndarray, weight, bias, attrs: dict, multiplier, shift, out_shape):
    xi = TensorInfo("x", x.shape[1:], "int8", 1.0, attrs.get("input_zero_point", 0))
    yi = TensorInfo("y", out_shape, "int8", 1.0, attrs.get("output_zero_point", 0))
    full = {"stride": [1, 1], "padding": [0, 0, 0, 0], "dilation": [1, 1], "groups": 1,
            "input_zero_point": 0, "output_zero_point": 0, "act_min": -128, "act_max": 127,
            "acc_bits": 32, "rounding": "double", **attrs}
    consts = {"weight": np.array(weight, dtype=np.int8), "bias": np.array(bias, dtype=np.int32),
              "multiplier": np.array(multiplier, dtype=np.int32),
              "shift": np.array(shift, dtype=np.int32)}
    return run(one_op_graph("conv", xi, yi, full, consts), x.astype(np.int8))


def test_conv_golden_1d_by_hand() -> None:
    """x = [1, 2, 3, 4], input zero point 1, taps [2, 3], bias 5, real multiplier ½:
    acc = 5 + 2·(x[o] − 1) + 3·(x[o+1] − 1) = 8, 13, 18 → 4, 6.5 → 7 (half up), 9.
    With one pad each side (the pad holds the zero point, contributing 0): 5 → 3 first and
    5 + 2·3 = 11 → 6 last."""
    x = np.array([[[1, 2, 3, 4]]])
    half = dict(weight=[[[[2, 3]]]], bias=[5], multiplier=[2**30], shift=[0])
    y = _conv_golden(x, attrs={"input_zero_point": 1}, out_shape=(1, 3), **half)
    np.testing.assert_array_equal(y, [[[4, 7, 9]]])
    y = _conv_golden(x, attrs={"input_zero_point": 1, "padding": [0, 1, 0, 1]}, out_shape=(1, 5),
                     **half)
    np.testing.assert_array_equal(y, [[[3, 4, 7, 9, 6]]])


def test_conv_golden_depthwise_per_channel_multipliers() -> None:
    """2x2 depthwise on two 2x2 channels: channel 0 taps the diagonal, 1 + 4 + bias 1 = 6,
    times ½ → 3; channel 1 sums −1 − 2 − 3 − 4 = −10 with multiplier 2^30, shift 1 (real 1)."""
    x = np.array([[[[1, 2], [3, 4]], [[-1, -2], [-3, -4]]]])
    y = _conv_golden(x, weight=[[[[1, 0], [0, 1]]], [[[1, 1], [1, 1]]]], bias=[1, 0],
                     attrs={"groups": 2}, multiplier=[2**30, 2**30], shift=[0, 1],
                     out_shape=(2, 1, 1))
    np.testing.assert_array_equal(y, [[[[3]], [[-10]]]])


def test_conv_golden_grouped_strided_dilated_by_fractions() -> None:
    """A grouped 2-D conv with stride, dilation, asymmetric padding and clamping, computed here
    with plain loops and exact rationals: acc·M·2^(shift−31), rounded as TFLM does (the high
    multiply half up, then the right shift half away from zero)."""
    rng = np.random.default_rng(9)
    cin, cout, groups, (kh, kw), (sh, sw), (dh, dw) = 4, 6, 2, (2, 3), (1, 2), (2, 1)
    top, left, bottom, right = 1, 2, 0, 1
    x = rng.integers(-128, 128, size=(1, cin, 4, 6))
    w = rng.integers(-127, 128, size=(cout, cin // groups, kh, kw))
    bias = rng.integers(-3000, 3000, size=cout)
    mult = rng.integers(2**30, 2**31, size=cout)
    shift = rng.integers(-9, -6, size=cout)
    zx, zy = -3, 4
    ho = (4 + top + bottom - dh * (kh - 1) - 1) // sh + 1
    wo = (6 + left + right - dw * (kw - 1) - 1) // sw + 1
    want = np.zeros((cout, ho, wo), dtype=np.int64)
    for co in range(cout):
        g0 = (co // (cout // groups)) * (cin // groups)
        for oy in range(ho):
            for ox in range(wo):
                acc = int(bias[co])
                for ci in range(cin // groups):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oy * sh - top + ky * dh, ox * sw - left + kx * dw
                            if 0 <= iy < 4 and 0 <= ix < 6:
                                acc += int(w[co, ci, ky, kx]) * (int(x[0, g0 + ci, iy, ix]) - zx)
                high = round_half_up(Fraction(acc * int(mult[co]), 2**31))
                y = round_half_away(Fraction(high, 2 ** -int(shift[co]))) + zy
                want[co, oy, ox] = min(100, max(-128, y))
    attrs = {"stride": [sh, sw], "padding": [top, left, bottom, right], "dilation": [dh, dw],
             "groups": groups, "input_zero_point": zx, "output_zero_point": zy, "act_max": 100}
    y = _conv_golden(x, w, bias, attrs, mult, shift, (cout, ho, wo))
    assert np.unique(want).size > 10
    np.testing.assert_array_equal(y[0], want)


# ---- (d) C vs reference -----------------------------------------------------------------------

test_conv_c_host_equals_reference = c_host_test("conv")
test_conv_c_m0_equals_reference = c_m0_test("conv")


# name -> (input shape, dtype, conv kwargs): each hits one branch of iq_conv_impl.h.
KERNEL_CASES = {
    # direct depthwise, 1x3 interior run in registers, borders through the padded path
    "dw_1d_k3": ((6, 17), "int8", dict(cout=6, kernel=(1, 3), padding=(0, 1, 0, 1), groups=6)),
    # direct depthwise, generic tap table: stride 2, dilation 2, asymmetric padding, uint8
    "dw_1d_k5_s2_d2": (
        (4, 19),
        "uint8",
        dict(cout=4, kernel=(1, 5), stride=(1, 2), padding=(0, 3, 0, 1), dilation=(1, 2), groups=4),
    ),
    # direct depthwise 2-D: rows above / below the input are padded taps
    "dw_2d_3x3": ((5, 6, 7), "int8", dict(cout=5, kernel=(3, 3), padding=(1, 1, 1, 1), groups=5)),
    "dw_2d_s21": (
        (3, 7, 6),
        "int8",
        dict(cout=3, kernel=(3, 2), stride=(2, 1), padding=(1, 0, 0, 1), groups=3),
    ),
    # 1x1 conv: the strided channel gather of im2col; stride 2 skips positions
    "pointwise_s2": ((9, 12), "int8", dict(cout=6, kernel=(1, 1), stride=(1, 2))),
    # im2col interior rows unrolled: 1x3 (1-D) and 3-wide rows of a 3x3 with row dilation
    "conv_1d_k3": ((5, 14), "int8", dict(cout=6, kernel=(1, 3), padding=(0, 1, 0, 1))),
    "conv_2d_3x3_dh2": (
        (3, 8, 7),
        "uint8",
        dict(cout=5, kernel=(3, 3), padding=(1, 1, 2, 0), dilation=(2, 1)),
    ),
    # first-layer shape: one input channel, 1x5, padding 2 (interior and border windows)
    "cin1_k5": ((1, 23), "uint8", dict(cout=7, kernel=(1, 5), padding=(0, 2, 0, 2))),
    # general im2col: dilated columns, 2-D padding, grouped (2 groups of 2 -> 3 channels)
    "grouped_dilated": (
        (4, 6, 8),
        "int8",
        dict(cout=6, kernel=(3, 3), padding=(1, 2, 1, 0), dilation=(1, 2), groups=2),
    ),
}


def _kernel_case(name: str, big_multipliers: bool) -> IntGraph:
    shape, dtype, kw = KERNEL_CASES[name]
    kw = dict(kw)
    b = GraphBuilder(seeded_rng(name), shape, dtype)
    kernel, stride = kw.pop("kernel"), kw.pop("stride", (1, 1))
    padding, dilation = kw.pop("padding", (0, 0, 0, 0)), kw.pop("dilation", (1, 1))
    cout = kw.pop("cout")
    b.conv(b.input, cout, kernel, stride, padding, dilation, relu=name.startswith("dw"), **kw)
    g = b.graph()
    if big_multipliers:
        # shift > 0 takes the out-of-line path: mix it with shift 0 and the usual negative
        # shifts across channels, shrinking the multiplier to keep the real scale (and so
        # unsaturated outputs).
        op = g.ops[0]
        m, sh = op.consts["multiplier"].astype(np.int64), op.consts["shift"].astype(np.int64)
        new = np.array([(1, 0, 3, -2)[c % 4] for c in range(len(sh))])
        new = np.maximum(new, sh)
        op.consts["multiplier"] = (m >> (new - sh)).astype(np.int32)
        op.consts["shift"] = new.astype(np.int32)
        g.validate()
    return g


@pytest.mark.parametrize("big_multipliers", [False, True])
@pytest.mark.parametrize("name", sorted(KERNEL_CASES))
def test_conv_c_m0_kernel_paths_equal_reference(name: str, big_multipliers: bool, tmp_path):
    """The Cortex-M0 fast paths of iq_conv_impl.h (direct depthwise, strided / row-wise
    im2col, the asm requantization and its out-of-line shift > 0 path) on host -O2 and M0."""
    g = _kernel_case(name, big_multipliers)
    x = F.random_input(np.random.default_rng(5), g, 6)
    assert np.unique(run(g, x)).size > 8, "degenerate case: outputs do not vary"
    assert_c_o2_and_m0_equal_reference(g, x, tmp_path / "c")


# ---- (e) ONNX ---------------------------------------------------------------------------------


def _onnx_variant(trial: int) -> dict:
    return {**weighted_onnx_variant(trial), **({"depthwise": True} if trial == 4 else {})}


test_conv_onnx_integer_export_is_bit_exact = onnx_export_test("conv", _onnx_variant)
test_conv_onnx_integer_export_uses_only_int8_products = onnx_int8_products_test("conv")
test_conv_onnx_float_mode_within_one_lsb = onnx_float_mode_test("conv")
