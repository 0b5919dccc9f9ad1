"""upsample: nearest, bilinear (align_corners=False) (src/intquant/ops/upsample.py).

Also the captures that lower onto it: nn.Upsample / F.interpolate / ONNX Resize from
torch.export and ONNX, against float PyTorch.
"""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as TF

import intgraph_factory as F
import intquant
from intquant.graph.capture import UnsupportedOpError, capture
from intquant.graph.onnx_import import UnsupportedOnnxError, from_onnx
from intquant.interpreter import run
from intquant.intgraph import TensorInfo

from ._elem import UNetUp
from .conftest import (
    DTYPES,
    Fn,
    assert_c_host_equals_reference,
    assert_c_m0_equals_reference,
    assert_onnx_integer_export_bit_exact,
    assert_rejected,
    deq,
    f32,
    one_op_graph,
    random_q,
    round_half_up,
    seeded_rng,
    to_t,
)

MODES = ("nearest", "bilinear")


def _graph(shape: tuple[int, ...], dtype: str, mode: str, factor: list[int], zp: int = 0):
    xi = TensorInfo("x", shape, dtype, f32(0.02), zp)
    sp = [n * f for n, f in zip(shape[1:], factor[3 - len(shape):], strict=True)]
    yi = TensorInfo("y", (shape[0], *sp), dtype, xi.scale, zp)
    return one_op_graph("upsample", xi, yi, {"mode": mode, "factor": factor}), xi, yi


# ---- (a) vs float PyTorch ---------------------------------------------------------------------

FLOAT_CASES = [((3, 7), [1, 2]), ((3, 7), [1, 3]), ((2, 5, 6), [2, 2]), ((2, 4, 5), [3, 2]),
               ((2, 3, 4), [4, 4])]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,factor", FLOAT_CASES)
