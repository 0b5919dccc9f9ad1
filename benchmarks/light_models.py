"""Scale test: the onnx package's ``light`` models end to end at 224x224.

    python benchmarks/light_models.py                     # all nine, writes RESULTS.md section
    python benchmarks/light_models.py squeezenet resnet50 # a subset (table still rewritten)

Per model: ``from_onnx`` import, random re-initialised weights (the suite ships placeholder
weights that make every output equal), random N(0, 1) calibration data, ``intquant.quantize``
(W8A8 per-channel, default Config), the NumPy interpreter, ``export_c`` and the host C build at
the full 1x3x224x224 input. Reported: float-graph size, import/quantize/interpreter seconds,
C host output bit-exact to the interpreter (yes/no), arena bytes and the planner's lower bound,
weight bytes, MACs, host latency (batch 1, one thread, -O2), and the stage where a model stops.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import onnx

import intquant
from intquant.graph.onnx_import import from_onnx, randomize_weights

sys.path.insert(0, str(Path(__file__).parent))
import results  # noqa: E402  (shared RESULTS.md section writer)

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = ["squeezenet", "shufflenet", "resnet50", "inception_v1", "inception_v2",
          "densenet121", "bvlc_alexnet", "zfnet512", "vgg19"]
RESULTS = Path(__file__).parent / "RESULTS.md"
SECTION = "light-models"
CALIB_SAMPLES = 8


def run_model(name: str, workdir: Path, bench_runs: int) -> dict:
    row: dict = {"model": name, "stage": "import"}
    t = time.perf_counter()
    try:
        onnx_model = randomize_weights(onnx.load(str(LIGHT / f"light_{name}.onnx")), seed=0)
        gm = from_onnx(onnx_model)
        row["float_nodes"] = len(gm.graph.nodes) - 1
        row["import_s"] = time.perf_counter() - t
        rng = np.random.default_rng(0)
        calib = rng.standard_normal((CALIB_SAMPLES, 3, 224, 224)).astype(np.float32)
        x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)

        row["stage"], t = "quantize", time.perf_counter()
        qm = intquant.quantize(gm, calib, intquant.Config(), progress=False)
        row["quantize_s"] = time.perf_counter() - t
        row["int_ops"] = len(qm.graph.ops)

        row["stage"], t = "interpreter", time.perf_counter()
        xq = qm.quantize_input(x)
        y_int = qm.run(xq)
        row["interp_s"] = time.perf_counter() - t
        y_float = gm(x).numpy().reshape(y_int.shape)
        row["top1_match_float"] = bool(np.argmax(qm.dequantize_output(y_int)) == np.argmax(y_float))

        row["stage"], t = "export_c", time.perf_counter()
        from intquant.codegen.toolchain import compile_and_run_host, time_host

        res = qm.export_c(workdir / name, name="model", overwrite=True)
        row.update(arena=res.arena_bytes, arena_lb=res.arena_lower_bound,
                   weights=res.weight_bytes, macs=res.macs)
        row["stage"] = "host C"
        y_c = compile_and_run_host(res.out_dir, xq)
        row["c_build_run_s"] = time.perf_counter() - t
        row["c_bit_exact"] = bool(np.array_equal(y_c, y_int))
        row["stage"] = "host timing"
        row["host_ms"] = 1e3 * time_host(res.out_dir, xq[0], runs=bench_runs)
        row["stage"] = "done"
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        traceback.print_exc(file=sys.stderr)
    return row


def _fmt(v, spec: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return format(v, spec)


def table(rows: list[dict], cmd: str) -> str:
    lines = [
        "## ONNX `light` models at 224x224: import → quantize → interpreter → host C",
        "",
        f"Command: `{cmd}` (random re-initialised weights, {CALIB_SAMPLES} random calibration "
        "inputs, default Config W8A8 per-channel; host gcc -O2, batch 1, one thread).",
        "",
        "| model | float nodes | int ops | quantize s | interpreter s (1 image) | C = interpreter "
        "| arena B | arena lower bound B | weight B | MMACs | host ms | stops at |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        stop = "" if r.get("stage") == "done" else f"{r['stage']}: {r.get('error', '')}"
        macs = r.get("macs")
        lines.append(
            f"| {r['model']} | {_fmt(r.get('float_nodes'))} | {_fmt(r.get('int_ops'))} | "
            f"{_fmt(r.get('quantize_s'), '.1f')} | {_fmt(r.get('interp_s'), '.1f')} | "
            f"{_fmt(r.get('c_bit_exact'))} | {_fmt(r.get('arena'), ',')} | "
            f"{_fmt(r.get('arena_lb'), ',')} | {_fmt(r.get('weights'), ',')} | "
            f"{_fmt(None if macs is None else macs / 1e6, ',.0f')} | "
            f"{_fmt(r.get('host_ms'), '.1f')} | {stop.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help=f"subset of {MODELS}")
    ap.add_argument("--bench-runs", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {MODELS}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="intquant_light_"))
    rows = []
    for name in args.models or MODELS:
        row = run_model(name, workdir, args.bench_runs)
        rows.append(row)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()},
              flush=True)
    cmd = "python benchmarks/light_models.py " + " ".join(args.models)
    results.write_section(SECTION, table(rows, cmd), args.results)
    return 0 if all(r["stage"] == "done" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
