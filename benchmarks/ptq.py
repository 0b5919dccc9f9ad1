"""PTQ benchmark: integer-only accuracy and logit error of every zoo model, next to peers.

    .venv/bin/python benchmarks/ptq.py [--models a,b] [--calib 1000]

For each zoo model: float accuracy; intquant integer-only (NumPy interpreter, no float in the
run) for W8A8 per-tensor textbook max-abs, W8A8 per-channel × each activation observer, 16x8,
W16A16, W4A8 per-channel; torch.ao FX (x86, qnnpack) and ONNX Runtime quantize_static (QDQ,
per-channel, MinMax / Percentile; fused kernels and the reference path) on the same weights.
intquant rows use empirical bias correction unless they say otherwise (the default).
Writes the PTQ section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

import intquant  # noqa: E402
from baselines import (  # noqa: E402
    float_predict,
    ort_quantize_static,
    score,
    torch_ao_fx,
)
from intquant import zoo  # noqa: E402
from results import machine, table, write_section  # noqa: E402

CONFIGS: dict[str, intquant.Config] = {
    "W8A8 per-tensor textbook max-abs": intquant.Config(
        granularity="per_tensor", calibration="maxabs", weight_calibration="maxabs",
        symmetric_activations=True, bias_correction=False),
    "W8A8 per-channel mse, no bias correction": intquant.Config(bias_correction=False),
    "W8A8 per-channel minmax": intquant.Config(calibration="minmax"),
    "W8A8 per-channel maxabs": intquant.Config(calibration="maxabs"),
    "W8A8 per-channel percentile": intquant.Config(calibration="percentile"),
    "W8A8 per-channel mse": intquant.Config(calibration="mse"),
    "W8A8 per-channel entropy": intquant.Config(calibration="entropy"),
    "16x8 (A16 W8)": intquant.Config(act_bits=16),
    "W16A16": intquant.Config(weight_bits=16, act_bits=16),
    "W4A8 per-channel (mse weights)": intquant.Config(weight_bits=4),
}


def intquant_predict(q: intquant.QuantizedModel):
    return q.predict


def run_model(name: str, n_calib: int) -> list[list[object]]:
    model, ds = zoo.get(name)
    calib = ds.x_train[:n_calib]
    ref = float_predict(model)(ds.x_test)
    float_acc = float((ref.argmax(1) == ds.y_test).mean())
    rows: list[list[object]] = [[name, "float", f"{100 * float_acc:.2f}", "", "0", ""]]

    def add(label: str, predict, seconds: float) -> None:
        acc, err = score(predict, ds.x_test, ds.y_test, ref)
        rows.append([name, label, f"{100 * acc:.2f}", f"{100 * (acc - float_acc):+.2f}",
                     f"{err:.4f}", f"{seconds:.1f}"])
        print(f"  {label:44s} acc {100 * acc:6.2f}  Δ {100 * (acc - float_acc):+.2f} pp  "
              f"|Δlogit| {err:.4f}", flush=True)

    for label, cfg in CONFIGS.items():
        t = time.time()
        q = intquant.quantize(model, calib, cfg, progress=False)
        add("intquant " + label, q.predict, time.time() - t)
    for backend in ("x86", "qnnpack"):
        t = time.time()
        try:
            add(f"torch.ao FX {backend}", torch_ao_fx(model, calib, backend), time.time() - t)
        except Exception as e:  # report, don't hide: a peer that cannot run this model
            rows.append([name, f"torch.ao FX {backend}", "n/a", "", "", f"failed: {e}"[:60]])
    for method in ("MinMax", "Percentile"):
        for ref_path in (False, True):
            label = f"ORT quantize_static {method} ({'reference path' if ref_path else 'fused'})"
            t = time.time()
            try:
                add(label, ort_quantize_static(model, calib, method, True, ref_path),
                    time.time() - t)
            except Exception as e:
                rows.append([name, label, "n/a", "", "", f"failed: {e}"[:60]])
    return rows


def interpreter_speed() -> str:
    """Wall time of the integer interpreter on the 1000-sample MNIST-1D test set (W8A8)."""
    lines = ["", "Integer interpreter speed, 1000-sample MNIST-1D test set, W8A8 per-channel "
             "(best of 3; wall clock and CPU time — they differ when the machine is shared):",
             ""]
    for name in ("mnist1d_cnn", "mnist1d_dscnn", "mnist1d_resnet", "mnist1d_mlp"):
        model, ds = zoo.get(name)
        q = intquant.quantize(model, ds.x_train[:500], progress=False)
        x_int = q.quantize_input(ds.x_test)
        wall, cpu = zip(*(_timed(q.run, x_int) for _ in range(3)), strict=True)
        lines.append(f"- {name}: {min(wall):.2f} s wall, {min(cpu):.2f} s CPU")
    return "\n".join(lines)


def _timed(fn, *args) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default=",".join(zoo.names()))
    ap.add_argument("--calib", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows: list[list[object]] = []
    for name in args.models.split(","):
        print(name, flush=True)
        rows += run_model(name, args.calib)
    md = [
        "## Post-training quantization (integer-only) vs peers",
        "",
        f"Command: `.venv/bin/python benchmarks/ptq.py` ({machine()}). Test-set accuracy (%), "
        f"its change vs float (pp), mean |logit − float logit| (lower is better), seconds to "
        f"quantize. intquant rows run the integer-only NumPy interpreter; calibration on "
        f"{args.calib} training samples. Peers quantize the same float weights.",
        "",
        table(["model", "method", "acc %", "Δ pp", "mean abs logit err", "quantize s"], rows),
        interpreter_speed(),
    ]
    write_section("ptq", "\n".join(md))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
