"""Mixed precision under a flash budget: search_bits vs uniform widths and single-layer choices.

Target (issue 6): on the MNIST-1D CNN with a weight budget of 60 % of its int8 weight bytes,
``search_bits`` keeps accuracy within 1 pp of W8A8 and beats uniform W4A8 and the best single
layer-width choice (all layers at 4 bits but one, widened to 8 or 16 where the budget allows).

Protocol: calibration on the first 1024 training samples; every choice (the search's and the
single-layer baseline's) is made on the last 20 % of the training split; every number reported
is the *integer* model (NumPy interpreter) on the full test split, which nothing saw before.
Weight bytes = Σ ⌈params·bits/8⌉ over conv/linear weights (dense sub-byte storage).

    .venv/bin/python benchmarks/mixed_precision.py [--model mnist1d_cnn] [--budget 0.6]
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
from intquant import zoo  # noqa: E402
from intquant.analysis.mixed import _eval_split, search_bits, weight_cost  # noqa: E402
from intquant.graph import run_graph  # noqa: E402
from results import machine, table, write_section  # noqa: E402


def measure(model, calib, config, x, y, float_logits):
    q = intquant.quantize(model, calib, config, progress=False)
    logits = q.predict(x).reshape(len(x), -1)
    return q, float(np.mean(logits.argmax(1) == y)), float(np.mean(np.abs(logits - float_logits)))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mnist1d_cnn")
    p.add_argument("--budget", type=float, default=0.6, help="fraction of int8 weight bytes")
    args = p.parse_args()
    torch.set_num_threads(2)
    model, ds = zoo.get(args.model, progress=True)
    calib = ds.x_train[:1024]
    x_val, y_val = _eval_split(ds)
    x_test, y_test = ds.x_test, ds.y_test

    base_q = intquant.quantize(model, calib, intquant.Config(), progress=False)
    graph = base_q.float_graph
    layers = [n.name for n in graph.nodes if n.op in ("conv", "linear")]
    params = {n: int(graph.node(n).params["weight"].size) for n in layers}
    int8_bytes = weight_cost(params, dict.fromkeys(layers, 8))
    budget = int(args.budget * int8_bytes)
    float_test = run_graph(graph, x_test).numpy().reshape(len(x_test), -1)
    float_val = run_graph(graph, x_val).numpy().reshape(len(x_val), -1)
    float_acc = float(np.mean(float_test.argmax(1) == y_test))

    rows = []

    def row(label, wbits, q, acc, err, note=""):
        cost = weight_cost(params, wbits)
        rows.append([label, " ".join(f"{wbits[n]}" for n in layers),
                     cost, f"{100 * cost / int8_bytes:.0f} %",
                     q.weight_bytes(), f"{100 * acc:.2f}", f"{100 * (acc - float_acc):+.2f}",
                     f"{err:.4f}", note])
        return acc

    for bits in (8, 4):
        wb = dict.fromkeys(layers, bits)
        q, acc, err = measure(model, calib, intquant.Config(weight_bits=bits), x_test, y_test,
                              float_test)
        fits = "fits" if weight_cost(params, wb) <= budget else "over budget"
        row(f"uniform W{bits}A8", wb, q, acc, err, fits)
        if bits == 8:
            w8_acc = acc
        else:
            w4_acc, w4_err = acc, err

    # Best single layer-width choice: one layer widened, chosen on the validation split.
    best = None
    for n in layers:
        for b in (8, 16):
            wb = {**dict.fromkeys(layers, 4), n: b}
            if weight_cost(params, wb) > budget:
                continue
            cfg = intquant.Config(weight_bits=4, overrides={n: {"weight_bits": b}})
            _, vacc, verr = measure(model, calib, cfg, x_val, y_val, float_val)
            key = (vacc, -verr)
            if best is None or key > best[0]:
                best = (key, n, b, cfg, wb)
    _, n, b, cfg, wb = best
    q, single_acc, single_err = measure(model, calib, cfg, x_test, y_test, float_test)
    row(f"best single layer: {n} at {b} bits", wb, q, single_acc, single_err,
        "chosen on validation")

    t = time.perf_counter()
    res = search_bits(model, calib, ds, budget_bytes=budget, candidates=(4, 8, 16))
    seconds = time.perf_counter() - t
    logits = res.qmodel.predict(x_test).reshape(len(x_test), -1)
    s_acc = float(np.mean(logits.argmax(1) == y_test))
    s_err = float(np.mean(np.abs(logits - float_test)))
    row("search_bits", res.weight_bits, res.qmodel, s_acc, s_err,
        f"{res.evaluations} simulated candidates, {seconds:.1f} s")

    verdict = [
        f"within 1 pp of W8A8: {'yes' if w8_acc - s_acc <= 0.01 else 'NO'} "
        f"({100 * (s_acc - w8_acc):+.2f} pp)",
        f"beats uniform W4A8: accuracy {100 * (s_acc - w4_acc):+.2f} pp, mean logit error "
        f"{s_err:.4f} vs {w4_err:.4f}",
        f"vs best single-layer choice: accuracy {100 * (s_acc - single_acc):+.2f} pp, mean "
        f"logit error {s_err:.4f} vs {single_err:.4f}",
        f"predicted weight bytes {res.predicted['weight_bytes']} (budget {budget}), measured "
        f"{res.measured['weight_bytes']}; predicted RAM {res.predicted['ram_bytes']} B, "
        f"measured C arena {res.measured.get('arena_bytes')} B",
    ]
    md = "\n".join([
        f"## Mixed precision: {args.model}, weight budget {100 * args.budget:.0f} % of int8 "
        f"({budget} of {int8_bytes} B)",
        "",
        f"Command: `.venv/bin/python benchmarks/mixed_precision.py --model {args.model} "
        f"--budget {args.budget}` ({machine()}). Integer model (NumPy interpreter) on the full "
        f"test split ({len(y_test)} samples), float accuracy {100 * float_acc:.2f} %. Choices "
        f"made on the last 20 % of the training split; calibration on the first 1024 training "
        f"samples. Bits per layer in order {', '.join(layers)}. 'weight B' = dense "
        f"⌈params·bits/8⌉ (the budgeted quantity); 'IntGraph B' = all constants as the "
        f"IntGraph/C back end store them today (sub-byte weights in int8 containers, plus "
        f"biases, multipliers, shifts).",
        "",
        table(["configuration", "bits per layer", "weight B", "of int8", "IntGraph B", "acc %",
               "Δ vs float pp", "mean abs logit err", "note"], rows),
        "",
        *[f"- {v}" for v in verdict],
    ])
    print(md)
    write_section(f"mixed-{args.model}" if args.model != "mnist1d_cnn" else "mixed", md)


if __name__ == "__main__":
    main()
