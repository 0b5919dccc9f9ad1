"""The checks tests/ops/test_gru.py and tests/ops/test_lstm.py share (each module instantiates
them under its own kind's names): the integer op against float PyTorch on the op's own
parameters, the user forms of nn.GRU / nn.LSTM / cell loops captured from torch.export and from
ONNX, validation mutations, and the streaming C API (``<name>_reset`` / ``<name>_step``) against
the whole-sequence run and the interpreter on every prefix.
"""

from __future__ import annotations

import dataclasses
import io
import re
import warnings

import numpy as np
import onnx
import pytest
import torch

import intgraph_factory as F
import intquant
import recurrent_models as RM
from intquant.codegen import export_c
from intquant.codegen.stream import emulate_stream, reference_frames, run_stream_host
from intquant.codegen.toolchain import compile_and_run_host
from intquant.graph.onnx_import import UnsupportedOnnxError, from_onnx
from intquant.interpreter import run
from intquant.intgraph import IntGraph

from .conftest import require_tool, seeded_rng

# Max |h_int / 2^15 − h_float| over a (9-step, 1-2 layer) sequence when the float layer has the
# op's own parameters: measured 1.9e-3 (gru) and 5.5e-3 (lstm) over the seeds below (the gate
# tables are within 1 / 3 LSB of Q0.15, each gate term is rounded to Q3.12 and h to Q0.15 at
# every step; the errors carry over the steps). The bound leaves about 2x margin; a wrong gate
# order, a missing rounding term or a wrong scale moves h by > 0.05.
OWN_PARAMETER_BOUND = 0.01
OWN_PARAMETER_SEEDS = range(6)

# SQNR of the quantized user-form model vs the float model on the calibration distribution:
# measured 39.5 - 48 dB at W8A8 (see benchmarks/arch_rnn.py for the zoo models): the target of
# issue 13 is 30 dB.
W8A8_SQNR_FLOOR_DB = 30.0


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    err = ref - np.asarray(out, np.float64)
    return float(10 * np.log10((ref**2).sum() / max((err**2).sum(), 1e-30)))


# ----------------------------------------------------------------------------------------------
# (a) the integer op vs float PyTorch with the op's own parameters
# ----------------------------------------------------------------------------------------------


def state_graph(kind: str, dtype: str, seed: int) -> IntGraph:
    """A random op over (9, 5) whose output is its Q0.15 state at every step (int16)."""
    rng = seeded_rng("own", kind, dtype, seed)
    b = F.GraphBuilder(rng, (9, 5), dtype)
    y = F.recurrent_op(b, b.input, kind, 7, layers=1 + seed % 2, sequence=True,
                       out_dtype="int16", gate_spread=0.8, rounding=("double", "single")[seed % 2],
                       cell_shift=11 if kind == "lstm" else None)
    g = b.graph()
    RM.identity_output(g.ops[0])
    g.tensors[y] = dataclasses.replace(g.tensors[y], scale=2.0**-15, zero_point=0)
    return g.validate()


def assert_state_matches_float(kind: str, dtype: str) -> None:
    """Every step's hidden state of the integer op vs torch.gru / torch.lstm in float64 on the
    dequantized input, with the weights, biases and initial states the op stands for
    (``recurrent_models.own_parameters``): the op's arithmetic error alone."""
    worst = 0.0
    for seed in OWN_PARAMETER_SEEDS:
        g = state_graph(kind, dtype, seed)
        op, info = g.ops[0], g.tensors[g.input]
        x = F.random_input(seeded_rng("own-x", kind, dtype, seed), g, 32)
        ours = run(g, x).astype(np.float64) / 2**15
        x_real = info.scale * (x.astype(np.float64) - info.zero_point)
        ref = RM.float_states(op, RM.own_parameters(op, info.scale), x_real)
        assert np.abs(ref).max() > 0.3  # the states move: not a trivially small case
        worst = max(worst, float(np.abs(ours - ref).max()))
    assert worst <= OWN_PARAMETER_BOUND, f"max |h - h_float| = {worst:.4g}"


