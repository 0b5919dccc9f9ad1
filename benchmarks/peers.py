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

import copy
import io
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).parent))
import intquant  # noqa: E402
import results  # noqa: E402
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
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = backend
    m = copy.deepcopy(model).eval()
    example = (torch.from_numpy(calib[:1]),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(m, get_default_qconfig_mapping(backend), example)
        with torch.no_grad():
            for i in range(0, len(calib), 250):
                prepared(torch.from_numpy(calib[i : i + 250]))
        q = convert_fx(prepared)
    with torch.no_grad():
        logits = q(torch.from_numpy(ds.x_test)).numpy()
        x1 = torch.from_numpy(ds.x_test[:1])
        sec = latency(q, x1)
    return {"logits": logits, "latency": sec}


class _Reader:
    def __init__(self, name: str, x: np.ndarray):
        self.batches = iter([{name: x[i : i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.batches, None)


def run_ort(model, ds, calib, workdir: Path) -> list[tuple[str, dict]]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(calib[:1]),), buf, dynamo=False,
                          opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "N"}})
    f32 = workdir / "float.onnx"
    f32.write_bytes(buf.getvalue())
    qpath = workdir / "qdq.onnx"
    quantize_static(str(f32), str(qpath), _Reader("x", calib[:300]), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    out = []
    for label, level in (("fused", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                         ("reference path", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)):
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.graph_optimization_level = level
        s = ort.InferenceSession(str(qpath), so, providers=["CPUExecutionProvider"])
        logits = s.run(None, {"x": ds.x_test})[0]
        sec = latency(lambda x, s=s: s.run(None, {"x": x}), ds.x_test[:1])
        out.append((label, {"logits": logits, "latency": sec}))
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
