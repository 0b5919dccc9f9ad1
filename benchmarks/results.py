"""Write one benchmark's section of benchmarks/RESULTS.md between its BEGIN/END markers.

Several benchmarks share RESULTS.md; each owns the text between ``<!-- BEGIN name -->`` and
``<!-- END name -->`` and replaces only that, so running one never erases another's figures.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nEach section states the command that produced it.\n"


def machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def write_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    text = path.read_text() if path.exists() else HEADER
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        _, post = rest.split(end, 1)
        text = pre + block + post
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def table(header: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def calibration_draw(x_train: np.ndarray, n: int = 256, seed: int = 0) -> np.ndarray:
    """n training inputs drawn at random (seeded), in split order: a split stored class by
    class (the speech commands are) would otherwise calibrate on one class and clip the
    others' ranges."""
    pick = np.random.default_rng(seed).permutation(len(x_train))[:n]
    return x_train[np.sort(pick)]
