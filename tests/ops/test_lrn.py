"""lrn: local response normalization across channels with a Q30 factor table
(src/intquant/ops/lrn.py).

References are independent of the code under test: ``torch.nn.functional.local_response_norm``
(float64), the float graph executor (ONNX LRN semantics) and exact rationals from the spec.
"""

from __future__ import annotations

import copy
from fractions import Fraction

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as TF
from onnx import TensorProto, helper, numpy_helper

import intgraph_factory as F
import intquant
from intquant.graph.execute import run_graph
from intquant.graph.ir import Graph, Node
from intquant.graph.onnx_import import from_onnx
from intquant.interpreter import run
from intquant.intgraph import ACTIVATION_DTYPES, IntGraphError, TensorInfo
from intquant.lower import QuantPlan, lower
from intquant.numerics import QParams, choose_qparams, dequantize, quantize

from .conftest import (
    DTYPES,
    c_host_test,
    c_m0_test,
    one_op_graph,
    round_half_away,
    round_half_up,
)


def act_qparams(lo: float, hi: float, dtype: str, name: str) -> QParams:
    if dtype == "int16":
        return choose_qparams(absmax=max(abs(lo), abs(hi)), bits=16, narrow=False, name=name)
    return choose_qparams(lo, hi, bits=8, symmetric=False, signed=dtype == "int8", name=name)


def lowered_lrn(shape, size, alpha, beta, bias, x_range, y_range, dtype):
    nodes = [
        Node("x", "input", shape=shape),
        Node("lrn", "lrn", ["x"], dict(size=size, alpha=alpha, beta=beta, bias=bias),
             shape=shape),
    ]
    g = Graph(nodes, output="lrn")
    acts = {"x": act_qparams(*x_range, dtype, "x"), "lrn": act_qparams(*y_range, dtype, "lrn")}
    return lower(QuantPlan(g, acts)), g, acts


