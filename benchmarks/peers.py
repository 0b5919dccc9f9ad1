"""intquant vs torch.ao FX (x86, qnnpack) vs ONNX Runtime ``quantize_static`` on the zoo models.

    python benchmarks/peers.py            # writes the "peers" section of benchmarks/RESULTS.md

All methods quantize the same float weights with the same 1000 calibration samples (W8A8,
per-channel weights). Reported: test accuracy, mean |logit − float logit| over the test set,
and batch-1 latency on one thread (median of repeated single-sample calls):
- intquant: integer-only NumPy interpreter for accuracy/logits; latency of the generated C on
  the host (gcc -O2), which is what runs on the device;
- torch.ao FX: ``prepare_fx`` / ``convert_fx`` with the backend's default qconfig mapping;
- ONNX Runtime: ``quantize_static`` QDQ, per-channel, int8 activations and weights, MinMax.
  "fused" = default graph optimizations (QDQ fused into ORT's int8 kernels, which on CPUs
  without VNNI use u8s8 arithmetic whose 16-bit intermediate sums can saturate); "reference"
  = optimizations disabled (every DequantizeLinear → float op → QuantizeLinear run as written).
"""

from __future__ import annotations

import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).parent))
import intquant  # noqa: E402
import results  # noqa: E402
from baselines import ort_quantize_static, torch_ao_fx  # noqa: E402
from intquant import zoo  # noqa: E402

CALIB = 1000
SECTION = "peers"


def latency(fn, x1, repeats: int = 200) -> float:
    """Median seconds of one batch-1 call (after warm-up)."""
    for _ in range(10):
        fn(x1)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x1)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def metrics(logits: np.ndarray, ref: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    return float((logits.argmax(1) == y).mean()), float(np.abs(logits - ref).mean())


def run_intquant(model, ds, calib, workdir: Path) -> dict:
    from intquant.codegen.toolchain import time_host

    qm = intquant.quantize(model, calib, intquant.Config(), progress=False)
    logits = qm.dequantize_output(qm.run(qm.quantize_input(ds.x_test)))
    res = qm.export_c(workdir / "iq", name="model")
    sec = time_host(res.out_dir, qm.quantize_input(ds.x_test[:1])[0], runs=2000)
    return {"logits": logits.reshape(len(ds.x_test), -1), "latency": sec}


def run_torch_fx(model, ds, calib, backend: str) -> dict:
    predict = torch_ao_fx(model, calib, backend)
    return {"logits": predict(ds.x_test), "latency": latency(predict, ds.x_test[:1])}


def run_ort(model, ds, calib, workdir: Path) -> list[tuple[str, dict]]:
    """ORT quantize_static (QDQ, per-channel, MinMax): its fused int8 kernels and the
    reference path (graph optimisations off: dequantize → float op → quantize)."""
    out = []
    for label, reference_path in (("fused", False), ("reference path", True)):
        predict = ort_quantize_static(model, calib, "MinMax", True, reference_path)
        out.append((label, {"logits": predict(ds.x_test),
                            "latency": latency(predict, ds.x_test[:1])}))
    return out


def main() -> int:
    torch.set_num_threads(1)
    rows = []
    for name in zoo.names():
        model, ds = zoo.get(name, progress=False)
        model.eval()
        calib = ds.x_train[:CALIB].astype(np.float32)
        ds.x_test = ds.x_test.astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(ds.x_test)).numpy()
            x1 = torch.from_numpy(ds.x_test[:1])
            float_lat = latency(model, x1)
        acc, _ = metrics(ref, ref, ds.y_test)
        rows.append([name, "float (PyTorch)", f"{100 * acc:.2f}", "0", f"{1e6 * float_lat:.0f}"])
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            runs: list[tuple[str, dict]] = []
            for label, fn in (
                ("intquant W8A8 (interpreter; latency = host C)",
                 partial(run_intquant, model, ds, calib, work)),
                ("torch.ao FX x86", partial(run_torch_fx, model, ds, calib, "x86")),
                ("torch.ao FX qnnpack", partial(run_torch_fx, model, ds, calib, "qnnpack")),
            ):
                try:
                    runs.append((label, fn()))
                except Exception as e:  # a peer that cannot handle a model is a result too
                    runs.append((label, {"error": f"{type(e).__name__}: {e}"[:120]}))
            try:
                runs += [(f"ORT quantize_static QDQ per-channel ({lab})", r)
                         for lab, r in run_ort(model, ds, calib, work)]
            except Exception as e:
                runs.append(("ORT quantize_static", {"error": f"{type(e).__name__}: {e}"[:120]}))
        for label, r in runs:
            if "error" in r:
                rows.append([name, label, "–", "–", f"failed: {r['error']}"])
                continue
            acc, err = metrics(r["logits"].reshape(ref.shape), ref, ds.y_test)
            rows.append([name, label, f"{100 * acc:.2f}", f"{err:.4f}",
                         f"{1e6 * r['latency']:.0f}"])
        print("\n".join(" | ".join(map(str, row)) for row in rows[-len(runs) - 1:]), flush=True)
    body = "\n".join([
        "## intquant vs torch.ao FX vs ONNX Runtime quantize_static (same float weights)",
        "",
        f"Command: `python benchmarks/peers.py` ({results.machine()}; onnxruntime "
        f"{ort.__version__}, torch {torch.__version__}). W8A8, per-channel weights, "
        f"{CALIB} calibration samples. Latency: batch 1, one thread, median (µs). This CPU "
        "has AVX2 but no VNNI, so ORT's fused int8 path uses u8s8 kernels that can saturate.",
        "",
        results.table(["model", "method", "acc %", "mean abs logit err", "latency µs"], rows),
    ])
    results.write_section(SECTION, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
