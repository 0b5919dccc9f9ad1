"""C back end benchmark: memory plan, flash, Cortex-M0 instructions, host latency, float32 C,
and the Cortex-M0 kernels (cycles per layer next to CMSIS-NN's, MLPerf-Tiny-like models).

For each zoo model (int8, per-channel weights):
- arena vs its lower bound (and vs TFLM's greedy largest-first planner), flash, RAM;
- Cortex-M0 instructions per inference and per MAC over conv/linear (unicorn, -O2);
- host batch-1 latency of the compiled C (gcc -O2) vs ONNX Runtime on the QDQ export and
  PyTorch float, one thread each;
- the same network as float32 C (weights dequantized from the IntGraph, float activations),
  compiled with soft float for Cortex-M0: instruction ratio float / int8.

Cortex-M0 kernels (section c_backend_m0): the zoo and the MLPerf-Tiny-like networks of
mlperf_tiny.py, int8 and the options (single rounding, power-of-two scales, 16x8): instructions
and cycles per MAC of the whole inference (unicorn, the cycle model of codegen/cycles.py, fast
and small multiplier), the ratio to 4.45 cycles x MACs + 30 cycles x outputs, runtime code bytes
at -Os, and per conv/linear layer the cycles per MAC next to CMSIS-NN's on the same layer when
IQ_CMSIS_NN_DIR points at a CMSIS-NN checkout (built for Cortex-M0 in a scratch folder at run
time, see cmsis_nn.py), else the figures of the notes.

    .venv/bin/python benchmarks/c_backend.py [--models digits_cnn,...] [--mlperf kws_dscnn,...]
    IQ_CMSIS_NN_DIR=/path/to/CMSIS-NN .venv/bin/python benchmarks/c_backend.py

Writes its sections of benchmarks/RESULTS.md and benchmarks/c_backend.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cmsis_nn  # noqa: E402
import intquant  # noqa: E402
import m0_kernels  # noqa: E402
import mlperf_tiny  # noqa: E402
from intquant import zoo  # noqa: E402
from intquant.codegen.cost import cost_report  # noqa: E402
from intquant.codegen.m0 import m0_files  # noqa: E402
from intquant.codegen.toolchain import emulate_unicorn, time_host  # noqa: E402
from intquant.intgraph import IntGraph, Op  # noqa: E402
from results import machine, table, write_section  # noqa: E402

ZOO = ["digits_cnn", "mnist1d_cnn", "mnist1d_mlp", "mnist1d_dscnn", "mnist1d_resnet"]
MLPERF = ["kws_dscnn", "vww_mobilenet", "ic_resnet8", "ad_autoencoder"]
OPTIONS = {  # DS-CNN with each option next to the default it simplifies
    "single rounding": {"rounding": "single"},
    "power-of-two scales": {"power_of_two": True},
    "16x8": {"act_bits": 16},
}
JSON = Path(__file__).with_name("c_backend.json")
DEPTHWISE_3X3_CYCLES_PER_MAC = 15.0  # issue 15 targets
FLOOR_RATIO = 1.1
CMSIS_16X8_RATIO = 0.8
CODE_BYTES_OS = 4096
SIMPLIFYING_OPTIONS = ("single rounding", "power-of-two scales")  # each vs the int8 default
TARGETS = {  # instructions/MAC of the whole inference (issue 15)
    ("kws_dscnn", "int8"): 5.0,
    ("vww_mobilenet", "int8"): 5.5,
    ("ic_resnet8", "int8"): 4.3,
    ("kws_dscnn", "16x8"): 7.0,
}


# ----------------------------------------------------------------------------------------------
# float32 C of the same network (benchmark only: the soft-float cost a user would otherwise pay)
# ----------------------------------------------------------------------------------------------

FLOAT_KERNELS = r"""
#pragma GCC diagnostic ignored "-Wmisleading-indentation"
#include <stdint.h>
#include <string.h>
static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }
void conv_f(const float* x, int C, int H, int W, const float* w, const float* b, int O,
    int OH, int OW, int KH, int KW, int SH, int SW, int PT, int PL, int DH, int DW, int G,
    float lo, float hi, float* y) {
    int cg = C / G, og = O / G, o, oy, ox, ci, ky, kx;
    for (o = 0; o < O; ++o) { int g = o / og;
      for (oy = 0; oy < OH; ++oy) for (ox = 0; ox < OW; ++ox) { float acc = b[o];
        for (ci = 0; ci < cg; ++ci) for (ky = 0; ky < KH; ++ky) { int iy = oy*SH - PT + ky*DH;
          if (iy < 0 || iy >= H) continue;
          for (kx = 0; kx < KW; ++kx) { int ix = ox*SW - PL + kx*DW;
            if (ix < 0 || ix >= W) continue;
            acc += w[((o*cg + ci)*KH + ky)*KW + kx] * x[((g*cg + ci)*H + iy)*W + ix]; } }
        y[(o*OH + oy)*OW + ox] = clampf(acc, lo, hi); } }
}
void fc_f(const float* x, int I, const float* w, const float* b, int O, float lo,
    float hi, float* y) { int o, i; for (o = 0; o < O; ++o) { float acc = b[o];
    for (i = 0; i < I; ++i) acc += w[o*I + i] * x[i]; y[o] = clampf(acc, lo, hi); } }
