"""Helpers shared by the per-op test modules ``tests/ops/test_<kind>.py``.

Every IntGraph op kind has one module here holding that op's paired tests. Test names say what
kind of evidence a test gives (docs/adding-an-op.md); ``test_registry.py`` fails the suite when
a registered kind lacks its module or one of the categories in :data:`TEST_CATEGORIES`:

    test_<kind>_matches_float_*  (a) integer op vs the float PyTorch op on the dequantized input
    test_<kind>_validation_*     (b) each of the op's checks raises IntGraphError naming the field
    test_<kind>_golden_*         (c) tiny cases worked out by hand or with fractions.Fraction
    test_<kind>_c_host_*         (d) generated C on the host (-O2, ASan/UBSan) == interpreter.run
    test_<kind>_c_m0_*           (d) the same C on the emulated Cortex-M0 == interpreter.run
    test_<kind>_onnx_*           (e) ONNX export vs interpreter.run (a clear refusal if the kind
                                     has no ONNX export)

Float references are float64 PyTorch (float32 through the whole quantize path). No assertion
depends on how a CPU rounds: data movement and max are compared exactly (no arithmetic happens,
so every IEEE machine gives the same values), and every tolerance is an error bound of the
integer op — derived from its roundings (conv, fully_connected, add, rescale, pools, lut, lrn)
or measured with the margin stated (softmax, the quantize path) — with a margin far above the
evaluation error of the float reference (< 1e-9 LSB in float64), so AVX-512, AVX2 and the
scalar kernels (``ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2``) pass alike.
"""

from __future__ import annotations

import copy
import inspect
import math
import re
import shutil
import zlib
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn as nn

import intgraph_factory as F
import intquant
from intquant.codegen import export_c
from intquant.codegen.toolchain import compile_and_run_host, emulate_unicorn
from intquant.interpreter import run
from intquant.intgraph import ACTIVATION_DTYPES, IntGraph, IntGraphError, Op, TensorInfo
from intquant.numerics import QParams, dequantize

DTYPES = ("int8", "uint8", "int16")

# Category of a test = the words after ``test_<kind>_``; see the module docstring.
TEST_CATEGORIES = {
    "matches_float": "reference vs float PyTorch",
    "validation": "each check raises IntGraphError naming the field",
    "golden": "hand-checkable goldens",
    "c_host": "C vs reference on the host at -O2 and under ASan/UBSan",
    "c_m0": "C vs reference on the emulated Cortex-M0",
    "onnx": "ONNX export vs reference (or its clear refusal)",
}


def seeded_rng(*key: object) -> np.random.Generator:
    """A generator seeded from a readable key (stable across runs and processes)."""
    return np.random.default_rng(zlib.crc32("/".join(map(str, key)).encode()))


# ----------------------------------------------------------------------------------------------
# (a) float references
# ----------------------------------------------------------------------------------------------


def f32(v: float) -> float:
    """Scales are float32 values (as TFLM stores them)."""
    return float(np.float32(v))


def deq(q: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Real values of raw integers: exact in float64 (a float32 scale times a 17-bit integer)."""
    return info.scale * (q.astype(np.float64) - info.zero_point)


def to_t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def random_q(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    lo, hi = ACTIVATION_DTYPES[dtype]
    return rng.integers(lo, hi + 1, size=shape).astype(dtype)


def one_op_graph(
    kind: str, x: TensorInfo, y: TensorInfo, attrs: dict, consts=None, inputs=None
) -> IntGraph:
    """The graph ``y = kind(x)`` (``inputs`` lists the op's inputs when it reads x twice)."""
    op = Op("layer", kind, list(inputs or [x.name]), y.name, attrs, consts or {})
    return IntGraph({x.name: x, y.name: y}, [op], x.name, y.name).validate()


def output_qparams(ref: np.ndarray, dtype: str) -> tuple[float, int]:
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


class Fn(nn.Module):
    """Wrap a function of the input (and of some modules) as a module."""

    def __init__(self, fn, *mods: nn.Module):
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleList(mods)

    def forward(self, x):
        return self.fn(x, *self.mods)


def batchnorm(c: int, d: int = 2) -> nn.Module:
    """BatchNorm with non-trivial eval statistics and affine parameters (global torch RNG)."""
    bn = nn.BatchNorm2d(c) if d == 2 else nn.BatchNorm1d(c)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(-1.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn


def _channel_weights(bn: nn.Module) -> nn.Module:
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -2.0, 1.25]))
    return bn


