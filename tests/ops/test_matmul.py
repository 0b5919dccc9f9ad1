"""matmul: product of two activations, one per-tensor requantization (src/intquant/ops/matmul.py).

Categories (docs/adding-an-op.md): matches_float, validation, golden, c_host, c_m0, onnx.
"""

from __future__ import annotations

import copy
import zlib

import numpy as np
import pytest
import torch
import torch.nn as nn

import intgraph_factory as IF
import intquant
from intquant.interpreter import run
from intquant.intgraph import ACTIVATION_DTYPES, IntGraph, IntGraphError, Op, TensorInfo
from intquant.numerics import quantize_multiplier

from .conftest import assert_c_host_equals_reference, assert_c_m0_equals_reference

DTYPES = ("int8", "uint8", "int16")


def _f32(v: float) -> float:
    return float(np.float32(v))


def _graph(a: TensorInfo, b: TensorInfo, y: TensorInfo, attrs: dict) -> IntGraph:
    """y = a @ b with ``b`` computed from the input by a 1x1 rescale-free copy: the graph's
    single input is ``a``, ``b`` its own input is made the second graph input's stand-in."""
    op = Op("mm", "matmul", [a.name, b.name], y.name, attrs)
    return IntGraph({a.name: a, b.name: b, y.name: y}, [op], a.name, y.name)


def _run_two(a_info, b_info, y_info, attrs, aq, bq) -> np.ndarray:
    """The reference on two given operands (the op's ``run`` directly: a graph has one input)."""
    from intquant.ops import op_def

    g = _graph(a_info, b_info, y_info, attrs)
    op = g.ops[0]
    from intquant.intgraph.check import OpCheck

    op_def("matmul").check(OpCheck(g, 0, op))
    return op_def("matmul").run(op, [aq, bq], y_info)


def _attrs(a, b, y, real: float, transpose_b: int, acc_bits: int, rounding="double") -> dict:
    m, sh = quantize_multiplier(real)
    lo, hi = ACTIVATION_DTYPES[y.dtype]
    return {"a_zero_point": a.zero_point, "b_zero_point": b.zero_point,
            "transpose_b": transpose_b, "output_zero_point": y.zero_point, "multiplier": m,
            "shift": sh, "act_min": lo, "act_max": hi, "acc_bits": acc_bits,
            "rounding": rounding}


# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype,acc_bits,transpose_b,rounding",
                         [("int8", 32, 0, "double"), ("uint8", 32, 1, "single"),
                          ("int16", 64, 1, "double"), ("int16", 64, 0, "double")])
def test_matmul_matches_float_torch(dtype, acc_bits, transpose_b, rounding) -> None:
    """float64 torch.matmul of the dequantized operands times alpha (0.35), requantized: the
    exact product is rounded twice at most (TFLM's double rounding: ≤ 1 LSB; single rounding
    and the int64 path with its 15-bit multiplier: ≤ 0.5 LSB + 2^-15 relative ≤ 1 LSB)."""
    z = {"int8": (-5, 3), "uint8": (120, 131), "int16": (0, 0)}[dtype]
    ai = TensorInfo("a", (2, 5, 7), dtype, _f32(0.03), z[0])
    bshape = (2, 4, 7) if transpose_b else (2, 7, 4)
    bi = TensorInfo("b", bshape, dtype, _f32(0.02), z[1])
    out_dtype = "int16" if dtype == "int16" else "int8"
    yi = TensorInfo("y", (2, 5, 4), out_dtype, _f32(0.9 if dtype != "int16" else 0.004), 3
                    if out_dtype == "int8" else 0)
    if dtype == "int16":
        ai.scale, bi.scale = _f32(0.03 / 256), _f32(0.02 / 256)
    alpha = 0.35
    attrs = _attrs(ai, bi, yi, ai.scale * bi.scale * alpha / yi.scale, transpose_b, acc_bits,
                   rounding)
    rng = np.random.default_rng(4)
    lo, hi = ACTIVATION_DTYPES[dtype]
    aq = rng.integers(lo, hi + 1, (6, *ai.shape)).astype(dtype)
    bq = rng.integers(lo, hi + 1, (6, *bi.shape)).astype(dtype)
    ad = torch.from_numpy(ai.scale * (aq.astype(np.float64) - ai.zero_point))
    bd = torch.from_numpy(bi.scale * (bq.astype(np.float64) - bi.zero_point))
    ref = (ad @ (bd.transpose(-1, -2) if transpose_b else bd) * alpha).numpy()
    ylo, yhi = ACTIVATION_DTYPES[out_dtype]
    ref_q = np.clip(ref / yi.scale + yi.zero_point, ylo, yhi)
    got = _run_two(ai, bi, yi, attrs, aq, bq)
    assert np.unique(got).size > 10
    err = np.abs(got.astype(np.float64) - ref_q)
    assert err.max() <= 1.0 + 1e-6, f"max error {err.max():.4f} LSB"


