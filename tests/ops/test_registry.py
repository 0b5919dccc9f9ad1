"""The op registry: every op kind is complete, documented, and the integer side stays torch-free."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

from intquant.ops import FLOAT_OPS, OPS
from intquant.ops._table import ops_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_docs_op_table_is_generated_from_the_registry():
    """docs/ops.md cannot drift: regenerate with `python -m intquant.ops._table > docs/ops.md`."""
    assert (ROOT / "docs" / "ops.md").read_text() == ops_markdown()


def test_every_kind_has_its_runtime_files_and_a_c_binding():
    runtime = resources.files("intquant.codegen") / "runtime"
    for kind, d in OPS.items():
        assert d.emit_c is not None, kind
        for f in d.c_files:
            assert (runtime / f).is_file(), f"{kind}: runtime file {f} missing"
        if d.c_header is not None:
            assert d.c_header in d.c_files, kind


def test_every_float_op_lowers_to_registered_kinds():
    for name, f in FLOAT_OPS.items():
        assert f.lowers_to, name
        assert set(f.lowers_to) <= set(OPS), (name, f.lowers_to)


def test_integer_side_imports_without_torch_or_onnx():
    """numerics, IntGraph, the op registry and the interpreter run with NumPy alone."""
    code = (
        "import sys, intquant.interpreter, intquant.intgraph, intquant.ops;"
        "print(sorted(m for m in ('torch', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