def _quantize_cases() -> dict[str, tuple[str, nn.Module, tuple[int, ...], float]]:
    """name -> (IntGraph kind it tests, module, input shape, max error in output LSB).

    One table for every kind because the modules draw their weights from one torch stream
    seeded 0, in this order: each case keeps the weights it was always tested with (the
    tolerances of the weighted cases are measured, and conv_hardtanh's margin is only ~0.3
    LSB). Built once, without touching the global RNG of the tests.
    """
    import torch.nn.functional as TF

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return {
            "conv1d_stride_pad": ("conv", nn.Conv1d(2, 6, 5, stride=2, padding=2), (2, 40), 2),
            "conv1d_same_dilated": (
                "conv", nn.Conv1d(3, 4, 3, padding="same", dilation=2), (3, 20), 2),
            "conv2d_pad_stride": ("conv", nn.Conv2d(3, 8, 3, stride=2, padding=1), (3, 9, 9), 2),
            "conv2d_dilation_nobias": (
                "conv", nn.Conv2d(2, 4, 3, dilation=2, padding=2, bias=False), (2, 8, 8), 2),
            "conv2d_depthwise": ("conv", nn.Conv2d(6, 6, 3, padding=1, groups=6), (6, 7, 7), 2),
            "conv2d_grouped": ("conv", nn.Conv2d(4, 6, 3, padding=1, groups=2), (4, 6, 6), 2),
            "conv_bn_relu": (
                "conv", nn.Sequential(nn.Conv2d(2, 4, 3), batchnorm(4), nn.ReLU()), (2, 6, 6), 2),
            "conv_relu6": ("conv", nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU6()), (2, 12), 2),
            "conv_hardtanh": (
                "conv", nn.Sequential(nn.Conv1d(2, 4, 3), nn.Hardtanh(-0.5, 0.5)), (2, 12), 2),
            "linear": ("fully_connected", nn.Linear(20, 7), (20,), 2),
            "flatten_linear": (
                "reshape", nn.Sequential(nn.Flatten(), nn.Linear(24, 5)), (2, 3, 4), 2),
            # standalone BatchNorm and multiplication by constants: a depthwise 1x1 conv
            "batchnorm2d_standalone": (
                "conv", nn.Sequential(nn.MaxPool2d(2), batchnorm(3)), (3, 6, 6), 2),
            "batchnorm1d_standalone": ("conv", batchnorm(5, 1), (5, 8), 2),
            "batchnorm1d_features": ("conv", batchnorm(12, 1), (12,), 2),
            "relu_standalone": ("clamp", Fn(lambda x: TF.relu(TF.max_pool1d(x, 2))), (3, 10), 1),
            "leaky_relu": ("lut", nn.LeakyReLU(0.1), (3, 10), 1),
            "sigmoid": ("lut", nn.Sigmoid(), (3, 10), 2),  # int16: 513-knot interpolation
            "tanh": ("lut", nn.Tanh(), (3, 10), 2),
            "softmax": ("softmax", Fn(lambda x: torch.softmax(x * 1.0, dim=-1)), (10,), 1),
            "clamp": ("clamp", Fn(lambda x: torch.clamp(x, -0.3, 0.7)), (3, 10), 1),
            "maxpool1d_pad": ("max_pool", nn.MaxPool1d(3, 2, padding=1), (3, 11), 0),
            "maxpool2d": ("max_pool", nn.MaxPool2d(2), (3, 6, 6), 0),
            "avgpool1d": ("avg_pool", nn.AvgPool1d(3, 2), (3, 11), 1),
            "avgpool2d_pad_include": ("avg_pool", nn.AvgPool2d(3, 2, padding=1), (3, 7, 7), 1),
            "avgpool2d_pad_exclude": (
                "avg_pool", nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), (3, 7, 7), 1),
            "global_avgpool2d": ("avg_pool", nn.AdaptiveAvgPool2d(1), (4, 5, 5), 1),
            "global_avgpool1d": ("avg_pool", nn.AdaptiveAvgPool1d(1), (4, 9), 1),
            "reshape_view": (
                "reshape", Fn(lambda x: x.view(x.shape[0], 4, 6).relu()), (24,), 1),
            "unflatten": (
                "reshape", nn.Sequential(nn.Unflatten(1, (2, 6)), nn.MaxPool1d(2)), (12,), 0),
            "permute": (
                "transpose", Fn(lambda x: TF.max_pool1d(x.permute(0, 2, 1), 1)), (3, 5), 0),
            "add_residual": (
                "add", Fn(lambda x, c: x + c(x), nn.Conv1d(3, 3, 3, padding=1)), (3, 10), 2),
            # lowering aligns the two scales with a rescale: the error is that requantization's
            "concat_scales": ("concat", Fn(lambda x: torch.cat([x, 3.0 * x], dim=1)), (3, 8), 2),
            "pad_constant": ("pad", Fn(lambda x: TF.pad(x, (1, 2, 0, 1), value=0.25)), (2, 4, 4),
                             1),
            "mul_const_scalar": ("conv", Fn(lambda x: x * -0.75), (3, 6), 2),
            "mul_const_channel": (
                "conv",
                Fn(lambda x, p: x * p.weight.view(1, -1, 1), _channel_weights(nn.BatchNorm1d(3))),
                (3, 6),
                2,
            ),
            "add_const_channel": (
                "conv", Fn(lambda x: x + torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1)), (3, 6), 2),
            "sub_const_scalar": ("conv", Fn(lambda x: x - 0.25), (3, 6), 2),
            "dropout_identity": (
                "fully_connected",
                nn.Sequential(nn.Dropout(0.5), nn.Identity(), nn.Linear(6, 3)),
                (6,),
                2,
            ),
        }