class QK(nn.Module):
    """scores = (x Wq)(x Wk)ᵀ / √d of a (T, C) sequence, then softmax along the keys."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(8, 6)
        self.k = nn.Linear(8, 6)

    def forward(self, x):
        return (self.q(x) @ self.k(x).transpose(1, 2)) * 0.4


@pytest.mark.parametrize("act_bits", [8, 16])
def test_matmul_matches_float_after_quantize(act_bits: int) -> None:
    """The whole path on two Linear branches multiplied: capture (matmul, transpose, the scalar
    folded into alpha), calibrate, lower. The matmul's own error vs float on its (integer)
    inputs is ≤ 1 LSB; checked on the interpreter's intermediate tensors."""
    torch.manual_seed(1)
    model = QK().eval()
    x = torch.randn(128, 5, 8)
    cfg = intquant.Config(act_bits=act_bits, calibration="minmax", bias_correction=False)
    q = intquant.quantize(model, x, cfg, progress=False)
    assert [op.kind for op in q.graph.ops] == ["fully_connected", "fully_connected", "matmul"]
    mm = q.graph.ops[-1]  # the scalar folded into alpha, kᵀ read by the kernel (transpose_b)
    assert mm.attrs["transpose_b"] == 1
    values = run(q.graph, q.quantize_input(x.numpy()), return_all=True)
    op = mm
    a, b = (q.graph.tensors[t] for t in op.inputs)
    y = q.graph.tensors[op.output]
    ad = a.scale * (values[a.name].astype(np.float64) - a.zero_point)
    bd = b.scale * (values[b.name].astype(np.float64) - b.zero_point)
    if op.attrs["transpose_b"]:
        bd = np.swapaxes(bd, -1, -2)
    ref = ad @ bd * 0.4
    lo, hi = ACTIVATION_DTYPES[y.dtype]
    err = np.abs(values[op.output] - np.clip(ref / y.scale + y.zero_point, lo, hi))
    assert err.max() <= 1.0 + 1e-6


# ---- (b) validation ---------------------------------------------------------------------------


def _valid_graph(dtype: str = "int8") -> IntGraph:
    return IF.matmul_graph(np.random.default_rng(2), dims=2, dtype=dtype, transpose_b=True)


def _attr(key, value):
    return lambda g: g.ops[-1].attrs.__setitem__(key, value)


