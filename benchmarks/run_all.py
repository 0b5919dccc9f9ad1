"""Run every benchmark in turn (`make bench`); each writes its own section of RESULTS.md.

Slow (tens of minutes on 2 cores: QAT trains, light models run 224x224 networks). Run one
script alone to refresh one section.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
RUNS = [
    ["ptq.py"],
    ["peers.py"],
    ["c_backend.py"],
    ["targets.py"],
    ["qat.py", "--epochs", "10", "--lr", "3e-3"],
    ["bnn.py", "--epochs", "10", "--lr", "3e-3"],
    ["simulate.py"],
    ["lowbit.py"],
    ["mixed_precision.py", "--model", "mnist1d_cnn", "--budget", "0.6"],
    ["analyze_speed.py"],
    ["onnx_conformance.py"],
    ["light_models.py"],
]


def main() -> int:
    failed = []
    for args in RUNS:
        print(f"== {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / args[0]), *args[1:]]).returncode != 0:
            failed.append(args[0])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