QUANTIZE_CASES = _quantize_cases()


def quantize_cases(kind: str) -> list[str]:
    """Names of the whole-path cases whose layer lowers to ``kind``."""
    return sorted(n for n, (k, *_) in QUANTIZE_CASES.items() if k == kind)


def assert_quantized_case_matches_float(name: str, act_bits: int) -> None:
    """The whole path (capture, calibrate, lower, interpreter) on one layer vs the float layer.

    The reference is the float module applied to the *dequantized integer input*, so the error
    measured is the op's own (weights + output rounding), in units of the output scale (LSB).
    Calibration is minmax without bias correction and without 16-bit headroom: the op's own
    error at the calibrated range, not a calibration trade-off (clipping outliers and shifting
    biases lower the *mean* error, not the maximum; headroom coarsens a 16-bit table's knots).
    """
    _, module, shape, tol_lsb = QUANTIZE_CASES[name]
    module.eval()
    x = torch.randn((64,) + shape, generator=torch.Generator().manual_seed(1))
    cfg = intquant.Config(act_bits=act_bits, weight_bits=8 if act_bits == 8 else 16,
                          calibration="minmax", bias_correction=False, wide_act_headroom=1.0)
    q = intquant.quantize(module, x, cfg, progress=False)
    x_int = q.quantize_input(x)
    info = q.input_info
    in_qp = QParams(scale=[info.scale], zero_point=[info.zero_point],
                    bits=8 if info.dtype == "int8" else 16)
    x_deq = torch.as_tensor(dequantize(x_int, in_qp), dtype=torch.float32)
    with torch.no_grad():
        ref = module(x_deq).numpy()
    out = q.dequantize_output(q.run(x_int))
    assert out.shape == ref.shape
    err_lsb = np.abs(out - ref).max() / q.output_info.scale
    assert err_lsb <= tol_lsb + 0.51, f"{name}: max error {err_lsb:.2f} LSB"


# ----------------------------------------------------------------------------------------------
# (c) goldens: exact rational rounding
# ----------------------------------------------------------------------------------------------


def round_half_away(q: Fraction) -> int:
    """round(q), ties away from zero (gemmlowp's RoundingDivideByPOT, C's round)."""
    n = math.floor(abs(q) + Fraction(1, 2))
    return n if q >= 0 else -n


