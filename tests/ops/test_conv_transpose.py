"""conv_transpose: ConvTranspose1d / ConvTranspose2d with per-channel requantization
(src/intquant/ops/conv_transpose.py, runtime iq_conv_transpose.c).

Also its captures — nn.ConvTranspose1d/2d through torch.export and through the ONNX file
torch.onnx writes — and the MACs it spends (only the taps that land on input pixels).
"""

from __future__ import annotations

import io
import re
from fractions import Fraction

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as TF

import intgraph_factory as F
from intgraph_factory import GraphBuilder
from intquant.graph.capture import capture
from intquant.graph.execute import GraphModule
from intquant.graph.onnx_import import UnsupportedOnnxError, from_onnx
from intquant.interpreter import run
from intquant.intgraph import ACTIVATION_DTYPES, IntGraph, TensorInfo
from intquant.ops import op_def
from intquant.ops.conv_transpose import swap_channel_axes

from ._elem import VIAS, UNetUp, assert_layer_matches_float
from .conftest import (
    assert_c_o2_and_m0_equal_reference,
    assert_rejected,
    c_host_test,
    c_m0_test,
    f32,
    one_op_graph,
    onnx_export_test,
    onnx_float_mode_test,
    random_q,
    round_half_away,
    round_half_up,
    seeded_rng,
    weighted_onnx_variant,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------

EXACT_CASES = [
    # dims, cin, cout, groups, kernel, stride, padding, output_padding, dilation, dtype
    (2, 3, 4, 1, 3, 2, 1, 1, 1, "int8"),
    (2, 4, 6, 2, 4, 2, 1, 0, 1, "int8"),  # grouped
    (2, 2, 3, 1, 2, 2, 0, 0, 1, "uint8"),  # the U-Net's up-sampling layer
    (2, 4, 4, 4, 3, 3, 2, 2, 2, "int8"),  # depthwise, stride 3, dilated
    (2, 3, 2, 1, 3, 1, 1, 0, 1, "int16"),  # stride 1: an ordinary conv, 16x8
    (1, 3, 4, 1, 5, 3, 2, 2, 1, "int8"),
    (1, 2, 4, 2, 3, 2, 1, 1, 2, "uint8"),
    (1, 2, 3, 1, 4, 4, 0, 3, 1, "int16"),
]


def _exact_case(case: tuple) -> tuple[IntGraph, np.ndarray, torch.Tensor, np.ndarray]:
    """A one-op graph whose channel c multiplies by 2^-k[c] (M = 2^30, shift 1 − k),
    its input, torch's float64 conv_transpose of (x − z) with the integer weights plus the
    integer bias (exact: every value is an integer far below 2^53), and k."""
    dims, cin, cout, groups, k, s, p, op, d, dtype = case
    rng = seeded_rng("exact", *case)
    spatial = (9,) if dims == 1 else (5, 6)
    x = random_q(rng, (3, cin, *spatial), dtype)
    zx = {"int8": -5, "uint8": 131, "int16": 0}[dtype]
    wmax = 127 if dtype != "int16" else 9
    if dtype == "int16":
        x = rng.integers(-400, 401, size=x.shape).astype(np.int16)
    kh = 1 if dims == 1 else k
    w = rng.integers(-wmax, wmax + 1, size=(cout, cin // groups, kh, k)).astype(np.int8)
    acc_bits = 64 if dtype == "int16" else 32
    bias = rng.integers(-2000, 2000, size=cout).astype(f"int{acc_bits}")
    shifts = np.arange(cout) % 4 + (0 if dtype == "int16" else 6)  # k: divide by 2^k
    xt = torch.from_numpy(x.astype(np.float64) - zx)
    wt = torch.from_numpy(swap_channel_axes(w, groups).astype(np.float64))
    if dims == 1:
        acc = TF.conv_transpose1d(xt, wt[:, :, 0], torch.from_numpy(bias.astype(np.float64)),
                                  s, p, op, groups, d)
    else:
        acc = TF.conv_transpose2d(xt, wt, torch.from_numpy(bias.astype(np.float64)), s, p, op,
                                  groups, d)
    lo, hi = ACTIVATION_DTYPES[dtype]
    xi = TensorInfo("x", x.shape[1:], dtype, f32(0.05), zx)
    yi = TensorInfo("y", tuple(acc.shape[1:]), dtype, f32(0.05), 0 if dtype == "int16" else 3)
    one = dims == 1
    attrs = {
        "stride": [1, s] if one else [s, s],
        "padding": [0, p, 0, p] if one else [p] * 4,
        "output_padding": [0, op] if one else [op, op],
        "dilation": [1, d] if one else [d, d],
        "groups": groups, "input_zero_point": zx, "output_zero_point": yi.zero_point,
        "act_min": lo, "act_max": hi, "acc_bits": acc_bits, "rounding": "double",
    }
    consts = {"weight": w, "bias": bias, "multiplier": np.full(cout, 2**30, np.int32),
              "shift": (1 - shifts).astype(np.int32)}
    return one_op_graph("conv_transpose", xi, yi, attrs, consts), x, acc, shifts


@pytest.mark.parametrize("case", EXACT_CASES, ids=lambda c: "-".join(map(str, c)))
def test_conv_transpose_matches_float_torch_exactly(case: tuple) -> None:
    """The integer op == float64 F.conv_transpose on the same integers, times 2^-k rounded as
    the contract says — TFLM's two roundings (acc·2^30/2^31 half up, then / 2^(k − 1) half
    away from zero), or 16x8's one (acc / 2^k half up) — plus the zero point, clamped:
    compared element by element, exactly."""
    g, x, acc, shifts = _exact_case(case)
    yi = g.tensors[g.output]
    x16 = g.ops[0].attrs["acc_bits"] == 64
    lo, hi = ACTIVATION_DTYPES[yi.dtype]
    a = acc.numpy()
    want = np.empty(a.shape, dtype=np.int64)
    for idx in np.ndindex(*a.shape):
        k, v = int(shifts[idx[1]]), int(a[idx])
        if x16:
            r = round_half_up(Fraction(v, 2**k))
        else:
            r = round_half_away(Fraction(round_half_up(Fraction(v, 2)), 2 ** (k - 1)))
        want[idx] = min(hi, max(lo, r + yi.zero_point))
    got = run(g, x)
    assert np.unique(got).size > 10
    np.testing.assert_array_equal(got.astype(np.int64), want)


def _module_cases() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return {
            "2d_pad_outpad": (nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
                              (3, 5, 4)),
            "2d_grouped": (nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2),
                           (4, 4, 4)),
            "2d_stride1": (nn.ConvTranspose2d(3, 2, 3, padding=1), (3, 5, 5)),
            "2d_crop_beyond_kernel": (nn.ConvTranspose2d(2, 3, 2, stride=2, padding=2),
                                      (2, 4, 4)),
            "2d_relu": (nn.Sequential(nn.ConvTranspose2d(3, 4, 2, stride=2), nn.ReLU()),
                        (3, 4, 4)),
            "1d_pad_outpad": (nn.ConvTranspose1d(3, 4, 5, stride=3, padding=2,
                                                 output_padding=2), (3, 10)),
            "1d_dilated_nobias": (nn.ConvTranspose1d(2, 3, 3, stride=2, padding=1, dilation=2,
                                                     bias=False), (2, 9)),
            "unet_up": (UNetUp(nn.ConvTranspose2d(4, 4, 2, stride=2)), (2, 8, 8)),
        }


MODULE_CASES = _module_cases()


@pytest.mark.parametrize("name", sorted(MODULE_CASES))
def test_conv_transpose_matches_float_captured_from_torch_export_and_onnx(name: str) -> None:
    """Both captures hold one conv_transpose node per layer (no zero insertion) and run in
    float equal to the module (float32 kernels on the same operands: 1e-5 relative)."""
    module, shape = MODULE_CASES[name]
    module.eval()
    x = torch.randn((4, *shape), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = module(x).numpy()
    buf = io.BytesIO()
    torch.onnx.export(module, (x[:1],), buf, opset_version=17, dynamo=False)
    for g in (capture(module, x), from_onnx(onnx.load_from_string(buf.getvalue())).graph):
        ops = [n.op for n in g.nodes]
        assert ops.count("conv_transpose") == 1 and "upsample" not in ops, ops
        with torch.no_grad():
            y = np.asarray(GraphModule(g)(x.numpy()))
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("act_bits", [8, 16])
@pytest.mark.parametrize("name", sorted(MODULE_CASES))
def test_conv_transpose_matches_float_after_quantize(name: str, act_bits: int, via: str) -> None:
    """Whole path (capture, minmax calibration, lowering, interpreter) vs the float module on
    the dequantized input: one layer's weight rounding and output rounding (measured <= 1.3
    LSB); the U-Net block has two convs and a concat rescale in series (measured <= 2.1)."""
    module, shape = MODULE_CASES[name]
    tol = 4.0 if name == "unet_up" else 2.0
    assert_layer_matches_float(module, shape, act_bits, tol, "conv_transpose", via)


def test_conv_transpose_matches_float_spends_only_the_landing_macs() -> None:
    """MACs = the products with a real input pixel on a kept output: for the U-Net's k = s = 2
    that is one per output and input channel, a quarter of a conv over the zero-inserted
    input."""
    b = GraphBuilder(seeded_rng("macs"), (8, 4, 4), "int8")
    b.conv_transpose(b.input, 6, kernel=(2, 2), stride=(2, 2))
    g = b.graph()
    assert op_def("conv_transpose").macs(g.ops[0], g) == 6 * 8 * 8 * 8
    b = GraphBuilder(seeded_rng("macs"), (1, 3), "int8")
    b.conv_transpose(b.input, 1, kernel=(1, 3), stride=(1, 2), padding=(0, 1, 0, 1))
    g = b.graph()  # outputs 0..4 of positions i·2 + j − 1: (0,1)(0,2)(1,0)(1,1)(1,2)(2,0)(2,1)
    assert g.tensors[g.output].shape == (1, 5)
    assert op_def("conv_transpose").macs(g.ops[0], g) == 7


# ---- (b) validation ---------------------------------------------------------------------------


def _ct() -> IntGraph:
    """conv_transpose (4, 5, 5) int8 → (4, 10, 10): Cout 4, groups 2, k 3, stride 2,
    padding 1, output_padding 1."""
    b = GraphBuilder(np.random.default_rng(4), (4, 5, 5), "int8")
    b.conv_transpose(b.input, 4, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), groups=2)
    return b.graph()


CT = re.escape("op 0 'conv_transpose_0' (conv_transpose): ")
VALIDATION_CASES = [
    (F.cast_const(0, "bias", np.int64), CT + "const 'bias' has dtype int64, expected int32"),
    (F.cast_const(0, "weight", np.int32), "const 'weight' has dtype int32, expected int8 or int16"),
    (F.edit_const(0, "weight", lambda w: w[:, :, 0]), "const 'weight' must be 4-D"),
    (F.edit_const(0, "weight", lambda w: w[:, :1]), "dim 1 must be Cin/groups = 2"),
    (F.edit_const(0, "bias", lambda b: b[:3]), "const 'bias' has 3 entries, expected Cout = 4"),
    (F.edit_const(0, "multiplier", lambda m: -m), "const 'multiplier' values must be in"),
    (F.edit_const(0, "bias", lambda b: F.set_item(b, 0, 2**31 - 1)), "accumulator bound"),
    (F.set_field(0, "attrs", "groups", 3), "attr 'groups' = 3 must divide Cin = 4"),
    (F.set_field(0, "attrs", "stride", [0, 2]), "attr 'stride' entries must be >= 1"),
    (F.set_field(0, "attrs", "padding", [1, -1, 1, 1]), "attr 'padding' entries must be >= 0"),
    (F.set_field(0, "attrs", "output_padding", [1]), "attr 'output_padding' must have 2 entries"),
    (F.set_field(0, "attrs", "output_padding", [-1, 0]),
     "attr 'output_padding' entries must be >= 0"),
    (F.del_attr(0, "output_padding"), "missing attr 'output_padding'"),
    (F.set_field(0, "attrs", "output_padding", [0, 0]),
     r"output tensor 't1' has shape \(4, 10, 10\), expected \(4, 9, 9\)"),
    (F.set_field(0, "attrs", "padding", [9, 1, 9, 1]), "output size -6"),
    (F.set_field(0, "attrs", "dilation", [2, 2]), r"expected \(4, 12, 12\)"),
    (F.set_field(0, "attrs", "acc_bits", 16), "attr 'acc_bits' = 16, expected 32 or 64"),
    (F.set_field(0, "attrs", "weight_format", "int4"), r"unknown attr\(s\) \['weight_format'\]"),
    (F.set_field(0, "attrs", "rounding", "single"), None),
    (F.set_tensor(0, shape=(4, 5, 5, 1)), r"input 't0' must have shape \(C, L\) or \(C, H, W\)"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_conv_transpose_validation_messages(mutate, message: str | None) -> None:
    assert_rejected(_ct(), mutate, message)


def test_conv_transpose_validation_1d_conventions() -> None:
    b = GraphBuilder(np.random.default_rng(2), (2, 6), "int8")
    b.conv_transpose(b.input, 2, (1, 3), (1, 2), output_padding=(0, 1))
    g = b.graph()
    assert_rejected(g, F.set_field(0, "attrs", "output_padding", [1, 1]),
                    r"must have output_padding\[0\] = 0")
    assert_rejected(g, F.set_field(0, "attrs", "stride", [2, 2]), r"must have stride\[0\]")
    assert_rejected(g, F.edit_const(0, "weight", lambda w: np.concatenate([w, w], axis=2)),
                    "1-D conv_transpose needs const 'weight' with kh = 1")


# ---- (c) goldens ------------------------------------------------------------------------------


def _golden(x, weight, bias, attrs: dict, multiplier, shift, out_shape) -> np.ndarray:
    x = np.asarray(x)
    xi = TensorInfo("x", x.shape[1:], "int8", 1.0, attrs.get("input_zero_point", 0))
    yi = TensorInfo("y", out_shape, "int8", 1.0, attrs.get("output_zero_point", 0))
    full = {"stride": [1, 1], "padding": [0, 0, 0, 0], "output_padding": [0, 0],
            "dilation": [1, 1], "groups": 1, "input_zero_point": 0, "output_zero_point": 0,
            "act_min": -128, "act_max": 127, "acc_bits": 32, "rounding": "double", **attrs}
    consts = {"weight": np.array(weight, dtype=np.int8), "bias": np.array(bias, dtype=np.int32),
              "multiplier": np.array(multiplier, dtype=np.int32),
              "shift": np.array(shift, dtype=np.int32)}
    return run(one_op_graph("conv_transpose", xi, yi, full, consts), x.astype(np.int8))


def test_conv_transpose_golden_1d_by_hand() -> None:
    """x = [1, 2, 3], z = 1 (so x − z = [0, 1, 2]), taps [1, 10], stride 2, bias 5, real
    multiplier 1 (M = 2^30, shift 1): input i writes w·(x − z) at outputs 2i and 2i + 1:
    [5 + 0, 5 + 0, 5 + 1, 5 + 10, 5 + 2, 5 + 20] = [5, 5, 6, 15, 7, 25]; padding 1 crops one
    output each side ([5, 6, 15, 7]); output_padding 2 on top of that adds the 25 back and
    one output no tap reaches (bias only: 5)."""
    x = [[[1, 2, 3]]]
    one = dict(weight=[[[[1, 10]]]], bias=[5], multiplier=[2**30], shift=[1])
    y = _golden(x, attrs={"input_zero_point": 1, "stride": [1, 2]}, out_shape=(1, 6), **one)
    np.testing.assert_array_equal(y, [[[5, 5, 6, 15, 7, 25]]])
    y = _golden(x, attrs={"input_zero_point": 1, "stride": [1, 2], "padding": [0, 1, 0, 1]},
                out_shape=(1, 4), **one)
    np.testing.assert_array_equal(y, [[[5, 6, 15, 7]]])
    y = _golden(x, attrs={"input_zero_point": 1, "stride": [1, 2], "padding": [0, 1, 0, 1],
                          "output_padding": [0, 2]}, out_shape=(1, 6), **one)
    np.testing.assert_array_equal(y, [[[5, 6, 15, 7, 25, 5]]])


def test_conv_transpose_golden_grouped_strided_dilated_by_fractions() -> None:
    """2-D, groups 2, stride (2, 3), dilation (2, 1), asymmetric padding, output padding and
    clamping, scattered here with plain loops (every input pixel adds its kernel onto the full
    output) and requantized with exact rationals as TFLM does."""
    rng = np.random.default_rng(11)
    cin, cout, groups, (kh, kw), (sh, sw), (dh, dw) = 4, 6, 2, (2, 3), (2, 3), (2, 1)
    top, left, bottom, right, oph, opw = 1, 0, 2, 1, 1, 2
    h, w_ = 3, 4
    x = rng.integers(-128, 128, size=(1, cin, h, w_))
    w = rng.integers(-127, 128, size=(cout, cin // groups, kh, kw))
    bias = rng.integers(-3000, 3000, size=cout)
    mult = rng.integers(2**30, 2**31, size=cout)
    shift = rng.integers(-9, -6, size=cout)
    zx, zy = 3, -4
    full_h, full_w = (h - 1) * sh + dh * (kh - 1) + 1, (w_ - 1) * sw + dw * (kw - 1) + 1
    ho, wo = full_h - top - bottom + oph, full_w - left - right + opw
    acc = np.zeros((cout, full_h + oph, full_w + opw), dtype=np.int64)
    cg, og = cin // groups, cout // groups
    for ci in range(cin):
        for iy in range(h):
            for ix in range(w_):
                for j in range(og):
                    co = (ci // cg) * og + j
                    for ky in range(kh):
                        for kx in range(kw):
                            acc[co, iy * sh + ky * dh, ix * sw + kx * dw] += \
                                int(w[co, ci % cg, ky, kx]) * (int(x[0, ci, iy, ix]) - zx)
    want = np.zeros((cout, ho, wo), dtype=np.int64)
    for co in range(cout):
        for oy in range(ho):
            for ox in range(wo):
                a = int(acc[co, oy + top, ox + left]) + int(bias[co])
                high = round_half_up(Fraction(a * int(mult[co]), 2**31))
                y = round_half_away(Fraction(high, 2 ** -int(shift[co]))) + zy
                want[co, oy, ox] = min(100, max(-128, y))
    attrs = {"stride": [sh, sw], "padding": [top, left, bottom, right],
             "output_padding": [oph, opw], "dilation": [dh, dw], "groups": groups,
             "input_zero_point": zx, "output_zero_point": zy, "act_max": 100}
    y = _golden(x, w, bias, attrs, mult, shift, (cout, ho, wo))
    assert np.unique(want).size > 10
    np.testing.assert_array_equal(y[0], want)


# ---- (d) C vs reference -----------------------------------------------------------------------

test_conv_transpose_c_host_equals_reference = c_host_test("conv_transpose")
test_conv_transpose_c_m0_equals_reference = c_m0_test("conv_transpose")

# name -> (input shape, dtype, builder keywords): each takes one kernel of iq_conv_transpose.c
# (ops/conv_transpose.fast_path picks it)
KERNEL_CASES = {
    "s8_unet_k2s2_relu": ((8, 4, 4), "int8", dict(cout=6, kernel=(2, 2), relu=True)),
    "u8_grouped_dilated": ((4, 5, 4), "uint8", dict(
        cout=6, kernel=(3, 2), stride=(3, 2), padding=(2, 0, 1, 1), output_padding=(2, 1),
        dilation=(2, 1), groups=2)),
    "s16_s8_1d": ((3, 9), "int16", dict(cout=4, kernel=(1, 5), stride=(1, 3),
                                        padding=(0, 2, 0, 2), output_padding=(0, 1),
                                        acc_bits=64)),
    "s16_s8_grouped": ((4, 3, 4), "int16", dict(cout=6, kernel=(3, 2), stride=(2, 3),
                                               padding=(1, 0, 2, 1), groups=2, acc_bits=64)),
    # 258 input channels: a tap's offset-binary sum could pass 2^32, the typed kernel runs
    "s16_s8_wide": ((258, 2, 2), "int16", dict(cout=2, kernel=(2, 2), acc_bits=64)),
    "s16_s16": ((2, 4, 5), "int16", dict(cout=3, kernel=(3, 3), w_dtype="int16", acc_bits=64)),
    "generic_s8_acc64": ((3, 4, 4), "int8", dict(cout=3, kernel=(4, 4), padding=(1, 1, 1, 1),
                                                 acc_bits=64)),
    "generic_u8_w16": ((2, 7), "uint8", dict(cout=2, kernel=(1, 4), stride=(1, 2),
                                             w_dtype="int16", acc_bits=64)),
    "single_rounding": ((4, 3, 3), "int8", dict(cout=4, kernel=(3, 3), rounding="single")),
    "pow2": ((2, 4, 4), "uint8", dict(cout=4, kernel=(2, 3), stride=(1, 3), rounding="pow2")),
}


@pytest.mark.parametrize("name", sorted(KERNEL_CASES))
def test_conv_transpose_c_m0_kernel_paths_equal_reference(name: str, tmp_path) -> None:
    """Each kernel — fast8, fast16, the int16 x int16 one and the generic one (8-bit inputs
    with an int64 accumulator or int16 weights, 16-bit inputs too wide for fast16) — every
    requantization mode, on host -O2 and on the Cortex-M0."""
    shape, dtype, kw = KERNEL_CASES[name]
    b = GraphBuilder(seeded_rng("kernel", name), shape, dtype)
    b.conv_transpose(b.input, **kw)
    g = b.graph()
    x = F.random_input(np.random.default_rng(5), g, 6)
    assert np.unique(run(g, x)).size > 8, "degenerate case: outputs do not vary"
    assert_c_o2_and_m0_equal_reference(g, x, tmp_path / "c")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_conv_transpose_onnx_integer_export_is_bit_exact = onnx_export_test(
    "conv_transpose", weighted_onnx_variant)
test_conv_transpose_onnx_float_mode_within_one_lsb = onnx_float_mode_test("conv_transpose")


def test_conv_transpose_onnx_import_refuses_auto_pad_and_output_shape() -> None:
    from onnx import helper, numpy_helper

    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], auto_pad="SAME_UPPER",
                            strides=[2, 2])
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    w = numpy_helper.from_array(np.ones((2, 3, 2, 2), np.float32), "w")
    graph = helper.make_graph([node], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOnnxError, match="ConvTranspose.*auto_pad / output_shape"):
        from_onnx(model)
