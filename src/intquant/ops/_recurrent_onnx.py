"""ONNX export of the recurrent kinds ``gru`` and ``lstm`` (see ``_recurrent``).

- ``export_exact`` (``requant="integer"``, the default): the integer recurrence itself, every
  time step unrolled (T is fixed), on int64 tensors: MatMul of the codes (ONNX Runtime's
  int64 MatMul is exact), the per-row fixed-point multipliers of ``integer_math``, Clip for
  the saturations, Gather from the gate tables with the same interpolation, floor shifts for
  the Q0.15 products. ONNX Runtime reproduces ``interpreter.run`` bit for bit.
- ``export_qdq`` (``requant="float"``): DequantizeLinear of the input and of the int8 gate
  matrices (one scale per row), ONNX's own GRU / LSTM operators in float (PyTorch's gate
  order and ``linear_before_reset=1`` mapped onto ONNX's), QuantizeLinear of the output: the
  model other toolchains expect. It computes the gates in float, so it agrees with the integer
  op within a few output steps, not bit for bit.
"""

from __future__ import annotations

import numpy as np

from ..intgraph import Op
from . import _recurrent as R

# Gate rows in ONNX's order, as indices into PyTorch's (GRU r z n -> z r h; LSTM i f g o ->
# i o f c).
ONNX_GATE_ORDER = {"gru": (1, 0, 2), "lstm": (0, 3, 1, 2)}


# ----------------------------------------------------------------------------------------------
# Exact integer form
# ----------------------------------------------------------------------------------------------


class _Steps:
    """Integer helpers on int64 tensors for one op (``ex`` is the exporter)."""

    def __init__(self, ex, op: Op) -> None:
        self.ex, self.op = ex, op
        self.rounding = op.attrs.get("rounding", "double")
        self.tables = {k: ex.i64(f"{op.name}_{k}", op.consts[k].astype(np.int64))
                       for k in ("sigmoid", "tanh")}

    def c(self, hint: str, v) -> str:
        return self.ex.i64(f"{self.op.name}_{hint}", v)

    def n(self, kind: str, inputs: list[str], hint: str, **kw) -> str:
        return self.ex.node(kind, inputs, f"{self.op.name}_{hint}", **kw)

    def sat16(self, x: str) -> str:
        return self.ex.saturate_int(x, -32768, 32767, f"{self.op.name}_s16")

    def mul_q15(self, a: str, b: str) -> str:
        v = self.n("Add", [self.n("Mul", [a, b], "m"), self.c("h14", 1 << 14)], "mr")
        return self.ex.floor_shift_int(v, np.int64(15), f"{self.op.name}_q15")

    def table(self, key: str, g: str) -> str:
        u = self.n("Add", [g, self.c("u", 32768)], "u")
        i = self.n("Div", [u, self.c("128", 128)], "i")
        f = self.n("Mod", [u, self.c("128m", 128)], "f")
        t0 = self.n("Gather", [self.tables[key], i], "t0", axis=0)
        i1 = self.n("Add", [i, self.c("one", 1)], "i1")
        t1 = self.n("Gather", [self.tables[key], i1], "t1", axis=0)
        v = self.n("Add", [self.n("Mul", [self.n("Sub", [t1, t0], "d"), f], "df"),
                           self.c("64", 64)], "v")
        return self.n("Add", [t0, self.ex.floor_shift_int(v, np.int64(7), f"{self.op.name}_t")],
                      "tab")

    def gate_term(self, x: str, layer: int, side: str) -> str:
        """MBQM(x @ W^T + b) per row (int64, Q3.12)."""
        c = self.op.consts
        w = c[f"w_ih{layer}" if side == "x" else f"w_hh{layer}"].astype(np.int64)
        acc = self.n("Add", [self.n("MatMul", [x, self.c("wT", np.ascontiguousarray(w.T))], "mm"),
                             self.c("b", c[f"bias_{side}{layer}"].astype(np.int64))], "acc")
        return self.ex.apply_multiplier_int(acc, c[f"mult_{side}{layer}"],
                                            c[f"shift_{side}{layer}"], self.rounding, 32,
                                            f"{self.op.name}_g{side}")

    def rows(self, x: str, k: int) -> str:
        hid = self.op.attrs["hidden_size"]
        return self.n("Slice", [x, self.c("st", [k * hid]), self.c("en", [(k + 1) * hid]),
                                self.c("ax", [-1])], "rows")

    def gru_step(self, x: str, h: str, layer: int) -> str:
        gx, gh = self.gate_term(x, layer, "x"), self.gate_term(h, layer, "h")
        s = [self.n("Add", [self.rows(gx, k), self.rows(gh, k)], "sum") for k in (0, 1)]
        r, z = (self.table("sigmoid", self.sat16(v)) for v in s)
        pre_n = self.n("Add", [self.rows(gx, 2), self.mul_q15(r, self.sat16(self.rows(gh, 2)))],
                       "pn")
        n = self.table("tanh", self.sat16(pre_n))
        return self.n("Add", [n, self.mul_q15(z, self.n("Sub", [h, n], "hn"))], "h")

    def lstm_step(self, x: str, h: str, c: str, layer: int) -> tuple[str, str]:
        cs = self.op.attrs["cell_shifts"][layer]
        gx, gh = self.gate_term(x, layer, "x"), self.gate_term(h, layer, "h")
        g = self.sat16(self.n("Add", [gx, gh], "sum"))
        i, f, o = (self.table("sigmoid", self.rows(g, k)) for k in (0, 1, 3))
        gg = self.table("tanh", self.rows(g, 2))
        k = 30 - cs
        ig = self.n("Add", [self.n("Mul", [i, gg], "ig"), self.c("rnd", 1 << (k - 1))], "igr")
        c = self.sat16(self.n("Add", [self.mul_q15(f, c),
                                      self.ex.floor_shift_int(ig, np.int64(k), "igs")], "c"))
        if cs > R.GATE_FRAC:
            cq = self.n("Add", [c, self.c("cr", 1 << (cs - R.GATE_FRAC - 1))], "cq")
            cq = self.ex.floor_shift_int(cq, np.int64(cs - R.GATE_FRAC), f"{self.op.name}_cq")
        else:
            cq = self.sat16(self.n("Mul", [c, self.c("cl", 1 << (R.GATE_FRAC - cs))], "cl"))
        return self.mul_q15(o, self.table("tanh", cq)), c

    def output(self, h: str) -> str:
        a = self.op.attrs
        return self.ex.apply_multiplier_int(h, np.int64(a["out_multiplier"]),
                                            np.int64(a["out_shift"]), self.rounding, 32,
                                            f"{self.op.name}_out")