def round_half_up(q: Fraction) -> int:
    """floor(q + 1/2): ties toward +inf (SRDHM's nudge, single rounding, the 16x8 path)."""
    return math.floor(q + Fraction(1, 2))


# ----------------------------------------------------------------------------------------------
# (b) validation
# ----------------------------------------------------------------------------------------------


def assert_rejected(
    g: IntGraph, mutate: Callable[[IntGraph], None], message: str | None, op_index: int = -1
) -> None:
    """``g`` is valid; mutated, validation fails with ``message`` (a regex), and the error
    starts ``op <i> '<name>' (<kind>):`` naming the op at ``op_index``. ``message=None``: the
    mutation is still valid."""
    g.validate()
    g = copy.deepcopy(g)
    mutate(g)
    if message is None:
        g.validate()
        return
    i = op_index % len(g.ops)
    prefix = re.escape(f"op {i} {g.ops[i].name!r} ({g.ops[i].kind}): ")
    with pytest.raises(IntGraphError, match=message) as e:
        g.validate()
    assert re.match(prefix, str(e.value)), str(e.value)


# ----------------------------------------------------------------------------------------------
# TFLM layout (the naive reference kernels of tests/tflm_reference.py are NHWC)
# ----------------------------------------------------------------------------------------------


def nhwc(x: np.ndarray) -> np.ndarray:
    """(N, C, L) or (N, C, H, W) → (N, H, W, C) with H = 1 for 1-D."""
    x4 = x[:, :, None, :] if x.ndim == 3 else x
    return x4.transpose(0, 2, 3, 1)


def from_nhwc(y: list, like_shape: tuple[int, ...]) -> np.ndarray:
    """Nested [N][Ho][Wo][C] list → the interpreter's layout (N, C, Ho, Wo) / (N, C, Lo)."""
    a = np.array(y, dtype=np.int64).transpose(0, 3, 1, 2)
    return a.reshape((a.shape[0], *like_shape))


def out_hw(g: IntGraph) -> tuple[int, int]:
    shape = g.tensors[g.output].shape
    return (1, shape[1]) if len(shape) == 2 else (shape[1], shape[2])


def tflm_pool_kwargs(g: IntGraph) -> dict:
    a = g.ops[0].attrs
    return dict(
        filter_hw=tuple(a["kernel"]),
        stride=tuple(a["stride"]),
        pad=(a["padding"][0], a["padding"][1]),
        out_hw=out_hw(g),
        act_min=a["act_min"],
        act_max=a["act_max"],
    )


# ----------------------------------------------------------------------------------------------
# Pools: the shared geometry of the max_pool and avg_pool float tests
# ----------------------------------------------------------------------------------------------

POOL_CASES = [  # dims, kernel, stride, pad, dilation
    (1, 3, 2, 1, 1),
    (2, 2, 2, 0, 1),
    (2, 3, 1, 1, 1),
    (2, 3, 2, 1, 2),
    (1, 4, 3, 2, 1),
]


def pool_graph(
    kind: str, dims: int, k: int, s: int, p: int, d: int, dtype: str, attrs_extra: dict
) -> tuple[IntGraph, TensorInfo]:
    """One pool of a (3, 13) / (3, 9, 10) input with square kernel, stride, padding, dilation."""
    shape = (3, 13) if dims == 1 else (3, 9, 10)
    zp = {"int8": 5, "uint8": 120, "int16": 0}[dtype]
    xi = TensorInfo("x", shape, dtype, f32(0.03), zp)
    hw = [1, shape[1]] if dims == 1 else list(shape[1:])
    kk = [1, k] if dims == 1 else [k, k]
    ss = [1, s] if dims == 1 else [s, s]
    pp = [0, p, 0, p] if dims == 1 else [p, p, p, p]
    dd = [1, d] if dims == 1 else [d, d]
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


# ----------------------------------------------------------------------------------------------
# (d) C vs reference
# ----------------------------------------------------------------------------------------------

C_SAMPLES = 24  # host: one process run for the whole batch
M0_SAMPLES = 8  # emulated: one build, one emulator instance, every sample


