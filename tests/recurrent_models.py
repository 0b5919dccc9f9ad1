"""Recurrent models written the way users write them, and float references for the integer ops.

Shared by tests/ops/test_gru.py and tests/ops/test_lstm.py (and the streaming tests):

- ``Layer``: nn.GRU / nn.LSTM with a linear head, in each form people use: batch_first or not
  (with ``x.transpose(0, 1)``), implicit h0, h0 = zeros passed explicitly, a learned h0
  parameter, the last step read as ``out[:, -1]`` / ``out[-1]``, ``h_n[-1]`` or
  ``h_n.squeeze(0)``, or the whole output sequence returned;
- ``CellLoop``: GRUCell / LSTMCell called in a Python loop over ``x[:, t]`` or ``x.unbind(1)``
  (or over the time-major ``x.transpose(0, 1)``, or ``x[:, t]`` for a fixed number of steps
  that torch.fx can trace for QAT), optionally two stacked cells, from zeros, a
  learned h0 or the cell's implicit zeros, returning the last state through a head or
  ``torch.stack`` of every state;
- ``own_parameters``: the float64 torch layer of an integer ``gru`` / ``lstm`` op's own
  parameters (weights w·s_w with s_w read back from the multipliers, biases on the
  accumulator grid, initial states), so a test can measure the op's arithmetic error alone.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from intquant.intgraph import Op
from intquant.numerics import QParams
from intquant.ops import _recurrent as R

FEATURES, HIDDEN, CLASSES, STEPS = 6, 12, 4, 9


class Layer(nn.Module):
    """nn.GRU / nn.LSTM + Linear, in one of the forms users write (see the module doc)."""

    def __init__(self, kind: str = "gru", layers: int = 1, batch_first: bool = True,
                 h0: str = "implicit", read: str = "out", hidden: int = HIDDEN):
        super().__init__()
        cls = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = cls(FEATURES, hidden, num_layers=layers, batch_first=batch_first)
        self.fc = nn.Linear(hidden, CLASSES)
        self.kind, self.layers, self.batch_first = kind, layers, batch_first
        self.h0_mode, self.read = h0, read
        if h0 == "param":
            self.h0 = nn.Parameter(0.3 * torch.randn(layers, 1, hidden))
            if kind == "lstm":
                self.c0 = nn.Parameter(0.3 * torch.randn(layers, 1, hidden))

    def initial_state(self, n: int):
        shape = (self.layers, n, self.rnn.hidden_size)
        if self.h0_mode == "zeros":
            h = torch.zeros(shape)
            return (h, torch.zeros(shape)) if self.kind == "lstm" else h
        h = self.h0.expand(-1, n, -1).contiguous()
        if self.kind == "lstm":
            return h, self.c0.expand(-1, n, -1).contiguous()
        return h

    def forward(self, x):
        n = x.shape[0]
        if not self.batch_first:
            x = x.transpose(0, 1)
        if self.h0_mode == "implicit":
            out, state = self.rnn(x)
        else:
            out, state = self.rnn(x, self.initial_state(n))
        h_n = state[0] if self.kind == "lstm" else state
        if self.read == "seq":
            return out if self.batch_first else out.transpose(0, 1)
        if self.read == "h_n":
            return self.fc(h_n[-1])
        if self.read == "squeeze":
            return self.fc(h_n.squeeze(0))
        return self.fc(out[:, -1] if self.batch_first else out[-1])


class CellLoop(nn.Module):
    """GRUCell / LSTMCell in a Python loop (see the module doc)."""

    def __init__(self, kind: str = "gru", stacked: bool = False, collect: bool = False,
                 steps_by: str = "select", hidden: int = HIDDEN, h0: str = "zeros",
                 bias: bool = True):
        super().__init__()
        cls = nn.LSTMCell if kind == "lstm" else nn.GRUCell
        self.kind, self.collect, self.steps_by, self.h0_mode = kind, collect, steps_by, h0
        self.cell = cls(FEATURES, hidden, bias=bias)
        self.cell2 = cls(hidden, hidden, bias=bias) if stacked else None
        self.fc = nn.Linear(hidden, CLASSES)
        self.hidden = hidden
        if h0 == "param":
            self.h0 = nn.Parameter(0.3 * torch.randn(1, hidden))
            self.c0 = nn.Parameter(0.3 * torch.randn(1, hidden))

    def step(self, cell, x, state):
        return cell(x, state)

    def initial_state(self, x):
        """zeros: h = x.new_zeros(...); param: a learned h0 (c0) expanded to the batch;
        implicit: None (the cell's own zeros)."""
        if self.h0_mode == "implicit":
            return None
        if self.h0_mode == "param":
            h = self.h0.expand(x.shape[0], -1)
            return (h, self.c0.expand(x.shape[0], -1)) if self.kind == "lstm" else h
        h = x.new_zeros(x.shape[0], self.hidden)
        return (h, torch.zeros_like(h)) if self.kind == "lstm" else h

    def forward(self, x):
        state = self.initial_state(x)
        state2 = state
        if self.steps_by == "unbind":
            frames = x.unbind(1)
        elif self.steps_by == "time_major":
            frames = list(x.transpose(0, 1))
        elif self.steps_by == "fixed":  # a step count torch.fx can trace (QAT)
            frames = [x[:, t] for t in range(STEPS)]
        else:
            frames = [x[:, t] for t in range(x.shape[1])]
        outs = []
        for xt in frames:
            state = self.cell(xt, state)
            h = state[0] if self.kind == "lstm" else state
            if self.cell2 is not None:
                state2 = self.cell2(h, state2)
                h = state2[0] if self.kind == "lstm" else state2
            outs.append(h)
        if self.collect:
            return torch.stack(outs, dim=1)
        return self.fc(h)


USER_FORMS = {  # name -> builder; every form captures into the same recurrent op
    "batch_first_out_last": lambda k: Layer(k),
    "time_major_out_last": lambda k: Layer(k, batch_first=False),
    "two_layers_h_n_last": lambda k: Layer(k, layers=2, read="h_n"),
    "h_n_squeeze_zeros_h0": lambda k: Layer(k, h0="zeros", read="squeeze"),
    "learned_h0_time_major_two_layers": lambda k: Layer(k, layers=2, batch_first=False,
                                                        h0="param"),
    "whole_sequence": lambda k: Layer(k, read="seq"),
    "cell_loop_select": lambda k: CellLoop(k),
    "cell_loop_unbind_stacked": lambda k: CellLoop(k, stacked=True, steps_by="unbind"),
    "cell_loop_time_major_stack": lambda k: CellLoop(k, collect=True, steps_by="time_major"),
    "cell_loop_learned_h0": lambda k: CellLoop(k, h0="param"),
    "cell_loop_implicit_h0_no_bias": lambda k: CellLoop(k, h0="implicit", bias=False),
}


def make(kind: str, form: str, seed: int = 0) -> nn.Module:
    """A user-form model with deterministic weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return USER_FORMS[form](kind).eval()


def sequences(n: int, steps: int = STEPS, seed: int = 1) -> torch.Tensor:
    """Smooth random sequences (N, T, FEATURES), like MFCC frames."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, steps, FEATURES, generator=g)
    return (x + torch.roll(x, 1, dims=1)) / 1.4


# ----------------------------------------------------------------------------------------------
# The float layer of an integer op's own parameters
# ----------------------------------------------------------------------------------------------


def _real_multiplier(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.asarray(m, np.float64) * np.exp2(np.asarray(s, np.float64) - 31)


def own_parameters(op: Op, s_in: float) -> dict[str, np.ndarray]:
    """Float64 parameters the integer op stands for, per layer: W = w·s_w with
    s_w = m / (s_in · 2^12) per row, b on the accumulator grid, h0 (and c0) real."""
    p: dict[str, np.ndarray] = {}
    for layer in range(op.attrs["layers"]):
        s_layer = s_in if layer == 0 else 2.0**-R.STATE_FRAC
        for side, key, s in (("x", "w_ih", s_layer), ("h", "w_hh", 2.0**-R.STATE_FRAC)):
            c = op.consts
            s_w = _real_multiplier(c[f"mult_{side}{layer}"], c[f"shift_{side}{layer}"]) / (
                s * 2.0**R.GATE_FRAC)
            p[f"{key}{layer}"] = c[f"{key}{layer}"].astype(np.float64) * s_w[:, None]
            bias_key = "b_ih" if side == "x" else "b_hh"
            p[f"{bias_key}{layer}"] = c[f"bias_{side}{layer}"].astype(np.float64) * s * s_w
        p[f"h0{layer}"] = op.consts[f"h0{layer}"].astype(np.float64) / 2**R.STATE_FRAC
        if op.kind == "lstm":
            cs = op.attrs["cell_shifts"][layer]
            p[f"c0{layer}"] = op.consts[f"c0{layer}"].astype(np.float64) / 2.0**cs
    return p


def float_states(op: Op, params: dict[str, np.ndarray], x_real: np.ndarray) -> np.ndarray:
    """The last layer's hidden state at every step, (N, T, H), float64 torch."""
    xt = torch.from_numpy(x_real)
    layers = op.attrs["layers"]
    flat = [torch.from_numpy(params[f"{k}{layer}"]) for layer in range(layers)
            for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
    n = xt.shape[0]

    def init(key: str) -> torch.Tensor:
        s = torch.stack([torch.from_numpy(params[f"{key}{layer}"]) for layer in range(layers)])
        return s[:, None, :].expand(-1, n, -1).contiguous()

    with torch.no_grad():
        if op.kind == "gru":
            out, _ = torch.gru(xt, init("h0"), flat, True, layers, 0.0, False, False, True)
        else:
            out, _, _ = torch.lstm(xt, (init("h0"), init("c0")), flat, True, layers, 0.0,
                                   False, False, True)
    return out.numpy()


def identity_output(op: Op) -> None:
    """Make the op output its Q0.15 state unchanged (int16, multiplier 1): for tests that
    compare the state itself."""
    op.attrs.update(out_multiplier=2**30, out_shift=1, output_zero_point=0, act_min=-32768,
                    act_max=32767)


def input_qparams(info) -> QParams:
    bits = 16 if info.dtype == "int16" else 8
    return QParams(scale=[info.scale], zero_point=[info.zero_point], bits=bits,
                   signed=info.dtype != "uint8")
