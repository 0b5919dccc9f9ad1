"""The onnx package's backend test data (a suite we did not write) through ``from_onnx``: every
case the conformance table lists as passing still matches the suite's stored outputs within the
suite's tolerance, and the others are still refused with UnsupportedOnnxError (never a crash).
The table is ``benchmarks/conformance.md``, written by ``python benchmarks/onnx_conformance.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "onnx_conformance.py"
_spec = importlib.util.spec_from_file_location("onnx_conformance", _PATH)
conf = importlib.util.module_from_spec(_spec)
sys.modules["onnx_conformance"] = conf  # dataclasses look their module up here
_spec.loader.exec_module(conf)

EXPECTED = conf.read_table()
FAST_LIGHT = {"squeezenet"}  # the other 224x224 light models take seconds each: slow


def _param(case):
    slow = case.suite == "light" and case.name not in FAST_LIGHT
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(case, id=f"{case.suite}/{case.name}", marks=marks)


CASES = [_param(c) for c in conf.list_cases()]


def test_table_covers_every_case():
    assert {(c.values[0].suite, c.values[0].name) for c in CASES} == set(EXPECTED)
    assert "fail" not in EXPECTED.values()
    assert list(EXPECTED.values()).count("pass") >= 50


@pytest.mark.parametrize("case", CASES)
def test_conformance_case(case):
    result = conf.run_case(case)
    assert result.status == EXPECTED[(case.suite, case.name)], result.detail