def require_tool(tool: str) -> None:
    """Never skip silently: a missing cross toolchain is a failure with the fix in the message."""
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} missing: run scripts/install_toolchain.sh (make toolchain)")


def _has_dims(kind: str) -> bool:
    """Whether the kind's factory builder takes ``dims`` (1-D / 2-D spatial inputs)."""
    return "dims" in inspect.signature(F.ONE_OP_BUILDERS[kind]).parameters


def c_case(
    kind: str, dtype: str, input_range: tuple[int, int] | None = None
) -> tuple[IntGraph, np.ndarray]:
    """The random one-op graph of ``kind`` (tests/intgraph_factory.py) the C tests run for
    ``dtype`` — 1-D for uint8, 2-D otherwise — and an input batch over the dtype's full range
    (or ``input_range``, where the full range would saturate the op)."""
    rng = seeded_rng("c", kind, dtype)
    kw = {"dims": 1 if dtype == "uint8" else 2} if _has_dims(kind) else {}
    g = F.ONE_OP_BUILDERS[kind](rng, dtype=dtype, **kw)
    if input_range is None:
        return g, F.random_input(rng, g, C_SAMPLES)
    lo, hi = input_range
    shape = (C_SAMPLES, *g.tensors[g.input].shape)
    return g, rng.integers(lo, hi + 1, size=shape).astype(dtype)


def _reference(g: IntGraph, x: np.ndarray) -> np.ndarray:
    """interpreter.run, refusing a case whose outputs do not vary: more than two values, or
    both of ±1 (the unpacked outputs of the binary kinds have no others)."""
    ref = run(g, x)
    values = np.unique(ref).tolist()
    assert len(values) > 2 or values == [-1, 1], f"degenerate case: outputs {values}"
    return ref


def assert_c_host_equals_reference(g: IntGraph, x: np.ndarray, out_dir) -> None:
    """export_c, then the host build at -O2 and at -O1 with ASan+UBSan: both == interpreter."""
    ref = _reference(g, x)
    res = export_c(g, out_dir, name="net")
    y = compile_and_run_host(res.out_dir, x, opt="-O2")
    assert y.dtype == ref.dtype and y.shape == ref.shape
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, x, opt="-O1", sanitize=True),
                                  ref)


def assert_c_o2_and_m0_equal_reference(g: IntGraph, x: np.ndarray, out_dir) -> None:
    """One export, the host build at -O2 and the Cortex-M0 build on unicorn: == interpreter
    (for the optimised kernel paths, e.g. the 8-bit fast paths, on hand-picked graphs)."""
    require_tool("arm-none-eabi-gcc")
    ref = run(g, x)
    res = export_c(g, out_dir, name="net")
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, x, opt="-O2"), ref)
    got = emulate_unicorn(res.out_dir, x)
    np.testing.assert_array_equal(got.outputs.reshape(ref.shape), ref)


def assert_int8_fast_path_equals_reference(build, dims: int, out_dir) -> None:
    """The int8 specialisations (pools over in-bounds taps, add with the asm requantization):
    two random graphs ``build(rng, dims=dims)`` with padding, stride, dilation, ..."""
    for seed in range(2):
        g = build(np.random.default_rng(100 * seed + dims), dims=dims)
        x = F.random_input(np.random.default_rng(seed), g, 4)
        assert_c_o2_and_m0_equal_reference(g, x, out_dir / f"c{seed}")


def assert_c_m0_equals_reference(g: IntGraph, x: np.ndarray, out_dir) -> None:
    """export_c, cross-compile for Cortex-M0 (no soft-float helper linked), run the first
    M0_SAMPLES samples on unicorn's Cortex-M0 model in one emulator instance: == interpreter."""
    require_tool("arm-none-eabi-gcc")
    x = x[:M0_SAMPLES]
    ref = _reference(g, x)
    res = export_c(g, out_dir, name="net")
    u = emulate_unicorn(res.out_dir, x)
    assert u.build.soft_float == []
    np.testing.assert_array_equal(u.outputs.reshape(ref.shape), ref)
    assert min(u.instructions) > 0


