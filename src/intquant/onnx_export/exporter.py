"""The ONNX graph builder: nodes, initializers, Q/DQ helpers, and the walk over the IntGraph."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..intgraph import IntGraph, Op, TensorInfo
from ..ops import op_def
from .integer_math import ONNX_DTYPE, IntegerArithmetic

# Opset 19 for 8-bit graphs (ONNX Runtime's QDQ fusions trip over opset-21 QuantizeLinear
# output_dtype handling in 1.32); 21 only when int16 tensors need its 16-bit Q/DQ.
OPSET_8BIT, OPSET_16BIT = 19, 21


class Exporter(IntegerArithmetic):
    """Builds one ONNX model; op modules call ``node`` / ``const`` / ``dq`` / ``clip_and_q``."""

    def __init__(self, graph: IntGraph, float_io: bool, per_op: bool = False,
                 integer_kinds: frozenset[str] = frozenset()):
        self.g, self.float_io, self.per_op = graph, float_io, per_op
        self.integer_kinds = integer_kinds
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.counter = 0

    def oname(self, op: Op) -> str:
        return op.output + "__op" if self.per_op else op.output

    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}__{self.counter}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, out: str | None = None, **attrs) -> str:
        out = out or self.fresh(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.fresh(hint), **attrs))
        return out

    def zp(self, hint: str, value: int | np.ndarray, dtype: str) -> str:
        return self.const(hint + "_zp", np.asarray(value).astype(dtype))

    def dq(self, x: str, scale: float | np.ndarray, zp: int | np.ndarray, dtype: str,
           hint: str, axis: int | None = None) -> str:
        ins = [x, self.const(hint + "_scale", np.asarray(scale, np.float32)),
               self.zp(hint, zp, dtype)]
        kw = {} if axis is None else {"axis": axis}
        return self.node("DequantizeLinear", ins, hint + "_dq", **kw)

    def dq_tensor(self, name: str, hint: str) -> str:
        t = self.g.tensors[name]
        return self.dq(name, t.scale, t.zero_point, t.dtype, hint)

    def clip_and_q(self, y: str, op: Op, out: TensorInfo, scale: float | None = None,
                   zero_point: int | None = None) -> None:
        """Clip to the real values of [act_min, act_max], then QuantizeLinear to ``out``."""
        s = out.scale if scale is None else scale
        z = out.zero_point if zero_point is None else zero_point
        lo_hi = op.attrs.get("act_min"), op.attrs.get("act_max")
        if lo_hi[0] is not None:
            lo = np.float32((lo_hi[0] - z) * s)
            hi = np.float32((lo_hi[1] - z) * s)
            y = self.node("Clip", [y, self.const(op.name + "_lo", lo),
                                   self.const(op.name + "_hi", hi)], op.name + "_clip")
        ins = [y, self.const(op.name + "_oscale", np.float32(s)), self.zp(op.name + "_o", z,
                                                                          out.dtype)]
        self.node("QuantizeLinear", ins, op.name + "_q", out=self.oname(op))

    def build(self) -> onnx.ModelProto:
        g = self.g
        inp, out = g.tensors[g.input], g.tensors[g.output]
        in_name, out_name = g.input, g.output
        if self.float_io:
            in_name = g.input + "_float"
            self.node("QuantizeLinear", [in_name, self.const("in_scale", np.float32(inp.scale)),
                                         self.zp("in", inp.zero_point, inp.dtype)], "in_q",
                      out=g.input)
        for op in g.ops:
            d = op_def(op.kind)
            if d.to_onnx is None:
                raise ValueError(f"op {op.name!r}: kind {op.kind!r} has no ONNX export")
            if op.kind in self.integer_kinds and d.to_onnx_int is not None:
                d.to_onnx_int(self, op)
            else:
                d.to_onnx(self, op)
        if self.float_io:
            out_name = g.output + "_float"
            self.node("DequantizeLinear", [g.output, self.const("out_scale", np.float32(out.scale)),
                                           self.zp("out", out.zero_point, out.dtype)], "out_dq",
                      out=out_name)
        io_type = lambda t: TensorProto.FLOAT if self.float_io else ONNX_DTYPE[t.dtype]  # noqa: E731
        vi = lambda n, t: helper.make_tensor_value_info(n, io_type(t), ["N", *t.shape])  # noqa: E731
        inputs, outputs = [vi(in_name, inp)], [vi(out_name, out)]
        if self.per_op:
            consumed = dict.fromkeys(i for op in g.ops for i in op.inputs)
            inputs = [vi(t, g.tensors[t]) for t in consumed]
            outputs = [vi(self.oname(op), g.tensors[op.output]) for op in g.ops]
        graph = helper.make_graph(self.nodes, "intquant", inputs, outputs, self.inits)
        wide = any(t.dtype == "int16" for t in g.tensors.values()) or any(
            c.dtype == np.int16 for op in g.ops for c in op.consts.values())
        opset = OPSET_16BIT if wide else OPSET_8BIT
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="intquant")
        model.ir_version = min(model.ir_version, 10)
        return model
