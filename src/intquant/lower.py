"""Lowering: float Graph + QuantPlan → IntGraph. All float math happens here, once, offline.

Each float node becomes one (or a few) integer ops whose constants — integer weights, biases,
fixed-point multipliers and shifts, zero points, clamp bounds, lookup tables — are computed
from the plan's scales. Accumulator widths come from a worst-case bound over the actual integer
weights, so overflow is impossible by construction, and this is checked here.

Imports NumPy only (plus the plan's data): the result runs without PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .graph.ir import Graph, Node, unique_name
from .intgraph import ACTIVATION_DTYPES, IntGraph, Op, TensorInfo
from .numerics import QParams, quantize, quantize_multiplier, quantize_multipliers

ACC32_LIMIT = 2**31 - 1
ACC64_LIMIT = 2**47  # TFLM's int64 requantization path requires |acc| < 2^47


class LoweringError(ValueError):
    """A layer that cannot be represented in integers under the chosen plan."""


@dataclass
class QuantPlan:
    """Formats chosen for every tensor: what PTQ and QAT hand to ``lower``."""

    graph: Graph
    acts: dict[str, QParams]  # node name -> output activation format
    weights: dict[str, QParams] = field(default_factory=dict)  # conv/linear name -> weight format
    rounding: str = "double"  # "double" | "single" | "pow2"
    input_raw: dict[str, Any] | None = None  # raw integer input contract (InputSpec as dict)


def dtype_of(qp: QParams) -> str:
    if not qp.signed:
        return "uint8" if qp.bits <= 8 else "uint16"
    return "int8" if qp.bits <= 8 else "int16"


def act_bounds(node: Node, qp: QParams) -> tuple[int, int]:
    """Integer clamp bounds: the fused activation's real bounds ∩ the format's range."""
    lo, hi = qp.qmin, qp.qmax
    if node.act is not None:
        s, z = float(qp.scale[0]), int(qp.zero_point[0])
        a_lo, a_hi = node.act
        if a_lo is not None:
            lo = max(lo, z + int(np.round(a_lo / s)))
        if a_hi is not None:
            hi = min(hi, z + int(np.round(a_hi / s)))
        hi = max(hi, lo)
    return int(lo), int(hi)


def _scalar(qp: QParams) -> tuple[float, int]:
    return float(qp.scale[0]), int(qp.zero_point[0])


class Lowerer:
    """Walks the float graph in order and appends integer ops."""

    def __init__(self, plan: QuantPlan):
        self.plan = plan
        self.g = plan.graph
        self.tensors: dict[str, TensorInfo] = {}
        self.ops: list[Op] = []
        self.fmt: dict[str, QParams] = {}  # tensor name -> format
        self.names: set[str] = set()

    # -- bookkeeping ----------------------------------------------------------------------
    def add_tensor(self, name: str, shape: tuple[int, ...], qp: QParams) -> str:
        s, z = _scalar(qp)
        self.tensors[name] = TensorInfo(name, tuple(int(v) for v in shape), dtype_of(qp), s, z)
        self.fmt[name] = qp
        return name

    def op_name(self, base: str) -> str:
        return unique_name(base, self.names, sep="#")

    def emit(self, node_name: str, kind: str, inputs: list[str], out_shape, out_qp: QParams,
             attrs: dict, consts: dict | None = None, out_name: str | None = None) -> str:
        name = self.op_name(node_name)
        out = self.add_tensor(out_name or name, out_shape, out_qp)
        self.ops.append(Op(name, kind, list(inputs), out, attrs, consts or {}))
        return out

    def rounding(self) -> str:
        return self.plan.rounding

    # -- the walk -------------------------------------------------------------------------
    def run(self) -> IntGraph:
        out_of: dict[str, str] = {}
        for node in self.g.nodes:
            try:
                if node.op == "input":
                    out_of[node.name] = self.lower_input(node)
                    continue
                fn = LOWER.get(node.op)
                if fn is None:
                    raise LoweringError(f"no integer lowering for op {node.op!r}")
                out_of[node.name] = fn(self, node, [out_of[i] for i in node.inputs])
            except LoweringError as e:
                raise LoweringError(f"layer {node.name!r} ({node.op}): {e}") from None
        graph = IntGraph(self.tensors, self.ops, self.graph_input, out_of[self.g.output])
        graph.validate()
        return graph

    def lower_input(self, node: Node) -> str:
        qp = self.plan.acts[node.name]
        raw = self.plan.input_raw
        if raw is None:
            self.graph_input = self.add_tensor("input", node.shape, qp)
            return self.graph_input
        # Raw integer input: x = (raw·raw_scale − mean)/std = raw_scale/std · (raw − mean/raw_scale)
        raw_scale = raw["raw_scale"] / raw["std"]
        raw_zero = raw["mean"] / raw["raw_scale"]  # possibly non-integer
        bits = 8 if raw["dtype"] in ("uint8", "int8") else 16
        signed = raw["dtype"].startswith("int")
        raw_qp = QParams(scale=[raw_scale], zero_point=[0], bits=bits, signed=signed, name="input")
        self.graph_input = self.add_tensor("input", node.shape, raw_qp)
        self.tensors["input"].zero_point = int(round(raw_zero))
        left_shift = 31 - (bits + 1) - 1  # room for x << ls without overflow
        left_shift = min(left_shift, 16)
        zps = int(round(raw_zero * 2**left_shift))
        s_out, z_out = _scalar(qp)
        m, sh = quantize_multiplier(raw_scale / (2**left_shift * s_out))
        attrs = dict(input_zero_point_shifted=zps, left_shift=left_shift, multiplier=m, shift=sh,
                     output_zero_point=z_out, act_min=qp.qmin, act_max=qp.qmax,
                     rounding="double" if self.rounding() == "pow2" else self.rounding())
        return self.emit("input_rescale", "rescale", [self.graph_input], node.shape, qp, attrs)

    # -- helpers shared by several ops ----------------------------------------------------
    def rescale(self, tensor: str, target: QParams, base: str) -> str:
        """Insert a ``rescale`` op so that ``tensor`` has the format ``target``."""
        src = self.fmt[tensor]
        if _scalar(src) == _scalar(target) and dtype_of(src) == dtype_of(target):
            return tensor
        s_in, z_in = _scalar(src)
        s_out, z_out = _scalar(target)
        left_shift = 8 if src.bits <= 8 else 0
        m, sh = quantize_multiplier(s_in / (2**left_shift * s_out))
        attrs = dict(input_zero_point_shifted=z_in << left_shift, left_shift=left_shift,
                     multiplier=m, shift=sh, output_zero_point=z_out, act_min=target.qmin,
                     act_max=target.qmax,
                     rounding="double" if self.rounding() == "pow2" else self.rounding())
        return self.emit(base + ".rescale", "rescale", [tensor], self.tensors[tensor].shape,
                         target, attrs)


# ----------------------------------------------------------------------------------------------
# Weighted layers: conv, linear (and BatchNorm / mul-by-constant as 1x1 depthwise conv)
# ----------------------------------------------------------------------------------------------


def accumulator_bound(w_q: np.ndarray, b_q: np.ndarray, in_qp: QParams) -> int:
    """max over output channels of Σ|w|·max|x − z| + |b|: the largest |accumulator| possible."""
    z = int(in_qp.zero_point[0])
    xmax = max(in_qp.qmax - z, z - in_qp.qmin)
    per_channel = np.abs(w_q.reshape(w_q.shape[0], -1).astype(np.int64)).sum(axis=1) * xmax
    return int((per_channel + np.abs(b_q.astype(np.int64))).max())


def choose_acc_bits(bound: int, in_qp: QParams, w_qp: QParams) -> int:
    """int32 for int8 activations with ≤ 8-bit weights when the bound allows; int64 otherwise."""
    if in_qp.bits <= 8 and w_qp.bits <= 8 and bound <= ACC32_LIMIT:
        return 32
    if bound >= ACC64_LIMIT:
        raise LoweringError(
            f"worst-case accumulator {bound} exceeds 2^47 (the int64 requantization limit); "
            f"use fewer weight/activation bits for this layer"
        )
    return 64


def quantize_bias(bias: np.ndarray | None, s_in: float, w_scale: np.ndarray, cout: int,
                  acc_bits: int) -> np.ndarray:
    if bias is None:
        return np.zeros(cout, dtype=np.int64)
    q = np.rint(bias.astype(np.float64) / (s_in * w_scale.astype(np.float64)))
    lim = 2**31 - 1 if acc_bits == 32 else 2**46
    return np.clip(q, -lim, lim).astype(np.int64)


def weighted_layer(lw: Lowerer, node: Node, x: str, kind: str, weight: np.ndarray,
                   bias: np.ndarray | None, w_qp: QParams, geometry: dict, out_shape) -> str:
    in_qp = lw.fmt[x]
    out_qp = lw.plan.acts[node.name]
    s_in, z_in = _scalar(in_qp)
    s_out, z_out = _scalar(out_qp)
    cout = weight.shape[0]
    w_scale = np.broadcast_to(w_qp.scale, (cout,)) if w_qp.axis is not None else np.full(
        cout, w_qp.scale[0])
    w_q = quantize(weight, w_qp).astype(np.int64)
    b_q = quantize_bias(bias, s_in, w_scale, cout, 32)
    bound = accumulator_bound(w_q, b_q, in_qp)
    acc_bits = choose_acc_bits(bound, in_qp, w_qp)
    if acc_bits == 64:
        b_q = quantize_bias(bias, s_in, w_scale, cout, 64)
    reals = s_in * w_scale.astype(np.float64) / s_out
    mult, shift = quantize_multipliers(reals)
    rounding = lw.rounding()
    if acc_bits == 64 and np.any(shift > 7):
        raise LoweringError("multiplier too large for the int64 path (shift > 7)")
    lo, hi = act_bounds(node, out_qp)
    w_dtype = np.int8 if w_qp.bits <= 8 else np.int16
    attrs = dict(geometry, input_zero_point=z_in, output_zero_point=z_out, act_min=lo,
                 act_max=hi, acc_bits=acc_bits, rounding=rounding)
    consts = {
        "weight": w_q.astype(w_dtype),
        "bias": b_q.astype(np.int32 if acc_bits == 32 else np.int64),
        "multiplier": mult,
        "shift": shift,
    }
    return lw.emit(node.name, kind, [x], out_shape, out_qp, attrs, consts)


def lower_conv(lw: Lowerer, node: Node, inputs: list[str]) -> str:
    a = node.attrs
    w = node.params["weight"]
    if a["dims"] == 1:
        w = w[:, :, None, :]
    geometry = dict(stride=list(a["stride"]), padding=list(a["padding"]),
                    dilation=list(a["dilation"]), groups=int(a["groups"]))
    return weighted_layer(lw, node, inputs[0], "conv", w, node.params.get("bias"),
                          lw.plan.weights[node.name], geometry, node.shape)


def lower_linear(lw: Lowerer, node: Node, inputs: list[str]) -> str:
    if len(lw.tensors[inputs[0]].shape) != 1:
        raise LoweringError(
            f"Linear on a {len(lw.tensors[inputs[0]].shape)}-D input; flatten before it"
        )
    return weighted_layer(lw, node, inputs[0], "fully_connected", node.params["weight"],
                          node.params.get("bias"), lw.plan.weights[node.name], {}, node.shape)


def _per_channel_affine(lw: Lowerer, node: Node, x: str, a: np.ndarray, b: np.ndarray) -> str:
    """y = a[c]·x + b[c] as a depthwise 1x1 conv (standalone BatchNorm, mul by a constant)."""
    shape = lw.tensors[x].shape
    channels = shape[0]
    a = np.broadcast_to(np.asarray(a, dtype=np.float64).reshape(-1), (channels,)).copy()
    b = np.broadcast_to(np.asarray(b, dtype=np.float64).reshape(-1), (channels,)).copy()
    weight = a.reshape(channels, 1, 1, 1)
    w_qp = lw.plan.weights.get(node.name)
    if w_qp is None:
        from .numerics import choose_qparams

        w_qp = choose_qparams(absmax=np.abs(a), bits=8, symmetric=True, axis=0, name=node.name,
                              power_of_two=lw.rounding() == "pow2")
    geometry = dict(stride=[1, 1], padding=[0, 0, 0, 0], dilation=[1, 1], groups=channels)
    src = x
    if len(shape) == 1:  # (C,) features: run the 1x1 conv on (C, 1, 1)
        src = lw.emit(node.name + ".as_map", "reshape", [x], (channels, 1, 1), lw.fmt[x],
                      {"shape": [channels, 1, 1]})
    conv_shape = lw.tensors[src].shape
    y = weighted_layer(lw, node, src, "conv", weight, b, w_qp, geometry, conv_shape)
    if len(shape) == 1:
        y = lw.emit(node.name + ".as_vector", "reshape", [y], shape, lw.fmt[y],
                    {"shape": list(shape)})
    return y


def lower_batchnorm(lw: Lowerer, node: Node, inputs: list[str]) -> str:
    from .graph.passes import bn_scale_shift

    a, b = bn_scale_shift(node)
    return _per_channel_affine(lw, node, inputs[0], a, b)


def lower_mul_const(lw: Lowerer, node: Node, inputs: list[str]) -> str:
    bias = node.params.get("bias", np.zeros(1, np.float32))
    return _per_channel_affine(lw, node, inputs[0], node.params["value"], bias)


# ----------------------------------------------------------------------------------------------
# Add, concat
# ----------------------------------------------------------------------------------------------


def lower_add(lw: Lowerer, node: Node, inputs: list[str]) -> str:
    qa, qb = lw.fmt[inputs[0]], lw.fmt[inputs[1]]
    out_qp = lw.plan.acts[node.name]
    sa, za = _scalar(qa)
    sb, zb = _scalar(qb)
    so, zo = _scalar(out_qp)
    left_shift = 20 if out_qp.bits <= 8 else 15
    twice_max = 2 * max(sa, sb)
    am, ash = quantize_multiplier(sa / twice_max)
    bm, bsh = quantize_multiplier(sb / twice_max)
    om, osh = quantize_multiplier(twice_max / (2**left_shift * so))
    lo, hi = act_bounds(node, out_qp)
    rounding = "double" if lw.rounding() == "pow2" else lw.rounding()
    attrs = dict(a_zero_point=za, b_zero_point=zb, left_shift=left_shift, a_multiplier=am,
                 a_shift=ash, b_multiplier=bm, b_shift=bsh, output_multiplier=om,
                 output_shift=osh, output_zero_point=zo, act_min=lo, act_max=hi,
                 rounding=rounding)
    return lw.emit(node.name, "add", inputs, node.shape, out_qp, attrs)


def lower_concat(lw: Lowerer, node: Node, inputs: list[str]) -> str:
    out_qp = lw.plan.acts[node.name]
    aligned = [lw.rescale(t, out_qp, f"{node.name}.in{i}") for i, t in enumerate(inputs)]
    return lw.emit(node.name, "concat", aligned, node.shape, out_qp, {"axis": node.attrs["axis"]})


# ----------------------------------------------------------------------------------------------
# Ops that keep the input's format
# ----------------------------------------------------------------------------------------------


def _same_format(kind: str, attrs_of: Callable[[Lowerer, Node, str], dict]):
    def lower(lw: Lowerer, node: Node, inputs: list[str]) -> str:
        x = inputs[0]
        qp = lw.fmt[x]
        attrs = attrs_of(lw, node, x)
        if "act_min" in attrs:
            lo, hi = act_bounds(node, qp)
            attrs["act_min"], attrs["act_max"] = lo, hi
        return lw.emit(node.name, kind, [x], node.shape, qp, attrs)

    return lower


def _pool_geometry(node: Node) -> dict:
    a = node.attrs
    return dict(kernel=list(a["kernel"]), stride=list(a["stride"]), padding=list(a["padding"]))


def _max_pool_attrs(lw, node, x):
    return dict(_pool_geometry(node), dilation=list(node.attrs.get("dilation", [1, 1])),
                act_min=0, act_max=0)


def _avg_pool_attrs(lw, node, x):
    return dict(_pool_geometry(node), count_include_pad=int(node.attrs["count_include_pad"]),
                zero_point=int(lw.fmt[x].zero_point[0]), act_min=0, act_max=0)


def _global_pool_attrs(lw, node, x):
    spatial = list(lw.tensors[x].shape[1:])
    kernel = [1] + spatial if len(spatial) == 1 else spatial
    return dict(kernel=kernel, stride=kernel, padding=[0, 0, 0, 0], count_include_pad=0,
                zero_point=int(lw.fmt[x].zero_point[0]), act_min=0, act_max=0)


def _clamp_attrs(lw, node, x):
    return dict(act_min=0, act_max=0)


def _relu_as_clamp(lw: Lowerer, node: Node, inputs: list[str]) -> str:
    """Standalone ReLU / clamp (not fusable): an integer clamp with the same format."""
    qp = lw.fmt[inputs[0]]
    if node.op == "relu":
        bounds = (0.0, None)
    else:
        bounds = (node.attrs.get("min"), node.attrs.get("max"))
    probe = Node(node.name, node.op, act=bounds)
    lo, hi = act_bounds(probe, qp)
    if node.act is not None:
        lo2, hi2 = act_bounds(node, qp)
        lo, hi = max(lo, lo2), min(hi, hi2)
    attrs = dict(act_min=lo, act_max=max(lo, hi))
    return lw.emit(node.name, "clamp", inputs, node.shape, qp, attrs)


def lower_pad(lw: Lowerer, node: Node, inputs: list[str]) -> str:
    qp = lw.fmt[inputs[0]]
    value = int(quantize(np.array([node.attrs.get("value", 0.0)]), qp)[0])
    return lw.emit(node.name, "pad", inputs, node.shape, qp,
                   {"pads": list(node.attrs["pads"]), "value": value})


def lower_reshape(lw: Lowerer, node: Node, inputs: list[str]) -> str:
    return lw.emit(node.name, "reshape", inputs, node.shape, lw.fmt[inputs[0]],
                   {"shape": list(node.shape)})


def lower_transpose(lw: Lowerer, node: Node, inputs: list[str]) -> str:
    return lw.emit(node.name, "transpose", inputs, node.shape, lw.fmt[inputs[0]],
                   {"perm": list(node.attrs["perm"])})


# ----------------------------------------------------------------------------------------------
# Elementwise functions as lookup tables, softmax
# ----------------------------------------------------------------------------------------------

ELEMENTWISE: dict[str, Callable[[np.ndarray, Node], np.ndarray]] = {
    "sigmoid": lambda r, n: 1.0 / (1.0 + np.exp(-r)),
    "tanh": lambda r, n: np.tanh(r),
    "leaky_relu": lambda r, n: np.where(r >= 0, r, r * n.attrs["negative_slope"]),
}


def lut_table(fn: Callable[[np.ndarray], np.ndarray], in_qp: QParams,
              out_qp: QParams) -> np.ndarray:
    """Output code for each input code (int8: 256 entries; int16: 513 knots every 128 codes)."""
    s_in, z_in = _scalar(in_qp)
    s_out, z_out = _scalar(out_qp)
    if in_qp.bits <= 8:
        codes = np.arange(-128, 128) if in_qp.signed else np.arange(0, 256)
    else:
        codes = np.arange(513, dtype=np.int64) * 128 - 32768
    y = fn(s_in * (codes - z_in).astype(np.float64))
    q = np.rint(y / s_out) + z_out
    # int16 knots stay unclamped (int32) so interpolation next to saturation stays exact; the
    # op's act_min/act_max clamp saturates afterwards.
    lo, hi = (out_qp.qmin, out_qp.qmax) if in_qp.bits <= 8 else (-(2**30), 2**30)
    q = np.clip(q, lo, hi)
    return q.astype(np.int32 if in_qp.bits > 8 else (np.int8 if out_qp.bits <= 8 else np.int16))


def lower_elementwise(lw: Lowerer, node: Node, inputs: list[str]) -> str:
    in_qp = lw.fmt[inputs[0]]
    out_qp = lw.plan.acts[node.name]
    fn = ELEMENTWISE[node.op]
    table = lut_table(lambda r: fn(r, node), in_qp, out_qp)
    lo, hi = act_bounds(node, out_qp)
    return lw.emit(node.name, "lut", inputs, node.shape, out_qp, {"act_min": lo, "act_max": hi},
                   {"table": table})


def softmax_exp_table(s_in: float, in_bits: int) -> tuple[np.ndarray, int]:
    """exp(−d·s_in) in Q30 for d = i·2^lut_shift, cut where it falls below 2^-31, last entry 0."""
    dmax = 255 if in_bits <= 8 else 65535
    lut_shift = 0
    cutoff = 22.0  # exp(-22) < 2^-31: entries beyond are 0 in Q30
    while math.ceil(min(dmax, cutoff / s_in) / 2**lut_shift) + 1 > 512:
        lut_shift += 1
    n = int(math.ceil(min(dmax, cutoff / s_in) / 2**lut_shift)) + 1
    d = np.arange(n, dtype=np.float64) * 2**lut_shift
    table = np.rint(2.0**30 * np.exp(-d * s_in)).astype(np.int64)
    table = np.append(table, 0)
    return table.astype(np.int32), lut_shift


def lower_softmax(lw: Lowerer, node: Node, inputs: list[str]) -> str:
    in_qp = lw.fmt[inputs[0]]
    out_qp = lw.plan.acts[node.name]
    table, lut_shift = softmax_exp_table(float(in_qp.scale[0]), in_qp.bits)
    s_out, z_out = _scalar(out_qp)
    output_range = int(round(1.0 / s_out))
    attrs = dict(lut_shift=lut_shift, output_zero_point=z_out, output_range=output_range,
                 act_min=out_qp.qmin, act_max=out_qp.qmax)
    return lw.emit(node.name, "softmax", inputs, node.shape, out_qp, attrs, {"exp_table": table})


# ----------------------------------------------------------------------------------------------
# Local response normalization
# ----------------------------------------------------------------------------------------------

LRN_KNOTS = 513


def lrn_lut_shift(size: int, d_max: int) -> int:
    """Smallest L with (size·d_max²) >> L <= 511: every sum of squares indexes inside the table."""
    return max(0, (size * d_max * d_max).bit_length() - 9)


def lrn_factor_table(size: int, alpha: float, beta: float, bias: float, s_in: float,
                     lut_shift: int) -> tuple[np.ndarray, float]:
    """Q30 knots of φ(S) = (k + α/n·s_in²·S)^(−β) at S = i·2^lut_shift, and the reference φ_ref.

    Normalising by φ_ref = max φ puts every knot in [0, 2^30] whatever k and β are; φ_ref goes
    into the output multiplier instead.
    """
    s = np.arange(LRN_KNOTS, dtype=np.float64) * 2.0**lut_shift
    base = bias + alpha / size * s_in * s_in * s
    if not np.all(np.isfinite(base)) or np.any(base <= 0):
        raise LoweringError(f"LRN base k + α/n·Σx² must stay > 0 (bias {bias}, alpha {alpha})")
    phi = base ** (-beta)
    phi_ref = float(phi.max())
    if not math.isfinite(phi_ref) or phi_ref <= 0:
        raise LoweringError(f"LRN factor (k + α/n·Σx²)^(−β) is not finite (beta {beta})")
    table = np.clip(np.rint(phi / phi_ref * 2.0**30), 0, 2**30).astype(np.int32)
    return table, phi_ref


def lower_lrn(lw: Lowerer, node: Node, inputs: list[str]) -> str:
    """Integer LRN (docs/intgraph.md): Σd² over channels, Q30 factor table, one requantization."""
    x = inputs[0]
    in_qp = lw.fmt[x]
    out_qp = lw.plan.acts[node.name]
    s_in, z_in = _scalar(in_qp)
    s_out, z_out = _scalar(out_qp)
    a = node.attrs
    size = int(a["size"])
    q_lo, q_hi = ACTIVATION_DTYPES[dtype_of(in_qp)]  # the whole dtype: any input is safe
    d_max = max(q_hi - z_in, z_in - q_lo)
    lut_shift = lrn_lut_shift(size, d_max)
    left_shift = 30 - d_max.bit_length()
    table, phi_ref = lrn_factor_table(size, float(a["alpha"]), float(a["beta"]),
                                      float(a["bias"]), s_in, lut_shift)
    m, sh = quantize_multiplier(s_in * phi_ref / (2.0 ** (left_shift - 1) * s_out))
    if sh > 30:
        raise LoweringError(f"output multiplier too large (shift {sh} > 30): output scale "
                            f"{s_out} is far finer than the input's {s_in}")
    lo, hi = act_bounds(node, out_qp)
    attrs = dict(size=size, input_zero_point=z_in, lut_shift=lut_shift, left_shift=left_shift,
                 multiplier=m, shift=sh, output_zero_point=z_out, act_min=lo, act_max=hi)
    return lw.emit(node.name, "lrn", [x], node.shape, out_qp, attrs, {"table": table})


LOWER: dict[str, Callable[[Lowerer, Node, list[str]], str]] = {
    "conv": lower_conv,
    "linear": lower_linear,
    "batchnorm": lower_batchnorm,
    "mul_const": lower_mul_const,
    "add": lower_add,
    "concat": lower_concat,
    "max_pool": _same_format("max_pool", _max_pool_attrs),
    "avg_pool": _same_format("avg_pool", _avg_pool_attrs),
    "global_avg_pool": _same_format("avg_pool", _global_pool_attrs),
    "relu": _relu_as_clamp,
    "clamp": _relu_as_clamp,
    "pad": lower_pad,
    "reshape": lower_reshape,
    "transpose": lower_transpose,
    "sigmoid": lower_elementwise,
    "tanh": lower_elementwise,
    "leaky_relu": lower_elementwise,
    "softmax": lower_softmax,
    "lrn": lower_lrn,
}


def lower(plan: QuantPlan) -> IntGraph:
    """Float graph + formats → integer-only graph (validated)."""
    return Lowerer(plan).run()
