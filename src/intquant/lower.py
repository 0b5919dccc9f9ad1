"""Lowering: float Graph + QuantPlan → IntGraph. All float math happens here, once, offline.

Each float node becomes one (or a few) integer ops whose constants — integer weights, biases,
fixed-point multipliers and shifts, zero points, clamp bounds, lookup tables — are computed
from the plan's scales. How each float op lowers lives in its op module
(``intquant.ops.<kind>``, ``FloatOpDef.lower``); this module holds the walk and the vocabulary
they share (formats, clamp bounds, inserted rescales). Accumulator widths come from a
worst-case bound over the actual integer weights, so overflow is impossible by construction.

Imports NumPy only (plus the plan's data): the result runs without PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .graph.ir import Graph, Node, unique_name
from .intgraph import IntGraph, Op, TensorInfo
from .intgraph.types import BIT
from .numerics import QParams, quantize_multiplier


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
    """Storage dtype of a format; a 1-bit signed format (levels ±1: a sign) is packed bits."""
    if qp.bits == 1 and qp.signed:
        return BIT
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


def scalar_qparams(qp: QParams) -> tuple[float, int]:
    """(scale, zero point) of a per-tensor format."""
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
        s, z = scalar_qparams(qp)
        self.tensors[name] = TensorInfo(name, tuple(int(v) for v in shape), dtype_of(qp), s, z)
        self.fmt[name] = qp
        return name

    def op_name(self, base: str) -> str:
        return unique_name(base, self.names, sep="#")

    def emit(self, node_name: str, kind: str, inputs: list[str], out_shape, out_qp: QParams,
             attrs: dict, consts: dict | None = None, out_name: str | None = None) -> str:
        from .ops import op_def

        if dtype_of(out_qp) == BIT and BIT not in op_def(kind).dtypes:
            raise LoweringError(
                f"a 1-bit activation format means sign (±1); a {kind} cannot produce it "
                "(only conv / linear layers, max pooling and sign can)"
            )
        name = self.op_name(node_name)
        out = self.add_tensor(out_name or name, out_shape, out_qp)
        self.ops.append(Op(name, kind, list(inputs), out, attrs, consts or {}))
        return out

    def rounding(self) -> str:
        return self.plan.rounding

    # -- the walk -------------------------------------------------------------------------
    def run(self) -> IntGraph:
        from .ops import FLOAT_OPS  # op modules import this module's vocabulary

        out_of: dict[str, str] = {}
        for node in self.g.nodes:
            try:
                if node.op == "input":
                    out_of[node.name] = self.lower_input(node)
                    continue
                fdef = FLOAT_OPS.get(node.op)
                if fdef is None:
                    raise LoweringError(f"no integer lowering for op {node.op!r}")
                inputs = [out_of[i] for i in node.inputs]
                if not fdef.bits_in:
                    inputs = [self.unpacked(t) for t in inputs]
                out_of[node.name] = fdef.lower(self, node, inputs)
            except LoweringError as e:
                raise LoweringError(f"layer {node.name!r} ({node.op}): {e}") from None
        output = self.unpacked(out_of[self.g.output])  # the C API has one element per byte
        graph = IntGraph(self.tensors, self.ops, self.graph_input, output)
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
        s_out, z_out = scalar_qparams(qp)
        m, sh = quantize_multiplier(raw_scale / (2**left_shift * s_out))
        attrs = dict(input_zero_point_shifted=zps, left_shift=left_shift, multiplier=m, shift=sh,
                     output_zero_point=z_out, act_min=qp.qmin, act_max=qp.qmax,
                     rounding="double" if self.rounding() == "pow2" else self.rounding())
        return self.emit("input_rescale", "rescale", [self.graph_input], node.shape, qp, attrs)

    # -- helpers shared by several ops ----------------------------------------------------
    def unpacked(self, tensor: str) -> str:
        """``tensor`` itself, or for a packed "bit" tensor its int8 ±1 copy (emitted once)."""
        if self.tensors[tensor].dtype != BIT:
            return tensor
        name = tensor + ".int8"
        if name not in self.tensors:
            qp = self.fmt[tensor]
            int8 = QParams(scale=qp.scale, zero_point=[0], bits=8, signed=True, name=name)
            self.emit(name, "unpack_bits", [tensor], self.tensors[tensor].shape, int8, {},
                      out_name=name)
        return name

    def same_format(self, node: Node, inputs: list[str], kind: str, attrs: dict) -> str:
        """An op whose output keeps its input's format; clamp bounds from the fused activation."""
        qp = self.fmt[inputs[0]]
        if "act_min" in attrs:
            attrs["act_min"], attrs["act_max"] = act_bounds(node, qp)
        return self.emit(node.name, kind, [inputs[0]], node.shape, qp, attrs)

    def rescale(self, tensor: str, target: QParams, base: str) -> str:
        """Insert a ``rescale`` op so that ``tensor`` has the format ``target``."""
        src = self.fmt[tensor]
        if scalar_qparams(src) == scalar_qparams(target) and dtype_of(src) == dtype_of(target):
            return tensor
        s_in, z_in = scalar_qparams(src)
        s_out, z_out = scalar_qparams(target)
        left_shift = 8 if src.bits <= 8 else 0
        m, sh = quantize_multiplier(s_in / (2**left_shift * s_out))
        attrs = dict(input_zero_point_shifted=z_in << left_shift, left_shift=left_shift,
                     multiplier=m, shift=sh, output_zero_point=z_out, act_min=target.qmin,
                     act_max=target.qmax,
                     rounding="double" if self.rounding() == "pow2" else self.rounding())
        return self.emit(base + ".rescale", "rescale", [tensor], self.tensors[tensor].shape,
                         target, attrs)


def lower(plan: QuantPlan) -> IntGraph:
    """Float graph + formats → integer-only graph (validated)."""
    return Lowerer(plan).run()
