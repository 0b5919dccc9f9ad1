"""The op registry: every op kind is complete, documented, tested by category in its own module
(tests/ops/test_<kind>.py), and the integer side stays torch-free."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest

from intquant.ops import FLOAT_OPS, OPS
from intquant.ops._table import ops_markdown

from .conftest import TEST_CATEGORIES

ROOT = Path(__file__).resolve().parents[2]


def test_docs_op_table_is_generated_from_the_registry():
    """docs/ops.md cannot drift: regenerate with `python -m intquant.ops._table > docs/ops.md`."""
    assert (ROOT / "docs" / "ops.md").read_text() == ops_markdown()


# Where an op kind's name may appear as a string literal besides its own module and C file:
# capture (torch / ONNX -> op), the ops package, and these named exceptions.
KIND_LITERAL_ELSEWHERE = {
    # torch.fx's call_method target Tensor.add; the float Graph's add node the GELU-tanh
    # pattern matches (x + 0.044715·x³)
    "add": {"qat/prepare.py", "graph/activation_patterns.py"},
    "reshape": {"qat/prepare.py"},  # torch.fx's call_method target Tensor.reshape
    # float Graph nodes the activation-decomposition patterns match (x·relu6(x + 3)/6 → clamp,
    # x·sigmoid(x) → mul), not the IntGraph kinds
    "clamp": {"graph/activation_patterns.py"},
    "mul": {"graph/activation_patterns.py", "qat/prepare.py"},  # and torch.fx a * b in QAT
    "rescale": {"lower.py"},  # the lowerer core inserts requantization between formats
    "unpack_bits": {"lower.py"},  # ... and unpacks packed ±1 inputs for ops without bits_in
    "conv": {"methods/adaround.py"},  # adaround_layer(op="conv"): F.conv vs F.linear math
    # Config(act_quantizer="sign"): the QAT quantizer of that name, not the kind
    "sign": {"qat/convert.py", "qat/prepare.py", "qat/quantizers/__init__.py",
             "qat/quantizers/binary.py", "qat/recipes.py"},
}


def test_an_op_kind_is_named_only_in_its_module_its_c_file_and_capture():
    """One op, one place: ``grep -rl '"<kind>"' src/`` finds its module, its runtime file,
    capture / ONNX import, the ops package (family helpers, the float ops that lower to it)
    and the documented exceptions only."""
    import re

    src = ROOT / "src" / "intquant"
    files = [p for p in src.rglob("*") if p.suffix in (".py", ".c", ".h") and p.is_file()]
    texts = {p.relative_to(src).as_posix(): p.read_text(encoding="utf-8") for p in files}
    for kind in OPS:
        literal = re.compile(rf"[\"']{re.escape(kind)}[\"']")
        allowed = {f"ops/{kind}.py", "graph/capture.py", "graph/onnx_import.py",
                   *KIND_LITERAL_ELSEWHERE.get(kind, ())}
        found = {rel for rel, text in texts.items() if literal.search(text)}
        stray = sorted(rel for rel in found - allowed  # ops/: lowers_to, family helpers
                       if not rel.startswith(("ops/", f"codegen/runtime/iq_{kind}.")))
        assert not stray, f"{kind!r} named outside its module: {stray}"


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
NOT_RUN = {"skip", "skipif", "xfail"}


def _tests_of(module) -> dict[str, Callable]:
    """The ``test_*`` functions pytest collects from a module (written or instantiated)."""
    return {n: v for n, v in vars(module).items() if n.startswith("test_") and callable(v)}


def convention_gaps(kind: str, tests: dict[str, Callable], exports_onnx: bool) -> list[str]:
    """What tests/ops/test_<kind>.py lacks or breaks of the naming convention: a test of every
    category in TEST_CATEGORIES (``test_<kind>_<category>`` or ``..._<category>_*``), the ONNX
    one a refusal test for a kind without export; every test named after the kind (also as a
    function: an instantiated test of another kind does not count), none skipped or expected
    to fail."""
    gaps = [f"{name}: not named test_{kind}_*" for name in tests
            if not name.startswith(f"test_{kind}_")]
    gaps += [f"{name}: the function is {fn.__name__}" for name, fn in tests.items()
             if fn.__name__ != name]
    for category, meaning in TEST_CATEGORIES.items():
        prefix = f"test_{kind}_{category}"
        if category == "onnx" and not exports_onnx:
            prefix = f"test_{kind}_onnx_export_is_refused"
        if not any(n == prefix or n.startswith(prefix + "_") for n in tests):
            gaps.append(f"no {prefix}* test ({meaning})")
    for name, fn in tests.items():
        marks = {m.name for m in getattr(fn, "pytestmark", [])}
        gaps += [f"{name}: marked {m}" for m in sorted(marks & NOT_RUN)]
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
        module = importlib.import_module(f"{__package__}.test_{kind}")
        found = convention_gaps(kind, _tests_of(module), exports_onnx=d.to_onnx is not None)
        if found:
            gaps[kind] = found
    assert not gaps, gaps


def test_every_op_test_module_is_a_registered_kind():
    modules = {p.stem[len("test_"):] for p in HERE.glob("test_*.py")} - {"registry"}
    assert modules == set(OPS), modules ^ set(OPS)


def _fake_test(name: str, *marks: str) -> Callable:
    def test() -> None:
        pass

    test.__name__ = name
    for m in marks:
        test = getattr(pytest.mark, m)(test)
    return test


def test_convention_check_finds_what_it_must():
    """The check above is not vacuous: a module lacking categories, with a stray name, a
    mislabelled instantiated test or a skipped test, is reported; a complete one is not."""
    complete = {f"test_k_{c}_x": _fake_test(f"test_k_{c}_x") for c in TEST_CATEGORIES}
    assert convention_gaps("k", complete, exports_onnx=True) == []
    gaps = convention_gaps("k", complete, exports_onnx=False)
    assert gaps == [f"no test_k_onnx_export_is_refused* test ({TEST_CATEGORIES['onnx']})"]
    partial = {
        "test_k_matches_float": _fake_test("test_k_matches_float"),
        "test_k_golden_a": _fake_test("test_k_golden_a"),
        "test_other_thing": _fake_test("test_other_thing"),
        "test_k_c_host_x": _fake_test("test_k_c_host_x", "skip"),
        "test_k_c_hostile": _fake_test("test_k_c_hostile"),
        "test_k_validation_x": _fake_test("test_j_validation_x"),
    }
    gaps = convention_gaps("k", partial, exports_onnx=True)
    assert "test_other_thing: not named test_k_*" in gaps
    assert "test_k_c_host_x: marked skip" in gaps
    assert "test_k_validation_x: the function is test_j_validation_x" in gaps
    missing = sorted(g.split()[1] for g in gaps if g.startswith("no "))
    assert missing == ["test_k_c_m0*", "test_k_onnx*"]
