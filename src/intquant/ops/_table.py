"""The per-op table of ``docs/ops.md``, generated from the registry so it cannot drift.

``python -m intquant.ops._table > docs/ops.md`` writes it; a test checks the file equals
:func:`ops_markdown` (regenerate after adding or changing an op).
"""

from __future__ import annotations

import sys

from .registry import FLOAT_OPS, OPS, OpDef


def _onnx_cell(d: OpDef) -> str:
    """Requantizing ops have a QDQ form (float requantization) and an exact integer form; ops
    that move or select raw values export one form, exact in both modes."""
    if d.to_onnx is None:
        return "none"
    if d.to_onnx_int is not None:
        return "QDQ, or exact integer (`requant=\"integer\"`)"
    return "exact (raw values)"


def _lowered_from(kind: str) -> str:
    names = [f"`{n}`" for n, f in FLOAT_OPS.items() if kind in f.lowers_to]
    return ", ".join(names) if names else "(inserted by lowering)"


def ops_markdown() -> str:
    """docs/ops.md: one row per IntGraph op kind, one per float-graph op."""
    lines = [
        "# Op table",
        "",
        "Generated from the op registry (`python -m intquant.ops._table > docs/ops.md`); a test",
        "keeps this file equal to the registry. Each op kind lives in `src/intquant/ops/<kind>.py`",
        "(spec, NumPy reference, lowering, C binding, ONNX export), its kernel in",
        "`src/intquant/codegen/runtime/iq_<kind>.c` and its tests in `tests/ops/test_<kind>.py`:",
        "reference vs float PyTorch, C vs reference on the host (-O2 and ASan/UBSan) and on an",
        "emulated Cortex-M0, and hand-checkable goldens. See `docs/adding-an-op.md`.",
        "",
        "## IntGraph op kinds",
        "",
        "| op | what it computes | activation dtypes | C runtime files | ONNX export | "
        "lowered from |",
        "|---|---|---|---|---|---|",
    ]
    for kind in sorted(OPS):
        d = OPS[kind]
        files = ", ".join(f"`{f}`" for f in d.c_files) or "none (an alias: no code)"
        lines.append(
            f"| `{kind}` | {d.summary} | {', '.join(d.dtypes)} | {files} | {_onnx_cell(d)} | "
            f"{_lowered_from(kind)} |"
        )
    lines += [
        "",
        "## Float-graph ops (what capture produces)",
        "",
        "| float op | meaning | lowers to | keeps input format | fusable activation | weighted |",
        "|---|---|---|---|---|---|",
    ]
    yes = {True: "yes", False: ""}
    for name in sorted(FLOAT_OPS):
        f = FLOAT_OPS[name]
        kinds = ", ".join(f"`{k}`" for k in f.lowers_to)
        lines.append(
            f"| `{name}` | {f.summary} | {kinds} | {yes[f.same_format]} | {yes[f.fusable]} | "
            f"{yes[f.weighted]} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(ops_markdown())
