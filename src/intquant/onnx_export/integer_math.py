"""Exact integer arithmetic as ONNX subgraphs on int64 tensors (the ``requant="integer"`` mode).

ONNX Runtime's int64 Div truncates toward zero (like C) and Mod (fmod=0) takes the sign of the
divisor; the subgraphs below only divide non-negative numbers, or subtract the Mod first, so
they are exact under either convention. Each mirrors one function of ``intquant.numerics``.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..intgraph import Op
from ..numerics import INT32_MAX, INT32_MIN, reduce_multiplier_16x8

ONNX_DTYPE = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int16": TensorProto.INT16,
              "bit": TensorProto.INT8}  # packed ±1 tensors are int8 ±1 in ONNX


class IntegerArithmetic:
    """Mixin of the exporter: needs ``node``, ``const``, ``oname`` and ``g``."""

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
        self.cast(y, ONNX_DTYPE[self.g.tensors[op.output].dtype], op.name, out=self.oname(op))
