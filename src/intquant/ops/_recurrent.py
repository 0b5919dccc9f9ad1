"""What the recurrent kinds ``gru`` and ``lstm`` share: fixed-point formats, gate functions,
the gate matrix-vector products, validation, lowering and the C binding.

Integer formats (every mode; TFLM's 16x8 LSTM is the model):
- the layer input x (int8 / uint8 / int16, the graph's activation format) and the output (the
  calibrated format of the node) are ordinary activations;
- a gate pre-activation is int16 Q3.12 (real = q / 2^12, range ±8, where sigmoid and tanh
  have saturated to within 3.4e-4 and 2e-7): ``G = sat16(Gx + Gh)`` with
  ``Gx = MBQM(Σ W_x·(x − z) + b_x)`` and ``Gh = MBQM(Σ W_h·h + b_h)`` requantized per gate row
  (W int8, one scale per row; each product summed in int32, the two sums added before the
  saturation, so a large input term cancelled by the recurrent one is not clipped);
- a gate output and the hidden state h are int16 Q0.15 (real = q / 2^15): sigmoid in
  [0, 32767], tanh in [−32767, 32767], from 513-knot tables over Q3.12 with linear
  interpolation (``u = g + 32768``, ``i = u >> 7``, ``f = u & 127``,
  ``t[i] + ((t[i+1] − t[i])·f + 64 >> 7)``; knots 1/32 apart: sigmoid within 1 LSB of Q0.15,
  tanh within 3);
- the LSTM cell state c is int16 with a power-of-two scale 2^−cell_shift chosen from its
  calibrated range (with one bit of headroom).
The state is 16-bit in W8A8 too: it is carried over every time step, so its rounding error
would accumulate at 8 bits; the products with it cost the same on a Cortex-M0. Layer l > 0
reads the Q0.15 state of layer l − 1 directly (no 8-bit tensor between stacked layers).
Products of Q0.15 values are rounded half up: ``(a·b + 2^14) >> 15``.

Streaming: the ops keep their state (h per layer, and c for LSTM) in a persistent arena
buffer; ``<name>_run`` starts from the initial state (h0 / c0, zeros unless the model gave
constants) and ``<name>_step`` advances one frame (see ``intquant.codegen.stream``).
"""

from __future__ import annotations

import numpy as np

from ..intgraph.check import OpCheck, arity
from ..intgraph.types import ACTIVATION_DTYPES, M_LIMIT, SHIFT_RANGE, IntGraph, Op, TensorInfo
from ..numerics import (
    QParams,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_single,
    quantize_multiplier,
    quantize_multipliers,
    saturate,
)
from ._reference import to_out

GATE_FRAC = 12  # gate pre-activations: Q3.12
STATE_FRAC = 15  # gate outputs and hidden state: Q0.15
Q15_MAX = 32767
TABLE_KNOTS = 513
MAX_LAYERS = 4
INT32_BOUND = 2**31
ROUNDINGS = ("double", "single")
GATES = {"gru": 3, "lstm": 4}

COMMON_ATTRS = frozenset({"hidden_size", "layers", "sequence", "input_zero_point",
                          "output_zero_point", "act_min", "act_max", "out_multiplier",
                          "out_shift", "rounding"})
LAYER_CONSTS = ("w_ih", "w_hh", "bias_x", "bias_h", "mult_x", "shift_x", "mult_h", "shift_h",
                "h0")


def layer_const_names(kind: str) -> frozenset[str]:
    per_layer = LAYER_CONSTS + (("c0",) if kind == "lstm" else ())
    return frozenset(f"{k}{layer}" for k in per_layer for layer in range(MAX_LAYERS)) | {
        "sigmoid", "tanh"}


# ----------------------------------------------------------------------------------------------
# Reference arithmetic (NumPy, int64, exact)
# ----------------------------------------------------------------------------------------------


def sat16(x: np.ndarray) -> np.ndarray:
    return saturate(x, -32768, 32767)


