"""IntGraph → ONNX QDQ model, for cross-checks with ONNX Runtime.

Every requantizing op becomes the standard QDQ pattern ``DequantizeLinear → float op →
[Clip] → QuantizeLinear``, which ONNX Runtime either runs as is or fuses into its int8 kernels
(QLinearConv, ...). Scales are not stored in an IntGraph except on tensors, so the float
scales the QDQ model needs are read back from the integer constants:

- conv / fully_connected weight scale of channel c: ``s_w[c] = m_c · s_out / s_in`` with the real
  multiplier ``m_c = multiplier[c] · 2^(shift[c] − 31)``; bias ``int32`` with scale ``s_in·s_w[c]``;
- add / rescale: each input's effective scale is the product of the multipliers that reach the
  output, times ``s_out`` (exactly what the integer op computes, up to rounding).

Fused activation bounds ``[act_min, act_max]`` become a float ``Clip`` to the real values of
those two grid points before ``QuantizeLinear`` (same result as clamping the integers).
Data-movement ops (reshape, transpose, concat) run on the integers; ``lut`` is an integer
``Gather`` from the table itself, so it is bit-exact.

ONNX Runtime rounds in float (round half to even) where our integer ops use fixed-point
multipliers (round half away from zero), so outputs agree within 1 LSB on nearly every
element, not bit for bit. The model's input and output are the IntGraph's integer tensors
(``float_io=True`` adds QuantizeLinear / DequantizeLinear at the edges). Opset 19, or 21
when int16 Q/DQ is needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .intgraph import IntGraph, Op, TensorInfo

# Opset 19 for 8-bit graphs (ONNX Runtime's QDQ fusions trip over opset-21 QuantizeLinear
# output_dtype handling in 1.32); 21 only when int16 tensors need its 16-bit Q/DQ.
OPSET_8BIT, OPSET_16BIT = 19, 21
_ONNX_DTYPE = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int16": TensorProto.INT16}


def intgraph_to_onnx(
    graph: IntGraph, path: str | os.PathLike | None = None, *, float_io: bool = False,
    per_op: bool = False,
) -> Path | onnx.ModelProto:
    """Build the QDQ model; save it to ``path`` (returned) or return the ModelProto.

    ``per_op=True`` builds a diagnostic model in which every op reads its inputs from graph
    inputs named after the IntGraph tensors and writes a graph output ``<tensor>__op``: fed
    with the interpreter's own intermediate tensors, it compares each op in isolation, without
    the 1-LSB differences of earlier ops compounding through a deep network.
    """
    graph.validate()
    model = _Exporter(graph, float_io and not per_op, per_op).build()
    onnx.checker.check_model(model)
    if path is None:
        return model
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def real_multiplier(multiplier: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """m = M · 2^(shift − 31): the real number a (multiplier, shift) pair stands for."""
    return np.asarray(multiplier, np.float64) * np.exp2(np.asarray(shift, np.float64) - 31)


class _Exporter:
    def __init__(self, graph: IntGraph, float_io: bool, per_op: bool = False):
        self.g, self.float_io, self.per_op = graph, float_io, per_op
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.counter = 0

    # ---- small builders ------------------------------------------------------------------

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

    # ---- ops ---------------------------------------------------------------------------------

    def weight_layer(self, op: Op) -> None:
        """conv / fully_connected: DQ(x), DQ(w per channel), bias, float op, Clip, Q."""
        a, c = op.attrs, op.consts
        x_info, out = self.g.tensors[op.inputs[0]], self.g.tensors[op.output]
        m = real_multiplier(c["multiplier"], c["shift"])
        s_w = np.maximum(m * out.scale / x_info.scale, 1e-30).astype(np.float32)
        x = self.dq(op.inputs[0], x_info.scale, a["input_zero_point"], x_info.dtype, op.name)
        w = c["weight"]
        w_dt = "int16" if w.dtype == np.int16 else "int8"
        w_name = self.const(op.name + "_w", w.astype(w_dt))
        wq = self.dq(w_name, s_w, np.zeros(len(s_w)), w_dt, op.name + "_w", axis=0)
        s_b = (np.float64(x_info.scale) * s_w.astype(np.float64)).astype(np.float32)
        if c["bias"].dtype == np.int32:
            b_name = self.const(op.name + "_b", c["bias"])
            bq = self.dq(b_name, s_b, np.zeros(len(s_b)), "int32", op.name + "_b", axis=0)
        else:  # int64 biases have no DequantizeLinear: store the real values
            real_bias = c["bias"] * s_b.astype(np.float64)
            bq = self.const(op.name + "_bf", real_bias.astype(np.float32))
        if op.kind == "fully_connected":
            y = self.node("Gemm", [x, wq, bq], op.name, transB=1)
        else:
            y = self.conv(op, x, wq, bq, x_info)
        self.clip_and_q(y, op, out)

    def conv(self, op: Op, x: str, w: str, b: str, x_info: TensorInfo) -> str:
        a = op.attrs
        t, left, bottom, r = a["padding"]
        kh, kw = op.consts["weight"].shape[2:]
        if len(x_info.shape) == 2:  # 1-D: weights are stored [Cout, Cin/g, 1, kw]
            w = self.node("Squeeze", [w, self.const("axis2", np.array([2], np.int64))], "w1d")
            return self.node("Conv", [x, w, b], op.name, kernel_shape=[kw],
                             strides=[a["stride"][1]], pads=[left, r],
                             dilations=[a["dilation"][1]], group=a["groups"])
        return self.node("Conv", [x, w, b], op.name, kernel_shape=[kh, kw], strides=a["stride"],
                         pads=[t, left, bottom, r], dilations=a["dilation"], group=a["groups"])

    def add(self, op: Op) -> None:
        a = op.attrs
        out = self.g.tensors[op.output]
        mo = real_multiplier(a["output_multiplier"], a["output_shift"])
        scale_of = {
            "a": float(real_multiplier(a["a_multiplier"], a["a_shift"]) * mo
                       * 2.0 ** a["left_shift"] * out.scale),
            "b": float(real_multiplier(a["b_multiplier"], a["b_shift"]) * mo
                       * 2.0 ** a["left_shift"] * out.scale),
        }
        xa = self.dq(op.inputs[0], scale_of["a"], a["a_zero_point"],
                     self.g.tensors[op.inputs[0]].dtype, op.name + "_a")
        xb = self.dq(op.inputs[1], scale_of["b"], a["b_zero_point"],
                     self.g.tensors[op.inputs[1]].dtype, op.name + "_b")
        self.clip_and_q(self.node("Add", [xa, xb], op.name), op, out)

    def rescale(self, op: Op) -> None:
        """(x·2^ls − zps)·m + z_out: a possibly non-integer input zero point, so Cast/Sub/Mul."""
        a = op.attrs
        out = self.g.tensors[op.output]
        m = float(real_multiplier(a["multiplier"], a["shift"])) * 2.0 ** a["left_shift"]
        z_in = a["input_zero_point_shifted"] / 2.0 ** a["left_shift"]
        x = self.node("Cast", [op.inputs[0]], op.name + "_f", to=TensorProto.FLOAT)
        x = self.node("Sub", [x, self.const(op.name + "_z", np.float32(z_in))], op.name + "_s")
        x = self.node("Mul", [x, self.const(op.name + "_m", np.float32(m * out.scale))],
                      op.name + "_m")
        self.clip_and_q(x, op, out)

    def pool(self, op: Op) -> None:
        a = op.attrs
        x_info, out = self.g.tensors[op.inputs[0]], self.g.tensors[op.output]
        x = self.dq_tensor(op.inputs[0], op.name)
        t, left, bottom, r = a["padding"]
        one_d = len(x_info.shape) == 2
        kw = dict(kernel_shape=a["kernel"][1:] if one_d else a["kernel"],
                  strides=a["stride"][1:] if one_d else a["stride"],
                  pads=[left, r] if one_d else [t, left, bottom, r])
        if op.kind == "max_pool":
            kw["dilations"] = a["dilation"][1:] if one_d else a["dilation"]
            y = self.node("MaxPool", [x], op.name, **kw)
        else:
            y = self.node("AveragePool", [x], op.name, count_include_pad=a["count_include_pad"],
                          **kw)
        self.clip_and_q(y, op, out)

    def softmax(self, op: Op) -> None:
        x = self.dq_tensor(op.inputs[0], op.name)
        y = self.node("Softmax", [x], op.name, axis=-1)
        self.clip_and_q(y, op, self.g.tensors[op.output])

    def clamp(self, op: Op) -> None:
        self.clip_and_q(self.dq_tensor(op.inputs[0], op.name), op, self.g.tensors[op.output])

    def pad(self, op: Op) -> None:
        x_info = self.g.tensors[op.inputs[0]]
        p = op.attrs["pads"]
        n = len(p) // 2
        pads = [0] + [p[2 * d] for d in range(n)] + [0] + [p[2 * d + 1] for d in range(n)]
        value = np.float32((op.attrs["value"] - x_info.zero_point) * x_info.scale)
        x = self.dq_tensor(op.inputs[0], op.name)
        y = self.node("Pad", [x, self.const(op.name + "_pads", np.array(pads, np.int64)),
                              self.const(op.name + "_v", value)], op.name, mode="constant")
        out = self.g.tensors[op.output]
        ins = [y, self.const(op.name + "_oscale", np.float32(out.scale)),
               self.zp(op.name + "_o", out.zero_point, out.dtype)]
        self.node("QuantizeLinear", ins, op.name + "_q", out=self.oname(op))

    def lut(self, op: Op) -> None:
        """Integer Gather from the table (8-bit) or the 513-entry interpolation (int16)."""
        x_info, out = self.g.tensors[op.inputs[0]], self.g.tensors[op.output]
        table = op.consts["table"].astype(np.int32)
        x = self.node("Cast", [op.inputs[0]], op.name + "_i", to=TensorProto.INT32)
        tab = self.const(op.name + "_table", table)
        if table.shape[0] == 256:
            off = 128 if x_info.dtype == "int8" else 0
            idx = self.node("Add", [x, self.const(op.name + "_off", np.int32(off))], op.name)
            y = self.node("Gather", [tab, idx], op.name + "_g", axis=0)
        else:
            y = self.interpolate_513(op, x, tab)
        y = self.node("Clip", [y, self.const(op.name + "_lo", np.int32(op.attrs["act_min"])),
                               self.const(op.name + "_hi", np.int32(op.attrs["act_max"]))],
                      op.name + "_clip")
        self.node("Cast", [y], op.name + "_cast", out=self.oname(op), to=_ONNX_DTYPE[out.dtype])

    def interpolate_513(self, op: Op, x: str, tab: str) -> str:
        """t[i] + floor(((t[i+1] − t[i])·f + 64) / 128), u = x + 32768, i = u // 128, f = u % 128
        (int32; floor division written as (v − v mod 128) / 128, exact for negative v)."""
        c = lambda v, h: self.const(op.name + h, np.int32(v))  # noqa: E731
        u = self.node("Add", [x, c(32768, "_32768")], op.name + "_u")
        i = self.node("Div", [u, c(128, "_128")], op.name + "_i")
        f = self.node("Mod", [u, c(128, "_128b")], op.name + "_f")
        i1 = self.node("Add", [i, c(1, "_one")], op.name + "_i1")
        t0 = self.node("Gather", [tab, i], op.name + "_t0", axis=0)
        t1 = self.node("Gather", [tab, i1], op.name + "_t1", axis=0)
        d = self.node("Sub", [t1, t0], op.name + "_d")
        v = self.node("Add", [self.node("Mul", [d, f], op.name + "_df"), c(64, "_64")],
                      op.name + "_v")
        rem = self.node("Mod", [v, c(128, "_128c")], op.name + "_rem")
        q = self.node("Div", [self.node("Sub", [v, rem], op.name + "_vr"), c(128, "_128d")],
                      op.name + "_q")
        return self.node("Add", [t0, q], op.name + "_y")

    def reshape(self, op: Op) -> None:
        shape = np.array([-1, *op.attrs["shape"]], np.int64)
        self.node("Reshape", [op.inputs[0], self.const(op.name + "_shape", shape)], op.name,
                  out=self.oname(op))

    def transpose(self, op: Op) -> None:
        perm = [0] + [p + 1 for p in op.attrs["perm"]]
        self.node("Transpose", [op.inputs[0]], op.name, out=self.oname(op), perm=perm)

    def concat(self, op: Op) -> None:
        self.node("Concat", list(op.inputs), op.name, out=self.oname(op), axis=op.attrs["axis"] + 1)

    # ---- graph ----------------------------------------------------------------------------------

    def build(self) -> onnx.ModelProto:
        g = self.g
        handlers: dict[str, Callable[[Op], None]] = {
            "conv": self.weight_layer, "fully_connected": self.weight_layer, "add": self.add,
            "rescale": self.rescale, "max_pool": self.pool, "avg_pool": self.pool,
            "softmax": self.softmax, "clamp": self.clamp, "pad": self.pad, "lut": self.lut,
            "reshape": self.reshape, "transpose": self.transpose, "concat": self.concat,
        }
        inp, out = g.tensors[g.input], g.tensors[g.output]
        in_name, out_name = g.input, g.output
        if self.float_io:
            in_name = g.input + "_float"
            self.node("QuantizeLinear", [in_name, self.const("in_scale", np.float32(inp.scale)),
                                         self.zp("in", inp.zero_point, inp.dtype)], "in_q",
                      out=g.input)
        for op in g.ops:
            if op.kind not in handlers:
                raise ValueError(f"op {op.name!r}: kind {op.kind!r} has no ONNX export")
            handlers[op.kind](op)
        if self.float_io:
            out_name = g.output + "_float"
            self.node("DequantizeLinear", [g.output, self.const("out_scale", np.float32(out.scale)),
                                           self.zp("out", out.zero_point, out.dtype)], "out_dq",
                      out=out_name)
        io_type = lambda t: TensorProto.FLOAT if self.float_io else _ONNX_DTYPE[t.dtype]  # noqa: E731
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
