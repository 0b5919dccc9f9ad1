"""Wall time of ``intquant analyze`` on every zoo model (target: under 30 s each on 2 cores).

Runs the command exactly as a user would (a fresh process: Python start-up, torch import,
capture, calibration, integer run, sensitivity of every layer, the 4-method × 6-width sweep),
with calibration = the first 1024 training samples and data = the test split.

    .venv/bin/python benchmarks/analyze_speed.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from intquant import zoo  # noqa: E402
from results import machine, table, write_section  # noqa: E402

TARGET_S = 30.0


def main() -> None:
    rows = []
    exe = Path(sys.executable).with_name("intquant")
    cmd0 = [str(exe)] if exe.exists() else [sys.executable, "-m", "intquant.cli"]
    with tempfile.TemporaryDirectory() as d:
        for name in zoo.names():
            _, ds = zoo.get(name, progress=True)
            calib, test = Path(d) / f"{name}_calib.npz", Path(d) / f"{name}_test.npz"
            np.savez(calib, x=ds.x_train[:1024])
            np.savez(test, x=ds.x_test, y=ds.y_test)
            out = Path(d) / f"{name}.json"
            cmd = [*cmd0, "analyze", f"zoo:{name}", "--calib", str(calib), "--data", str(test),
                   "--json", str(out)]
            t = time.perf_counter()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = subprocess.run(cmd, capture_output=True, text=True,
                               env={**os.environ, "PYTHONWARNINGS": "ignore"})
            seconds = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if r.returncode != 0:
                raise SystemExit(f"{name}: intquant analyze failed\n{r.stderr}")
            layers = sum(1 for layer in json.loads(out.read_text())["layers"] if layer["params"])
            load = os.getloadavg()[0]
            rows.append([name, len(ds.y_test), layers, f"{seconds:.1f}", f"{cpu:.1f}",
                         f"{load:.1f}", "yes" if seconds < TARGET_S else "NO"])
            print(name, f"{seconds:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    md = "\n".join([
        "## `intquant analyze` wall time per zoo model",
        "",
        "Command: `.venv/bin/python benchmarks/analyze_speed.py` "
        f"({machine()}). Each row is one fresh `intquant analyze zoo:<name> --calib "
        "calib.npz --data test.npz` process (torch import, capture, calibration on 1024 "
        "samples, integer run on the test split, per-layer SQNR and sensitivity, the "
        f"accuracy-vs-bits sweep of 4 methods × 6 widths). Target: under {TARGET_S:.0f} s.",
        "",
        "The machine is shared: the 1-minute load average when each run ended is given (a "
        "load of 2 saturates both cores). The CLI runs torch with one thread, so the CPU "
        "seconds (user + sys of the process) are what the wall time is on an idle machine.",
        "",
        table(["model", "test samples", "weighted layers", "wall s", "CPU s", "load avg",
               f"< {TARGET_S:.0f} s"],
              rows),
    ])
    print(md)
    write_section("analyze_speed", md)


if __name__ == "__main__":
    main()
