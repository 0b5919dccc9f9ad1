"""Low bit widths on the device: QAT accuracy, packed weight bytes, arena, Cortex-M0 cost.

For every zoo model and weight width (QAT fine-tuning of the trained float model, first/last
layers kept at 8 bits by the QAT policy, activations 8 bits):
W8A8 (uniform), W4A8 (uniform), ternary W2A8 (TWN), W1A8 (BinaryConnect), power-of-two W4A8;
W1A1 BNN and XNOR rows are pending (packed activations and XNOR kernels: helper bnn's branch).

Per model and width: QAT (= deployed integer) test accuracy, weight bytes (the conv/linear
weight arrays as stored, packed; and all constants of the generated C), arena, Cortex-M0
instructions and cycles per inference with the fast (1-cycle) and the small (32-cycle)
multiplier, and per conv/linear layer its kernel path and cycles/MAC. A kernel section measures
each packed kernel on one conv layer at two reduction lengths: the marginal cycles per MAC (the
inner loop plus its per-position share) and the fixed cost per output (requantization, loop
set-up). Then the issue's targets, met or missed.

Cycles come from benchmarks/m0cycles.py (Cortex-M0 TRM timings on the executed trace, no wait
states) until the project's own cycle model lands in codegen/cost.py.

    .venv/bin/python benchmarks/lowbit.py [--models mnist1d_cnn ...] [--epochs 10]
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import intgraph_factory as factory  # noqa: E402
from intquant import zoo  # noqa: E402
from intquant.codegen import export_c  # noqa: E402
from intquant.config import Config  # noqa: E402
from intquant.ops import _lowbit, weight_codes  # noqa: E402
from intquant.qat import convert, prepare  # noqa: E402
from intquant.training import evaluate, train  # noqa: E402
from m0cycles import m0_cycles  # noqa: E402
from results import machine, table, write_section  # noqa: E402

ZOO = ["digits_cnn", "mnist1d_cnn", "mnist1d_mlp", "mnist1d_dscnn", "mnist1d_resnet"]
# (label, weight quantizer, weight bits, act quantizer, act bits)
WIDTHS = [
    ("W8A8", "uniform", 8, "uniform", 8),
    ("W4A8", "uniform", 4, "uniform", 8),
    ("ternary W2A8 (TWN)", "ternary", 2, "uniform", 8),
    ("W1A8 BinaryConnect", "binary", 1, "uniform", 8),
    ("pow2 W4A8", "pow2", 4, "uniform", 8),
]
PENDING = ["W1A1 BNN", "W1A1 XNOR"]
BIG_LAYER_MACS_PER_OUTPUT = 64  # the targets concern conv/linear layers with at least this


def qat_model(name: str, wq: str, wb: int, aq: str, ab: int, epochs: int, lr: float):
    model, ds = zoo.get(name, progress=False)
    cfg = Config(weight_bits=wb, act_bits=ab, weight_quantizer=wq, act_quantizer=aq)
    torch.manual_seed(0)
    calib = ds.x_train[:512]
    q = prepare(model, cfg, example_input=calib)
    t0 = time.perf_counter()
    train(q, (ds.x_train, ds.y_train), epochs=epochs, lr=lr, batch_size=64, schedule="cosine",
          progress=False)
    secs = time.perf_counter() - t0
    qat_acc = evaluate(q, ds.x_test, ds.y_test)
    qm = convert(q, calib)
    return qm, ds, qat_acc, secs


def measure(qm, ds, work: Path) -> dict:
    """Bytes, arena, per-op instructions and cycles of one converted model."""
    g = qm.graph
    res = export_c(g, work, name="m")
    x = qm.quantize_input(ds.x_test[:1])[0]
    per_op = m0_cycles(res.out_dir, x)
    ops = res.info["ops"]
    total = np.sum([np.array(v) for v in per_op.values()], axis=0)
    layers = []
    for o in ops:
        op = g.ops[o["index"]]
        if op.kind not in ("conv", "fully_connected"):
            continue
        n, fast, small = per_op.get(o["index"], (0, 0, 0))
        shape = weight_codes(op).shape
        k = math.prod(shape[1:])
        layers.append({
            "name": op.name,
            "format": op.attrs.get("weight_format", str(op.consts["weight"].dtype)),
            "path": _lowbit.packed_path(g, op) if _lowbit.is_packed(op) else "int8",
            "macs": o["macs"], "k": k, "rows": shape[0],
            "weight_bytes": o["weight_array_bytes"],
            "instructions": n, "cycles_fast": fast, "cycles_small": small,
        })
    return {
        "weight_array_bytes": sum(r["weight_bytes"] for r in layers),
        "const_bytes": res.weight_bytes, "arena": res.arena_bytes, "macs": res.macs,
        "instructions": int(total[0]), "cycles_fast": int(total[1]), "cycles_small": int(total[2]),
        "layers": layers,
    }


def kernel_rows() -> list[dict]:
    """Each kernel on conv1d k=3, L=40, 32 output channels, at K = 96 and 192 (Cin 32, 64)."""
    rows = []
    for fmt in ["int8", "int4", "ternary", "binary", "pow2"]:
        pts = []
        for cin in (32, 64):
            rng = np.random.default_rng(cin)
            b = factory.GraphBuilder(rng, (cin, 40), "int8")
            b.conv(b.input, 32, (1, 3), padding=(0, 1, 0, 1), w_dtype=fmt)
            g = b.graph()
            x = factory.random_input(rng, g, 1)[0]
            with tempfile.TemporaryDirectory() as d:
                res = export_c(g, Path(d) / "c", name="k")
                c = np.array(m0_cycles(res.out_dir, x)[0], dtype=np.float64)
            pts.append((c, 32 * 40 * cin * 3, 32 * 40))
        (c1, m1, o1), (c2, m2, _) = pts
        marginal = (c2 - c1) / (m2 - m1)
        fixed = (c1 - marginal * m1) / o1
        op = g.ops[0]
        rows.append({"format": fmt, "path": _lowbit.packed_path(g, op) if fmt != "int8" else
                     "int8 (iq_dot.h)", "allin_k96": (c1 / m1).tolist(),
                     "marginal": marginal.tolist(), "fixed_per_output": fixed.tolist()})
    return rows


def targets(results: dict, kernels: list[dict]) -> list[list[str]]:
    out = []
    bits = {"int4": 4, "pow2": 4, "int2": 2, "binary": 1}
    worst = 0.0
    for widths in results.values():
        for r in widths.values():
            for lay in r["layers"]:
                if lay["format"] in bits and lay["k"] >= BIG_LAYER_MACS_PER_OUTPUT:
                    allowed = lay["rows"] * lay["k"] * bits[lay["format"]] / 8 * 1.02
                    worst = max(worst, lay["weight_bytes"] / allowed)
    out.append(["layer weight bytes ≤ bits/8 of int8 + 2 % (layers with ≥ 64 MACs/output)",
                f"max ratio to the bound {worst:.3f}", "met" if worst <= 1.0 else "MISSED"])
    cnn = results.get("mnist1d_cnn")
    if cnn and "W8A8" in cnn:
        base_w, base_c = cnn["W8A8"]["weight_array_bytes"], cnn["W8A8"]["const_bytes"]
        for label, limit in (("W4A8", 0.55), ("W1A8 BinaryConnect", 0.35)):
            if label in cnn:
                rw = cnn[label]["weight_array_bytes"] / base_w
                rc = cnn[label]["const_bytes"] / base_c
                out.append([f"mnist1d_cnn {label} ≤ {limit}x W8A8 weight bytes",
                            f"weight arrays {rw:.3f}x, all constants {rc:.3f}x",
                            "met" if rw <= limit else "MISSED"])
    for fmt, limit in (("int4", 3.2), ("binary", 2.5), ("ternary", 2.5)):
        layer = [lay["cycles_fast"] / lay["macs"] for w in results.values() for r in w.values()
                 for lay in r["layers"] if lay["format"] == ("int2" if fmt == "ternary" else fmt)
                 and lay["k"] >= BIG_LAYER_MACS_PER_OUTPUT]
        kern = next(k for k in kernels if k["format"] == fmt)
        best = f"{min(layer):.2f}–{max(layer):.2f}" if layer else "–"
        met = bool(layer) and max(layer) <= limit
        out.append([f"{fmt} × int8 ≤ {limit} cycles/MAC (fast multiplier)",
                    f"zoo layers all-in {best}; kernel marginal {kern['marginal'][1]:.2f}",
                    "met" if met else ("MISSED (all-in); the inner loop is within"
                                       if kern["marginal"][1] <= limit else "MISSED")])
    ratios = []
    for widths in results.values():
        if "W8A8" in widths and "pow2 W4A8" in widths:
            int8 = {lay["name"]: lay for lay in widths["W8A8"]["layers"]}
            for lay in widths["pow2 W4A8"]["layers"]:
                if (lay["format"] == "pow2" and lay["name"] in int8
                        and lay["k"] >= BIG_LAYER_MACS_PER_OUTPUT):
                    ratios.append(int8[lay["name"]]["cycles_small"] / lay["cycles_small"])
    if ratios:
        out.append(["pow2 layers (≥ 64 MACs/output), small multiplier: ≥ 4x fewer cycles than "
                    "int8 on the same layer",
                    f"{min(ratios):.2f}x–{max(ratios):.2f}x over {len(ratios)} layers",
                    "met" if min(ratios) >= 4 else "MISSED"])
    return out


def markdown(results: dict, kernels: list[dict], cmd: str) -> str:
    rows = []
    for model, widths in results.items():
        for label, r in widths.items():
            rows.append([model, label, f"{100 * r['qat_acc']:.2f}", f"{100 * r['int_acc']:.2f}",
                         r["weight_array_bytes"], r["const_bytes"], r["arena"],
                         r["instructions"], r["cycles_fast"], r["cycles_small"],
                         f"{r['cycles_fast'] / r['macs']:.2f}", f"{r['train_s']:.0f}"])
        for label in PENDING:
            rows.append([model, label] + ["pending (helper bnn: packed activations, XNOR)"]
                        + [""] * 9)
    layer_rows = []
    for model, widths in results.items():
        for label, r in widths.items():
            for lay in r["layers"]:
                layer_rows.append([model, label, lay["name"], lay["format"], lay["path"],
                                   lay["k"], lay["weight_bytes"],
                                   f"{lay['cycles_fast'] / lay['macs']:.2f}",
                                   f"{lay['cycles_small'] / lay['macs']:.2f}"])
    kern = [[k["format"], k["path"], f"{k['allin_k96'][1]:.2f}", f"{k['allin_k96'][2]:.2f}",
             f"{k['marginal'][1]:.2f}", f"{k['marginal'][2]:.2f}",
             f"{k['fixed_per_output'][1]:.0f}", f"{k['fixed_per_output'][2]:.0f}"]
            for k in kernels]
    return "\n".join([
        "## Low bit widths on the device",
        "",
        f"Command: {cmd} ({machine()}, 1 torch thread). QAT fine-tunes each trained zoo model "
        "(Adam, cosine; first/last layers at 8 bits by the QAT policy, activations 8 bits), "
        "converts it and exports C. 'int acc' is the converted model in the integer "
        "interpreter (= the generated C, tested bit-exact). 'weight B': the conv/linear weight "
        "arrays as stored in the IntGraph and the C (1, 2, 4-bit codes packed); 'consts B': "
        "every constant of the generated C (`<NAME>_WEIGHT_BYTES`: weights, folded biases, "
        "multipliers, shifts, tables). Instructions and cycles: one inference on unicorn's "
        "Cortex-M0, arm-none-eabi-gcc -O2; cycles with Cortex-M0 TRM timings applied to the "
        "executed trace (benchmarks/m0cycles.py, no flash wait states), MULS 1 cycle (fast "
        "multiplier) or 32 (small). Weight formats: int2 holds the ternary codes.",
        "",
        table(["model", "width", "QAT acc %", "int acc %", "weight B", "consts B", "arena B",
               "M0 instr", "cycles fast", "cycles small", "cycles/MAC fast", "train s"], rows),
        "",
        "### Targets",
        "",
        table(["target", "measured", ""], targets(results, kernels)),
        "",
        "Why the misses: (1) W4A8 at 0.575x is arithmetic, not storage: the first and last "
        "layers stay at 8 bits and hold 15 % of the MNIST-1D CNN's weights (0.15 + 0.85/2 = "
        "0.575); every packed layer itself meets bits/8 + 2 %. (2) All-in cycles/MAC include "
        "a fixed ~105-125 cycles per output (requantization, ~72 of them TFLM's double rounding "
        "with 4 MULS; loop set-up; the store), about 1 cycle/MAC at K = 96-144; the kernels' "
        "marginal cost is the inner loop with its per-position share. (3) int4: two products "
        "per MULS cost 20 cycles per 8 MACs plus a lane split every 16 inputs (2.7 + 0.4); "
        "im2col adds the rest. (4) Ternary needs two table lookups per four MACs (one per bit "
        "plane), twice binary's. (5) pow2 with the small multiplier: the table lookups cost "
        "~6 cycles/MAC against ~36 for int8 MULS, but both layers pay the same requantization "
        "(4 MULS = 128 cycles per output with the small multiplier), which brings the ratio "
        "to 3.2-4.2x on these layers.",
        "",
        "### Kernels: one conv layer (1-D, k = 3, L = 40, 32 output channels, int8 input)",
        "",
        "All-in cycles/MAC at K = 96 (Cin 32); marginal cycles per MAC and fixed cycles per "
        "output from K = 96 vs K = 192 (the inner loop with its per-position share: im2col, "
        "tables; the fixed part is mostly requantization, ~72 cycles with TFLM's double "
        "rounding, 4 MULS). 'path' names the kernel of iq_conv_packed_impl.h.",
        "",
        table(["weights", "path", "all-in fast", "all-in small", "marginal fast",
               "marginal small", "fixed/output fast", "fixed/output small"], kern),
        "",
        "### Per layer",
        "",
        table(["model", "width", "layer", "stored as", "path", "K", "weight B",
               "cycles/MAC fast", "cycles/MAC small"], layer_rows),
    ])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=ZOO)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--section", default="lowbit")
    ap.add_argument("--json", default=str(Path(__file__).with_name("lowbit.json")))
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the RESULTS.md section from the --json of a run")
    args = ap.parse_args()
    if args.render:
        saved = json.loads(Path(args.json).read_text())
        write_section(args.section, markdown(saved["models"], saved["kernels"], saved["command"]))
        return
    torch.set_num_threads(1)
    cmd = "`.venv/bin/python benchmarks/lowbit.py " + " ".join(sys.argv[1:]) + "`"
    kernels = kernel_rows()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as d:
        for name in args.models:
            results[name] = {}
            for label, wq, wb, aq, ab in WIDTHS:
                qm, ds, qat_acc, secs = qat_model(name, wq, wb, aq, ab, args.epochs, args.lr)
                r = measure(qm, ds, Path(d) / f"{name}_{wq}{wb}")
                r.update(qat_acc=qat_acc, int_acc=qm.accuracy(ds.x_test, ds.y_test),
                         train_s=secs)
                results[name][label] = r
                print(name, label, f"acc {100 * r['int_acc']:.2f}", r["weight_array_bytes"],
                      r["cycles_fast"], flush=True)
                write_section(args.section, markdown(results, kernels, cmd))
    Path(args.json).write_text(json.dumps({"command": cmd, "kernels": kernels,
                                           "models": results}, indent=1))


if __name__ == "__main__":
    main()
