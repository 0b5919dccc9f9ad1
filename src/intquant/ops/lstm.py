"""lstm — nn.LSTM / LSTMCell loops: 1 to 4 stacked layers over a (T, F) sequence

- input, output, gate products and tables as for `gru` (see `_recurrent`); gate rows i, f, g,
  o (PyTorch's order), `G = sat16(Gx + Gh)` in Q3.12:
  `i = σ(G_i)`, `f = σ(G_f)`, `g = tanh(G_g)`, `o = σ(G_o)` (Q0.15),
  `c' = sat16((f·c + 2^14 >> 15) + (i·g + 2^(29 − cs) >> (30 − cs)))` with the cell state c
  int16 at scale 2^−cs (cs = `cell_shifts[l]` in [0, 15], from the calibrated range with one
  bit of headroom), `h' = o·tanh(C) + 2^14 >> 15` where C is c' in Q3.12:
  `(c' + 2^(cs − 13)) >> (cs − 12)` for cs > 12, c' for cs = 12, `sat16(c'·2^(12 − cs))`
  below. c starts at `c0{l}`, h at `h0{l}`.
- Validation as for `gru`, plus the cell formats.
- Error vs float: see benchmarks/RESULTS.md (the synthetic-speech LSTM keyword spotter).
"""

from __future__ import annotations

import math

import numpy as np

from ..intgraph.check import OpCheck
from ..intgraph.types import Op, TensorInfo
from . import _recurrent as R
from .registry import FloatOpDef, OpDef, register

CELL_SHIFT_MAX = 15


def check(chk: OpCheck) -> None:
    layers, _, _ = R.check_common(chk, "lstm")
    chk.list_attr("cell_shifts", layers, lo=0, hi=CELL_SHIFT_MAX)


def cell_to_q312(c: np.ndarray, cs: int) -> np.ndarray:
    """The cell state (scale 2^−cs) as a Q3.12 gate code: rounded shift down, saturating up."""
    if cs > R.GATE_FRAC:
        return (c + (1 << (cs - R.GATE_FRAC - 1))) >> (cs - R.GATE_FRAC)
    return R.sat16(c << (R.GATE_FRAC - cs))


def step(op: Op, layer: int, x: np.ndarray, zx: int, st: dict[str, np.ndarray]) -> None:
    """One time step of one layer (batch), updating st["h"] and st["c"] in place."""
    hid = op.attrs["hidden_size"]
    cs = op.attrs["cell_shifts"][layer]
    sig, tanh = op.consts["sigmoid"], op.consts["tanh"]
    gx, gh = R.gate_terms(op, layer, x, zx, st["h"])
    g = R.sat16(gx + gh)
    i = R.table_lookup(sig, g[:, :hid])
    f = R.table_lookup(sig, g[:, hid:2 * hid])
    gg = R.table_lookup(tanh, g[:, 2 * hid:3 * hid])
    o = R.table_lookup(sig, g[:, 3 * hid:])
    k = 30 - cs
    st["c"] = R.sat16(R.mul_q15(f, st["c"]) + ((i * gg + (1 << (k - 1))) >> k))
    st["h"] = R.mul_q15(o, R.table_lookup(tanh, cell_to_q312(st["c"], cs)))


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    return R.run_layers(op, inputs[0], out, step)


def cell_shift(max_abs: float) -> int:
    """The finest power-of-two cell scale 2^−cs whose int16 range holds twice ``max_abs``."""
    if max_abs <= 0:
        return CELL_SHIFT_MAX
    return int(min(CELL_SHIFT_MAX, max(0, 15 - math.ceil(math.log2(2.0 * max_abs)))))


def lower(lw, node, inputs: list[str]) -> str:
    from ..lower import LoweringError

    def extra(layer: int):
        qp = lw.plan.acts.get(f"{node.name}/cell{layer}")
        if qp is None:
            raise LoweringError(f"the plan has no range for the cell state of layer {layer} "
                                f"('{node.name}/cell{layer}')")
        cs = cell_shift(float(np.max(qp.scale)) * qp.qmax)
        c0 = R.state_codes(node.params[f"c0{layer}"], cs, 32767)
        return {f"c0{layer}": c0}, {"cell_shifts": cs}

    return R.lower_recurrent(lw, node, inputs, extra)


def run_float(node, inputs):
    import torch

    x = inputs[0]
    hc = (R.initial_states(node, "h0", x, torch), R.initial_states(node, "c0", x, torch))
    params = [p.to(x.dtype) for p in R.torch_params(node, torch)]
    out, _, _ = torch.lstm(x, hc, params, True, node.attrs["layers"], 0.0, False, False, True)
    return R.select_output(node, out)


def observe_cells(node, inputs) -> dict:
    """The cell state of every layer at every step (calibration of its power-of-two format)."""
    import torch

    x = inputs[0]
    cells = {}
    for layer in range(node.attrs["layers"]):
        p = [torch.as_tensor(node.params[f"{k}{layer}"]).to(x.dtype)
             for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
        h = torch.as_tensor(node.params[f"h0{layer}"]).to(x.dtype).expand(x.shape[0], -1)
        c = torch.as_tensor(node.params[f"c0{layer}"]).to(x.dtype).expand(x.shape[0], -1)
        hs, cs = [], []
        for t in range(x.shape[1]):
            h, c = torch.lstm_cell(x[:, t], (h, c), *p)
            hs.append(h)
            cs.append(c)
        cells[f"cell{layer}"] = torch.stack(cs, dim=1)
        x = torch.stack(hs, dim=1)
    return cells


def weight_inputs(node, inputs):
    """The gate matrices with the values they multiply (``_recurrent.gate_inputs``)."""
    import torch

    return R.gate_inputs(node, inputs, ("h0", "c0"),
                         lambda x, state, p: torch.lstm_cell(x, state, *p))


register(
    OpDef(
        kind="lstm",
        summary="nn.LSTM / LSTMCell loop (1-4 layers), int16 Q3.12 gates, Q0.15 state, int16 "
                "power-of-two cell state, streamable",
        attrs=R.COMMON_ATTRS | {"cell_shifts"},
        consts=R.layer_const_names("lstm"),
        check=check,
        run=run,
        emit_c=R.emit_recurrent,
        c_files=("iq_lstm.c", "iq_lstm.h", "iq_rnn.h"),
        c_header="iq_lstm.h",
        to_onnx=R.to_onnx,
        to_onnx_int=R.to_onnx_int,
        macs=R.macs,
        scratch_bytes=R.scratch_bytes,
        state_bytes=R.state_bytes,
    ),
    FloatOpDef(
        name="lstm",
        summary="nn.LSTM (batch-first; attrs hidden_size, layers, sequence) or an LSTMCell loop",
        run=run_float,
        lower=lower,
        lowers_to=("lstm",),
        observe=observe_cells,
        weight_tensors=R.weight_tensors,
        weight_inputs=weight_inputs,
    ),
)
