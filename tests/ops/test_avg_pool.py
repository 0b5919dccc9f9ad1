"""avg_pool: AvgPool1d/2d and global average pool, rounding half away from zero
(src/intquant/ops/avg_pool.py)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch.nn.functional as TF

import intgraph_factory as F
import tflm_reference as tflm
from intgraph_factory import GraphBuilder
from intquant.interpreter import run
from intquant.intgraph import ACTIVATION_DTYPES, TensorInfo

from .conftest import (
    DTYPES,
    POOL_CASES,
    assert_rejected,
    assert_within_lsb,
    c_host_test,
    c_m0_int8_fast_path_test,
    c_m0_test,
    deq,
    from_nhwc,
    nhwc,
    one_op_graph,
    onnx_export_test,
    onnx_float_mode_test,
    pool_graph,
    quantize_path_test,
    random_q,
    round_half_away,
    tflm_pool_kwargs,
    to_t,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("case", [c for c in POOL_CASES if c[4] == 1])
@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool_matches_float_torch(case: tuple, count_include_pad: int, dtype: str) -> None:
    """One rounding of an exact integer mean: |error| <= 0.5 LSB (+1e-9 for the float64 mean)."""
    dims, k, s, p, _ = case
    zp = {"int8": 5, "uint8": 120, "int16": 0}[dtype]
    extra = {"count_include_pad": count_include_pad, "zero_point": zp}
    g, xi = pool_graph("avg_pool", dims, k, s, p, 1, dtype, extra)
    xq = random_q(np.random.default_rng(14), (4, *xi.shape), dtype)
    pool = TF.avg_pool1d if dims == 1 else TF.avg_pool2d
    ref = pool(to_t(deq(xq, xi)), k, s, p, count_include_pad=bool(count_include_pad)).numpy()
    assert_within_lsb(run(g, xq), ref, g.tensors["y"], tol=0.5 + 1e-9)


@pytest.mark.parametrize("dims", [1, 2])
def test_avg_pool_matches_float_global_adaptive_avg_pool(dims: int) -> None:
    rng = np.random.default_rng(15)
    b = GraphBuilder(rng, (4, 17) if dims == 1 else (4, 5, 7), "int8")
    y = b.global_avg_pool(b.input)
    g = b.graph()
    xq = random_q(rng, (6, *g.tensors[b.input].shape), "int8")
    pool = TF.adaptive_avg_pool1d if dims == 1 else TF.adaptive_avg_pool2d
    ref = pool(to_t(deq(xq, g.tensors[b.input])), 1).numpy()
    assert_within_lsb(run(g, xq), ref, g.tensors[y], tol=0.5 + 1e-9)


test_avg_pool_matches_float_after_quantize = quantize_path_test("avg_pool")


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("seed", range(4))
def test_avg_pool_matches_tflm_reference(dtype: str, dims: int, seed: int) -> None:
    """Bit-exact with the naive transcription of TFLM's AveragePool (tests/tflm_reference.py)."""
    rng = np.random.default_rng(4000 + seed)
    g = F.avg_pool_graph(rng, dims=dims, dtype=dtype, count_include_pad=False)
    x = F.random_input(rng, g, n=2)
    ref = tflm.average_pool(nhwc(x), **tflm_pool_kwargs(g))
    np.testing.assert_array_equal(
        run(g, x).astype(np.int64), from_nhwc(ref, g.tensors[g.output].shape)
    )


# ---- (b) validation ---------------------------------------------------------------------------


def _avg_pool_graph():
    b = GraphBuilder(np.random.default_rng(5), (4, 8, 8), "int8")
    b.avg_pool(b.input, (3, 3), (1, 1), (1, 1, 1, 1))
    return b.graph()


