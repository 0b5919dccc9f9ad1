"""``intquant recommend`` on every zoo model: wall time (target < 2 min on 2 cores), what it
recommends, and (``--kure``) the kurtosis regularizer's effect with fine-tuning allowed.

Runs the command as a user would (a fresh process: Python start-up, torch import, capture,
every option quantized and measured on the test split, the Pareto options costed on the
emulated Cortex-M0), calibration = the first 1024 training samples, the width search on the
last 800 training samples, data = the test split.

    .venv/bin/python benchmarks/recommend.py [--models a,b] [--kure]
"""

from __future__ import annotations

import argparse
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

TARGET_S = 120.0
SEARCH = 800
FINETUNE = 3200  # training samples the KURE fine-tuning uses (3 epochs)


def run(cmd: list[str]) -> tuple[dict, float, float]:
    """(the --json output, wall seconds, CPU seconds of the process)."""
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore", "INTQUANT_PROGRESS": "0"})
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed\n{r.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(Path(cmd[cmd.index("--json") + 1]).read_text()), seconds, cpu


def describe(rec: dict) -> tuple[str, str, str, str]:
    """(recommended option, Δ pp, its flash as a share of W8A8 fast, its M0 count)."""
    best = rec["options"][rec["recommended"]]
    w8 = next(o for o in rec["options"] if o["name"] == "W8A8" and o["method"] == "fast")
    m0 = "–" if best["m0"] is None else f"{best['m0']:,.0f} {best['m0_counter']}"
    return (f"{best['name']} ({best['method']})",
            f"{100 * (best['accuracy'] - rec['float_accuracy']):+.2f}",
            f"{best['flash_bytes']} B ({best['flash_bytes'] / w8['flash_bytes']:.0%})", m0)


def kure_rows(name: str, rec: dict) -> list[list[str]]:
    """The same width with and without KURE fine-tuning."""
    by = {(o["name"], o["method"]): o for o in rec["options"]}
    rows = []
    for o in rec["options"]:
        if not o["name"].startswith("KURE + "):
            continue
        plain = by.get((o["name"][len("KURE + "):], o["method"]))
        if plain is None:
            continue
        rows.append([name, o["name"][len("KURE + "):], o["method"],
                     f"{100 * plain['accuracy']:.2f}", f"{plain['logit_error']:.4f}",
                     f"{100 * o['accuracy']:.2f}", f"{o['logit_error']:.4f}",
                     f"{100 * (o['accuracy'] - plain['accuracy']):+.2f}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(zoo.names()))
    ap.add_argument("--kure", action="store_true",
                    help="also run with --finetune (KURE, 3 epochs) and report its effect")
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("intquant")
    cmd0 = [str(exe)] if exe.exists() else [sys.executable, "-m", "intquant.cli"]
    rows, krows = [], []
    with tempfile.TemporaryDirectory() as d:
        for name in args.models.split(","):
            _, ds = zoo.get(name, progress=True)
            files = {k: Path(d) / f"{name}_{k}.npz" for k in ("calib", "test", "val", "train")}
            np.savez(files["calib"], x=ds.x_train[:1024])
            np.savez(files["test"], x=ds.x_test, y=ds.y_test)
            np.savez(files["val"], x=ds.x_train[-SEARCH:], y=ds.y_train[-SEARCH:])
            np.savez(files["train"], x=ds.x_train[:FINETUNE], y=ds.y_train[:FINETUNE])
            cmd = [*cmd0, "recommend", f"zoo:{name}", "--calib", str(files["calib"]), "--data",
                   str(files["test"]), "--search-data", str(files["val"]),
                   "--json", str(Path(d) / f"{name}.json")]
            rec, seconds, cpu = run(cmd)
            load = os.getloadavg()[0]
            pareto = sum(o["pareto"] for o in rec["options"])
            rows.append([name, len(ds.y_test), len(rec["options"]), pareto, *describe(rec),
                         f"{seconds:.1f}", f"{cpu:.1f}", f"{load:.1f}",
                         "yes" if cpu < TARGET_S else "NO"])
            print(name, rows[-1], flush=True)
            if args.kure:
                rec, seconds, cpu = run([*cmd, "--finetune", str(files["train"])])
                krows += [r + [f"{seconds:.1f}", f"{cpu:.1f}"] for r in kure_rows(name, rec)]
                print(name, "KURE", krows[-2:], flush=True)
    md = [
        "## `intquant recommend` per zoo model",
        "",
        f"Command: `.venv/bin/python benchmarks/recommend.py{' --kure' if args.kure else ''}` "
        f"({machine()}). Each row is one fresh `intquant recommend zoo:<name> --calib calib.npz "
        f"--data test.npz --search-data val.npz` process: calibration on the first 1024 "
        f"training samples, per-layer width search on the last {SEARCH}, every option "
        "quantized and measured on the test split with the integer interpreter, the Pareto "
        "options that fit the budgets costed on the emulated Cortex-M0 (cost_report: cycles of "
        "the Cortex-M0 timing model, 1-cycle multiplier; instructions before that model). "
        "Defaults: methods fast and nearest, max drop 1 pp, no budget. Target: under "
        f"{TARGET_S:.0f} s on 2 cores.",
        "",
        "The machine is shared: the 1-minute load average when each run ended is given (a "
        "load of 2 saturates both cores). The CLI runs torch with one thread and the C "
        "builds one at a time, so the CPU seconds (user + sys of the process and its "
        "compilers/emulator) are what the wall time is on an idle machine; the target is "
        "judged on them.",
        "",
        table(["model", "test samples", "options", "Pareto", "recommended", "Δ pp",
               "flash (of W8A8)", "M0 per inference", "wall s", "CPU s", "load avg",
               f"< {TARGET_S:.0f} s"], rows),
    ]
    if krows:
        md += ["", "### KURE fine-tuning (`--finetune TRAIN.npz`: 3 epochs on "
               f"{FINETUNE} training samples, Adam 3e-4 cosine, λ = 0.5)", "",
               "Accuracy and mean |logit error| of the same width and method without and with "
               "the fine-tuning; wall and CPU seconds of the whole `recommend --finetune` run.",
               "",
               table(["model", "width", "method", "acc %", "logit err", "KURE acc %",
                      "KURE logit err", "Δ pp", "wall s", "CPU s"], krows)]
    text = "\n".join(md)
    print(text)
    write_section("recommend", text)


if __name__ == "__main__":
    main()