void pool_f(const float* x, int C, int H, int W, int OH, int OW, int KH, int KW, int SH,
    int SW, int PT, int PL, int is_max, int cip, float* y) { int c, oy, ox, ky, kx;
    for (c = 0; c < C; ++c) for (oy = 0; oy < OH; ++oy) for (ox = 0; ox < OW; ++ox) {
      float acc = is_max ? -3.0e38f : 0.0f; int n = 0;
      for (ky = 0; ky < KH; ++ky) for (kx = 0; kx < KW; ++kx) {
        int iy = oy*SH-PT+ky, ix = ox*SW-PL+kx;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) { float v = x[(c*H+iy)*W+ix];
          if (is_max) acc = v > acc ? v : acc; else acc += v; ++n; } }
      y[(c*OH+oy)*OW+ox] = is_max ? acc : acc / (float)(cip ? KH*KW : n); } }
void add_f(const float* a, const float* b, int n, float lo, float hi, float* y) {
    int i; for (i = 0; i < n; ++i) y[i] = clampf(a[i] + b[i], lo, hi); }
void clamp_f(const float* a, int n, float lo, float hi, float* y) {
    int i; for (i = 0; i < n; ++i) y[i] = clampf(a[i], lo, hi); }
"""


def _real_multiplier(op: Op) -> np.ndarray:
    m = op.consts["multiplier"].astype(np.float64)
    s = op.consts["shift"].astype(np.float64)
    if op.attrs.get("rounding") == "pow2":
        return 2.0 ** (s - 1)
    return m * 2.0 ** (s - 31)


def _farr(name: str, v: np.ndarray) -> str:
    vals = ", ".join(f"{float(x):.9e}f" for x in np.ravel(v))
    return f"static const float {name}[{max(1, np.size(v))}] = {{{vals or '0'}}};\n"


def float_c_project(g: IntGraph, out: Path) -> Path:
    """A float32 C project of ``g`` laid out like an export (so the M0 runners accept it)."""
    t = g.tensors
    out.mkdir(parents=True, exist_ok=True)
    data, body, bufs = [], [], []

    def real_bounds(op: Op, out_name: str) -> tuple[float, float]:
        ti = t[out_name]
        lo, hi = op.attrs.get("act_min", -(2**15)), op.attrs.get("act_max", 2**15)
        return ti.scale * (lo - ti.zero_point), ti.scale * (hi - ti.zero_point)

    names = {g.input: "xin"}
    for tn, ti in t.items():
        if tn != g.input:
            names[tn] = f"b_{len(bufs)}"
            bufs.append(f"static float b_{len(bufs)}[{math.prod(ti.shape)}];")
    tin = t[g.input]
    body.append(
        f"    for (i = 0; i < {math.prod(tin.shape)}; ++i) xin[i] = "
        f"{tin.scale:.9e}f * (float)(input[i] - ({tin.zero_point}));"
    )
    for k, op in enumerate(g.ops):
        x, y = names[op.inputs[0]], names[op.output]
        xs, ys = t[op.inputs[0]].shape, t[op.output].shape
        if op.kind in ("conv", "fully_connected"):
            s_in, s_out = t[op.inputs[0]].scale, t[op.output].scale
            sw = _real_multiplier(op) * s_out / s_in
            w = op.consts["weight"].astype(np.float64)
            wr = w * sw.reshape((-1,) + (1,) * (w.ndim - 1))
            br = op.consts["bias"].astype(np.float64) * sw * s_in
            data += [_farr(f"w{k}", wr), _farr(f"bb{k}", br)]
            lo, hi = real_bounds(op, op.output)
            if op.kind == "conv":
                a = op.attrs
                c, h, wd = (xs[0], 1, xs[1]) if len(xs) == 2 else xs
                o, oh, ow = (ys[0], 1, ys[1]) if len(ys) == 2 else ys
                kh, kw = op.consts["weight"].shape[2:]
                body.append(
                    f"    conv_f({x}, {c}, {h}, {wd}, w{k}, bb{k}, {o}, {oh}, {ow}, {kh}, {kw}, "
                    f"{a['stride'][0]}, {a['stride'][1]}, {a['padding'][0]}, {a['padding'][1]}, "
                    f"{a['dilation'][0]}, {a['dilation'][1]}, {a['groups']}, {lo:.9e}f, "
                    f"{hi:.9e}f, {y});"
                )
            else:
                body.append(
                    f"    fc_f({x}, {xs[0]}, w{k}, bb{k}, {ys[0]}, {lo:.9e}f, {hi:.9e}f, {y});"
                )
        elif op.kind in ("max_pool", "avg_pool"):
            a = op.attrs
            c, h, wd = (xs[0], 1, xs[1]) if len(xs) == 2 else xs
            _, oh, ow = (ys[0], 1, ys[1]) if len(ys) == 2 else ys
            body.append(
                f"    pool_f({x}, {c}, {h}, {wd}, {oh}, {ow}, {a['kernel'][0]}, {a['kernel'][1]}, "
                f"{a['stride'][0]}, {a['stride'][1]}, {a['padding'][0]}, {a['padding'][1]}, "
                f"{int(op.kind == 'max_pool')}, {a.get('count_include_pad', 0)}, {y});"
            )
        elif op.kind == "add":
            lo, hi = real_bounds(op, op.output)
            body.append(
                f"    add_f({x}, {names[op.inputs[1]]}, {math.prod(ys)}, {lo:.9e}f, "
                f"{hi:.9e}f, {y});"
            )
        elif op.kind in ("clamp", "rescale"):
            lo, hi = real_bounds(op, op.output)
            body.append(f"    clamp_f({x}, {math.prod(ys)}, {lo:.9e}f, {hi:.9e}f, {y});")
        elif op.kind == "reshape":
            body.append(f"    memcpy({y}, {x}, sizeof(float) * {math.prod(ys)});")
        else:
            raise ValueError(f"float benchmark has no kernel for {op.kind}")
    n_out = math.prod(t[g.output].shape)
    body.append(f"    for (i = 0; i < {n_out}; ++i) output[i] = {names[g.output]}[i];")
    n_in = math.prod(tin.shape)
    header = (
        f"#include <stdint.h>\ntypedef int8_t model_input_t;\ntypedef float model_output_t;"
        f"\n#define MODEL_INPUT_SIZE {n_in}\n#define MODEL_OUTPUT_SIZE {n_out}\n"
        "int model_run(const model_input_t* input, model_output_t* output);\n"
    )
    (out / "model.h").write_text(header)
    src = (
        FLOAT_KERNELS
        + '#include "model.h"\n'
        + "".join(data)
        + "\n".join(bufs)
        + f"\nstatic float xin[{n_in}];\n"
        + "int model_run(const model_input_t* input, model_output_t* output) {\n    int i;\n"
        + "\n".join(body)
        + "\n    return 0;\n}\n"
    )
    (out / "model.c").write_text(src)
    for rel, text in m0_files("model", "int8_t", np.full(n_in, tin.zero_point)).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    info = {
        "name": "model",
        "library_sources": ["model.c"],
        "input": {"dtype": tin.dtype, "shape": list(tin.shape)},
        "output": {"dtype": "float32", "shape": list(t[g.output].shape)},
    }
    (out / "model_info.json").write_text(json.dumps(info))
    return out


# ----------------------------------------------------------------------------------------------


def _time(fn, runs: int) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(runs):
            fn()
        best = min(best, (time.perf_counter() - t0) / runs)
    return best


def bench_model(name: str, work: Path) -> dict:
    torch.set_num_threads(1)
    model, ds = zoo.get(name, progress=False)
    q = intquant.quantize(model, ds.x_train[:256], intquant.Config())
    x = q.quantize_input(ds.x_test[:8])
    res = q.export_c(work / name / "c", name="model")
    cost = cost_report(res.out_dir, x[:2])
    host_s = time_host(res.out_dir, x[0], runs=2000)
    xf = torch.as_tensor(ds.x_test[:1], dtype=torch.float32)
    with torch.no_grad():
        torch_s = _time(lambda: model(xf), 300)
    ort_s = None
    try:
        import onnxruntime as ort

        # plain QDQ (ORT's own int8 kernels), not the exact-integer check model
        path = q.to_onnx(work / name / "model.onnx", requant="float")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x[:1]}
        ort_s = _time(lambda: sess.run(None, feed), 300)
    except Exception as e:  # report, don't hide
        print(f"{name}: ONNX Runtime timing failed: {e}", file=sys.stderr)
    float_instr = None
    try:
        fdir = float_c_project(q.graph, work / name / "float_c")
        fres = emulate_unicorn(fdir, x[:1], allow_soft_float=True)
        float_instr = fres.instructions[0]
    except Exception as e:
        print(f"{name}: float32 C build failed: {e}", file=sys.stderr)
    return {
        "model": name,
        "graph": q.graph,
        **cost,
        "host_c_s": host_s,
        "torch_float_s": torch_s,
        "ort_int8_s": ort_s,
        "float32_m0_instructions": float_instr,
    }


def m0_section(zoo_graphs: dict, mlperf: list[str], work: Path) -> tuple[str, dict]:
    """The c_backend_m0 section: whole models, options, layers next to CMSIS-NN, code size."""
    src = cmsis_nn.cmsis_nn_dir()
    objs = cmsis_nn.build_library(src, work / "cmsis_lib") if src is not None else None
    runs: dict[tuple[str, str], dict] = {}
    graphs = {(n, "int8"): g for n, g in zoo_graphs.items()}
    for name in mlperf:
        model, x = mlperf_tiny.build(name)
        configs = {"int8": {}, **(OPTIONS if name == "kws_dscnn" else {})}
        for label, cfg in configs.items():
            graphs[(name, label)] = intquant.quantize(
                model, x, intquant.Config(**cfg), progress=False
            ).graph
    for (name, label), g in graphs.items():
        runs[(name, label)] = m0_kernels.measure_model(g, work / f"m0_{name}_{label}", objs)
        r = runs[(name, label)]
        print(
            f"{name} {label}: {r['instructions_per_mac']:.2f} instr/MAC, "
            f"{r['cycles_per_mac']:.2f} cycles/MAC",
            flush=True,
        )
    return _m0_markdown(runs, src), {f"{n}/{lab}": r for (n, lab), r in runs.items()}


def _m0_markdown(runs: dict, cmsis_src: Path | None) -> str:
    rows = []
    for (name, label), r in runs.items():
        target = TARGETS.get((name, label))
        met = "" if target is None else ("yes" if r["instructions_per_mac"] <= target else "**no**")
        rows.append(
            [
                name,
                label,
                r["macs"],
                f"{r['instructions_per_mac']:.2f}",
                f"{r['cycles_per_mac']:.2f}",
                f"{r['cycles_per_mac_small']:.2f}",
                f"{r['floor_ratio']:.2f}",
                r["code_bytes_Os"],
                "" if target is None else f"<= {target} ({met})",
            ]
        )
    models = table(
        [
            "model",
            "config",
            "MACs",
            "instr/MAC",
            "cycles/MAC",
            "cycles/MAC small mult.",
            "cycles / floor",
            "code B (-Os)",
            "instr/MAC target",
        ],
        rows,
    )
    if cmsis_src is None:
        ref = (
            "CMSIS-NN column: the ranges of ../shared/notes/m0-cycles.md (IQ_CMSIS_NN_DIR not "
            "set): " + "; ".join(f"{k} {v}" for k, v in cmsis_nn.NOTES_FIGURES.items()) + "."
        )
    else:
        ref = (
            "CMSIS-NN column: its portable C built here for Cortex-M0 (-O2) and run on the same "
            "layer with the same integer constants and a random input; 'same' = its output "
            "equals the interpreter's. CMSIS-NN has one requantization (two roundings); with "
            "single rounding or power-of-two scales intquant computes another function, so "
            "'no' in those rows compares different roundings, not a bug. FC layers at 16x8 "
            "have no CMSIS-NN figure (its 16-bit fully connected kernel takes one multiplier "
            "per tensor)."
        )
    layer_rows = []
    for (name, label), r in runs.items():
        for lay in r["layers"]:
            cm = lay.get("cmsis_cycles_per_mac")
            layer_rows.append(
                [
                    f"{name} {label}",
                    lay["op"],
                    lay["layer"],
                    lay["macs"],
                    f"{lay['instructions_per_mac']:.2f}",
                    f"{lay['cycles_per_mac']:.2f}",
                    "" if cm is None else f"{cm:.2f}",
                    "" if cm is None else f"{lay['cycles_per_mac'] / cm:.2f}",
                    "" if cm is None else ("yes" if lay["cmsis_identical"] else "**no**"),
                ]
            )
    layers = table(
        [
            "model",
            "op",
            "layer",
            "MACs",
            "instr/MAC",
            "cycles/MAC",
            "CMSIS-NN cycles/MAC",
            "ratio",
            "same",
        ],
        layer_rows,
    )
    return (
        "## Cortex-M0 kernels: cycles per layer, MLPerf-Tiny-like models, CMSIS-NN\n\n"
        f"Command: `IQ_CMSIS_NN_DIR=... .venv/bin/python benchmarks/c_backend.py` ({machine()}). "
        "Whole inference on unicorn's Cortex-M0 (-O2), one random input; cycles from the executed "
        "trace with the Cortex-M0 TRM timings (loads 2, taken branches 3, MULS 1 with the fast "
        "multiplier, 32 with the small one); floor = 4.45 cycles x MACs + 30 cycles x conv/linear "
        "outputs; code = the model library's functions at -Os (constants and harness excluded). "
        "MLPerf-Tiny-like models (benchmarks/mlperf_tiny.py: the reference layer shapes, random "
        "weights, calibrated on random data). " + ref + "\n\n" + models + "\n\n"
        + "\n".join(m0_target_lines(runs)) + "\n\n" + layers + "\n"
    )


def _verdict(ok: bool) -> str:
    return "met" if ok else "**MISS**"


def m0_target_lines(runs: dict) -> list[str]:
    """Every issue-15 target with the measured value, misses marked."""
    lines = ["Targets (issue 15; Cortex-M0, fast multiplier, -O2, whole inference):"]
    dw = [(f"{n} {lab}", lay) for (n, lab), r in runs.items() if lab == "int8"
          for lay in r["layers"] if lay["layer"].startswith("dw 3x3")]
    if dw:
        worst = max(lay["cycles_per_mac"] for _, lay in dw)
        over = [f"{m} {lay['layer']} {lay['cycles_per_mac']:.2f}" for m, lay in dw
                if lay["cycles_per_mac"] > DEPTHWISE_3X3_CYCLES_PER_MAC]
        lines.append(
            f"- 3x3 depthwise <= {DEPTHWISE_3X3_CYCLES_PER_MAC:.0f} cycles/MAC (int8 layers): "
            f"{min(lay['cycles_per_mac'] for _, lay in dw):.2f}-{worst:.2f} over {len(dw)} "
            f"layers, {_verdict(not over)}" + (f" ({'; '.join(over)})" if over else "") + ".")
    else:
        lines.append("- 3x3 depthwise: no 3x3 depthwise layer measured in this run.")
    for (n, lab), target in TARGETS.items():
        if (n, lab) in runs:
            v = runs[(n, lab)]["instructions_per_mac"]
            lines.append(f"- {n} {lab} <= {target} instructions/MAC: {v:.2f}, "
                         f"{_verdict(v <= target)}.")
        else:
            lines.append(f"- {n} {lab} <= {target} instructions/MAC: not measured in this run.")
    zoo = [(n, r["floor_ratio"]) for (n, lab), r in runs.items() if n in ZOO and lab == "int8"]
    lines.append(
        f"- zoo models within {FLOOR_RATIO}x of the floor (4.45 cycles x MACs + 30 x outputs): "
        + ", ".join(f"{n} {v:.2f}x" + ("" if v <= FLOOR_RATIO else " **MISS**") for n, v in zoo)
        + ".")
    conv16 = [(n, lay) for (n, lab), r in runs.items() if lab == "16x8" for lay in r["layers"]
              if not lay["layer"].startswith("FC")]
    ratios = [(n, lay, lay["cycles_per_mac"] / lay["cmsis_cycles_per_mac"]) for n, lay in conv16
              if lay.get("cmsis_cycles_per_mac")]
    unmeasured = [lay["layer"] for _, lay in conv16 if not lay.get("cmsis_cycles_per_mac")]
    if ratios:
        over = [f"{lay['layer']} {q:.2f}x" for _, lay, q in ratios if q > CMSIS_16X8_RATIO]
        lines.append(
            f"- 16x8 <= {CMSIS_16X8_RATIO}x CMSIS-NN's cycles on every conv layer: "
            f"{min(q for *_, q in ratios):.2f}-{max(q for *_, q in ratios):.2f}x over "
            f"{len(ratios)} layers, {_verdict(not over)}" + (f" ({'; '.join(over)})" if over
                                                             else "")
            + (f"; not measured against CMSIS-NN: {', '.join(unmeasured)}" if unmeasured
               else "") + ".")
    else:
        lines.append("- 16x8 vs CMSIS-NN per conv layer: not measured (no CMSIS-NN checkout "
                     "given, or no 16x8 conv layer it supports).")
    code = [(f"{n} {lab}", r["code_bytes_Os"]) for (n, lab), r in runs.items() if lab == "int8"]
    over = [f"{m} {b} B" for m, b in code if b > CODE_BYTES_OS]
    lines.append(
        f"- runtime code for a whole CNN <= {CODE_BYTES_OS} B at -Os (int8): "
        f"{min(b for _, b in code)}-{max(b for _, b in code)} B, {_verdict(not over)}"
        + (f" ({'; '.join(over)})" if over else "") + ".")
    base = runs.get(("kws_dscnn", "int8"))
    for opt in SIMPLIFYING_OPTIONS:
        r = runs.get(("kws_dscnn", opt))
        if base is None or r is None:
            continue
        lines.append(
            f"- {opt} at least as fast as the default (kws_dscnn): {r['cycles_per_mac']:.2f} vs "
            f"{base['cycles_per_mac']:.2f} cycles/MAC ({r['instructions_per_mac']:.2f} vs "
            f"{base['instructions_per_mac']:.2f} instructions/MAC), "
            f"{_verdict(r['cycles'] <= base['cycles'])}.")
    return lines


def _us(s: float | None) -> str:
    return f"{s * 1e6:.1f}" if s else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--mlperf", default=",".join(MLPERF))
    ap.add_argument("--render-m0", action="store_true",
                    help="rewrite the c_backend_m0 section from c_backend.json, no measuring")
    args = ap.parse_args()
    if args.render_m0:
        saved = json.loads(JSON.read_text())["m0_kernels"]
        runs = {tuple(k.split("/", 1)): r for k, r in saved.items()}
        measured = any("cmsis_cycles_per_mac" in lay for r in runs.values() for lay in r["layers"])
        write_section("c_backend_m0", _m0_markdown(runs, Path("CMSIS-NN") if measured else None))
        return
    rows, results, graphs = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            r = bench_model(name, Path(tmp))
            graphs[name] = r.pop("graph")
            results.append(r)
            ratio = (
                r["float32_m0_instructions"] / r["m0_instructions_per_inference"]
                if r["float32_m0_instructions"]
                else None
            )
            rows.append(
                [
                    name,
                    r["arena_bytes"],
                    r["arena_lower_bound"],
                    r["arena_greedy_bytes"],
                    r["stack_bytes"],
                    r["flash_bytes"],
                    f"{r['m0_instructions_per_inference']:.0f}",
                    f"{r['m0_instructions_per_mac_conv_linear']:.2f}",
                    _us(r["host_c_s"]),
                    _us(r["ort_int8_s"]),
                    _us(r["torch_float_s"]),
                    f"{ratio:.1f}x" if ratio else "n/a",
                ]
            )
            print(rows[-1], flush=True)
        m0_md, m0_json = m0_section(graphs, [m for m in args.mlperf.split(",") if m], Path(tmp))
    md = (
        "## C back end: memory, flash, Cortex-M0 instructions, latency\n\n"
        f"Command: `.venv/bin/python benchmarks/c_backend.py` ({machine()}). int8 models "
        "(per-channel weights). Arena/lower bound/greedy: bytes of activations (TFLM-style "
        "greedy largest-first for comparison). Flash: code + const data of the model library "
        "on Cortex-M0 (-O2, harness excluded). M0 instructions: unicorn Cortex-M0 count for one "
        "inference; per MAC over conv/linear ops. Host latency: batch 1, one thread, µs "
        "(compiled C at -O2 vs ONNX Runtime on the QDQ export vs PyTorch float). float32/int8: "
        "M0 instructions of the same network as float32 C with soft float over the int8 C.\n\n"
        + table(
            [
                "model",
                "arena B",
                "lower bound B",
                "greedy B",
                "stack B",
                "flash B",
                "M0 instr/inference",
                "M0 instr/MAC",
                "host C µs",
                "ORT int8 µs",
                "torch float µs",
                "float32/int8 M0",
            ],
            rows,
        )
    )
    write_section("c_backend", md)
    write_section("c_backend_m0", m0_md)
    out = {"zoo": results, "m0_kernels": m0_json}
    JSON.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
