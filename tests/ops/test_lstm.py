"""lstm: nn.LSTM / LSTMCell loops as one integer op with a 16-bit cell state
(src/intquant/ops/lstm.py, iq_lstm.c).

Shared checks (user forms, ONNX import, validation, streaming) live in recurrent_checks.py; the
user-form models and the float reference of an op's own parameters in tests/recurrent_models.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import intgraph_factory as F
import recurrent_models as RM
from intquant.interpreter import run
from intquant.intgraph import TensorInfo

from . import recurrent_checks as RC
from .conftest import (
    DTYPES,
    assert_rejected,
    c_host_test,
    c_m0_test,
    one_op_graph,
    onnx_export_test,
)

# ---- (a) vs float PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_matches_float_lstm_with_its_own_parameters(dtype: str) -> None:
    RC.assert_state_matches_float("lstm", dtype)


@pytest.mark.parametrize("form", list(RM.USER_FORMS))
def test_lstm_matches_float_user_forms_captured_from_torch_export(form: str) -> None:
    RC.assert_user_form_matches_float("lstm", form)


@pytest.mark.parametrize("form", RC.ONNX_FORMS)
def test_lstm_matches_float_onnx_import_equals_torch_export(form: str) -> None:
    RC.assert_onnx_form_equals_export_form("lstm", form)


def test_lstm_onnx_cell_loop_slice_squeeze_steps_equal_torch_export() -> None:
    RC.assert_dynamo_forms_equal_export_form("lstm", "cell_loop_select", RC.slice_squeeze_steps)


def test_lstm_onnx_cell_loop_folded_first_hidden_gates_equal_torch_export() -> None:
    RC.assert_dynamo_forms_equal_export_form("lstm", "cell_loop_select",
                                             RC.fold_first_hidden_gates)


@pytest.mark.parametrize("case,build,message", RC.onnx_cell_refusal_cases("lstm"),
                         ids=lambda v: v if isinstance(v, str) and " " not in v else "")
def test_lstm_onnx_cell_loop_refusals_name_one_node(case: str, build, message: str) -> None:
    RC.assert_onnx_cell_loop_refused(build, message)


# ---- (b) validation ---------------------------------------------------------------------------

LSTM_CASES = [
    (1, F.set_field(0, "attrs", "cell_shifts", [16]), "cell_shifts"),
    (2, F.set_field(0, "attrs", "cell_shifts", [12]), "cell_shifts"),
    (1, F.edit_const(0, "c00", lambda a: a[:-1]), "'c00' has 4 entries, expected 5"),
    (1, F.cast_const(0, "c00", np.int32), "c00"),
]


@pytest.mark.parametrize("layers,mutate,message",
                         RC.common_validation_cases("lstm") + LSTM_CASES)
def test_lstm_validation_messages(layers: int, mutate, message: str) -> None:
    assert_rejected(RC.validation_graph("lstm", layers), mutate, message)


# ---- (c) golden -------------------------------------------------------------------------------


def test_lstm_golden_one_unit_one_step() -> None:
    """hidden 1, x = 32 (int8, zero point 0), every multiplier exactly 1 (2^30 · 2^1), h0 = 0,
    W_hh = 0, c0 = 4096 with cell_shift 12 (c0 = 1.0, the cell already in Q3.12); output h.

    Gate sums (i, f, g, o) = (4·32, −4·32, 8·32 + 100, 2·32) = (128, −128, 356, 64).
    i = σ knot 257 = 16640; f = σ knot 255 = 16128;
    g: u = 33124, knot 258, f = 100; tanh knots 2045, 3063 → 2045 + (1018·100 + 64 >> 7) = 2840;
    o: u = 32832, knot 256, f = 64; σ knots 16384, 16640 → 16384 + (256·64 + 64 >> 7) = 16512.
    c' = (16128·4096 + 2^14 >> 15) + (16640·2840 + 2^17 >> 18) = 2016 + 180 = 2196.
    tanh(c'): u = 34964, knot 273, f = 20; knots 15936, 16706 → 15936 + (770·20 + 64 >> 7)
    = 16056. h' = 16512·16056 + 2^14 >> 15 = 8091."""
    from intquant.ops import _recurrent as R

    x = TensorInfo("x", (1, 1), "int8", 0.05, 0)
    y = TensorInfo("y", (1,), "int16", 2.0**-15, 0)
    ones = np.full(4, 2**30, np.int32)
    consts = {
        "w_ih0": np.array([[4], [-4], [8], [2]], np.int8), "w_hh0": np.zeros((4, 1), np.int8),
        "bias_x0": np.array([0, 0, 100, 0], np.int32), "bias_h0": np.zeros(4, np.int32),
        "mult_x0": ones, "shift_x0": np.ones(4, np.int32), "mult_h0": ones,
        "shift_h0": np.ones(4, np.int32), "h00": np.array([0], np.int16),
        "c00": np.array([4096], np.int16),
        "sigmoid": R.gate_table("sigmoid"), "tanh": R.gate_table("tanh"),
    }
    attrs = {"hidden_size": 1, "layers": 1, "sequence": 0, "input_zero_point": 0,
             "output_zero_point": 0, "act_min": -32768, "act_max": 32767,
             "out_multiplier": 2**30, "out_shift": 1, "rounding": "double", "cell_shifts": [12]}
    g = one_op_graph("lstm", x, y, attrs, consts)
    assert run(g, np.array([[[32]]], np.int8)).tolist() == [[8091]]


def test_lstm_golden_cell_state_saturates_at_int16() -> None:
    """With cell_shift 15 (c in Q0.15) and c0 = 32767, f ≈ 1 and i·g ≈ 1 the new cell
    f·c + i·g ≈ 2 saturates to 32767 instead of wrapping: sat16 of the sum (spec)."""
    from intquant.ops import _recurrent as R

    x = TensorInfo("x", (1, 1), "int8", 0.05, 0)
    y = TensorInfo("y", (1,), "int16", 2.0**-15, 0)
    ones = np.full(4, 2**30, np.int32)
    big = np.array([32767, 32767, 32767, 0], np.int32)  # i, f, g at the top of the table
    consts = {
        "w_ih0": np.zeros((4, 1), np.int8), "w_hh0": np.zeros((4, 1), np.int8),
        "bias_x0": big, "bias_h0": np.zeros(4, np.int32), "mult_x0": ones,
        "shift_x0": np.ones(4, np.int32), "mult_h0": ones, "shift_h0": np.ones(4, np.int32),
        "h00": np.array([0], np.int16), "c00": np.array([32767], np.int16),
        "sigmoid": R.gate_table("sigmoid"), "tanh": R.gate_table("tanh"),
    }
    attrs = {"hidden_size": 1, "layers": 1, "sequence": 0, "input_zero_point": 0,
             "output_zero_point": 0, "act_min": -32768, "act_max": 32767,
             "out_multiplier": 2**30, "out_shift": 1, "rounding": "double", "cell_shifts": [15]}
    g = one_op_graph("lstm", x, y, attrs, consts)
    # o = σ(0) = 16384; c' = 32767 (saturated), c' in Q3.12 = 32767 + 4 >> 3 = 4096 (1.0);
    # tanh knot 288 (g = 4096) = round(tanh(1)·2^15) = 24956; h = 16384·24956 / 2^15 = 12478
    assert run(g, np.array([[[0]]], np.int8)).tolist() == [[12478]]


# ---- (d) C ------------------------------------------------------------------------------------

test_lstm_c_host_equals_reference = c_host_test("lstm")
test_lstm_c_m0_equals_reference = c_m0_test("lstm")


@pytest.mark.parametrize("form", RC.STREAM_FORMS)
def test_lstm_c_host_stream_equals_whole_sequence(form: str, tmp_path) -> None:
    RC.assert_stream_host_equals_whole_sequence("lstm", form, tmp_path)


def test_lstm_c_m0_stream_equals_reference(tmp_path) -> None:
    RC.assert_stream_m0_equals_reference("lstm", tmp_path)


def test_lstm_onnx_cell_loop_c_host_equals_interpreter(tmp_path) -> None:
    RC.assert_onnx_cell_loop_c_host_equals_interpreter("lstm", tmp_path)


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_lstm_onnx_integer_export_is_bit_exact = onnx_export_test("lstm")