def quantize_form(kind: str, form: str, act_bits: int = 8, onnx_model: bool = False):
    """(quantized model, float module, calibration inputs) of one user form."""
    module = RM.make(kind, form)
    x = RM.sequences(64)
    source = from_onnx(onnx_model_of(module, x)) if onnx_model else module
    cfg = intquant.Config(act_bits=act_bits, weight_bits=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export: "attributes assigned during export"
        q = intquant.quantize(source, x, cfg, progress=False)
    return q, module, x


def assert_user_form_matches_float(kind: str, form: str) -> None:
    """The form as written (torch.export) is one ``kind`` op (plus the head), and the
    quantized model is within the W8A8 SQNR floor of the float model."""
    q, module, x = quantize_form(kind, form)
    kinds = [op.kind for op in q.graph.ops]
    assert kinds.count(kind) == 1 and set(kinds) <= {kind, "fully_connected"}, kinds
    with torch.no_grad():
        ref = module(x).numpy()
    out = q.dequantize_output(q.run(q.quantize_input(x)))
    assert out.shape == ref.shape
    assert sqnr_db(ref, out) >= W8A8_SQNR_FLOOR_DB


# Every form: nn.GRU / nn.LSTM become ONNX GRU / LSTM nodes, cell loops the unrolled steps
# (Gather / Split / Gemm / Sigmoid / Tanh / Mul / Add / Sub at every step) that the importer
# folds back into one recurrent op (graph/onnx_import.py, "GRUCell / LSTMCell loops").
ONNX_FORMS = list(RM.USER_FORMS)


def onnx_model_of(module: torch.nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    """torch.onnx's export of the module (TorchScript exporter, opset 17, dynamic batch)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x[:1],), buf, dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    return onnx.load_from_string(buf.getvalue())


def assert_onnx_form_equals_export_form(kind: str, form: str) -> None:
    """The ONNX file of the same module (torch.onnx, opset 17) quantizes to the same integer
    model as torch.export: the same ops, equal outputs on every sample; and that model is
    within the W8A8 SQNR floor of the float module."""
    q_onnx, module, x = quantize_form(kind, form, onnx_model=True)
    q_export, _, _ = quantize_form(kind, form)
    assert [op.kind for op in q_onnx.graph.ops] == [op.kind for op in q_export.graph.ops]
    xi = q_export.quantize_input(x)
    out = q_onnx.run(q_onnx.quantize_input(x))
    np.testing.assert_array_equal(out, q_export.run(xi))
    with torch.no_grad():
        ref = module(x).numpy()
    assert sqnr_db(ref, q_onnx.dequantize_output(out)) >= W8A8_SQNR_FLOOR_DB


def assert_onnx_cell_loop_c_host_equals_interpreter(kind: str, tmp_path) -> None:
    """Two stacked cell loops imported from ONNX, in C on the host (-O2 and ASan/UBSan) ==
    the interpreter."""
    q, _, x = quantize_form(kind, "cell_loop_unbind_stacked", onnx_model=True)
    assert [op.kind for op in q.graph.ops] == [kind, "fully_connected"]
    assert q.graph.ops[0].attrs["layers"] == 2  # the two stacked loops: one two-layer op
    xi = q.quantize_input(x[:16])
    out_dir = export_c(q.graph, tmp_path / "c", name="net").out_dir
    ref = run(q.graph, xi)
    np.testing.assert_array_equal(compile_and_run_host(out_dir, xi, opt="-O2"), ref)
    np.testing.assert_array_equal(
        compile_and_run_host(out_dir, xi[:4], opt="-O1", sanitize=True), ref[:4])


# ---- the forms torch.onnx's dynamo exporter writes (seen with onnxscript 0.7.2, which is not a
# dependency): the TorchScript export of the same module, edited into them ---------------------


def _add_const(model: onnx.ModelProto, name: str, value) -> str:
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), name))
    return name


def slice_squeeze_steps(model: onnx.ModelProto) -> onnx.ModelProto:
    """x[:, t] as Squeeze(Slice(x, t, t + 1, axis 1), 1) instead of Gather(x, t, axis=1)."""
    nodes = []
    for k, n in enumerate(model.graph.node):
        if n.op_type != "Gather" or n.input[0] != "x":
            nodes.append(n)
            continue
        idx = next(onnx.numpy_helper.to_array(c.attribute[0].t) for c in model.graph.node
                   if c.output[0] == n.input[1])
        start = _add_const(model, f"start{k}", [int(idx)])
        end = _add_const(model, f"end{k}", [int(idx) + 1])
        axis = _add_const(model, f"axis{k}", [1])
        nodes += [onnx.helper.make_node("Slice", ["x", start, end, axis], [f"slice{k}"]),
                  onnx.helper.make_node("Squeeze", [f"slice{k}", axis], [n.output[0]])]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def fold_first_hidden_gates(model: onnx.ModelProto, offset: float = 0.0) -> onnx.ModelProto:
    """The first LSTM step's h0·W_hhᵀ + b_hh as a constant (b_hh + offset: zeros h0 when the
    offset is 0), as the dynamo exporter folds it for a zeros h0 at batch size 1."""
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm" and
                n.input[1] == "cell.weight_hh")
    b_hh = next(onnx.numpy_helper.to_array(i) for i in model.graph.initializer
                if i.name == gemm.input[2])
    model.graph.node.remove(gemm)
    _add_const(model, gemm.output[0], (b_hh + np.float32(offset))[None, :])
    return model


def assert_dynamo_forms_equal_export_form(kind: str, form: str, edit) -> None:
    """The edited ONNX file quantizes to the same integer model as torch.export."""
    module = RM.make(kind, form)
    x = RM.sequences(64)
    model = edit(onnx_model_of(module, x))
    cfg = intquant.Config(act_bits=8, weight_bits=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q_onnx = intquant.quantize(from_onnx(model), x, cfg, progress=False)
        q_export = intquant.quantize(module, x, cfg, progress=False)
    assert [op.kind for op in q_onnx.graph.ops] == [kind, "fully_connected"]
    np.testing.assert_array_equal(q_onnx.run(q_onnx.quantize_input(x)),
                                  q_export.run(q_export.quantize_input(x)))


# ---- cell loops the ONNX importer refuses: one message, at one node --------------------------


class _Loop(torch.nn.Module):
    """A cell loop over x (N, 9, FEATURES) with one thing changed (``variant``)."""

    def __init__(self, kind: str, variant: str):
        super().__init__()
        cls = torch.nn.LSTMCell if kind == "lstm" else torch.nn.GRUCell
        self.kind, self.variant = kind, variant
        self.cell = cls(RM.FEATURES, RM.HIDDEN)
        self.init = torch.nn.Linear(RM.FEATURES, RM.HIDDEN)
        self.fc = torch.nn.Linear(RM.HIDDEN, RM.CLASSES)

    def forward(self, x):
        h = torch.zeros(x.shape[0], RM.HIDDEN)
        if self.variant == "state_from_input":
            h = torch.tanh(self.init(x[:, 0]))
        state = (h, torch.zeros_like(h)) if self.kind == "lstm" else h
        order = range(x.shape[1])
        if self.variant == "reversed":
            order = reversed(order)
        mids = []
        for t in order:
            state = self.cell(x[:, t], state)
            mids.append(state[0] if self.kind == "lstm" else state)
        if self.variant == "middle_state_used":
            return self.fc(mids[-1]) + self.fc(mids[3])
        if self.variant == "cell_state_used":
            return self.fc(state[0]) + self.fc(state[1])
        return self.fc(mids[-1])


def _first_node(model: onnx.ModelProto, op: str, pick=lambda n: True) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == op and pick(n))


def _swap_sub_operands(model: onnx.ModelProto) -> None:
    """GRU step 0 computes (n − h)·z + n instead of (h − n)·z + n."""
    sub = _first_node(model, "Sub")
    sub.input[0], sub.input[1] = sub.input[1], sub.input[0]


def _relu_cell_gate(model: onnx.ModelProto) -> None:
    """LSTM step 0's cell gate g is a Relu instead of a Tanh."""
    split = _first_node(model, "Split", lambda n: len(n.output) == 4)
    _first_node(model, "Tanh", lambda n: n.input[0] == split.output[2]).op_type = "Relu"


def _exported(kind: str, variant: str, mutate=None):
    def build() -> onnx.ModelProto:
        torch.manual_seed(0)
        model = onnx_model_of(_Loop(kind, variant).eval(), RM.sequences(2))
        if mutate is not None:
            mutate(model)
        return model
    return build


def onnx_cell_refusal_cases(kind: str) -> list:
    """(case id, ONNX model builder, message regex) of cell loops the ONNX importer refuses."""
    what = {"gru": "GRUCell", "lstm": "LSTMCell"}[kind]
    loop = f"a {what} loop that intquant cannot run as one recurrent layer: "
    cases = [
        ("middle_state_used", _exported(kind, "middle_state_used"),
         loop + r"the state after step 3 is used by Gemm"),
        ("reversed", _exported(kind, "reversed"),
         loop + r"it does not read every step 0 \.\. 8 of the sequence in order"),
        ("state_from_input", _exported(kind, "state_from_input"),
         rf"the initial h of the {what} loop \('[^']+'\) is not a constant"),
    ]
    if kind == "lstm":
        cases += [
            ("cell_state_used", _exported(kind, "cell_state_used"),
             loop + r"the cell state after step 8 is used outside the loop"),
            ("folded_nonzero_h0", _exported(
                kind, "plain", lambda m: fold_first_hidden_gates(m, offset=0.5)),
             loop + r"the exporter folded its first step's hidden-side gates into a constant "
             r"that is not b_hh"),
            ("relu_cell_gate", _exported(kind, "plain", _relu_cell_gate),
             r"splits a Gemm into 4 equal parts like a LSTMCell step, but gate 2 of the Split "
             r"is not used by one Tanh only"),
        ]
    else:
        cases.append(("other_update", _exported(kind, "plain", _swap_sub_operands),
                      r"splits a Gemm into 3 equal parts like a GRUCell step, but the new gate n "
                      r"is not used as h − n and \+ n"))
    return cases


def assert_onnx_cell_loop_refused(build, message: str) -> None:
    """Importing the model fails with exactly one problem: ``message``, at a named node."""
    with pytest.raises(UnsupportedOnnxError) as e:
        from_onnx(build())
    text = str(e.value)
    assert text.startswith("1 unsupported node(s): node '"), text
    assert re.search(message, text), text


# ----------------------------------------------------------------------------------------------
# (b) validation
# ----------------------------------------------------------------------------------------------


def validation_graph(kind: str, layers: int = 1) -> IntGraph:
    return F.ONE_OP_BUILDERS[kind](seeded_rng("validation", kind, layers), steps=4, features=3,
                                   hidden=5, layers=layers, sequence=False)


def common_validation_cases(kind: str) -> list:
    """(graph layers, mutation, message) the two kinds share."""
    rows = {"gru": 15, "lstm": 20}[kind]
    return [
        (1, F.set_field(0, "attrs", "layers", 2), "missing const 'w_ih1'"),
        (2, F.set_field(0, "attrs", "layers", 1), r"const 'bias_h1' of layer 1, but 'layers' = 1"),
        (1, F.set_field(0, "attrs", "layers", 5), "attr 'layers'"),
        (1, F.set_field(0, "attrs", "hidden_size", 6), "has shape"),
        (1, F.set_field(0, "attrs", "sequence", 1), r"output tensor 't1' has shape \(5,\)"),
        (1, F.set_field(0, "attrs", "rounding", "pow2"), "rounding"),
        (1, F.set_field(0, "consts", "w_ih0", np.zeros((rows, 4), np.int8)),
         rf"const 'w_ih0' has shape \({rows}, 4\), expected \({rows}, 3\)"),
        (1, F.cast_const(0, "w_hh0", np.int16), "w_hh0"),
        (1, F.edit_const(0, "bias_x0", lambda a: a[:-1]), f"'bias_x0' has {rows - 1} entries"),
        (1, F.edit_const(0, "shift_h0", lambda a: F.set_item(a, 0, 40)), "'shift_h0' values"),
        (1, F.edit_const(0, "mult_x0", lambda a: F.set_item(a, 0, -1)), "'mult_x0' values"),
        (1, F.edit_const(0, "h00", lambda a: F.set_item(a, 0, -32768)),
         r"'h00' values must lie in \[-32767, 32767\]"),
        (1, F.edit_const(0, "bias_h0", lambda a: F.set_item(a, 0, 2**31 - 1)),
         r"accumulator bound \d+ of const 'w_hh0' >= 2\^31"),
        (1, F.edit_const(0, "sigmoid", lambda a: a[:-1]), "'sigmoid' has 512 entries, expected"),
        (1, F.edit_const(0, "sigmoid", lambda a: F.set_item(a, 0, -1)),
         r"'sigmoid' values must lie in \[0, 32767\]"),
        (1, F.edit_const(0, "tanh", lambda a: F.set_item(a, 0, -32768)),
         r"'tanh' values must lie in \[-32767, 32767\]"),
        (1, F.set_tensor(0, shape=(4, 3, 1)), r"input must have shape \(T, F\)"),
    ]


# ----------------------------------------------------------------------------------------------
# (d) the streaming C API
# ----------------------------------------------------------------------------------------------

STREAM_FORMS = ("two_layers_h_n_last", "whole_sequence")


def stream_case(kind: str, form: str, tmp_path, act_bits: int = 8):
    """(graph, integer inputs, export dir) of a quantized user form."""
    q, _, x = quantize_form(kind, form, act_bits=act_bits)
    res = export_c(q.graph, tmp_path / "c", name="net")
    return q.graph, q.quantize_input(x[:6]), res.out_dir


def assert_stream_host_equals_whole_sequence(kind: str, form: str, tmp_path) -> None:
    """After <name>_reset and T calls of <name>_step the output equals <name>_run on the whole
    sequence; after t frames it equals the interpreter on the first t frames (host, -O2 and
    ASan/UBSan)."""
    g, x, out_dir = stream_case(kind, form, tmp_path)
    frames = reference_frames(g, x)
    whole = compile_and_run_host(out_dir, x, opt="-O2")
    np.testing.assert_array_equal(whole, run(g, x))
    for sanitize in (False, True):
        got = run_stream_host(out_dir, x, opt="-O1" if sanitize else "-O2", sanitize=sanitize)
        np.testing.assert_array_equal(got, frames)
    last = frames[:, -1]
    if g.output in _time_outputs(g):
        np.testing.assert_array_equal(frames[:, :, 0], whole)
    else:
        np.testing.assert_array_equal(last, whole)


def _time_outputs(g: IntGraph) -> set[str]:
    from intquant.codegen.stream import time_tensors

    return time_tensors(g)


def assert_stream_m0_equals_reference(kind: str, tmp_path) -> None:
    """The same stream, frame by frame, on unicorn's Cortex-M0: every step output equals the
    interpreter on the prefix; instructions and cycles are counted per frame."""
    require_tool("arm-none-eabi-gcc")
    g, x, out_dir = stream_case(kind, "two_layers_h_n_last", tmp_path, act_bits=16)
    cost = emulate_stream(out_dir, x[:3])
    np.testing.assert_array_equal(cost.outputs, reference_frames(g, x[:3]))
    assert min(cost.per_frame) > 0 and cost.reset > 0
    # every Cortex-M0 instruction takes at least one cycle
    assert all(c >= n for c, n in zip(cost.per_frame_cycles, cost.per_frame, strict=True))
