"""The op registry: every op kind is complete, documented, tested by category in its own module
(tests/ops/test_<kind>.py), and the integer side stays torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib import resources
from pathlib import Path

from intquant.ops import FLOAT_OPS, OPS
from intquant.ops._table import ops_markdown

from .conftest import TEST_CATEGORIES

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


# ----------------------------------------------------------------------------------------------
# Every kind has its test module, with every category of test (docs/adding-an-op.md)
# ----------------------------------------------------------------------------------------------

HERE = Path(__file__).resolve().parent


def _test_functions(source: str) -> dict[str, ast.FunctionDef]:
    """Top-level ``test_*`` functions of a module's source."""
    tree = ast.parse(source)
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)
            and n.name.startswith("test_")}


def convention_gaps(kind: str, source: str, exports_onnx: bool) -> list[str]:
    """What tests/ops/test_<kind>.py lacks or breaks of the naming convention: a test of every
    category in TEST_CATEGORIES (``test_<kind>_<category>`` or ``..._<category>_*``), the ONNX
    one a refusal test for a kind without export, every test named after the kind, none
    skipped or expected to fail."""
    tests = _test_functions(source)
    gaps = [f"{name}: not named test_{kind}_*" for name in tests
            if not name.startswith(f"test_{kind}_")]
    for category, meaning in TEST_CATEGORIES.items():
        prefix = f"test_{kind}_{category}"
        if category == "onnx" and not exports_onnx:
            prefix = f"test_{kind}_onnx_export_is_refused"
        if not any(n == prefix or n.startswith(prefix + "_") for n in tests):
            gaps.append(f"no {prefix}* test ({meaning})")
    for name, fn in tests.items():
        for deco in fn.decorator_list:
            text = ast.unparse(deco)
            if "skip" in text or "xfail" in text:
                gaps.append(f"{name}: marked {text}")
    return gaps


def test_every_kind_has_a_test_module_with_every_category_of_test():
    """A registered kind without tests/ops/test_<kind>.py, or missing a category of test,
    fails here (the list of what is missing says what to write)."""
    gaps = {}
    for kind, d in sorted(OPS.items()):
        path = HERE / f"test_{kind}.py"
        if not path.is_file():
            gaps[kind] = [f"no {path.relative_to(ROOT)}"]
            continue
        found = convention_gaps(kind, path.read_text(), exports_onnx=d.to_onnx is not None)
        if found:
            gaps[kind] = found
    assert not gaps, gaps


def test_every_op_test_module_is_a_registered_kind():
    modules = {p.stem[len("test_"):] for p in HERE.glob("test_*.py")} - {"registry"}
    assert modules == set(OPS), modules ^ set(OPS)


def test_convention_check_finds_what_it_must():
    """The check above is not vacuous: a module lacking categories, with a stray name or a
    skipped test, is reported; a complete one is not."""
    complete = "\n".join(f"def test_k_{c}_x(): pass" for c in TEST_CATEGORIES)
    assert convention_gaps("k", complete, exports_onnx=True) == []
    gaps = convention_gaps("k", complete, exports_onnx=False)
    assert gaps == [f"no test_k_onnx_export_is_refused* test ({TEST_CATEGORIES['onnx']})"]
    partial = (
        "import pytest\n"
        "def test_k_matches_float(): pass\n"
        "def test_k_golden_a(): pass\n"
        "def test_other_thing(): pass\n"
        "@pytest.mark.skip(reason='later')\n"
        "def test_k_c_host_x(): pass\n"
        "def test_k_c_hostile(): pass\n"
    )
    gaps = convention_gaps("k", partial, exports_onnx=True)
    assert "test_other_thing: not named test_k_*" in gaps
    assert "test_k_c_host_x: marked pytest.mark.skip(reason='later')" in gaps
    missing = sorted(g.split()[1] for g in gaps if g.startswith("no "))
    assert missing == ["test_k_c_m0*", "test_k_onnx*", "test_k_validation*"]
