"""gru: nn.GRU / GRUCell loops as one integer op (src/intquant/ops/gru.py, iq_gru.c).

Shared checks (user forms, ONNX import, validation, streaming) live in recurrent_checks.py; the
user-form models and the float reference of an op's own parameters in tests/recurrent_models.py.
"""

from __future__ import annotations

import numpy as np
import pytest

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
def test_gru_matches_float_gru_with_its_own_parameters(dtype: str) -> None:
    RC.assert_state_matches_float("gru", dtype)


@pytest.mark.parametrize("form", list(RM.USER_FORMS))
def test_gru_matches_float_user_forms_captured_from_torch_export(form: str) -> None:
    RC.assert_user_form_matches_float("gru", form)


@pytest.mark.parametrize("form", RC.ONNX_FORMS)
def test_gru_matches_float_onnx_import_equals_torch_export(form: str) -> None:
    RC.assert_onnx_form_equals_export_form("gru", form)


def test_gru_onnx_cell_loop_slice_squeeze_steps_equal_torch_export() -> None:
    RC.assert_dynamo_forms_equal_export_form("gru", "cell_loop_select", RC.slice_squeeze_steps)


@pytest.mark.parametrize("case,build,message", RC.onnx_cell_refusal_cases("gru"),
                         ids=lambda v: v if isinstance(v, str) and " " not in v else "")
def test_gru_onnx_cell_loop_refusals_name_one_node(case: str, build, message: str) -> None:
    RC.assert_onnx_cell_loop_refused(build, message)


# ---- (b) validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("layers,mutate,message", RC.common_validation_cases("gru"))
def test_gru_validation_messages(layers: int, mutate, message: str) -> None:
    assert_rejected(RC.validation_graph("gru", layers), mutate, message)


# ---- (c) golden -------------------------------------------------------------------------------


def test_gru_golden_one_unit_one_step() -> None:
    """hidden 1, input x = 32 (int8, zero point 0), every multiplier 2^30 · 2^1 = exactly 1, so
    each gate term is its accumulator in Q3.12; h0 = 16384 (0.5); output = h (int16 Q0.15).

    Gx = (4·32, −4·32, 8·32 + 64) = (128, −128, 320); Gh = (0, 0, 1·16384 − 64) = (0, 0, 16320).
    r = σ-table at 128: u = 32896, knot 257 (f = 0) = round(σ(1/32)·2^15) = 16640.
    z = σ-table at −128: knot 255 = round(σ(−1/32)·2^15) = 16128.
    tanh argument 320 + (16640·16320 + 2^14 >> 15) = 320 + 8288 = 8608: u = 41376, knot 323,
    f = 32; tanh knots 323, 324 = round(tanh(2.09375)·2^15), round(tanh(2.125)·2^15) = 31788,
    31846 → n = 31788 + ((58·32 + 64) >> 7) = 31803.
    h' = 31803 + (16128·(16384 − 31803) + 2^14 >> 15) = 31803 − 7589 = 24214."""
    x = TensorInfo("x", (1, 1), "int8", 0.05, 0)
    y = TensorInfo("y", (1,), "int16", 2.0**-15, 0)
    from intquant.ops import _recurrent as R

    ones = np.full(3, 2**30, np.int32)
    consts = {
        "w_ih0": np.array([[4], [-4], [8]], np.int8), "w_hh0": np.array([[0], [0], [1]], np.int8),
        "bias_x0": np.array([0, 0, 64], np.int32), "bias_h0": np.array([0, 0, -64], np.int32),
        "mult_x0": ones, "shift_x0": np.ones(3, np.int32), "mult_h0": ones,
        "shift_h0": np.ones(3, np.int32), "h00": np.array([16384], np.int16),
        "sigmoid": R.gate_table("sigmoid"), "tanh": R.gate_table("tanh"),
    }
    attrs = {"hidden_size": 1, "layers": 1, "sequence": 0, "input_zero_point": 0,
             "output_zero_point": 0, "act_min": -32768, "act_max": 32767,
             "out_multiplier": 2**30, "out_shift": 1, "rounding": "double"}
    g = one_op_graph("gru", x, y, attrs, consts)
    assert run(g, np.array([[[32]]], np.int8)).tolist() == [[24214]]


def test_gru_golden_tables_at_knots() -> None:
    """The tables hold round(f(g)·2^15) at g = 128·i − 32768 (Q3.12): σ(0) = 0.5 → 16384,
    σ(±8) → 32757 / 11 (σ(8) = 0.999665), tanh(0) = 0, tanh(±8) = ±0.99999977 → ±32767."""
    from intquant.ops import _recurrent as R

    s, t = R.gate_table("sigmoid"), R.gate_table("tanh")
    assert (s[256], s[0], s[512], t[256], t[0], t[512]) == (16384, 11, 32757, 0, -32767, 32767)


# ---- (d) C ------------------------------------------------------------------------------------

test_gru_c_host_equals_reference = c_host_test("gru")
test_gru_c_m0_equals_reference = c_m0_test("gru")


@pytest.mark.parametrize("form", RC.STREAM_FORMS)
def test_gru_c_host_stream_equals_whole_sequence(form: str, tmp_path) -> None:
    RC.assert_stream_host_equals_whole_sequence("gru", form, tmp_path)


def test_gru_c_m0_stream_equals_reference(tmp_path) -> None:
    RC.assert_stream_m0_equals_reference("gru", tmp_path)


def test_gru_onnx_cell_loop_c_host_equals_interpreter(tmp_path) -> None:
    RC.assert_onnx_cell_loop_c_host_equals_interpreter("gru", tmp_path)


# ---- (e) ONNX ---------------------------------------------------------------------------------

test_gru_onnx_integer_export_is_bit_exact = onnx_export_test("gru")