def export_exact(ex, op: Op) -> None:
    """The integer recurrence, unrolled over the T steps of the op's input."""
    from onnx import TensorProto

    a, st = op.attrs, _Steps(ex, op)
    steps = ex.g.tensors[op.inputs[0]].shape[0]
    x = ex.cast(op.inputs[0], TensorProto.INT64, op.name + "_x")
    x = st.n("Sub", [x, st.c("zx", a["input_zero_point"])], "xz")
    hs = [st.c(f"h0_{layer}", op.consts[f"h0{layer}"].astype(np.int64))
          for layer in range(a["layers"])]
    cs = [st.c(f"c0_{layer}", op.consts[f"c0{layer}"].astype(np.int64))
          for layer in range(a["layers"])] if op.kind == "lstm" else []
    outs = []
    for t in range(steps):
        inp = st.n("Gather", [x, st.c("t", t)], "xt", axis=1)
        for layer in range(a["layers"]):
            if op.kind == "gru":
                hs[layer] = st.gru_step(inp, hs[layer], layer)
            else:
                hs[layer], cs[layer] = st.lstm_step(inp, hs[layer], cs[layer], layer)
            inp = hs[layer]
        if a["sequence"]:
            outs.append(st.n("Unsqueeze", [st.output(hs[-1]), st.c("ax1", [1])], "yt"))
    y = st.n("Concat", outs, "y", axis=1) if a["sequence"] else st.output(hs[-1])
    ex.finish_int(y, op, a["output_zero_point"])


# ----------------------------------------------------------------------------------------------
# QDQ form with ONNX's GRU / LSTM
# ----------------------------------------------------------------------------------------------


def _reorder(rows: np.ndarray, kind: str, hidden: int) -> np.ndarray:
    parts = [rows[k * hidden:(k + 1) * hidden] for k in range(R.GATES[kind])]
    return np.concatenate([parts[k] for k in ONNX_GATE_ORDER[kind]])