VALIDATION_CASES = [
    (_attr("transpose_b", 0), "inner dimensions differ"),
    (_attr("transpose_b", 2), r"attr 'transpose_b' = 2 is out of range"),
    (_attr("acc_bits", 16), "attr 'acc_bits' = 16, expected 32 or 64"),
    (_attr("rounding", "pow2"), r"attr 'rounding' = 'pow2'"),
    (_attr("multiplier", 2**31), r"attr 'multiplier' = 2147483648 is out of range"),
    (_attr("shift", 31), r"attr 'shift' = 31 is out of range"),
    (_attr("a_zero_point", 99), r"attr 'a_zero_point' = 99 differs"),
    (_attr("b_zero_point", 99), r"attr 'b_zero_point' = 99 differs"),
    (lambda g: g.ops[-1].attrs.pop("multiplier"), "missing attr 'multiplier'"),
    (lambda g: g.ops[-1].inputs.pop(), r"expects 2 input\(s\), got 1"),
    (lambda g: setattr(g.tensors[g.output], "shape", (9,)), r"has shape \(9,\), expected"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_matmul_validation_messages(mutate, message: str) -> None:
    g = copy.deepcopy(_valid_graph())
    mutate(g)
    with pytest.raises(IntGraphError, match=message) as e:
        g.validate()
    assert str(e.value).startswith("op 1 'matmul_1' (matmul): "), str(e.value)


def test_matmul_validation_bounds_the_accumulator() -> None:
    """int16 operands need the int64 accumulator (K·2^15·2^15 >= 2^31), whose shift <= 7."""
    g = _valid_graph("int16")
    for key, value, message in (("acc_bits", 32, "accumulator bound .* >= 2\\^31"),
                                ("shift", 8, "attr 'shift' = 8 is out of range")):
        bad = copy.deepcopy(g)
        bad.ops[-1].attrs[key] = value
        with pytest.raises(IntGraphError, match=message):
            bad.validate()


# ---- (c) goldens ------------------------------------------------------------------------------


def test_matmul_golden_by_hand() -> None:
    """a = [[1, 2], [3, 4]] − z_a (z_a = 1), b = [[5, 6], [7, 8]] − z_b (z_b = −1):
    (a − 1) = [[0, 1], [2, 3]], (b + 1) = [[6, 7], [8, 9]], acc = [[8, 9], [36, 41]];
    multiplier 2^30, shift 0 (real 0.5, double rounding, half up then half away):
    [[4, 4.5 → 5], [18, 20.5 → 21]], + z_out 2 = [[6, 7], [20, 23]]."""
    ai = TensorInfo("a", (2, 2), "int8", 1.0, 1)
    bi = TensorInfo("b", (2, 2), "int8", 1.0, -1)
    yi = TensorInfo("y", (2, 2), "int8", 1.0, 2)
    attrs = {"a_zero_point": 1, "b_zero_point": -1, "transpose_b": 0, "output_zero_point": 2,
             "multiplier": 2**30, "shift": 0, "act_min": -128, "act_max": 127, "acc_bits": 32,
             "rounding": "double"}
    aq = np.array([[[1, 2], [3, 4]]], np.int8)
    bq = np.array([[[5, 6], [7, 8]]], np.int8)
    assert _run_two(ai, bi, yi, attrs, aq, bq).tolist() == [[[6, 7], [20, 23]]]
    attrs["transpose_b"] = 1  # b read as its transpose: (b + 1)ᵀ = [[6, 8], [7, 9]]
    # acc = [[0·6 + 1·7, 0·8 + 1·9], [2·6 + 3·7, 2·8 + 3·9]] = [[7, 9], [33, 43]]
    # ·0.5 = [[3.5 → 4, 4.5 → 5], [16.5 → 17, 21.5 → 22]], + 2
    assert _run_two(ai, bi, yi, attrs, aq, bq).tolist() == [[[6, 7], [19, 24]]]


def test_matmul_golden_int64_path() -> None:
    """int16, acc_bits 64: TFLM's path with the 15-bit multiplier M16 = round(M / 2^16):
    acc = 300·(−200) = −60000, M = 2^30 (M16 = 2^14), shift −2:
    (−60000·2^14 + 2^16) >> 17 = floor(−7499.5) = −7500 (real 1/8 of −60000)."""
    ai = TensorInfo("a", (1, 1), "int16", 1.0, 0)
    bi = TensorInfo("b", (1, 1), "int16", 1.0, 0)
    yi = TensorInfo("y", (1, 1), "int16", 1.0, 0)
    attrs = {"a_zero_point": 0, "b_zero_point": 0, "transpose_b": 0, "output_zero_point": 0,
             "multiplier": 2**30, "shift": -2, "act_min": -32768, "act_max": 32767,
             "acc_bits": 64, "rounding": "double"}
    got = _run_two(ai, bi, yi, attrs, np.array([[[300]]], np.int16),
                   np.array([[[-200]]], np.int16))
    assert got.tolist() == [[[-7500]]]


# ---- (d) C vs reference -----------------------------------------------------------------------


def _c_case(dtype: str, transpose_b: bool) -> tuple[IntGraph, np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(f"matmul/{dtype}/{transpose_b}".encode()))
    g = IF.matmul_graph(rng, dims=1 if dtype == "uint8" else 2, dtype=dtype,
                        transpose_b=transpose_b)
    return g, IF.random_input(rng, g, 24)


@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_c_host_equals_reference(dtype: str, transpose_b: bool, tmp_path) -> None:
    """-O2 and -O1 with ASan+UBSan == interpreter (int32 sums, int64 sums of int32 products)."""
    g, x = _c_case(dtype, transpose_b)
    assert_c_host_equals_reference(g, x, tmp_path / "c")


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_c_m0_equals_reference(dtype: str, tmp_path) -> None:
    g, x = _c_case(dtype, dtype != "int8")
    assert_c_m0_equals_reference(g, x, tmp_path / "c")


MIXED = [("int8", "int16"), ("int16", "int8"), ("uint8", "int16")]


@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("a_dtype,b_dtype", MIXED)
def test_matmul_c_mixed_widths_equal_reference(a_dtype: str, b_dtype: str, transpose_b: bool,
                                               tmp_path) -> None:
    """Operands of two widths (attention's int8 probabilities times int16 values in W8A8, and
    the reverse; uint8 × int16 takes the generic kernel): host -O2, ASan+UBSan and the
    Cortex-M0 == interpreter."""
    rng = np.random.default_rng(zlib.crc32(f"matmul/{a_dtype}/{b_dtype}/{transpose_b}".encode()))
    g = IF.matmul_graph(rng, dims=2, dtype=a_dtype, b_dtype=b_dtype, transpose_b=transpose_b)
    (mm,) = [op for op in g.ops if op.kind == "matmul"]
    assert [g.tensors[t].dtype for t in mm.inputs] == [a_dtype, b_dtype]
    x = IF.random_input(rng, g, 12)
    assert_c_host_equals_reference(g, x, tmp_path / "c")
    assert_c_m0_equals_reference(g, x, tmp_path / "m0")


# ---- (e) ONNX ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_onnx_integer_export_is_bit_exact(dtype: str) -> None:
    """int64 MatMul of the offset operands, integer requantization: ONNX Runtime ==
    interpreter, both operand layouts, graph optimisation on and off."""
    import onnxruntime as ort

    from intquant.onnx_export import intgraph_to_onnx

    for tb in (False, True):
        g, x = _c_case(dtype, tb)
        want = run(g, x)
        for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                      ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
            so = ort.SessionOptions()
            so.graph_optimization_level = level
            so.log_severity_level = 3
            s = ort.InferenceSession(intgraph_to_onnx(g).SerializeToString(), so,
                                     providers=["CPUExecutionProvider"])
            np.testing.assert_array_equal(s.run(None, {g.input: x})[0], want)


def test_matmul_onnx_float_mode_within_one_lsb() -> None:
    """requant="float": DQ, MatMul, the real factor, Q: the same real value rounded once by
    ONNX Runtime, twice (at most) by the integer op: within 1 LSB on every element."""
    import onnxruntime as ort

    from intquant.onnx_export import intgraph_to_onnx

    g, x = _c_case("int8", True)
    s = ort.InferenceSession(intgraph_to_onnx(g, requant="float").SerializeToString(),
                             providers=["CPUExecutionProvider"])
    got = s.run(None, {g.input: x})[0]
    assert np.abs(got.astype(np.int64) - run(g, x).astype(np.int64)).max() <= 1