def mul_q15(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a·b / 2^15 rounded half up (floor of a·b + 2^14, shifted): a Q0.15 product."""
    return (a * b + (1 << 14)) >> 15


def table_lookup(table: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The 513-knot table at the int16 codes g, linearly interpolated (floor shift)."""
    t = table.astype(np.int64)
    u = g + 32768
    i = u >> 7
    f = u & 127
    return t[i] + (((t[i + 1] - t[i]) * f + 64) >> 7)


def requant(acc: np.ndarray, m: np.ndarray, s: np.ndarray, rounding: str) -> np.ndarray:
    """The op's fixed-point multiplier on an int32 accumulator (per gate row)."""
    if rounding == "single":
        return multiply_by_quantized_multiplier_single(acc, m, s)
    return multiply_by_quantized_multiplier(acc, m, s)


def gate_terms(op: Op, layer: int, x: np.ndarray, zx: int, h: np.ndarray) -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    """(Gx, Gh): both gate products of one step for a batch, requantized to Q3.12 (int32).

    x: (N, F) layer input codes (zero point zx), h: (N, H) Q0.15 state.
    """
    c, r = op.consts, op.attrs.get("rounding", "double")
    w_ih = c[f"w_ih{layer}"].astype(np.int64)
    w_hh = c[f"w_hh{layer}"].astype(np.int64)
    ax = (x.astype(np.int64) - zx) @ w_ih.T + c[f"bias_x{layer}"].astype(np.int64)
    ah = h @ w_hh.T + c[f"bias_h{layer}"].astype(np.int64)
    gx = requant(ax, c[f"mult_x{layer}"], c[f"shift_x{layer}"], r)
    gh = requant(ah, c[f"mult_h{layer}"], c[f"shift_h{layer}"], r)
    return gx, gh


def output_codes(op: Op, h: np.ndarray) -> np.ndarray:
    """The Q0.15 state of the last layer in the output format."""
    a = op.attrs
    y = requant(h, np.int64(a["out_multiplier"]), np.int64(a["out_shift"]),
                a.get("rounding", "double"))
    return saturate(y + a["output_zero_point"], a["act_min"], a["act_max"])


def run_layers(op: Op, x: np.ndarray, out: TensorInfo, step) -> np.ndarray:
    """Run every layer over every time step: ``step(op, layer, x_t, zx, state)`` updates the
    layer's state (a dict of int64 arrays, ``h`` read by the next layer) in place."""
    a = op.attrs
    n, t_len = x.shape[0], x.shape[1]
    states = [initial_state(op, layer, n) for layer in range(a["layers"])]
    outputs = []
    for t in range(t_len):
        inp, zx = x[:, t], a["input_zero_point"]
        for layer, st in enumerate(states):
            step(op, layer, inp, zx, st)
            inp, zx = st["h"], 0
        if a["sequence"]:
            outputs.append(output_codes(op, states[-1]["h"]))
    y = np.stack(outputs, axis=1) if a["sequence"] else output_codes(op, states[-1]["h"])
    return to_out(y, out)


def initial_state(op: Op, layer: int, n: int) -> dict[str, np.ndarray]:
    st = {"h": np.broadcast_to(op.consts[f"h0{layer}"].astype(np.int64), (n, op.attrs[
        "hidden_size"])).copy()}
    if f"c0{layer}" in op.consts:
        st["c"] = np.broadcast_to(op.consts[f"c0{layer}"].astype(np.int64),
                                  st["h"].shape).copy()
    return st


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def check_common(chk: OpCheck, kind: str) -> tuple[int, int, int]:
    """Shapes, attrs, per-layer constants and the int32 bounds the C kernel relies on.
    Returns (layers, hidden size, sequence length)."""
    arity(chk, 1)
    x = chk.ins()[0]
    if len(x.shape) != 2:
        raise chk.fail(f"input must have shape (T, F), got {x.shape}")
    steps, features = x.shape
    hidden = chk.int_attr("hidden_size", 1, 4096)
    layers = chk.int_attr("layers", 1, MAX_LAYERS)
    sequence = chk.int_attr("sequence", 0, 1)
    chk.expect_output_shape((steps, hidden) if sequence else (hidden,))
    zx = chk.zero_point_attr("input_zero_point", x)
    chk.zero_point_attr("output_zero_point", chk.out)
    chk.act_range()
    chk.rounding(ROUNDINGS)
    chk.int_attr("out_multiplier", 0, M_LIMIT - 1)
    chk.int_attr("out_shift", SHIFT_RANGE[0], SHIFT_RANGE[1])
    for layer in range(MAX_LAYERS):
        present = [k for k in chk.op.consts if k[-1:] == str(layer) and not k[-2:-1].isdigit()]
        if layer >= layers and present:
            raise chk.fail(f"const {sorted(present)[0]!r} of layer {layer}, but 'layers' = "
                           f"{layers}")
    rows = GATES[kind] * hidden
    for layer in range(layers):
        f_in = features if layer == 0 else hidden
        in_max = max_abs_offset_of(x, zx) if layer == 0 else Q15_MAX
        check_layer(chk, layer, rows, hidden, f_in, in_max, x if layer == 0 else None)
    check_table(chk, "sigmoid", 0)
    check_table(chk, "tanh", -Q15_MAX)
    return layers, hidden, steps


def max_abs_offset_of(x: TensorInfo, z: int) -> int:
    lo, hi = ACTIVATION_DTYPES[x.dtype]
    return max(z - lo, hi - z)


def check_layer(chk: OpCheck, layer: int, rows: int, hidden: int, f_in: int, in_max: int,
                x: TensorInfo | None) -> None:
    w_ih = chk.const(f"w_ih{layer}", ("int8",), 2)
    w_hh = chk.const(f"w_hh{layer}", ("int8",), 2)
    if w_ih.shape != (rows, f_in):
        raise chk.fail(f"const 'w_ih{layer}' has shape {w_ih.shape}, expected {(rows, f_in)}")
    if w_hh.shape != (rows, hidden):
        raise chk.fail(f"const 'w_hh{layer}' has shape {w_hh.shape}, expected {(rows, hidden)}")
    for key, dt in (("bias_x", "int32"), ("bias_h", "int32"), ("mult_x", "int32"),
                    ("shift_x", "int32"), ("mult_h", "int32"), ("shift_h", "int32")):
        a = chk.const(f"{key}{layer}", (dt,), 1)
        if a.shape[0] != rows:
            raise chk.fail(f"const '{key}{layer}' has {a.shape[0]} entries, expected {rows}")
    for side in ("x", "h"):
        m = chk.op.consts[f"mult_{side}{layer}"].astype(np.int64)
        s = chk.op.consts[f"shift_{side}{layer}"].astype(np.int64)
        if np.any(m < 0) or np.any(m >= M_LIMIT):
            raise chk.fail(f"const 'mult_{side}{layer}' values must be in [0, 2^31)")
        if np.any(s < SHIFT_RANGE[0]) or np.any(s > SHIFT_RANGE[1]):
            raise chk.fail(f"const 'shift_{side}{layer}' values must be in "
                           f"[{SHIFT_RANGE[0]}, {SHIFT_RANGE[1]}]")
    check_state(chk, f"h0{layer}", hidden, Q15_MAX)
    if chk.op.kind == "lstm":
        check_state(chk, f"c0{layer}", hidden, 32767)
    bias_x = chk.op.consts[f"bias_x{layer}"].astype(np.int64)
    bias_h = chk.op.consts[f"bias_h{layer}"].astype(np.int64)
    check_bound(chk, f"w_ih{layer}", w_ih, in_max, bias_x)
    check_bound(chk, f"w_hh{layer}", w_hh, Q15_MAX, bias_h)
    if x is not None:  # the C kernel folds the input zero point into the bias
        z = chk.op.attrs["input_zero_point"]
        lo, hi = ACTIVATION_DTYPES[x.dtype]
        folded = bias_x - z * w_ih.astype(np.int64).sum(axis=1)
        check_bound(chk, f"w_ih{layer}", w_ih, max(-lo, hi), folded)


def check_bound(chk: OpCheck, key: str, w: np.ndarray, in_max: int, bias: np.ndarray) -> None:
    """max over rows of Σ|w|·max|x| + |b| < 2^31: no partial sum can overflow int32."""
    bound = int((np.abs(w.astype(np.int64)).sum(axis=1) * in_max + np.abs(bias)).max())
    if bound >= INT32_BOUND:
        raise chk.fail(f"accumulator bound {bound} of const '{key}' >= 2^31 (too many inputs "
                       "for int32 gate sums)")


def check_state(chk: OpCheck, key: str, hidden: int, limit: int) -> None:
    s = chk.const(key, ("int16",), 1)
    if s.shape[0] != hidden:
        raise chk.fail(f"const '{key}' has {s.shape[0]} entries, expected {hidden}")
    if np.any(np.abs(s.astype(np.int64)) > limit):
        raise chk.fail(f"const '{key}' values must lie in [-{limit}, {limit}]")


def check_table(chk: OpCheck, key: str, lo: int) -> None:
    t = chk.const(key, ("int16",), 1)
    if t.shape[0] != TABLE_KNOTS:
        raise chk.fail(f"const '{key}' has {t.shape[0]} entries, expected {TABLE_KNOTS}")
    if t.min() < lo or t.max() > Q15_MAX:
        raise chk.fail(f"const '{key}' values must lie in [{lo}, {Q15_MAX}] (Q0.15)")


def macs(op: Op, graph: IntGraph) -> int:
    """Gate products per inference: rows · (inputs + hidden) per layer and step."""
    steps, features = graph.tensors[op.inputs[0]].shape
    hidden = op.attrs["hidden_size"]
    rows = GATES[op.kind] * hidden
    per_step = sum(rows * ((features if layer == 0 else hidden) + hidden)
                   for layer in range(op.attrs["layers"]))
    return steps * per_step


def state_bytes(graph: IntGraph, op: Op) -> int:
    """Persistent int16 state: h per layer (and c for LSTM)."""
    per_layer = 2 if op.kind == "lstm" else 1
    return 2 * op.attrs["hidden_size"] * op.attrs["layers"] * per_layer


def scratch_bytes(graph: IntGraph, op: Op) -> int:
    """The new hidden state of one layer, built unit by unit (int16)."""
    return 2 * op.attrs["hidden_size"]


# ----------------------------------------------------------------------------------------------
# Lowering (float math allowed: offline)
# ----------------------------------------------------------------------------------------------


def gate_table(fn: str) -> np.ndarray:
    """sigmoid / tanh at the knots g = 128·i − 32768 (Q3.12), in Q0.15, rounded to nearest."""
    g = (np.arange(TABLE_KNOTS, dtype=np.float64) * 128 - 32768) / 2**GATE_FRAC
    y = 1.0 / (1.0 + np.exp(-g)) if fn == "sigmoid" else np.tanh(g)
    lo = 0 if fn == "sigmoid" else -Q15_MAX
    return np.clip(np.rint(y * 2**STATE_FRAC), lo, Q15_MAX).astype(np.int16)


def row_scales(qp: QParams, rows: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(qp.scale, np.float64), (rows,)) if qp.axis is not None \
        else np.full(rows, float(qp.scale[0]))


def quantize_gate_side(w: np.ndarray, b: np.ndarray, qp: QParams, s_in: float,
                       key: str) -> dict[str, np.ndarray]:
    """int8 weights, the bias on the accumulator grid s_in·s_w, multipliers to Q3.12."""
    from ..lower import LoweringError
    from ..numerics import quantize

    if qp.bits > 8:
        raise LoweringError(f"recurrent weights '{key}' must be at most 8 bits, got {qp.bits}")
    rows = w.shape[0]
    s_w = row_scales(qp, rows)
    w_q = quantize(w, qp).astype(np.int8)
    acc_scale = s_in * s_w
    b_q = np.clip(np.rint(b.astype(np.float64) / acc_scale), -(2**31 - 1), 2**31 - 1)
    mult, shift = quantize_multipliers(acc_scale * 2**GATE_FRAC)
    return {"w": w_q, "b": b_q.astype(np.int32), "m": mult, "s": shift}


def state_codes(v: np.ndarray, frac: int, limit: int) -> np.ndarray:
    return np.clip(np.rint(v.astype(np.float64) * 2.0**frac), -limit, limit).astype(np.int16)


def lower_recurrent(lw, node, inputs: list[str], extra_consts) -> str:
    """The integer op of a float ``gru`` / ``lstm`` node (``extra_consts(layer)`` adds the
    kind's own per-layer constants and attrs, e.g. the LSTM cell state format)."""
    from ..lower import act_bounds, scalar_qparams

    x = inputs[0]
    in_qp = lw.fmt[x]
    out_qp = lw.plan.acts[node.name]
    s_x, z_x = scalar_qparams(in_qp)
    s_out, z_out = scalar_qparams(out_qp)
    a, p = node.attrs, node.params
    consts: dict[str, np.ndarray] = {"sigmoid": gate_table("sigmoid"), "tanh": gate_table("tanh")}
    attrs: dict = {}
    for layer in range(a["layers"]):
        s_in = s_x if layer == 0 else 2.0**-STATE_FRAC
        for side, w_key, b_key, s in (("x", "w_ih", "b_ih", s_in),
                                      ("h", "w_hh", "b_hh", 2.0**-STATE_FRAC)):
            key = f"{w_key}{layer}"
            q = quantize_gate_side(p[key], p[f"{b_key}{layer}"], lw.plan.weights[
                f"{node.name}/{key}"], s, key)
            consts[key] = q["w"]
            consts[f"bias_{side}{layer}"] = q["b"]
            consts[f"mult_{side}{layer}"] = q["m"]
            consts[f"shift_{side}{layer}"] = q["s"]
        consts[f"h0{layer}"] = state_codes(p[f"h0{layer}"], STATE_FRAC, Q15_MAX)
        more_consts, more_attrs = extra_consts(layer)
        consts.update(more_consts)
        for k, v in more_attrs.items():
            attrs.setdefault(k, []).append(v)
    m, sh = quantize_multiplier(2.0**-STATE_FRAC / s_out)
    lo, hi = act_bounds(node, out_qp)
    attrs.update(hidden_size=a["hidden_size"], layers=a["layers"], sequence=int(a["sequence"]),
                 input_zero_point=z_x, output_zero_point=z_out, act_min=lo, act_max=hi,
                 out_multiplier=m, out_shift=sh,
                 rounding="double" if lw.rounding() == "pow2" else lw.rounding())
    return lw.emit(node.name, node.op, [x], node.shape, out_qp, attrs, consts)


def weight_tensors(node) -> dict[str, np.ndarray]:
    """The weight matrices a plan gives a format (one scale per gate row)."""
    return {f"{k}{layer}": node.params[f"{k}{layer}"] for layer in range(node.attrs["layers"])
            for k in ("w_ih", "w_hh")}


# ----------------------------------------------------------------------------------------------
# Float semantics (torch, imported lazily)
# ----------------------------------------------------------------------------------------------


def torch_params(node, torch) -> list:
    out = []
    for layer in range(node.attrs["layers"]):
        out += [torch.as_tensor(node.params[f"{k}{layer}"]) for k in ("w_ih", "w_hh", "b_ih",
                                                                        "b_hh")]
    return out


def gate_inputs(node, inputs: list, state_keys: tuple[str, ...], cell) -> list:
    """What each layer's gate matrices multiply at every step of the float recurrence on
    ``inputs[0]`` (N, T, F), as one ``RowGroup`` (w_ih, w_hh) per layer: the layer input x_t
    and the previous state h_{t−1}, float64, one row per (sample, step).

    ``cell(x_t, state, params)`` is one step (``state``: the tuple started from the node's
    ``state_keys`` constants, h first). The GRU's candidate rows add r ⊙ (W_hn h + b_hn), not
    W_hn h: they are paired with h_{t−1} all the same (GPTQ models one input per column)."""
    import torch

    from .registry import RowGroup

    x = torch.as_tensor(inputs[0]).double()
    groups = []
    for layer in range(node.attrs["layers"]):
        p = [torch.as_tensor(node.params[f"{k}{layer}"]).double()
             for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
        state = tuple(torch.as_tensor(node.params[f"{k}{layer}"]).double().expand(
            x.shape[0], -1) for k in state_keys)
        previous, outputs = [], []
        for t in range(x.shape[1]):
            previous.append(state[0])
            state = cell(x[:, t], state, p)
            outputs.append(state[0])
        h_prev = torch.stack(previous, dim=1)
        groups.append(RowGroup(weights=(f"w_ih{layer}", f"w_hh{layer}"),
                               biases=(f"b_ih{layer}", f"b_hh{layer}"),
                               inputs=(x.reshape(-1, x.shape[-1]),
                                       h_prev.reshape(-1, h_prev.shape[-1]))))
        x = torch.stack(outputs, dim=1)
    return groups


def initial_states(node, key: str, x, torch):
    """(layers, N, H) initial state from the per-layer constants."""
    h0 = torch.stack([torch.as_tensor(node.params[f"{key}{layer}"])
                      for layer in range(node.attrs["layers"])])
    return h0[:, None, :].expand(-1, x.shape[0], -1).to(x.dtype).contiguous()


def select_output(node, out):
    return out if node.attrs["sequence"] else out[:, -1]


# ----------------------------------------------------------------------------------------------
# C binding
# ----------------------------------------------------------------------------------------------


def emit_layers(em, op: Op, p: str) -> str:
    """The per-layer parameter structs (``iq_rnn_layer_t``) as one array; returns its name.

    The input zero point is folded into the first layer's bias: Σ w·(x − z) + b =
    Σ w·x + (b − z·Σw) (validation proved both forms fit int32)."""
    from ..codegen.c_syntax import c_int

    rows = []
    for layer in range(op.attrs["layers"]):
        c = op.consts
        bias_x = c[f"bias_x{layer}"].astype(np.int64)
        if layer == 0:
            bias_x = bias_x - op.attrs["input_zero_point"] * c[f"w_ih{layer}"].astype(
                np.int64).sum(axis=1)
        ident = {k: em.const_array(f"{p}_{k}{layer}", ctype, v) for k, ctype, v in (
            ("w_ih", "int8_t", c[f"w_ih{layer}"]), ("w_hh", "int8_t", c[f"w_hh{layer}"]),
            ("bias_x", "int32_t", bias_x.astype(np.int32)),
            ("bias_h", "int32_t", c[f"bias_h{layer}"]),
            ("mult_x", "int32_t", c[f"mult_x{layer}"]),
            ("shift_x", "int32_t", c[f"shift_x{layer}"]),
            ("mult_h", "int32_t", c[f"mult_h{layer}"]),
            ("shift_h", "int32_t", c[f"shift_h{layer}"]), ("h0", "int16_t", c[f"h0{layer}"]))}
        c0 = em.const_array(f"{p}_c0{layer}", "int16_t", c[f"c0{layer}"]) \
            if op.kind == "lstm" else "NULL"
        cell = op.attrs["cell_shifts"][layer] if op.kind == "lstm" else 0
        f_in = c[f"w_ih{layer}"].shape[1]
        rows.append(
            f"{{.input_size = {c_int(f_in)}, .w_ih = {ident['w_ih']}, .w_hh = {ident['w_hh']}, "
            f".bias_x = {ident['bias_x']}, .bias_h = {ident['bias_h']}, "
            f".mult_x = {ident['mult_x']}, .shift_x = {ident['shift_x']}, "
            f".mult_h = {ident['mult_h']}, .shift_h = {ident['shift_h']}, "
            f".h0 = {ident['h0']}, .c0 = {c0}, .cell_shift = {cell}}}")
    name = f"{p}_layers"
    em.data.append(f"static const iq_rnn_layer_t {name}[{len(rows)}] = {{\n    "
                   + ",\n    ".join(rows) + "\n};\n")
    return name


def emit_recurrent(em, i: int, op: Op, p: str) -> None:
    """Parameters, the reset call (``<name>_reset`` and the start of ``<name>_run``) and the
    kernel call; in a step build (``em.step``) the call runs one frame without a reset."""
    from ..codegen.c_syntax import DTYPE_CODE

    a = op.attrs
    layers = emit_layers(em, op, p)
    sig = em.const_array(f"{p}_sigmoid", "int16_t", op.consts["sigmoid"])
    tanh = em.const_array(f"{p}_tanh", "int16_t", op.consts["tanh"])
    x, y = em.g.tensors[op.inputs[0]], em.g.tensors[op.output]
    params = em.params("iq_rnn_params_t", f"{p}_params", {
        "hidden": a["hidden_size"], "layers": a["layers"], "sequence": a["sequence"],
        "in_dtype": DTYPE_CODE[x.dtype], "out_dtype": DTYPE_CODE[y.dtype],
        "out_zero_point": a["output_zero_point"], "act_min": a["act_min"],
        "act_max": a["act_max"], "out_multiplier": a["out_multiplier"],
        "out_shift": a["out_shift"], "rounding": 1 if a.get("rounding") == "single" else 0,
        "layer": layers, "sigmoid": sig, "tanh": tanh})
    state = em.state_ptr(i)
    scratch = em.scratch_ptr(i)
    em.resets.append(f"    iq_{op.kind}_reset(&{params}, {state});")
    steps = x.shape[0]
    em.calls.append(
        f"    iq_{op.kind}_run(&{params}, {em.ptr(op.inputs[0], True)}, {steps}, "
        f"{em.ptr(op.output, False)}, {state}, {scratch});")


def to_onnx(ex, op: Op) -> None:
    """QDQ with ONNX's own GRU / LSTM operator (float gates; see ``_recurrent_onnx``, imported
    here on use: it loads onnx)."""
    from ._recurrent_onnx import export_qdq

    export_qdq(ex, op)


def to_onnx_int(ex, op: Op) -> None:
    """The integer recurrence unrolled over time: bit-exact (see ``_recurrent_onnx``)."""
    from ._recurrent_onnx import export_exact

    export_exact(ex, op)
