"""IntGraph → ONNX model, for cross-checks with ONNX Runtime (and any other ONNX back end).

Two modes (``requant=``), because ONNX Runtime's QDQ path requantizes in float (round half to
even of the real value) where our ops use TFLM's fixed-point multipliers (double rounding, ties
away from zero): the two differ by 1 LSB on some elements, and residual adds compound it
(measured on the zoo's ResNet: 97.7% of outputs within 1 LSB, 59% equal).

- ``"integer"`` (default): every requantizing op — conv, fully_connected, add, rescale,
  avg_pool, softmax — is an exact integer subgraph, so ONNX Runtime reproduces the interpreter
  bit for bit (all zoo models: 100% equal). Products are ``ConvInteger`` / ``MatMulInteger`` on
  int8 × int8 only (uint8 inputs shifted by 128, 16-bit operands split into base-128 int8
  digits); bias, ``MultiplyByQuantizedMultiplier`` (SRDHM + rounding divide by 2^e, the
  single-rounding, int64-16x8 and power-of-two variants), zero points and clamps are int64
  ``Mul`` / ``Add`` / ``Div`` / ``Mod`` / ``Sign`` / ``Abs`` / ``Clip``, where every ``Div``
  divides a non-negative number or an exact multiple (``v − Mod(v, d)``), so C-style and floor
  division agree.
  The output of each op is the int8 / int16 tensor itself; the ops that move raw values
  (max_pool, clamp, pad, reshape, transpose, concat, lut) are exported as below in both modes
  and are exact.
- ``"float"``: the standard QDQ pattern ``DequantizeLinear → float op → [Clip] →
  QuantizeLinear`` that ONNX Runtime fuses into its int8 kernels (QLinearConv, ...): the model
  other toolchains expect, agreeing within 1 LSB on nearly every element, not bit for bit.
  Scales are not stored in an IntGraph except on tensors, so the float scales are read back
  from the integer constants: conv / fully_connected weight scale of channel c
  ``s_w[c] = m_c · s_out / s_in`` with ``m_c = multiplier[c] · 2^(shift[c] − 31)``, bias int32
  with scale ``s_in·s_w[c]``; add / rescale: each input's effective scale is the product of the
  multipliers that reach the output, times ``s_out``. Fused activation bounds become a float
  ``Clip`` to the real values of ``[act_min, act_max]`` before ``QuantizeLinear``.

In both modes ``lut`` is an integer ``Gather`` from the table itself. The model's input and
output are the IntGraph's integer tensors (``float_io=True`` adds QuantizeLinear /
DequantizeLinear at the edges). Opset 19, or 21 when int16 Q/DQ is needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .intgraph import IntGraph, Op, TensorInfo
from .numerics import INT32_MAX, INT32_MIN, reduce_multiplier_16x8

# Opset 19 for 8-bit graphs (ONNX Runtime's QDQ fusions trip over opset-21 QuantizeLinear
# output_dtype handling in 1.32); 21 only when int16 tensors need its 16-bit Q/DQ.
OPSET_8BIT, OPSET_16BIT = 19, 21
_ONNX_DTYPE = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int16": TensorProto.INT16}


Requant = Literal["integer", "float"]
# The op kinds each ``requant`` mode exports as exact integer subgraphs.
INTEGER_KINDS: dict[str, frozenset[str]] = {
    "float": frozenset(),
    "integer": frozenset({"conv", "fully_connected", "add", "rescale", "avg_pool", "softmax"}),
}


def intgraph_to_onnx(
    graph: IntGraph, path: str | os.PathLike | None = None, *, float_io: bool = False,
    per_op: bool = False, requant: Requant = "integer",
) -> Path | onnx.ModelProto:
    """Build the model; save it to ``path`` (returned) or return the ModelProto.

    ``requant="integer"`` (default) makes every requantization an exact integer subgraph
    (bit-identical to the interpreter); ``requant="float"`` is the plain QDQ model (float
    requantization, within 1 LSB per op). See the module docstring.

    ``per_op=True`` builds a diagnostic model in which every op reads its inputs from graph
    inputs named after the IntGraph tensors and writes a graph output ``<tensor>__op``: fed
    with the interpreter's own intermediate tensors, it compares each op in isolation, without
    the 1-LSB differences of earlier ops compounding through a deep network.
    """
    graph.validate()
    if requant not in INTEGER_KINDS:
        raise ValueError(f"requant must be one of {sorted(INTEGER_KINDS)}, got {requant!r}")
    model = _Exporter(graph, float_io and not per_op, per_op, INTEGER_KINDS[requant]).build()
    onnx.checker.check_model(model)
    if path is None:
        return model
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def apply_multiplier_model(
    multiplier: np.ndarray | int, shift: np.ndarray | int, rounding: str = "double",
    acc_bits: int = 32,
) -> onnx.ModelProto:
    """A model ``x (int64) → numerics.apply_multiplier(x, M, shift, rounding, acc_bits)`` built
    from the same integer subgraph the export uses, so that it can be checked bit for bit
    against ``intquant.numerics`` (M and shift broadcast against x's trailing dimensions)."""
    ex = _Exporter(IntGraph(tensors={}, ops=[], input="", output="", meta={}), False)
    y = ex.apply_multiplier_int("x", np.asarray(multiplier), np.asarray(shift), rounding,
                                acc_bits, "mbqm")
    ex.node("Identity", [y], "y", out="y")
    io = [helper.make_tensor_value_info(n, TensorProto.INT64, ["N", *np.shape(multiplier)])
          for n in ("x", "y")]
    graph = helper.make_graph(ex.nodes, "apply_multiplier", io[:1], io[1:], ex.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET_8BIT)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    return model


def real_multiplier(multiplier: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """m = M · 2^(shift − 31): the real number a (multiplier, shift) pair stands for."""
    return np.asarray(multiplier, np.float64) * np.exp2(np.asarray(shift, np.float64) - 31)


class _Exporter:
    def __init__(self, graph: IntGraph, float_io: bool, per_op: bool = False,
                 integer_kinds: frozenset[str] = frozenset()):
        self.g, self.float_io, self.per_op = graph, float_io, per_op
        self.integer_kinds = integer_kinds
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

    # ---- exact integer arithmetic (int64 tensors) -------------------------------------------
    # ONNX Runtime's int64 Div truncates toward zero (like C) and Mod (fmod=0) takes the sign of
    # the divisor; the subgraphs below only divide non-negative numbers, or subtract the Mod
    # first, so they are exact under either convention.

    def i64(self, hint: str, value: int | np.ndarray) -> str:
        return self.const(hint, np.asarray(value, np.int64))

    def cast(self, x: str, to: int, hint: str, out: str | None = None) -> str:
        return self.node("Cast", [x], hint + "_cast", out=out, to=to)

    def saturate_int(self, x: str, lo: int, hi: int, hint: str) -> str:
        return self.node("Clip", [x, self.i64(hint + "_lo", lo), self.i64(hint + "_hi", hi)],
                         hint + "_sat")

    def srdhm_int(self, x: str, m: np.ndarray, hint: str) -> str:
        """gemmlowp SRDHM for M >= 0: sign(ab)·((|ab| + 2^30 − [ab < 0]) div 2^31), ab = x·M.

        Equal to C's (ab + nudge) / 2^31 with nudge 2^30 or 1 − 2^30 by sign: for ab < 0 the
        truncating quotient of ab + 1 − 2^30 is −((|ab| − 1 + 2^30) div 2^31). M < 2^31 never
        equals INT32_MIN, so the one saturating case cannot occur.
        """
        ab = self.node("Mul", [x, self.i64(hint + "_M", m)], hint + "_ab")
        neg = self.cast(self.node("Less", [ab, self.i64(hint + "_0", 0)], hint + "_neg"),
                        TensorProto.INT64, hint + "_negi")
        num = self.node("Sub", [self.node("Add", [self.node("Abs", [ab], hint + "_abs"),
                                                   self.i64(hint + "_n", 1 << 30)], hint + "_nu"),
                                neg], hint + "_num")
        q = self.node("Div", [num, self.i64(hint + "_d", 1 << 31)], hint + "_q")
        return self.node("Mul", [self.node("Sign", [ab], hint + "_sg"), q], hint + "_srdhm")

    def rounding_divide_by_pot_int(self, x: str, exponent: np.ndarray, hint: str) -> str:
        """x / 2^e rounded half away from zero: sign(x)·((|x| + 2^e div 2) div 2^e)."""
        exponent = np.asarray(exponent, np.int64)
        if not exponent.any():
            return x
        half = (np.int64(1) << exponent) >> 1
        num = self.node("Add", [self.node("Abs", [x], hint + "_abs"), self.i64(hint + "_h", half)],
                        hint + "_num")
        q = self.node("Div", [num, self.i64(hint + "_d", np.int64(1) << exponent)], hint + "_q")
        return self.node("Mul", [self.node("Sign", [x], hint + "_sg"), q], hint + "_rdbp")

    def floor_shift_int(self, v: str, total: np.ndarray, hint: str) -> str:
        """v >> total (arithmetic, floor) as (v − v mod 2^total) / 2^total (exact division)."""
        d = self.i64(hint + "_d", np.int64(1) << np.asarray(total, np.int64))
        rem = self.node("Mod", [v, d], hint + "_mod")
        return self.node("Div", [self.node("Sub", [v, rem], hint + "_vr"), d], hint + "_fl")

    def apply_multiplier_int(self, x: str, m: np.ndarray, shift: np.ndarray, rounding: str,
                             acc_bits: int, hint: str) -> str:
        """``numerics.apply_multiplier`` on an int64 tensor, bit for bit, in every mode.

        ``m`` and ``shift`` are already shaped to broadcast against ``x`` (per channel or scalar).
        """
        m, shift = np.asarray(m, np.int64), np.asarray(shift, np.int64)
        if rounding == "pow2":
            return self.shift_requantize_int(x, shift - 1, hint)
        if acc_bits == 64:  # TFLM's int64 path: 16-bit reduced multiplier, one rounding
            return self.single_rounding_int(x, reduce_multiplier_16x8(m), 15 - shift, hint)
        if rounding == "single":
            return self.single_rounding_int(x, m, 31 - shift, hint)
        if rounding != "double":
            raise ValueError(f"{hint}: rounding {rounding!r} has no integer export")
        left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
        if left.any():
            x = self.node("Mul", [x, self.i64(hint + "_ls", np.int64(1) << left)], hint + "_l")
            x = self.saturate_int(x, INT32_MIN, INT32_MAX, hint)
        return self.rounding_divide_by_pot_int(self.srdhm_int(x, m, hint), right, hint + "_r")

    def single_rounding_int(self, x: str, m: np.ndarray, total: np.ndarray, hint: str) -> str:
        """saturate_int32((x·M + 2^(total − 1)) >> total): CMSIS-NN and TFLM's int64 path."""
        v = self.node("Add", [self.node("Mul", [x, self.i64(hint + "_M", m)], hint + "_xm"),
                              self.i64(hint + "_rnd", np.int64(1) << (total - 1))], hint + "_v")
        return self.saturate_int(self.floor_shift_int(v, total, hint), INT32_MIN, INT32_MAX, hint)

    def shift_requantize_int(self, x: str, exponent: np.ndarray, hint: str) -> str:
        """``numerics.shift_requantize``: saturating x·2^e for e >= 0, RDBP(x, −e) otherwise."""
        left, right = np.maximum(exponent, 0), np.maximum(-exponent, 0)
        xc = self.saturate_int(x, INT32_MIN - 1, INT32_MAX + 1, hint + "_c")
        up = self.node("Mul", [xc, self.i64(hint + "_ls", np.int64(1) << np.minimum(left, 31))],
                       hint + "_up")
        up = self.saturate_int(up, INT32_MIN, INT32_MAX, hint + "_u")
        if (exponent >= 0).all():
            return up
        down = self.rounding_divide_by_pot_int(x, right, hint + "_r")
        down = self.saturate_int(down, INT32_MIN, INT32_MAX, hint + "_d")
        if (exponent < 0).all():
            return down
        cond = self.const(hint + "_cond", exponent >= 0)
        return self.node("Where", [cond, up, down], hint + "_pow2")

    def finish_int(self, y: str, op: Op, zero_point: int) -> None:
        """+ output zero point, clamp to [act_min, act_max], Cast to the output dtype."""
        y = self.node("Add", [y, self.i64(op.name + "_oz", zero_point)], op.name + "_z")
        y = self.saturate_int(y, op.attrs["act_min"], op.attrs["act_max"], op.name + "_act")
        self.cast(y, _ONNX_DTYPE[self.g.tensors[op.output].dtype], op.name, out=self.oname(op))

    def weight_layer_int(self, op: Op) -> None:
        """conv / fully_connected: exact integer products (ConvInteger / MatMulInteger, int32),
        + bias, per-channel integer requantization.

        Only int8 × int8 products are used: on an AVX2 machine ONNX Runtime 1.32 computes
        MatMulInteger uint8 × int8 with saturating 16-bit pair sums and ConvInteger int8 × uint8
        wrongly (measured: most outputs differ for full-range operands), so uint8 inputs are moved
        to int8 (x − 128 with zero point z − 128) and 16-bit operands are split into int8 digits.
        The bit-exact tests on full-range uint8 / int16 graphs would catch a regression.
        """
        a, c = op.attrs, op.consts
        x_info = self.g.tensors[op.inputs[0]]
        if op.kind == "fully_connected":
            view: tuple[int, ...] = (-1,)
        else:
            view = (-1, 1) if len(x_info.shape) == 2 else (-1, 1, 1)
        if x_info.dtype == "int8" and c["weight"].dtype == np.int8 and a["acc_bits"] == 32:
            # Validation bounds |Σ w·(x − z)| + |b| < 2^31: ConvInteger's int32 sum is exact.
            zp_value = np.int8(a["input_zero_point"])
            x = self.pad_int(op, op.inputs[0], x_info, zp_value)
            zp = self.const(op.name + "_x_zp", zp_value)
            acc = self.integer_product(op, x, c["weight"], zp)
            acc = self.cast(acc, TensorProto.INT64, op.name + "_acc")
        else:
            acc = self.digit_product(op, x_info, view)
        acc = self.node("Add", [acc, self.i64(op.name + "_bias", c["bias"].reshape(view))],
                        op.name + "_b")
        y = self.apply_multiplier_int(acc, c["multiplier"].reshape(view),
                                      c["shift"].reshape(view), a.get("rounding", "double"),
                                      a["acc_bits"], op.name + "_mbqm")
        self.finish_int(y, op, a["output_zero_point"])

    def digit_product(self, op: Op, x_info: TensorInfo, view: tuple[int, ...]) -> str:
        """Σ w·(x − z) in int64 from int8 × int8 products of base-128 digits.

        The input is padded with its zero point (so every window position is a real value and
        the zero point's share is the constant z·Σ_kernel w[c], subtracted at the end), moved to
        a signed range (uint8: x − 128, z − 128), and each 16-bit operand v is written as
        16384·d2 + 128·d1 + d0 with d0, d1 in [0, 127] and d2 in [−2, 1] — every digit an int8.
        Each digit pair goes through ConvInteger / MatMulInteger (int32, exact while
        K·max|digit_x|·max|digit_w| < 2^31, checked) and the terms are summed in int64.
        """
        a, w = op.attrs, op.consts["weight"]
        off = 128 if x_info.dtype == "uint8" else 0
        z = a["input_zero_point"] - off
        x = self.cast(op.inputs[0], TensorProto.INT32, op.name + "_x32")
        if off:
            x = self.node("Sub", [x, self.const(op.name + "_off", np.int32(off))], op.name + "_s8")
        x = self.pad_int(op, x, x_info, np.int32(z))
        if x_info.dtype == "int16":
            x_parts = self.digits_int(x, op.name + "_x")
        else:
            x_parts = [(self.cast(x, TensorProto.INT8, op.name + "_x8"), 1, 128)]
        w_parts = _digits(w) if w.dtype == np.int16 else [(w, 1)]
        k = int(np.prod(w.shape[1:]))
        acc = None
        for xp, xf, x_max in x_parts:
            for wp, wf in w_parts:
                if k * x_max * int(np.abs(wp.astype(np.int64)).max()) >= 2**31:
                    raise ValueError(
                        f"op {op.name!r} ({op.kind}): an int8-digit partial product can overflow "
                        f"int32 ({k} terms); export this graph with requant='float'")
                term = self.cast(self.integer_product(op, xp, wp, None), TensorProto.INT64,
                                 op.name + "_p")
                if xf * wf != 1:
                    term = self.node("Mul", [term, self.i64(op.name + "_f", xf * wf)],
                                     op.name + "_pf")
                # Add, not Sum: ONNX Runtime's Sum has no int64 kernel.
                acc = term if acc is None else self.node("Add", [acc, term], op.name + "_sum")
        zw = z * w.astype(np.int64).reshape(w.shape[0], -1).sum(axis=1)
        return self.node("Sub", [acc, self.i64(op.name + "_zw", zw.reshape(view))],
                         op.name + "_acc")

    def digits_int(self, x: str, hint: str) -> list[tuple[str, int, int]]:
        """int32 tensor of int16 values → its base-128 digits as int8 tensors:
        [(d0, 1, 127), (d1, 128, 127), (d2, 16384, 2)] (tensor, weight, max |digit|)."""
        c128 = self.const(hint + "_128", np.int32(128))
        parts = []
        for weight in (1, 128):
            d = self.node("Mod", [x, c128], hint + "_mod")  # floor mod: [0, 127]
            parts.append((self.cast(d, TensorProto.INT8, hint + "_d8"), weight, 127))
            x = self.node("Div", [self.node("Sub", [x, d], hint + "_sub"), c128], hint + "_div")
        parts.append((self.cast(x, TensorProto.INT8, hint + "_d8"), 16384, 2))
        return parts

    def pad_int(self, op: Op, x: str, x_info: TensorInfo, value: np.ndarray) -> str:
        """Explicit constant Pad with the input zero point (fully_connected: unchanged).

        Padded positions then contribute w·(z − z) = 0, as in the interpreter, whatever padding
        convention ConvInteger itself follows.
        """
        if op.kind == "fully_connected":
            return x
        t, left, bottom, r = op.attrs["padding"]
        pads = [0, 0, left, 0, 0, r] if len(x_info.shape) == 2 else [0, 0, t, left, 0, 0, bottom, r]
        if not any(pads):
            return x
        return self.node("Pad", [x, self.i64(op.name + "_pads", pads),
                                 self.const(op.name + "_padv", value)], op.name + "_pad",
                         mode="constant")

    def integer_product(self, op: Op, x: str, w: np.ndarray, zp: str | None) -> str:
        """ConvInteger / MatMulInteger of an 8-bit tensor and an 8-bit weight array (int32)."""
        a = op.attrs
        zps = [] if zp is None else [zp]
        if op.kind == "fully_connected":
            w_name = self.const(op.name + "_wT", np.ascontiguousarray(w.T))
            return self.node("MatMulInteger", [x, w_name, *zps], op.name)
        one_d = len(self.g.tensors[op.inputs[0]].shape) == 2
        if one_d:
            w, kw = w[:, :, 0, :], {"strides": a["stride"][1:], "dilations": a["dilation"][1:]}
        else:
            kw = {"strides": a["stride"], "dilations": a["dilation"]}
        w_name = self.const(op.name + "_w", np.ascontiguousarray(w))
        return self.node("ConvInteger", [x, w_name, *zps], op.name, group=a["groups"],
                         kernel_shape=list(w.shape[2:]), **kw)

    def add_int(self, op: Op) -> None:
        """TFLM add, integer: rescale (x − z)·2^ls by each input multiplier, sum, requantize."""
        a = op.attrs
        rounding = a.get("rounding", "double")
        scaled = []
        for x, k in zip(op.inputs, ("a", "b"), strict=True):
            h = f"{op.name}_{k}"
            v = self.node("Sub", [self.cast(x, TensorProto.INT64, h),
                                  self.i64(h + "_zp", a[f"{k}_zero_point"])], h + "_sub")
            v = self.node("Mul", [v, self.i64(h + "_ls", 1 << a["left_shift"])], h + "_shl")
            scaled.append(self.apply_multiplier_int(v, a[f"{k}_multiplier"], a[f"{k}_shift"],
                                                    rounding, 32, h + "_mbqm"))
        total = self.node("Add", scaled, op.name + "_sum")
        y = self.apply_multiplier_int(total, a["output_multiplier"], a["output_shift"], rounding,
                                      32, op.name + "_mbqm")
        self.finish_int(y, op, a["output_zero_point"])

    def rescale_int(self, op: Op) -> None:
        """mbqm((x << ls) − zps, M, shift) + z_out, clamped: the interpreter's integer steps."""
        a = op.attrs
        x = self.cast(op.inputs[0], TensorProto.INT64, op.name)
        x = self.node("Mul", [x, self.i64(op.name + "_ls", 1 << a["left_shift"])], op.name + "_shl")
        x = self.node("Sub", [x, self.i64(op.name + "_zps", a["input_zero_point_shifted"])],
                      op.name + "_sub")
        y = self.apply_multiplier_int(x, a["multiplier"], a["shift"], a.get("rounding", "double"),
                                      32, op.name + "_mbqm")
        self.finish_int(y, op, a["output_zero_point"])

    def avg_pool_int(self, op: Op) -> None:
        """Window sums by a float depthwise Conv with a ones kernel (exact: every partial sum is an
        integer below 2^24), then the interpreter's round-half-away division by the count."""
        a = op.attrs
        x_info = self.g.tensors[op.inputs[0]]
        kh, kw = a["kernel"]
        bound = kh * kw * max(abs(v) for v in _dtype_range(x_info.dtype))
        if bound >= 2**24:
            raise ValueError(
                f"op {op.name!r} (avg_pool): window sums up to {bound} are not exact in float32 "
                "(needs kh·kw·max|x| < 2^24); export with requant='float'")
        one_d = len(x_info.shape) == 2
        t, left, bottom, r = a["padding"]
        ch = x_info.shape[0]
        x = self.cast(op.inputs[0], TensorProto.FLOAT, op.name + "_f")
        ones = np.ones((ch, 1, kw) if one_d else (ch, 1, kh, kw), np.float32)
        kwargs = (dict(kernel_shape=[kw], strides=a["stride"][1:], pads=[left, r]) if one_d else
                  dict(kernel_shape=[kh, kw], strides=a["stride"], pads=[t, left, bottom, r]))
        s = self.node("Conv", [x, self.const(op.name + "_ones", ones)], op.name + "_sum",
                      group=ch, **kwargs)
        s = self.cast(s, TensorProto.INT64, op.name + "_si")
        valid = _valid_counts(x_info.shape, a)
        if a["count_include_pad"]:
            pad_sum = (kh * kw - valid) * a["zero_point"]  # padded positions hold real zero
            s = self.node("Add", [s, self.i64(op.name + "_padz", pad_sum)], op.name + "_pz")
            count = np.full_like(valid, kh * kw)
        else:
            count = valid
        num = self.node("Add", [self.node("Abs", [s], op.name + "_abs"),
                                self.i64(op.name + "_half", count // 2)], op.name + "_num")
        q = self.node("Div", [num, self.i64(op.name + "_cnt", count)], op.name + "_q")
        y = self.node("Mul", [self.node("Sign", [s], op.name + "_sg"), q], op.name + "_avg")
        y = self.saturate_int(y, a["act_min"], a["act_max"], op.name + "_act")
        self.cast(y, _ONNX_DTYPE[self.g.tensors[op.output].dtype], op.name, out=self.oname(op))

    def softmax_int(self, op: Op) -> None:
        """The interpreter's integer softmax: exp from the table by d = max − x, then
        (2·e·R + Σe) div (2·Σe) + z (every quotient non-negative, so Div's truncation is floor)."""
        a = op.attrs
        h = op.name
        table = op.consts["exp_table"].astype(np.int64)
        last = table.shape[0] - 1  # T: d >> lut_shift >= T gives 0
        step = 1 << a["lut_shift"]
        axes = self.i64(h + "_axes", [-1])
        x = self.cast(op.inputs[0], TensorProto.INT64, h + "_x")
        d = self.node("Sub", [self.node("ReduceMax", [x, axes], h + "_max", keepdims=1), x],
                      h + "_d")
        i = self.node("Div", [d, self.i64(h + "_step", step)], h + "_i")
        f = self.node("Mod", [d, self.i64(h + "_stepm", step)], h + "_f")
        idx = self.node("Min", [i, self.i64(h + "_tm1", last - 1)], h + "_idx")
        tab = self.i64(h + "_table", table)
        t0 = self.node("Gather", [tab, idx], h + "_t0", axis=0)
        t1 = self.node("Gather", [tab, self.node("Add", [idx, self.i64(h + "_1", 1)], h + "_i1")],
                       h + "_t1", axis=0)
        slope = self.node("Mul", [self.node("Sub", [t1, t0], h + "_dt"), f], h + "_df")
        e = self.node("Add", [t0, self.floor_shift_int(slope, np.int64(a["lut_shift"]), h)],
                      h + "_e")
        beyond = self.node("GreaterOrEqual", [i, self.i64(h + "_T", last)], h + "_beyond")
        e = self.node("Where", [beyond, self.i64(h + "_0", 0), e], h + "_e0")
        total = self.node("ReduceSum", [e, axes], h + "_sum", keepdims=1)
        num = self.node("Add", [self.node("Mul", [e, self.i64(h + "_2r", 2 * a["output_range"])],
                                          h + "_2er"), total], h + "_num")
        q = self.node("Div", [num, self.node("Add", [total, total], h + "_2s")], h + "_q")
        self.finish_int(q, op, a["output_zero_point"])

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
        integer = {"conv": self.weight_layer_int, "fully_connected": self.weight_layer_int,
                   "add": self.add_int, "rescale": self.rescale_int, "avg_pool": self.avg_pool_int,
                   "softmax": self.softmax_int}
        for op in g.ops:
            if op.kind not in handlers:
                raise ValueError(f"op {op.name!r}: kind {op.kind!r} has no ONNX export")
            if op.kind in self.integer_kinds:
                integer[op.kind](op)
            else:
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


def _dtype_range(dtype: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def _valid_counts(shape: tuple[int, ...], attrs: dict) -> np.ndarray:
    """In-bounds positions of every pooling window, shaped like the output's spatial dims
    ((H', W') for 2-D, (L',) for 1-D), from the per-axis counts (windows are rectangles)."""
    one_d = len(shape) == 2
    sizes = (1, shape[1]) if one_d else shape[1:]
    t, left, bottom, r = attrs["padding"]
    per_axis = []
    for size, k, s, lo, hi in zip(sizes, attrs["kernel"], attrs["stride"], (t, left),
                                  (bottom, r), strict=True):
        n_out = (size + lo + hi - k) // s + 1
        start = np.arange(n_out) * s - lo
        per_axis.append(np.minimum(start + k, size) - np.maximum(start, 0))
    counts = np.outer(per_axis[0], per_axis[1]).astype(np.int64)
    return counts[0] if one_d else counts


def _digits(w: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """int16 array → its non-zero base-128 digits [(int8 digit array, weight)]:
    w = 16384·d2 + 128·d1 + d0 with d0, d1 in [0, 127] and d2 in [−2, 1]."""
    v = w.astype(np.int64)
    parts = []
    for weight in (1, 128, 16384):
        d = v % 128 if weight < 16384 else v
        if d.any():
            parts.append((d.astype(np.int8), weight))
        v = (v - d) // 128
    return parts or [(np.zeros_like(w, np.int8), 1)]