VALIDATION_CASES = [
    (F.set_field(0, "attrs", "count_include_pad", 2),
     r"attr 'count_include_pad' = 2 is out of range \[0, 1\]"),
    (F.set_field(0, "attrs", "zero_point", 1000), r"attr 'zero_point' = 1000 is out of range"),
    (F.del_attr(0, "count_include_pad"), "missing attr 'count_include_pad'"),
    (F.set_field(0, "attrs", "kernel", [9, 11]), "window larger than the padded input along W"),
    (F.set_field(0, "attrs", "padding", [1, 1, 3, 1]), "lies entirely in the padding"),
    (F.set_field(0, "attrs", "stride", [2, 2]), r"has shape \(4, 8, 8\), expected \(4, 4, 4\)"),
    (F.set_field(0, "attrs", "dilation", [1, 1]), r"unknown attr\(s\) \['dilation'\]"),
    (F.set_field(0, "attrs", "act_min", -129), "attr 'act_min' = -129 is out of range"),
    (F.set_tensor(1, scale=5.0), "scale 5.0 must equal 't0' scale"),
    (F.set_inputs(0, ["t0", "t0"]), r"expects 1 input\(s\), got 2"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_avg_pool_validation_messages(mutate, message: str) -> None:
    assert_rejected(_avg_pool_graph(), mutate, message)


def test_avg_pool_validation_zero_point_must_be_the_tensors() -> None:
    g = _avg_pool_graph()
    z = g.tensors["t0"].zero_point
    assert_rejected(g, F.set_field(0, "attrs", "zero_point", z + 1),
                    f"attr 'zero_point' = {z + 1} differs from tensor 't0' zero_point {z}")


def test_avg_pool_validation_window_sum_must_fit_int32() -> None:
    """An int16 window of 2^16 elements can sum to 2^31: refused."""
    xi = TensorInfo("x", (1, 65536), "int16", 1.0, 0)
    attrs = {"kernel": [1, 65535], "stride": [1, 1], "padding": [0, 0, 0, 0],
             "count_include_pad": 0, "zero_point": 0, "act_min": -32768, "act_max": 32767}
    g = one_op_graph("avg_pool", xi, TensorInfo("y", (1, 2), "int16", 1.0, 0), attrs)

    def widen(g_):
        g_.ops[0].attrs["kernel"] = [1, 65536]
        g_.tensors["y"].shape = (1, 1)

    assert_rejected(g, widen, r"attr 'kernel' \[1, 65536\]: the window sum can overflow int32")


# ---- (c) goldens ------------------------------------------------------------------------------


def _golden(x: list[int], attrs: dict, out_len: int, zero_point: int = 0) -> np.ndarray:
    xi = TensorInfo("x", (1, len(x)), "int8", 1.0, zero_point)
    yi = TensorInfo("y", (1, out_len), "int8", 1.0, zero_point)
    full = {"kernel": [1, 2], "stride": [1, 2], "padding": [0, 0, 0, 0], "count_include_pad": 0,
            "zero_point": zero_point, "act_min": -128, "act_max": 127}
    g = one_op_graph("avg_pool", xi, yi, {**full, **attrs})
    return run(g, np.array([[x]], dtype=np.int8))[0, 0]


def test_avg_pool_golden_rounds_half_away_from_zero() -> None:
    """Hand-worked: windows of 2 summing to ±3 and ±1 give ±2 and ±1 (C's (s ± c/2) / c)."""
    np.testing.assert_array_equal(_golden([1, 2, -1, -2, 0, 1, 0, -1], {}, 4), [2, -2, 1, -1])


@pytest.mark.parametrize("count_include_pad,expected", [(1, [3, 5, 6]), (0, [4, 5, 6])])
def test_avg_pool_golden_padding_holds_the_zero_point(count_include_pad: int, expected) -> None:
    """x = [4, 5, 6], zero point 2, kernel 2 stride 1, one pad on the left. Including the pad:
    (2 + 4)/2 = 3, 9/2 → 5, 11/2 → 6; excluding it: 4/1 = 4, then the same."""
    attrs = {"stride": [1, 1], "padding": [0, 1, 0, 0], "count_include_pad": count_include_pad}
    np.testing.assert_array_equal(_golden([4, 5, 6], attrs, 3, zero_point=2), expected)


def test_avg_pool_golden_global_mean_by_fractions() -> None:
    """A 2x2 global pool of raw int8 values (any zero point: it is the same in and out): the
    exact rational mean sum/4, rounded half away from zero — a quarter of the sums are ties."""
    x = np.random.default_rng(3).integers(-128, 128, size=(400, 1, 2, 2))
    b = GraphBuilder(np.random.default_rng(0), (1, 2, 2), "int8")
    b.global_avg_pool(b.input)
    y = run(b.graph(), x.astype(np.int8)).reshape(-1)
    want = [round_half_away(Fraction(int(s), 4)) for s in x.reshape(400, 4).sum(axis=1)]
    assert sum(int(s) % 4 == 2 for s in x.reshape(400, 4).sum(axis=1)) > 50  # ties tested
    np.testing.assert_array_equal(y, want)


# ---- (d) C vs reference -----------------------------------------------------------------------

test_avg_pool_c_host_equals_reference = c_host_test("avg_pool")
test_avg_pool_c_m0_equals_reference = c_m0_test("avg_pool")
test_avg_pool_c_m0_int8_fast_path_equals_reference = c_m0_int8_fast_path_test("avg_pool")


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_avg_pool_onnx_integer_export_is_bit_exact = onnx_export_test("avg_pool")
test_avg_pool_onnx_float_mode_within_one_lsb = onnx_float_mode_test("avg_pool")


def test_avg_pool_onnx_integer_export_refuses_windows_beyond_float_exactness() -> None:
    """A window of 1024 int16 values can sum past 2^24 (not exact in the float ONNX ops the
    integer form relies on): refused with the fix; the float QDQ form still exports."""
    from intquant.onnx_export import intgraph_to_onnx

    b = GraphBuilder(np.random.default_rng(0), (1, 1024), "int16")
    b.avg_pool(b.input, (1, 1024), (1, 1), (0, 0, 0, 0), False)
    with pytest.raises(ValueError, match=r"avg_pool.*2\^24.*requant='float'"):
        intgraph_to_onnx(b.graph())
    intgraph_to_onnx(b.graph(), requant="float")


# ---- mean over an axis (reach-transformer: x.mean(dim=1) of tokens) ---------------------------


@pytest.mark.parametrize("act_bits", [8, 16])
@pytest.mark.parametrize("dims,keepdim", [((1,), False), ((2,), True), ((1, 2), True)])
def test_avg_pool_matches_float_after_quantize_mean_over_axes(act_bits: int, dims, keepdim):
    """x.mean(dim) of an (N, 5, 6) tensor lowers onto avg_pool (the axes viewed as a window):
    one rounding of the exact integer mean, <= 0.5 LSB (+ the requantization's 2^-30) of the
    float mean of the interpreter's own (dequantized) input."""
    import torch

    import intquant

    from .conftest import Fn, assert_within_lsb, deq, to_t

    x = torch.randn(64, 5, 6, generator=torch.Generator().manual_seed(6))
    model = Fn(lambda t: t.mean(dim=dims, keepdim=keepdim)).eval()
    q = intquant.quantize(model, x, intquant.Config(act_bits=act_bits, calibration="minmax",
                                                    bias_correction=False), progress=False)
    assert "avg_pool" in {op.kind for op in q.graph.ops}
    xq = q.quantize_input(x.numpy())
    ref = to_t(deq(xq, q.input_info)).mean(dim=dims, keepdim=keepdim).numpy()
    assert_within_lsb(q.run(xq), ref, q.output_info, tol=0.5 + 1e-6)


# ---- a per-sample scalar: x.mean(dim) over every non-batch axis, keepdim=False ----------------
# The IntGraph tensor is rank 0 (shape (), one value per sample): the network output of shape
# (N,) as PyTorch gives it, or an intermediate broadcast back with [:, None].

SCALAR_MEANS = {
    "nc_dim1": ((64, 6), lambda t: t.mean(dim=1)),
    "nc_dim_list_minus1": ((64, 6), lambda t: t.mean(dim=[-1])),
    "ntc_dims12": ((64, 5, 6), lambda t: t.mean(dim=(1, 2))),
    "nchw_dims123": ((64, 3, 4, 4), lambda t: t.mean(dim=(1, 2, 3))),
    "torch_mean_x_1": ((64, 6), lambda t: __import__("torch").mean(t, 1)),
}


def _quantized_scalar_mean(name: str, act_bits: int = 8, onnx_path=None):
    import torch

    import intquant

    from .conftest import Fn

    shape, fn = SCALAR_MEANS[name]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(7))
    model = onnx_path or Fn(fn).eval()
    q = intquant.quantize(model, x, intquant.Config(act_bits=act_bits, calibration="minmax",
                                                    bias_correction=False), progress=False)
    return q, x, fn


@pytest.mark.parametrize("act_bits", [8, 16])
@pytest.mark.parametrize("name", list(SCALAR_MEANS))
def test_avg_pool_matches_float_per_sample_scalar_mean(name: str, act_bits: int) -> None:
    """x.mean over every non-batch axis (keepdim=False) quantizes as written: output shape (N,)
    like float PyTorch, a rank-0 IntGraph output, one rounding of the exact integer mean
    (<= 0.5 LSB of the float mean of the interpreter's own dequantized input)."""
    q, x, fn = _quantized_scalar_mean(name, act_bits)
    assert q.graph.tensors[q.graph.output].shape == ()
    assert "avg_pool" in {op.kind for op in q.graph.ops}
    xq = q.quantize_input(x.numpy())
    y = q.run(xq)
    ref = fn(to_t(deq(xq, q.input_info))).numpy()
    assert y.shape == ref.shape == (len(x),)
    assert_within_lsb(y, ref, q.output_info, tol=0.5 + 1e-6)


def _scalar_mean_onnx(tmp_path, name: str, opset: int):
    """The float model exported by torch.onnx (a ReduceMean with keepdims=0)."""
    import onnx
    import torch

    from .conftest import Fn

    shape, fn = SCALAR_MEANS[name]
    path = tmp_path / f"{name}_{opset}.onnx"
    torch.onnx.export(Fn(fn).eval(), (torch.zeros(2, *shape[1:]),), str(path), dynamo=False,
                      opset_version=opset, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    reduce = [n for n in onnx.load(str(path)).graph.node if n.op_type == "ReduceMean"]
    assert [a.i for n in reduce for a in n.attribute if a.name == "keepdims"] == [0]
    return path


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("name", ["nc_dim1", "ntc_dims12"])
def test_avg_pool_matches_float_per_sample_scalar_mean_from_onnx(tmp_path, name: str,
                                                                 opset: int) -> None:
    """The same model imported from ONNX (ReduceMean keepdims=0; axes an attribute before
    opset 18, an input from 18 on): same rank-0 output, same bound vs float."""
    q, x, fn = _quantized_scalar_mean(name, onnx_path=_scalar_mean_onnx(tmp_path, name, opset))
    assert q.graph.tensors[q.graph.output].shape == ()
    xq = q.quantize_input(x.numpy())
    y = q.run(xq)
    ref = fn(to_t(deq(xq, q.input_info))).numpy()
    assert y.shape == ref.shape == (len(x),)
    assert_within_lsb(y, ref, q.output_info, tol=0.5 + 1e-6)


def _scaled_by_its_mean():
    """y = x * x.mean(dim=1, keepdim=False)[:, None]: the scalar is an intermediate."""
    import torch

    import intquant

    from .conftest import Fn

    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(8))
    model = Fn(lambda t: t * t.mean(dim=1, keepdim=False)[:, None]).eval()
    q = intquant.quantize(model, x, intquant.Config(calibration="minmax",
                                                    bias_correction=False), progress=False)
    return q, x


def test_avg_pool_matches_float_per_sample_scalar_mean_as_an_intermediate() -> None:
    """x * x.mean(dim=1)[:, None]: the mean is a rank-0 tensor inside the graph. Bound per
    element, from the two roundings: the mean's (<= 0.5 LSB of the input scale s_x, times |x|
    in the product) and mul's requantization (0.5 LSB + 2^(shift-1) of double rounding's first
    step + the multiplier's 2^-31 relative error), vs float PyTorch on the dequantized input."""
    q, x = _scaled_by_its_mean()
    mean = [t for t in q.graph.tensors.values() if t.shape == ()]
    assert len(mean) == 1 and q.graph.tensors[q.graph.output].shape == (6,)
    mul = next(op for op in q.graph.ops if op.kind == "mul")
    xq = q.quantize_input(x.numpy())
    xd = deq(xq, q.input_info)
    ref = xd * xd.mean(axis=1, keepdims=True)
    s_x, s_y = q.input_info.scale, q.output_info.scale
    y = q.run(xq)
    lo, hi = ACTIVATION_DTYPES[q.output_info.dtype]
    err = np.abs(y - np.clip(ref / s_y + q.output_info.zero_point, lo, hi))
    bound = (np.abs(xd) * 0.5 * s_x / s_y + 0.5 + 2.0 ** (min(mul.attrs["output_shift"], 0) - 1)
             + np.abs(ref / s_y) * 2.0**-30)
    assert np.all(err <= bound), float((err - bound).max())


def _scalar_mean_case(case: str):
    """The quantized model (and float input) whose C and ONNX the tests below check: a rank-0
    network output (8- and 16-bit) or a rank-0 intermediate."""
    if case == "intermediate":
        return _scaled_by_its_mean()
    name, bits = {"output_int8": ("ntc_dims12", 8), "output_int16": ("nc_dim1", 16)}[case]
    return _quantized_scalar_mean(name, bits)[:2]


@pytest.mark.parametrize("case", ["output_int8", "output_int16", "intermediate"])
def test_avg_pool_c_host_per_sample_scalar_mean_equals_reference(case: str, tmp_path) -> None:
    """The generated C of a model whose output (or an intermediate) is one scalar per sample
    == interpreter (host -O2 and ASan/UBSan); the header says rank 0, one value, and its
    SHAPE placeholder keeps C99 (no empty initializer)."""
    from .conftest import assert_c_host_equals_reference

    q, x = _scalar_mean_case(case)
    assert_c_host_equals_reference(q.graph, q.quantize_input(x.numpy()), tmp_path / "c")
    header = (tmp_path / "c" / "net.h").read_text()
    if case != "intermediate":
        assert "#define NET_OUTPUT_RANK 0\n" in header
        assert "#define NET_OUTPUT_SIZE 1\n" in header
        assert "#define NET_OUTPUT_SHAPE {1}\n" in header


@pytest.mark.parametrize("case", ["output_int8", "intermediate"])
def test_avg_pool_c_m0_per_sample_scalar_mean_equals_reference(case: str, tmp_path) -> None:
    """The same C on the emulated Cortex-M0 == interpreter."""
    from .conftest import assert_c_m0_equals_reference

    q, x = _scalar_mean_case(case)
    assert_c_m0_equals_reference(q.graph, q.quantize_input(x.numpy()), tmp_path / "c")


@pytest.mark.parametrize("case", ["output_int8", "output_int16", "intermediate"])
def test_avg_pool_onnx_per_sample_scalar_mean_is_bit_exact(case: str, tmp_path) -> None:
    """Integer ONNX export (ONNX Runtime) == interpreter, output shape (N,) included; the .iqm
    round trip keeps the rank-0 tensor."""
    import intquant

    from .conftest import assert_onnx_integer_export_bit_exact

    q, x = _scalar_mean_case(case)
    xq = q.quantize_input(x.numpy())
    assert_onnx_integer_export_bit_exact(q.graph, xq, case)
    q.save(tmp_path / "m.iqm")
    back = intquant.load(tmp_path / "m.iqm")
    assert back.graph.tensors[back.graph.output].shape == q.graph.tensors[q.graph.output].shape
    np.testing.assert_array_equal(back.run(xq), q.run(xq))


@pytest.mark.parametrize("shape,fn,message", [
    ((32, 6), lambda t: t.mean(dim=0), r"layer 'mean'.*batch axis"),
    ((32, 6), lambda t: t.mean(), r"layer 'mean'.*aten\.mean\.default is not supported"),
    ((32, 3, 4, 4), lambda t: t.mean(dim=(1, 3)),
     r"layer 'mean'.*mean over the non-adjacent dims \[1, 3\]"),
])
def test_avg_pool_mean_refusals_name_the_layer_and_the_reason(shape, fn, message) -> None:
    """What mean still cannot do (the batch axis, every axis at once, non-adjacent axes) is
    refused in one line naming the layer."""
    import torch

    import intquant

    from .conftest import Fn

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(9))
    with pytest.raises(ValueError, match=message):
        intquant.quantize(Fn(fn).eval(), x, intquant.Config(), progress=False)


def test_avg_pool_matches_float_per_sample_scalar_mean_qat_eval_is_the_integer_model() -> None:
    """QAT of Linear → ReLU → mean(dim=1) (a rank-0 output): in eval mode the fake-quantized
    model computes exactly the converted integer model (compared on the integer grid)."""
    import torch
    import torch.nn as nn

    import intquant

    class LinearMean(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 8)

        def forward(self, x):
            return torch.relu(self.fc(x)).mean(dim=1)

    torch.manual_seed(10)
    x = torch.randn(128, 6, generator=torch.Generator().manual_seed(10))
    qat = intquant.qat.prepare(LinearMean().eval(), intquant.Config(), example_input=x).eval()
    with torch.no_grad():
        fake = qat(x).numpy().astype(np.float64)
    qm = intquant.qat.convert(qat)
    y = qm.run(qm.quantize_input(x.numpy()))
    assert y.shape == fake.shape == (len(x),)
    info = qm.output_info
    np.testing.assert_array_equal(np.rint(fake / info.scale) + info.zero_point, y)