# ----------------------------------------------------------------------------------------------
# (e) ONNX export, checked by ONNX Runtime (an independent implementation)
# ----------------------------------------------------------------------------------------------


def ort_session(model, optimize: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def ort_run(graph: IntGraph, x: np.ndarray, **kw) -> np.ndarray:
    from intquant.onnx_export import intgraph_to_onnx

    s = ort_session(intgraph_to_onnx(graph, **kw))
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def lsb_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a − b| elementwise, in LSB (same dtype and shape required)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    return np.abs(a.astype(np.int64) - b.astype(np.int64))


def lsb_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of elements within 1 LSB: reported only (float QDQ results vary by CPU)."""
    return float((lsb_diff(a, b) <= 1).mean())


def assert_onnx_integer_export_bit_exact(g: IntGraph, x: np.ndarray, note=None) -> None:
    """requant="integer" (the default): ONNX Runtime == interpreter, graph optimisation on/off."""
    from intquant.onnx_export import intgraph_to_onnx

    want = run(g, x)
    for optimize in (True, False):
        s = ort_session(intgraph_to_onnx(g), optimize=optimize)
        got = s.run(None, {g.input: x})[0]
        assert got.dtype == want.dtype
        assert np.array_equal(got, want), (note, optimize, np.abs(got.astype(int) - want).max())


def onnx_export_cases(kind: str, dtype: str, variant: Callable[[int], dict] = lambda t: {}):
    """Six random one-op graphs of ``kind`` (dims alternating 1-D / 2-D where the kind has
    dims; ``variant(trial)`` adds builder keywords) with 16 full-range samples each."""
    rng = seeded_rng(kind, dtype)
    build = F.ONE_OP_BUILDERS[kind]
    for trial in range(6):
        kw = {"dims": 1 + trial % 2} if _has_dims(kind) else {}
        kw.update(variant(trial))
        g = build(rng, dtype=dtype, **kw)
        yield g, F.random_input(rng, g, n=16), (trial, kw)


def requant_rounding_variant(trial: int) -> dict:
    """add / rescale export cases: both rounding modes of their requantization."""
    return {"rounding": ["double", "single"][trial % 2]}


def weighted_onnx_variant(trial: int) -> dict:
    """conv / fully_connected export cases: every rounding mode, then int16 weights with the
    int64 accumulator (W16A16 and 16x8; single rounding has no int64 path: double there)."""
    kw = {"rounding": ["double", "single", "pow2"][trial % 3]}
    if trial >= 3:
        kw.update(w_dtype="int16", acc_bits=64)
        if kw["rounding"] == "single":
            kw["rounding"] = "double"
    return kw


def assert_integer_export_uses_only_int8_products(build: Callable[..., IntGraph]) -> None:
    """uint8 and int16 operands reach ConvInteger / MatMulInteger as int8 (see weight_layer_int:
    ONNX Runtime's uint8 × int8 MatMulInteger saturates on AVX2)."""
    import onnx

    from intquant.onnx_export import intgraph_to_onnx

    rng = np.random.default_rng(3)
    for dtype in ("uint8", "int16"):
        model = onnx.shape_inference.infer_shapes(intgraph_to_onnx(build(rng, dtype=dtype)))
        types = {v.name: v.type.tensor_type.elem_type
                 for v in [*model.graph.value_info, *model.graph.input]}
        types.update({t.name: t.data_type for t in model.graph.initializer})
        products = [n for n in model.graph.node if n.op_type.endswith("Integer")]
        assert products
        for n in products:
            assert {types[i] for i in n.input[:2]} == {onnx.TensorProto.INT8}, n


def assert_onnx_float_mode_within_one_lsb(kind: str) -> None:
    """requant="float" (plain QDQ): ONNX Runtime requantizes the real value computed in float
    (~1e-7 relative, order and rounding up to the CPU's kernels) and rounds it once; the
    integer op rounds the same value within half a step plus the multiplier's < 2^-30. Two
    roundings of values that close differ by at most 1 on any IEEE machine: every element."""
    rng = np.random.default_rng(5)
    g = F.ONE_OP_BUILDERS[kind](rng, dtype="int8")
    x = F.random_input(rng, g, n=64)
    assert lsb_diff(run(g, x), ort_run(g, x, requant="float")).max() <= 1


# ----------------------------------------------------------------------------------------------
# The tests every op module has in the same form, instantiated there with one line each:
#     test_clamp_c_host_equals_reference = c_host_test("clamp")
# The function is named after the kind (test_registry.py checks the name matches).
# ----------------------------------------------------------------------------------------------


def _named(test: Callable, name: str, doc: str) -> Callable:
    test.__name__ = test.__qualname__ = name
    test.__doc__ = doc
    return test


def quantize_path_test(kind: str) -> Callable:
    """(a) every QUANTIZE_CASES layer of the kind, 8- and 16-bit, against the float layer."""

    @pytest.mark.parametrize("act_bits", [8, 16])
    @pytest.mark.parametrize("name", quantize_cases(kind))
    def test(name: str, act_bits: int) -> None:
        assert_quantized_case_matches_float(name, act_bits)

    return _named(test, f"test_{kind}_matches_float_after_quantize",
                  assert_quantized_case_matches_float.__doc__)


def c_host_test(kind: str, input_range: dict[str, tuple[int, int]] | None = None) -> Callable:
    """(d) per dtype: c_case(kind, dtype) on the host, -O2 and ASan/UBSan, == interpreter."""

    @pytest.mark.parametrize("dtype", DTYPES)
    def test(dtype: str, tmp_path) -> None:
        g, x = c_case(kind, dtype, (input_range or {}).get(dtype))
        assert_c_host_equals_reference(g, x, tmp_path / "c")

    return _named(test, f"test_{kind}_c_host_equals_reference",
                  assert_c_host_equals_reference.__doc__)


def c_m0_test(kind: str, input_range: dict[str, tuple[int, int]] | None = None) -> Callable:
    """(d) per dtype: c_case(kind, dtype) on the emulated Cortex-M0 == interpreter."""

    @pytest.mark.parametrize("dtype", DTYPES)
    def test(dtype: str, tmp_path) -> None:
        g, x = c_case(kind, dtype, (input_range or {}).get(dtype))
        assert_c_m0_equals_reference(g, x, tmp_path / "c")

    return _named(test, f"test_{kind}_c_m0_equals_reference", assert_c_m0_equals_reference.__doc__)


def c_m0_int8_fast_path_test(kind: str) -> Callable:
    """(d) the kind's int8 specialisation, 1-D and 2-D, host -O2 and Cortex-M0."""

    @pytest.mark.parametrize("dims", [1, 2])
    def test(dims: int, tmp_path) -> None:
        assert_int8_fast_path_equals_reference(F.ONE_OP_BUILDERS[kind], dims, tmp_path)

    return _named(test, f"test_{kind}_c_m0_int8_fast_path_equals_reference",
                  assert_int8_fast_path_equals_reference.__doc__)


def onnx_export_test(kind: str, variant: Callable[[int], dict] = lambda t: {}) -> Callable:
    """(e) per dtype: the six onnx_export_cases exported in integer mode, bit-exact."""

    @pytest.mark.parametrize("dtype", DTYPES)
    def test(dtype: str) -> None:
        for g, x, note in onnx_export_cases(kind, dtype, variant):
            assert_onnx_integer_export_bit_exact(g, x, note)

    return _named(test, f"test_{kind}_onnx_integer_export_is_bit_exact",
                  assert_onnx_integer_export_bit_exact.__doc__)


def onnx_float_mode_test(kind: str) -> Callable:
    def test() -> None:
        assert_onnx_float_mode_within_one_lsb(kind)

    return _named(test, f"test_{kind}_onnx_float_mode_within_one_lsb",
                  assert_onnx_float_mode_within_one_lsb.__doc__)


def onnx_int8_products_test(kind: str) -> Callable:
    def test() -> None:
        assert_integer_export_uses_only_int8_products(F.ONE_OP_BUILDERS[kind])

    return _named(test, f"test_{kind}_onnx_integer_export_uses_only_int8_products",
                  assert_integer_export_uses_only_int8_products.__doc__)