def test_upsample_matches_float_nearest_exactly(shape, factor, dtype: str) -> None:
    """nearest == F.interpolate(mode='nearest'): raw values copied, so equal to the float op
    on the dequantized input exactly."""
    zp = {"int8": -3, "uint8": 130, "int16": 0}[dtype]
    xq = random_q(np.random.default_rng(1), (2, *shape), dtype)
    g, xi, yi = _graph(shape, dtype, "nearest", factor, zp)
    x = to_t(deq(xq, xi))
    ref = TF.interpolate(x, scale_factor=factor[3 - len(shape):], mode="nearest")
    np.testing.assert_array_equal(deq(run(g, xq), yi), ref.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,factor", FLOAT_CASES)
def test_upsample_matches_float_bilinear_within_half_lsb(shape, factor, dtype: str) -> None:
    """bilinear == F.interpolate(mode='(bi)linear', align_corners=False) within ½ LSB (one
    rounding of a convex combination; float64 evaluation error < 1e-9 LSB)."""
    zp = {"int8": 7, "uint8": 100, "int16": 0}[dtype]
    g, xi, yi = _graph(shape, dtype, "bilinear", factor, zp)
    xq = random_q(np.random.default_rng(2), (2, *shape), dtype)
    mode = "linear" if len(shape) == 2 else "bilinear"
    ref = TF.interpolate(to_t(deq(xq, xi)), scale_factor=factor[3 - len(shape):], mode=mode,
                         align_corners=False).numpy()
    err = np.abs(deq(run(g, xq), yi) - ref) / yi.scale
    assert err.max() <= 0.5 + 1e-6


def _module_cases() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return {
            "upsample_nearest2d": (nn.Upsample(scale_factor=2), (3, 5, 4)),
            "upsample_nearest1d": (nn.Upsample(scale_factor=3), (3, 9)),
            "interpolate_size": (Fn(lambda x: TF.interpolate(x, size=(8, 12))), (2, 4, 4)),
            "upsample_bilinear": (nn.Upsample(scale_factor=(2, 3), mode="bilinear"), (3, 4, 5)),
            "upsample_linear1d": (nn.Upsample(scale_factor=4, mode="linear"), (2, 6)),
            "unet_nearest": (UNetUp(nn.Upsample(scale_factor=2)), (2, 8, 8)),
        }


MODULE_CASES = _module_cases()


@pytest.mark.parametrize("name", sorted(MODULE_CASES))
def test_upsample_matches_float_captured_from_torch_export_and_onnx(name: str) -> None:
    """Both captures of the module (torch.export; ONNX opset 17) run in float equal to PyTorch
    (float32 kernels: within 1e-5 relative)."""
    module, shape = MODULE_CASES[name]
    module.eval()
    x = torch.randn((4, *shape), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = module(x).numpy()
    g = capture(module, x)
    assert any(n.op == "upsample" for n in g.nodes)
    buf = io.BytesIO()
    torch.onnx.export(module, (x[:1],), buf, opset_version=17, dynamo=False)
    imported = from_onnx(onnx.load_from_string(buf.getvalue()))
    from intquant.graph.execute import GraphModule

    for gm in (GraphModule(g), imported):
        with torch.no_grad():
            y = np.asarray(gm(x.numpy()))
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("act_bits", [8, 16])
@pytest.mark.parametrize("name", sorted(MODULE_CASES))
def test_upsample_matches_float_after_quantize(name: str, act_bits: int) -> None:
    """Whole path (capture, minmax calibration, lowering, interpreter) vs the float module on
    the dequantized input: within the conv's measured 2 LSB (+ ½ for the output rounding);
    nearest adds nothing and bilinear ½ LSB of its own."""
    module, shape = MODULE_CASES[name]
    module.eval()
    x = torch.randn((64, *shape), generator=torch.Generator().manual_seed(1))
    cfg = intquant.Config(act_bits=act_bits, weight_bits=8 if act_bits == 8 else 16,
                          calibration="minmax", bias_correction=False)
    q = intquant.quantize(module, x, cfg, progress=False)
    x_int = q.quantize_input(x)
    info = q.input_info
    x_deq = torch.as_tensor(info.scale * (x_int.astype(np.float64) - info.zero_point),
                            dtype=torch.float32)
    with torch.no_grad():
        ref = module(x_deq).numpy()
    out = q.dequantize_output(q.run(x_int))
    # nearest: the output rounding; the U-Net block: two convs and a concat rescale in series,
    # errors add up (measured <= 2.2)
    tol = 4.0 if name.startswith("unet") else 0.51
    err = np.abs(out - ref).max() / q.output_info.scale
    assert err <= tol, f"{name}: max error {err:.2f} LSB"


def test_upsample_matches_float_unsupported_modes_are_refused_with_the_layer() -> None:
    with pytest.raises(UnsupportedOpError, match="align_corners=True"):
        capture(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                torch.zeros(1, 2, 4, 4))
    with pytest.raises(UnsupportedOpError, match="only integer factors"):
        capture(nn.Upsample(scale_factor=1.5), torch.zeros(1, 2, 4, 4))
    buf = io.BytesIO()
    torch.onnx.export(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                      (torch.zeros(1, 2, 4, 4),), buf, opset_version=17, dynamo=False)
    with pytest.raises(UnsupportedOnnxError, match="Resize.*align_corners"):
        from_onnx(onnx.load_from_string(buf.getvalue()))


# ---- (b) validation ---------------------------------------------------------------------------


def _valid():
    """bilinear (2, 3, 4) → (2, 6, 12), tensors t0 → t1."""
    b = F.GraphBuilder(np.random.default_rng(7), (2, 3, 4), "int8")
    b.op("upsample", [b.input], b.like(b.input, (2, 6, 12)), {"mode": "bilinear",
                                                              "factor": [2, 3]})
    return b.graph()


VALIDATION_CASES = [
    (F.set_field(0, "attrs", "mode", "bicubic"), "attr 'mode' must be one of"),
    (F.del_attr(0, "mode"), "attr 'mode' must be one of"),
    (F.del_attr(0, "factor"), "missing attr 'factor'"),
    (F.set_field(0, "attrs", "factor", [2]), "attr 'factor' must have 2 entries"),
    (F.set_field(0, "attrs", "factor", [0, 3]), r"attr 'factor' entries must be >= 1"),
    (F.set_field(0, "attrs", "factor", [9, 3]), r"attr 'factor' entries must be <= 8"),
    (F.set_field(0, "attrs", "factor", [2, 2]), r"has shape \(2, 6, 12\), expected \(2, 6, 8\)"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
    (F.set_tensor(1, zero_point=5), "zero_point 5 must equal"),
    (F.set_tensor(1, scale=9.0), "scale 9.0 must equal"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_upsample_validation_messages(mutate, message: str) -> None:
    assert_rejected(_valid(), mutate, message)


def test_upsample_validation_one_d_needs_fh_one_and_bounds_follow_mode() -> None:
    g = _graph((2, 5), "int16", "nearest", [1, 16])[0]
    assert_rejected(g, F.set_field(0, "attrs", "factor", [2, 16]), r"needs attr 'factor' \[1, fw\]")
    assert_rejected(g, F.set_field(0, "attrs", "factor", [1, 17]),
                    r"attr 'factor' entries must be <= 16")


# ---- (c) goldens ------------------------------------------------------------------------------


def test_upsample_golden_nearest_by_hand() -> None:
    x = np.array([[[[1, 2], [3, 4]]]], dtype=np.int8)
    g, *_ = _graph((1, 2, 2), "int8", "nearest", [2, 1], 9)
    np.testing.assert_array_equal(run(g, x), [[[[1, 2], [1, 2], [3, 4], [3, 4]]]])
    g, *_ = _graph((1, 2, 2), "int8", "nearest", [2, 3], 9)
    rows = [[1, 1, 1, 2, 2, 2]] * 2 + [[3, 3, 3, 4, 4, 4]] * 2
    np.testing.assert_array_equal(run(g, x), [[rows]])


def test_upsample_golden_bilinear_from_exact_rationals() -> None:
    """1-D, factor 2: sources max((o + ½)/2 − ½, 0) = 0, 0.25, 0.75, 1.25, 1.75, 2(clamped);
    each output rounded half up from the exact Fraction."""
    xv = [-7, 10, 3]
    x = np.array([[xv]], dtype=np.int8)
    g, *_ = _graph((1, 3), "int8", "bilinear", [1, 2])
    want = []
    for o in range(6):
        src = max(Fraction(2 * o + 1, 4) - Fraction(1, 2), Fraction(0))
        i0 = min(int(src), 2)
        lam = src - i0
        v = (1 - lam) * xv[i0] + lam * xv[min(i0 + 1, 2)]
        want.append(round_half_up(v))
    assert want == [-7, -3, 6, 8, 5, 3]  # -7, -2.75, 5.75, 8.25, 5.25, 3 by hand
    np.testing.assert_array_equal(run(g, x), [[want]])


def test_upsample_golden_bilinear_ties_round_up_for_negative_values() -> None:
    """(-3 + -4)/2 = -3.5 → -3 (half up, not away from zero): the C division must floor."""
    x = np.array([[[-3, -4]]], dtype=np.int16)
    g, *_ = _graph((1, 2), "int16", "bilinear", [1, 1])
    np.testing.assert_array_equal(run(g, x), x)  # factor 1 is the identity
    g, *_ = _graph((1, 2), "int16", "bilinear", [1, 4])
    # factor 4: o = 4 → src = (4.5)/4 − ½ = 0.625: −3·0.375 − 4·0.625 = −3.625 → −4
    # o = 3 → src = 0.375: −3·0.625 − 4·0.375 = −3.375 → −3
    np.testing.assert_array_equal(run(g, x)[0, 0, 3:5], [-3, -4])


# ---- (d) C vs reference -----------------------------------------------------------------------


def _c_case(mode: str, dtype: str, n: int):
    rng = seeded_rng("c", "upsample", mode, dtype)
    g = F.upsample_graph(rng, dims=1 if dtype == "uint8" else 2, dtype=dtype, mode=mode)
    return g, F.random_input(rng, g, n)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_upsample_c_host_equals_reference(mode: str, dtype: str, tmp_path) -> None:
    g, x = _c_case(mode, dtype, 24)
    assert_c_host_equals_reference(g, x, tmp_path / "c")


@pytest.mark.parametrize("mode,dtype", [("nearest", "int8"), ("bilinear", "int16"),
                                        ("bilinear", "uint8"), ("nearest", "uint8")])
def test_upsample_c_m0_equals_reference(mode: str, dtype: str, tmp_path) -> None:
    g, x = _c_case(mode, dtype, 8)
    assert_c_m0_equals_reference(g, x, tmp_path / "c")


# ---- (e) ONNX ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_upsample_onnx_integer_export_is_bit_exact(mode: str, dtype: str) -> None:
    rng = seeded_rng("onnx", "upsample", mode, dtype)
    for trial in range(4):
        g = F.upsample_graph(rng, dims=1 + trial % 2, dtype=dtype, mode=mode)
        assert_onnx_integer_export_bit_exact(g, F.random_input(rng, g, 8), (mode, trial))
