"""``python -m intquant.demo`` (``make demo``): what intquant is for, on a small real model.

Phase 1 trains (or loads from the cache) the digits CNN and shows the textbook baseline: per-
tensor max-abs weight quantization at 16, 8 and 4 bits, against float. Later phases compare
intquant's methods and the integer-only deployment on the same table.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from . import zoo
from .baseline import textbook_quantize_weights
from .data import Dataset
from .training import evaluate


@dataclass
class Row:
    """One line of the demo table."""

    method: str
    weight_bits: str
    accuracy: float
    note: str = ""


def baseline_rows(model: nn.Module, ds: Dataset, bits: Sequence[int] = (16, 8, 4)) -> list[Row]:
    """Float accuracy and textbook max-abs accuracy per weight width, on the test set."""
    rows = [Row("float32", "32", evaluate(model, ds.x_test, ds.y_test))]
    for b in bits:
        qmodel = textbook_quantize_weights(model, b)
        acc = evaluate(qmodel, ds.x_test, ds.y_test)
        rows.append(Row("textbook max-abs, per tensor", str(b), acc, "weights only"))
    return rows


def format_table(rows: Sequence[Row], reference: float | None = None) -> str:
    """Fixed-width table; the delta column is against ``reference`` (default: first row)."""
    ref = rows[0].accuracy if reference is None and rows else reference
    lines = [f"{'method':<34} {'w bits':>6} {'test acc':>9} {'Δ vs float':>11}  note"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        delta = f"{100 * (r.accuracy - ref):+.2f} pp" if ref is not None else ""
        lines.append(
            f"{r.method:<34} {r.weight_bits:>6} {100 * r.accuracy:>8.2f}% {delta:>11}  {r.note}"
        )
    return "\n".join(lines)


def phase1(progress: bool = True) -> list[Row]:
    """Train/load the digits CNN and print the textbook baseline table."""
    start = time.perf_counter()
    model, ds = zoo.get("digits_cnn", progress=progress)
    print(
        f"digits CNN: {sum(p.numel() for p in model.parameters())} parameters, "
        f"{len(ds.y_test)} test images (ready in {time.perf_counter() - start:.1f} s)\n"
    )
    rows = baseline_rows(model, ds)
    print("Phase 1 — textbook baseline: q = round(w · (2^(b-1)-1) / max|w|) per tensor")
    print(format_table(rows))
    print()
    return rows


def phase2(progress: bool = True) -> tuple[object, Dataset]:
    """Float → IntGraph → NumPy integer interpreter: textbook per-tensor vs intquant."""
    from .config import Config
    from .ptq import quantize

    model, ds = zoo.get("digits_cnn", progress=progress)
    float_acc = evaluate(model, ds.x_test, ds.y_test)
    calib = ds.x_train[:1000]
    configs = [
        ("integer-only textbook max-abs/tensor", "8", Config(
            granularity="per_tensor", calibration="maxabs", weight_calibration="maxabs",
            symmetric_activations=True)),
        ("integer-only intquant W8A8/channel", "8", Config()),
        ("integer-only intquant W4A8/channel", "4", Config(weight_bits=4)),
        ("integer-only intquant 16x8", "8", Config(act_bits=16)),
    ]
    rows = [Row("float32", "32", float_acc)]
    chosen = None
    for label, bits, cfg in configs:
        q = quantize(model, calib, cfg, progress=False)
        rows.append(Row(label, bits, q.accuracy(ds.x_test, ds.y_test), "int8/16 in, int out"))
        if chosen is None and cfg.granularity == "per_channel":
            chosen = q
    print("Phase 2 — integer-only model (IntGraph) run by the NumPy interpreter, "
          "no float in the run")
    print(format_table(rows))
    print()
    print(chosen)
    print()
    return chosen, ds


def phase3(q, ds: Dataset, out: Path) -> None:
    """Generated C on the host and on an emulated Cortex-M0, bit-exact with the interpreter.

    Without the ARM toolchain (installing it was impossible) the host part still runs and one
    line says what was skipped and how to get it.
    """
    import numpy as np

    from .codegen import cost, toolchain
    from .codegen.targets import get_target

    result = q.export_c(out / "c", name="digits", overwrite=True)  # the demo reruns
    print("Phase 3 — generated C99 (no float, no malloc, one static arena)")
    print(result.summary())
    x_int = q.quantize_input(ds.x_test)
    reference = q.run(x_int)
    host = toolchain.compile_and_run_host(out / "c", x_int)
    print(f"host gcc -O2: {len(x_int)} test images, bit-exact with the interpreter: "
          f"{bool(np.array_equal(host, reference))}")
    no_float = toolchain.check_no_float(out / "c")
    clean = not any(no_float.values())
    print(f"no-float proof (gcc -mgeneral-regs-only -O0 + lexical scan): "
          f"{'passed' if clean else no_float}")
    missing = get_target("cortex-m0").missing_tools()
    if missing:
        print(f"skipped the Cortex-M0 run and cost report: {', '.join(missing)} not installed; "
              "`make toolchain` (scripts/install_toolchain.sh arm) installs it\n")
        return
    m0 = toolchain.run_on_m0(out / "c", x_int[:8], emulator="qemu")
    print(f"Cortex-M0 (QEMU micro:bit, soft-float helpers absent): 8 images, bit-exact: "
          f"{bool(np.array_equal(m0, reference[:8]))}")
    report = cost.cost_report(out / "c", x_int[:2])
    print(cost.format_report(report))
    print()


def phase4(model, q, ds: Dataset, out: Path) -> None:
    """Per-layer analysis and the HTML/Markdown report."""
    from .analysis import analyze
    from .analysis.report import write_report

    analysis = analyze(model, q, (ds.x_test, ds.y_test), calib=ds.x_train[:500],
                       name="digits_cnn")
    paths = write_report(analysis, out)
    print("Phase 4 — per-layer analysis (SQNR, sensitivity, weight statistics, histograms)")
    print(f"report: {paths['html']} (self-contained) and {paths['md']}")


def main(argv: Sequence[str] | None = None) -> int:
    out = Path(argv[0] if argv else "out/demo")
    out.mkdir(parents=True, exist_ok=True)
    phase1()
    q, ds = phase2()
    phase3(q, ds, out)
    model, _ = zoo.get("digits_cnn", progress=False)
    phase4(model, q, ds, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