def torch_lrn(x: np.ndarray, size: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """PyTorch's float64 LRN; (N, C) inputs get a trailing axis (torch needs 3-D or more)."""
    t = torch.from_numpy(x if x.ndim >= 3 else x[..., None])
    return TF.local_response_norm(t, size, alpha, beta, k).numpy().reshape(x.shape)


# ---- (a) vs float PyTorch ---------------------------------------------------------------------

FLOAT_CASES = [
    # shape, size, alpha, beta, bias, input absmax, dtype
    ((16, 5, 6), 5, 1e-4, 0.75, 1.0, 120.0, "int8"),  # AlexNet's attrs, strong inputs
    ((16, 5, 6), 5, 1e-4, 0.75, 1.0, 10.0, "int8"),  # weak normalisation
    ((7, 9), 3, 2e-2, 0.5, 2.0, 6.0, "uint8"),
    ((12, 4, 4), 5, 1e-3, 0.75, 1.0, 40.0, "int16"),
    ((9,), 1, 0.5, 1.0, 0.5, 3.0, "int8"),  # size 1: x / (k + α x²)^β elementwise
]


@pytest.mark.parametrize("case", FLOAT_CASES)
def test_lrn_matches_float_torch(case) -> None:
    """Lowered from the float op; 0.5 LSB of output rounding plus the table's interpolation
    error (below 1e-6 relative here, see ops/lrn.py) stays within 1 LSB."""
    shape, size, alpha, beta, bias, amax, dtype = case
    rng = np.random.default_rng(len(shape) * 10 + size)
    x = rng.uniform(-amax, amax, size=(6, *shape))
    if dtype == "uint8":
        x = np.abs(x)
    ref = torch_lrn(x, size, alpha, beta, bias)
    lo_x = 0.0 if dtype == "uint8" else -amax
    y_hi = float(np.abs(ref).max())
    y_lo = 0.0 if dtype == "uint8" else -y_hi
    g, _, acts = lowered_lrn(shape, size, alpha, beta, bias, (lo_x, amax), (y_lo, y_hi), dtype)
    xq = quantize(x, acts["x"]).astype(dtype)
    # Reference on the quantized input (the op cannot see more than its input grid).
    x_grid = dequantize(xq, acts["x"])
    ref = torch_lrn(x_grid, size, alpha, beta, bias)
    y = run(g, xq)
    info = g.tensors[g.output]
    lo, hi = ACTIVATION_DTYPES[info.dtype]
    ref_q = np.clip(ref / info.scale + info.zero_point, lo, hi)
    err = np.abs(y.astype(np.float64) - ref_q)
    assert err.max() <= 1.0, f"max error {err.max():.3f} LSB (mean {err.mean():.3f})"
    assert np.ptp(y.astype(np.int64)) > (hi - lo) // 4  # the output really spans its range


def test_lrn_matches_float_graph_with_even_size_onnx_window() -> None:
    """size 4: window c−1..c+2 (ONNX), compared with the float graph executor."""
    shape, size = (10, 3, 3), 4
    rng = np.random.default_rng(3)
    x = rng.uniform(-50, 50, size=(4, *shape))
    g, fg, acts = lowered_lrn(shape, size, 1e-3, 0.75, 1.0, (-50, 50), (-50, 50), "int8")
    xq = quantize(x, acts["x"]).astype(np.int8)
    x_grid = torch.from_numpy(dequantize(xq, acts["x"]).astype(np.float32))
    ref = run_graph(fg, x_grid).double().numpy()
    info = g.tensors[g.output]
    ref_q = np.clip(ref / info.scale + info.zero_point, -128, 127)
    assert np.abs(run(g, xq) - ref_q).max() <= 1.0


def test_lrn_matches_float_in_an_imported_onnx_model() -> None:
    """The user path: ONNX Conv → Relu → LRN imported, quantized, run; the lrn op against the
    float op on its own integer input, and the whole model against the float one."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("LRN", ["r"], ["y"], size=5, alpha=1e-2, beta=0.75, bias=1.0),
    ]
    graph = helper.make_graph(
        nodes, "lrn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    gm = from_onnx(model)
    calib = rng.normal(0, 3, (16, 3, 8, 8)).astype(np.float32)
    qm = intquant.quantize(gm, calib, progress=False)
    assert "lrn" in {op.kind for op in qm.graph.ops}
    x = rng.normal(0, 3, (4, 3, 8, 8)).astype(np.float32)
    values = run(qm.graph, qm.quantize_input(x), return_all=True)
    op = next(o for o in qm.graph.ops if o.kind == "lrn")
    t_in, t_out = qm.graph.tensors[op.inputs[0]], qm.graph.tensors[op.output]
    x_lrn = t_in.scale * (values[op.inputs[0]].astype(np.float64) - t_in.zero_point)
    ref = torch_lrn(x_lrn, 5, 1e-2, 0.75, 1.0)  # the float op on the integer op's own input
    lo, hi = ACTIVATION_DTYPES[t_out.dtype]
    ref_q = np.clip(ref / t_out.scale + t_out.zero_point, lo, hi)
    assert np.abs(values[op.output] - ref_q).max() <= 1.0
    # and the whole model follows the float one, every element: the float64 reference runs on
    # the dequantized integer input and clips the conv output to its format, as the integer
    # model does; left is the conv's output rounding (½ step of c ≈ 1.1 output steps, times
    # the LRN's slope) plus the LRN op's own ≤ 1 step — measured ≤ 3, float64 noise ~1e-13.
    t_x, t_c = qm.input_info, qm.graph.tensors[next(o.output for o in qm.graph.ops
                                                    if o.kind == "conv")]
    x_deq = t_x.scale * (qm.quantize_input(x).astype(np.float64) - t_x.zero_point)
    c = TF.relu(TF.conv2d(torch.from_numpy(x_deq), torch.from_numpy(w.astype(np.float64)),
                          padding=1)).numpy()
    c_lo, c_hi = ACTIVATION_DTYPES[t_c.dtype]
    c = np.clip(c, t_c.scale * (c_lo - t_c.zero_point), t_c.scale * (c_hi - t_c.zero_point))
    y = qm.dequantize_output(values[qm.graph.output])
    ref = torch_lrn(c, 5, 1e-2, 0.75, 1.0).reshape(y.shape)
    assert np.abs(ref - y).max() <= 4 * t_out.scale


def test_lrn_extremes_stay_in_range() -> None:
    """Full-range inputs, including all channels at the extreme: no wrap, no index overflow."""
    for dtype in DTYPES:
        g = F.lrn_graph(np.random.default_rng(5), dtype=dtype)
        lo, hi = ACTIVATION_DTYPES[dtype]
        shape = g.tensors[g.input].shape
        x = np.stack([np.full(shape, lo), np.full(shape, hi)]).astype(dtype)
        y = run(g, x)
        assert y.dtype == np.dtype(dtype)


# ---- (b) validation ---------------------------------------------------------------------------


def _lrn(dtype: str = "int8"):
    return F.lrn_graph(np.random.default_rng(1), dtype=dtype)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda op: op.attrs.update(lut_shift=op.attrs["lut_shift"] - 1), "lut_shift"),
        (lambda op: op.attrs.update(left_shift=30), "left_shift"),
        (lambda op: op.attrs.update(size=0), "'size' = 0 is out of range"),
        (lambda op: op.attrs.update(input_zero_point=op.attrs["input_zero_point"] + 1),
         "input_zero_point"),
        (lambda op: op.attrs.update(multiplier=-1), "multiplier"),
        (lambda op: op.attrs.pop("shift"), "missing attr 'shift'"),
        (lambda op: op.attrs.update(alpha=3), "unknown attr"),
        (lambda op: op.consts.update(table=op.consts["table"][:512]), "513"),
        (lambda op: op.consts.update(table=op.consts["table"].astype(np.int64)), "int32"),
        (lambda op: op.consts["table"].__setitem__(0, 2**30 + 1), "[0, 2^30]"),
        (lambda op: op.consts["table"].__setitem__(3, -1), "[0, 2^30]"),
    ],
)
def test_lrn_validation_errors(edit, message) -> None:
    g = copy.deepcopy(_lrn())
    edit(g.ops[0])
    with pytest.raises(IntGraphError, match=r"op 0 'lrn_0' \(lrn\): .*") as e:
        g.validate()
    assert message in str(e.value)


def test_lrn_validation_output_shape() -> None:
    g = copy.deepcopy(_lrn())
    t = g.tensors[g.output]
    t.shape = (t.shape[0] + 1, *t.shape[1:])
    with pytest.raises(IntGraphError, match="expected"):
        g.validate()


# ---- (c) goldens ------------------------------------------------------------------------------


def _lrn_op(size: int, lut_shift: int, table: np.ndarray, shape: tuple[int, ...]):
    """int8, zero points 0, left shift 22, output multiplier 2^30 · 2^-20 (real 2^-21)."""
    xi = TensorInfo("x", shape, "int8", 1.0, 0)
    yi = TensorInfo("y", shape, "int8", 1.0, 0)
    attrs = {"size": size, "input_zero_point": 0, "lut_shift": lut_shift, "left_shift": 22,
             "multiplier": 2**30, "shift": -20, "output_zero_point": 0, "act_min": -128,
             "act_max": 127}
    return one_op_graph("lrn", xi, yi, attrs, {"table": table})


def test_lrn_golden_linear_table_by_hand() -> None:
    """size 1, lut_shift 6, table t[i] = 2^30 − i·2^20: the interpolated factor is exactly
    f = 2^30 − S·2^14 with S = d², so g = SRDHM(d·2^22, f) = d·2^21 − 32·d³ and
    y = round(d − d³/2^16): d = 64 → 60, 100 → 84.74 → 85, 127 → 95.74 → 96, −128 → −96."""
    table = (2**30 - np.arange(513) * 2**20).astype(np.int32)
    g = _lrn_op(1, 6, table, (6,))
    y = run(g, np.array([[0, 64, 100, -100, 127, -128]], dtype=np.int8))
    np.testing.assert_array_equal(y, [[0, 60, 85, -85, 96, -96]])


def test_lrn_golden_window_across_channels_by_hand() -> None:
    """size 3 over channels [100, 50, −20] (lut_shift 7, t[i] = 2^30 − i·2^21, so again
    f = 2^30 − S·2^14): S = [12500, 12900, 2900], y = round(d − d·S/2^16) = [81, 40, −19]."""
    table = (2**30 - np.arange(513) * 2**21).astype(np.int32)
    g = _lrn_op(3, 7, table, (3,))
    np.testing.assert_array_equal(run(g, np.array([[100, 50, -20]], dtype=np.int8)),
                                  [[81, 40, -19]])


def _mbqm_exact(x: int, m: int, shift: int) -> int:
    """TFLM's MultiplyByQuantizedMultiplier from the definition, with exact rationals."""
    x = max(-(2**31), min(2**31 - 1, x * 2 ** max(shift, 0)))
    high = round_half_up(Fraction(x * m, 2**31))  # SRDHM (no saturation: m < 2^31)
    return round_half_away(Fraction(high, 2 ** max(-shift, 0)))


@pytest.mark.parametrize("size", [3, 4])
@pytest.mark.parametrize("dtype", DTYPES)
def test_lrn_golden_random_op_by_fractions(dtype: str, size: int) -> None:
    """A random lrn op of the factory (odd and even window), every output recomputed from the
    spec in ops/lrn.py with Python integers and exact rationals."""
    b = F.GraphBuilder(np.random.default_rng(11), (6, 5), dtype)
    b.lrn(b.input, size=size)
    g = b.graph()
    op = g.ops[0]
    a, table = op.attrs, [int(v) for v in op.consts["table"]]
    x = F.random_input(np.random.default_rng(12), g, n=4)
    n, ls = a["size"], a["lut_shift"]
    before, after = (n - 1) // 2, n // 2
    want = np.zeros(x.shape, dtype=np.int64)
    for b, c, p in np.ndindex(*x.shape):
        d = [int(v) - a["input_zero_point"] for v in x[b, :, p]]
        s = sum(v * v for v in d[max(0, c - before): c + after + 1])
        i, r = s >> ls, s & ((1 << ls) - 1)
        f = table[i] + (((table[i + 1] - table[i]) * r) >> ls)
        gq = round_half_up(Fraction(d[c] * 2 ** a["left_shift"] * f, 2**31))
        y = _mbqm_exact(gq, a["multiplier"], a["shift"]) + a["output_zero_point"]
        want[b, c, p] = min(a["act_max"], max(a["act_min"], y))
    assert np.unique(want).size > 10
    np.testing.assert_array_equal(run(g, x), want)


# ---- (d) C vs reference -----------------------------------------------------------------------

test_lrn_c_host_equals_reference = c_host_test("lrn")
test_lrn_c_m0_equals_reference = c_m0_test("lrn")


# ---- (e) ONNX: lrn has no export -------------------------------------------------------------


def test_lrn_onnx_export_is_refused_clearly(tmp_path) -> None:
    from intquant.onnx_export import intgraph_to_onnx

    with pytest.raises(ValueError, match="lrn"):
        intgraph_to_onnx(_lrn(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
