"""QuantizedModel.simulate() against the integer interpreter, per zoo model (W8A8).

    .venv/bin/python benchmarks/simulate.py

Eval mode lowers the plan and runs the interpreter, so its logits must equal ``predict``'s;
training mode is the fake-quant float forward used for fine-tuning, whose float rounding
(and the CPU's kernels) decide how often it lands on the integer logit. Also the time of one
eval pass over the test set (lowering included). Writes the ``simulate`` section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

import intquant  # noqa: E402
from intquant import zoo  # noqa: E402
from results import machine, table, write_section  # noqa: E402


def identical(logits: np.ndarray, q: intquant.QuantizedModel, codes: np.ndarray) -> float:
    """Fraction of logits that round to the integer model's output code."""
    info = q.output_info
    return float(np.mean(np.rint(logits / info.scale) + info.zero_point == codes))


def row(name: str) -> list[object]:
    model, ds = zoo.get(name, progress=False)
    q = intquant.quantize(model, ds.x_train[:500], progress=False)
    codes = q.run(q.quantize_input(ds.x_test)).reshape(len(ds.x_test), -1)
    x = torch.as_tensor(ds.x_test)
    sim = q.simulate().eval()
    t = time.perf_counter()
    with torch.no_grad():
        exact = sim(x).to(torch.float64).numpy().reshape(len(x), -1)
    secs = time.perf_counter() - t
    sim.train()
    with torch.no_grad():
        fake = sim(x).to(torch.float64).numpy().reshape(len(x), -1)
    out = codes.astype(np.int64)
    return [name, f"{100 * identical(exact, q, out):.2f}",
            f"{100 * np.mean(exact.argmax(1) == out.argmax(1)):.2f}", f"{secs:.2f}",
            f"{100 * identical(fake, q, out):.2f}",
            f"{100 * np.mean(fake.argmax(1) == out.argmax(1)):.2f}"]


def main() -> None:
    torch.set_num_threads(1)
    rows = [row(name) for name in zoo.names()]
    md = [
        "## simulate(): eval mode vs training mode against the integer interpreter",
        "",
        f"Command: `.venv/bin/python benchmarks/simulate.py` ({machine()}, 1 torch thread). "
        "W8A8 (intquant.quantize defaults, 500 calibration samples), test sets. 'identical' = "
        "logits on the integer model's output code; eval s = one eval pass over the test set, "
        f"lowering included (wall clock, load average {os.getloadavg()[0]:.1f} on the machine at "
        "the end). Training mode is the fake-quant float forward (fine-tuning); its figures "
        "depend on the CPU's float kernels.",
        "",
        table(["model", "eval identical %", "eval argmax agree %", "eval s",
               "train-mode identical %", "train-mode argmax agree %"], rows),
    ]
    write_section("simulate", "\n".join(md))


if __name__ == "__main__":
    main()
