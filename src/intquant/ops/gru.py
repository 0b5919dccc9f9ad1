"""gru — nn.GRU / GRUCell loops: 1 to 4 stacked layers over a (T, F) sequence

- input x (T, F), int8 / uint8 / int16 with zero point `input_zero_point`; output the last
  step (H,) or, with `sequence` = 1, every step (T, H), in the output format
  (`out = clamp(z_out + MBQM(h, out_multiplier, out_shift), act_min, act_max)` of the last
  layer's Q0.15 state h).
- per layer l (input: x for l = 0, the Q0.15 state of layer l − 1 otherwise), per step, with
  Gx = MBQM(W_ih{l}·(x − z) + bias_x{l}; mult_x{l}, shift_x{l}) and
  Gh = MBQM(W_hh{l}·h + bias_h{l}; mult_h{l}, shift_h{l}) per gate row, in Q3.12 (int32),
  gate rows r, z, n (PyTorch's order):
  `r = σ(sat16(Gx_r + Gh_r))`, `z = σ(sat16(Gx_z + Gh_z))`,
  `n = tanh(sat16(Gx_n + (r·sat16(Gh_n) + 2^14 >> 15)))`,
  `h' = n + (z·(h − n) + 2^14 >> 15)`,
  σ and tanh from the 513-knot Q3.12 → Q0.15 tables `sigmoid` / `tanh` (see `_recurrent`).
  h starts at `h0{l}` (int16 Q0.15). MBQM is TFLM's double rounding, or single rounding with
  `rounding` = "single". W int8, one scale per gate row.
- Validation proves every gate sum fits int32 (from the weights, input range and biases) and
  the tables lie in Q0.15, so h stays in [−32767, 32767].
- Error vs float (16x8, synthetic-speech GRU keyword spotter): see benchmarks/RESULTS.md; the
  gate tables alone are within 1 (sigmoid) and 3 (tanh) LSB of Q0.15.
"""

from __future__ import annotations

import numpy as np

from ..intgraph.check import OpCheck
from ..intgraph.types import Op, TensorInfo
from . import _recurrent as R
from .registry import FloatOpDef, OpDef, register


def check(chk: OpCheck) -> None:
    R.check_common(chk, "gru")


def step(op: Op, layer: int, x: np.ndarray, zx: int, st: dict[str, np.ndarray]) -> None:
    """One time step of one layer (batch), updating st["h"] in place."""
    hid = op.attrs["hidden_size"]
    sig, tanh = op.consts["sigmoid"], op.consts["tanh"]
    gx, gh = R.gate_terms(op, layer, x, zx, st["h"])
    r = R.table_lookup(sig, R.sat16(gx[:, :hid] + gh[:, :hid]))
    z = R.table_lookup(sig, R.sat16(gx[:, hid:2 * hid] + gh[:, hid:2 * hid]))
    n = R.table_lookup(tanh, R.sat16(gx[:, 2 * hid:] + R.mul_q15(r, R.sat16(gh[:, 2 * hid:]))))
    st["h"] = n + R.mul_q15(z, st["h"] - n)


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    return R.run_layers(op, inputs[0], out, step)


def lower(lw, node, inputs: list[str]) -> str:
    return R.lower_recurrent(lw, node, inputs, lambda layer: ({}, {}))


def run_float(node, inputs):
    import torch

    x = inputs[0]
    h0 = R.initial_states(node, "h0", x, torch)
    params = [p.to(x.dtype) for p in R.torch_params(node, torch)]
    out, _ = torch.gru(x, h0, params, True, node.attrs["layers"], 0.0, False, False, True)
    return R.select_output(node, out)


def weight_inputs(node, inputs):
    """The gate matrices with the values they multiply (``_recurrent.gate_inputs``)."""
    import torch

    return R.gate_inputs(node, inputs, ("h0",),
                         lambda x, state, p: (torch.gru_cell(x, state[0], *p),))


register(
    OpDef(
        kind="gru",
        summary="nn.GRU / GRUCell loop (1-4 layers), int16 Q3.12 gates and Q0.15 state, "
                "streamable",
        attrs=R.COMMON_ATTRS,
        consts=R.layer_const_names("gru"),
        check=check,
        run=run,
        emit_c=R.emit_recurrent,
        c_files=("iq_gru.c", "iq_gru.h", "iq_rnn.h"),
        c_header="iq_gru.h",
        to_onnx=R.to_onnx,
        to_onnx_int=R.to_onnx_int,
        macs=R.macs,
        scratch_bytes=R.scratch_bytes,
        state_bytes=R.state_bytes,
    ),
    FloatOpDef(
        name="gru",
        summary="nn.GRU (batch-first; attrs hidden_size, layers, sequence) or a GRUCell loop",
        run=run_float,
        lower=lower,
        lowers_to=("gru",),
        weight_tensors=R.weight_tensors,
        weight_inputs=weight_inputs,
    ),
)