def _real_rows(op: Op, layer: int, side: str, s_in: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-row weight scales and real biases, read back from the integer constants:
    s_w = m / (s_in · 2^12) with m the row's real multiplier."""
    from ..onnx_export import real_multiplier

    c = op.consts
    m = real_multiplier(c[f"mult_{side}{layer}"], c[f"shift_{side}{layer}"])
    s_w = np.maximum(m / (s_in * 2.0**R.GATE_FRAC), 1e-30)
    bias = c[f"bias_{side}{layer}"].astype(np.float64) * s_in * s_w
    return s_w, bias


def export_qdq(ex, op: Op) -> None:
    """DQ → ONNX GRU / LSTM per layer (time-major, float) → last step or sequence → Q."""
    a, kind, hid = op.attrs, op.kind, op.attrs["hidden_size"]
    x_info = ex.g.tensors[op.inputs[0]]
    name = op.name
    # time-major raw codes first (a Transpose after the DequantizeLinear trips ONNX Runtime's
    # QDQ propagation at opset 21, which the int16 tables select)
    tm = ex.node("Transpose", [op.inputs[0]], name + "_tm", perm=[1, 0, 2])  # (T, N, F)
    seq = ex.dq(tm, x_info.scale, x_info.zero_point, x_info.dtype, name)
    shape = ex.node("Shape", [op.inputs[0]], name + "_shape")
    batch = ex.node("Gather", [shape, ex.const(name + "_b0", np.array([0], np.int64))],
                    name + "_n")
    last = None
    for layer in range(a["layers"]):
        s_in = x_info.scale if layer == 0 else 2.0**-R.STATE_FRAC
        mats, biases = [], []
        for side, key, s in (("x", "w_ih", s_in), ("h", "w_hh", 2.0**-R.STATE_FRAC)):
            s_w, bias = _real_rows(op, layer, side, s)
            w = _reorder(op.consts[f"{key}{layer}"], kind, hid)[None]
            wq = ex.dq(ex.const(f"{name}_{key}{layer}", w),
                       _reorder(s_w, kind, hid).astype(np.float32), np.zeros(w.shape[1], np.int8),
                       "int8", f"{name}_{key}{layer}", axis=1)
            mats.append(wq)
            biases.append(_reorder(bias, kind, hid))
        b = ex.const(f"{name}_B{layer}", np.concatenate(biases)[None].astype(np.float32))
        states = [("h0", R.STATE_FRAC)] + ([("c0", op.attrs["cell_shifts"][layer])]
                                           if kind == "lstm" else [])
        init = []
        for key, frac in states:
            v = op.consts[f"{key}{layer}"].astype(np.float32) * np.float32(2.0**-frac)
            full = ex.node("Concat", [ex.const(name + "_one", np.array([1], np.int64)), batch,
                                      ex.const(name + "_hid", np.array([hid], np.int64))],
                           name + "_hshape", axis=0)
            init.append(ex.node("Expand", [ex.const(f"{name}_{key}{layer}", v[None, None]),
                                           full], f"{name}_{key}"))
        ins = [seq, *mats, b, "", *init]  # "": no sequence_lens
        attrs = {"hidden_size": hid}
        if kind == "gru":
            attrs["linear_before_reset"] = 1
        y = ex.node(kind.upper(), ins, f"{name}_{kind}{layer}", **attrs)
        seq = ex.node("Squeeze", [y, ex.const(name + "_ax1", np.array([1], np.int64))],
                      f"{name}_y{layer}")  # (T, N, H)
        last = seq
    if a["sequence"]:
        out = ex.node("Transpose", [last], name + "_bf", perm=[1, 0, 2])
    else:
        out = ex.node("Gather", [last, ex.const(name + "_last", np.int64(-1))], name + "_hT",
                      axis=0)
    # the output scale the integer op applies to the Q0.15 state (its multiplier's)
    from ..onnx_export import real_multiplier

    m = float(real_multiplier(a["out_multiplier"], a["out_shift"]))
    ex.clip_and_q(out, op, ex.g.tensors[op.output], scale=2.0**-R.STATE_FRAC / max(m, 1e-30))
