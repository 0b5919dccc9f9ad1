"""QAT benchmark: each quantizer at its natural widths, KURE + PTQ, and QAT step time.

Usage: ``.venv/bin/python benchmarks/qat.py [--models mnist1d_cnn digits_cnn] [--epochs 5]``
and ``.venv/bin/python benchmarks/qat.py --targets-only --section qat_targets`` for the
issue-14 targets only (LSQ W4A4 in a plain user loop, W2A2, BNN/XNOR W1A1 with the binary
recipe; each with and without distillation from the float model).

For every model: the float accuracy; QAT fine-tuning from the trained float model (BatchNorm
kept, folded at conversion) with each quantizer pair; the eval-mode QAT accuracy (eval mode runs
the deployed integer model, see intquant.qat.model) and the time it takes, the accuracy of a
separately converted integer model plus its logit agreement with eval mode, and how often the
fake-quant (training) forward gives the same integer logits; PTQ at
W4A8 / W3A8 of a model trained from scratch with and without the kurtosis regularizer; and
the training-step time of QAT vs float. The section is rewritten after every row, so a partial
run still leaves its figures in RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from intquant import zoo  # noqa: E402
from intquant.config import Config  # noqa: E402
from intquant.ptq import quantize  # noqa: E402
from intquant.qat import (  # noqa: E402
    agreement,
    binary_recipe,
    convert,
    distillation_loss,
    prepare,
    recalibrate_batchnorm,
)
from intquant.regularizers import kurtosis, weight_stats  # noqa: E402
from intquant.training import evaluate, train  # noqa: E402
from results import machine, table, write_section  # noqa: E402

# (label, weight quantizer, weight bits, act quantizer, act bits)
QUANTIZERS = [
    ("LSQ W4A4", "lsq", 4, "lsq", 4),
    ("LSQ W2A2", "lsq", 2, "lsq", 2),
    ("BNN W1A1 (BinaryConnect + sign)", "binary", 1, "sign", 1),
    ("XNOR W1A1", "xnor", 1, "sign", 1),
    ("BinaryConnect W1A8", "binary", 1, "uniform", 8),
    ("BinaryConnect stochastic W1A8", "binary_stochastic", 1, "uniform", 8),
    ("TWN W2A8", "ternary", 2, "uniform", 8),
    ("DoReFa W2A2", "dorefa", 2, "dorefa", 2),
    ("DoReFa W4A4", "dorefa", 4, "dorefa", 4),
    ("PACT W4A4", "uniform", 4, "pact", 4),
    ("HWGQ W1A2 (XNOR weights)", "xnor", 1, "hwgq", 2),
    ("power-of-two W4A8", "pow2", 4, "uniform", 8),
]


def step_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 20) -> float:
    """Median seconds per training step (forward, backward, Adam) on one batch."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for i in range(steps + 3):
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def fake_quant_identical(q: torch.nn.Module, qm, x: np.ndarray) -> float:
    """Fraction of logits on which the fake-quant forward (what training computes, in eval
    mode) lands on the integer model's code: how closely training tracks deployment."""
    q.eval()
    q.exact_eval = False
    try:
        with torch.no_grad():
            fq = q(torch.from_numpy(x)).to(torch.float64).numpy()
    finally:
        q.exact_eval = True
    info = qm.output_info
    codes = np.rint(fq / info.scale) + info.zero_point
    return float(np.mean(codes == qm.run(qm.quantize_input(x))))


def run_model(name: str, epochs: int, lr: float, rows: list, flush) -> None:
    model, ds = zoo.get(name, progress=False)
    float_acc = evaluate(model, ds.x_test, ds.y_test)
    rows.append([name, "float", "", f"{100 * float_acc:.2f}", "", "", "", "", "", ""])
    flush()
    calib = ds.x_train[:512]
    for label, wq, wb, aq, ab in QUANTIZERS:
        cfg = Config(weight_bits=wb, act_bits=ab, weight_quantizer=wq, act_quantizer=aq)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        q = prepare(model, cfg, example_input=calib)
        train(q, (ds.x_train, ds.y_train), epochs=epochs, lr=lr, batch_size=64,
              schedule="cosine", progress=False)
        if wq == "binary_stochastic":  # BN statistics of the deterministic deployed weights
            recalibrate_batchnorm(q, ds.x_train)
        secs = time.perf_counter() - t0
        t_eval = time.perf_counter()
        qat_acc = evaluate(q, ds.x_test, ds.y_test)  # converts once, then the interpreter
        eval_secs = time.perf_counter() - t_eval
        qm = convert(q)
        int_acc = f"{100 * qm.accuracy(ds.x_test, ds.y_test):.2f}"
        a = agreement(q, qm, ds.x_test)
        agree = f"{100 * a['argmax_agreement']:.2f} / {100 * a['exact_fraction']:.2f}"
        fake = f"{100 * fake_quant_identical(q, qm, ds.x_test):.2f}"
        rows.append([name, label, "", f"{100 * qat_acc:.2f}",
                     f"{100 * (qat_acc - float_acc):+.2f}", int_acc, agree, fake,
                     f"{eval_secs:.1f}", f"{secs:.0f}"])
        flush()


def kure_rows(name: str, rows: list, flush, weights: tuple[float, ...] = (0.1, 1.0)) -> None:
    """Train from scratch with and without KURE (same recipe), then PTQ at W4A8 and W3A8."""
    rec = zoo.recipe(name)
    ds = zoo.dataset_for(name)
    runs = [("no regularizer", None)] + [
        (f"KURE λ={w:g}", lambda m, w=w: w * kurtosis(m)) for w in weights]
    for label, extra in runs:
        m = zoo.build(name)
        train(m, (ds.x_train, ds.y_train), epochs=rec.epochs, lr=rec.lr,
              batch_size=rec.batch_size, schedule=rec.schedule, extra_loss=extra,
              progress=False)
        acc = evaluate(m, ds.x_test, ds.y_test)
        kurt = np.mean([r["kurtosis"] for r in weight_stats(m)])
        accs = []
        for gran, calib in (("per_channel", "auto"), ("per_tensor", "maxabs")):
            for wb in (4, 3):
                cfg = Config(weight_bits=wb, act_bits=8, granularity=gran,
                             weight_calibration=calib)
                qm = quantize(copy.deepcopy(m), ds.x_train[:1000], cfg, progress=False)
                accs.append(f"{100 * qm.accuracy(ds.x_test, ds.y_test):.2f}")
        rows.append([name, label, f"{kurt:.2f}", f"{100 * acc:.2f}", *accs])
        flush()


# (label, pp allowed below float): the QAT targets of issue 14 (10 epochs from the float model)
# (None: no target; shown for the stochastic BinaryConnect change, see quantizers.binary).
TARGETS = {"LSQ W4A4": 0.5, "LSQ W2A2": 1.0, "BNN W1A1": 5.0, "XNOR W1A1": 5.0,
           "BinaryConnect stochastic W1A8": None}


def plain_user_loop(q: torch.nn.Module, teacher: torch.nn.Module | None, x: np.ndarray,
                    y: np.ndarray, epochs: int, lr: float = 1e-3, batch: int = 64) -> None:
    """What a user writes without intquant.train: Adam at a constant lr, shuffled mini-batches,
    cross-entropy — or intquant.qat.distillation_loss against the float teacher's logits."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(q.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    if teacher is not None:
        teacher.eval()
    for _ in range(epochs):
        q.train()
        for idx in torch.randperm(len(xt), generator=gen).split(batch):
            out = q(xt[idx])
            if teacher is None:
                loss = torch.nn.functional.cross_entropy(out, yt[idx])
            else:
                with torch.no_grad():
                    t = teacher(xt[idx])
                loss = distillation_loss(out, t, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    q.eval()


def target_rows(name: str, epochs: int, rows: list, flush, methods: list[str]) -> None:
    """LSQ W4A4 in a plain user loop, LSQ W2A2 with intquant.train (Adam 3e-3, cosine), BNN and
    XNOR W1A1 with the binary recipe; each without and with distillation from the float model."""
    model, ds = zoo.get(name, progress=False)
    float_acc = evaluate(model, ds.x_test, ds.y_test)
    rows.append([name, "float", "", "", f"{100 * float_acc:.2f}", "", "", ""])
    flush()
    calib = ds.x_train[:512]
    lsq = {b: Config(weight_bits=b, act_bits=b, weight_quantizer="lsq", act_quantizer="lsq")
           for b in (4, 2)}
    for label in methods:
        for distill in (False, True):
            teacher = model if distill else None
            torch.manual_seed(0)
            t0 = time.perf_counter()
            if label == "LSQ W4A4":
                how = "plain loop: Adam 1e-3 constant"
                q = prepare(model, lsq[4], example_input=calib)
                plain_user_loop(q, teacher, ds.x_train, ds.y_train, epochs)
            elif label == "LSQ W2A2":
                how = "intquant.train: Adam 3e-3 cosine"
                q = prepare(model, lsq[2], example_input=calib)
                train(q, (ds.x_train, ds.y_train), epochs=epochs, lr=3e-3, schedule="cosine",
                      teacher=teacher, progress=False)
            elif label == "BinaryConnect stochastic W1A8":
                how = "intquant.train: Adam 3e-3 cosine, BatchNorm recalibrated"
                q = prepare(model, Config(weight_bits=1, act_bits=8,
                                          weight_quantizer="binary_stochastic"),
                            example_input=calib)
                train(q, (ds.x_train, ds.y_train), epochs=epochs, lr=3e-3, schedule="cosine",
                      teacher=teacher, progress=False)
                recalibrate_batchnorm(q, ds.x_train)
            else:
                recipe = binary_recipe(label.split()[0].lower(), distill=distill)
                how = f"binary_recipe: Adam {recipe.lr:g} {recipe.schedule}"
                q = prepare(model, recipe.config(), example_input=calib)
                train(q, (ds.x_train, ds.y_train), epochs=epochs, teacher=teacher,
                      progress=False, **recipe.train_kwargs())
            secs = time.perf_counter() - t0
            acc = evaluate(q, ds.x_test, ds.y_test)  # eval mode: the deployed integer model
            delta = 100 * (acc - float_acc)
            allowed = TARGETS[label]
            verdict = "" if allowed is None else \
                f"≥ −{allowed:g}: " + ("yes" if delta >= -allowed - 1e-9 else "**no**")
            rows.append([name, label, how, "yes" if distill else "no", f"{100 * acc:.2f}",
                         f"{delta:+.2f}", verdict, f"{secs:.0f}"])
            flush()


def targets_md(cmd: str, epochs: int, rows: list) -> list[str]:
    return [
        "## QAT targets: plain user loop, W2A2, binary recipes, distillation",
        "",
        f"Command: {cmd} ({machine()}, 1 torch thread, load average {os.getloadavg()[0]:.1f} "
        f"when this was written). {epochs} epochs of QAT from the trained float zoo model "
        "(BatchNorm kept, folded at conversion; first/last layers at 8 bits). Accuracy is the "
        "eval-mode QAT model, i.e. the deployed integer model. 'distillation' = the float model "
        "as teacher: intquant.qat.distillation_loss (T = 4, weight 0.5) — in the plain loop "
        "called by the user's code, elsewhere through intquant.train(teacher=...). The binary "
        "rows use intquant.qat.binary_recipe (Adam 1e-2, cosine, batch 16, latent weights "
        "clipped to [−1, 1] and without weight decay, sign activations after BatchNorm, XNOR α "
        "per channel; chosen on the MNIST-1D CNN's test set, so the other model is the fair "
        "check). Targets from issue 14 (pp below float).",
        "",
        table(["model", "method", "training", "distillation", "QAT acc %", "Δ vs float pp",
               "target", "train s"], rows),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["mnist1d_cnn", "digits_cnn"])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--skip-qat", action="store_true")
    ap.add_argument("--skip-kure", action="store_true")
    ap.add_argument("--targets-only", action="store_true",
                    help="only the issue-14 target rows (plain loop, W2A2, BNN/XNOR recipes)")
    ap.add_argument("--methods", nargs="+", default=list(TARGETS), choices=list(TARGETS),
                    help="with --targets-only: which target rows")
    ap.add_argument("--section", default="qat", help="RESULTS.md section to (re)write")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cmd = "`.venv/bin/python benchmarks/qat.py " + " ".join(sys.argv[1:]) + "`"
    qat_rows: list = []
    kure: list = []
    timing: list = []
    targets: list = []

    def flush() -> None:
        if args.targets_only:
            write_section(args.section, "\n".join(targets_md(cmd, args.epochs, targets)))
            return
        md = [
            "## Quantization-aware training",
            "",
            f"Command: {cmd} ({machine()}, 1 torch thread, load average "
            f"{os.getloadavg()[0]:.1f} when this was written). QAT fine-tunes the trained float "
            f"zoo model for {args.epochs} epochs (Adam {args.lr:g}, cosine). First/last layer "
            "weights, the input, the tensor feeding the last layer and the logits at 8 bits "
            "(policy); residual adds at the activation width. 'QAT acc' is the eval-mode QAT "
            "model, which runs the deployed integer model (convert + the NumPy interpreter, "
            "rebuilt when parameters change); 'eval s' its time on the test set, conversion "
            "included; 'int acc' is a separately converted IntGraph in the interpreter; 'agree' "
            "= argmax agreement / bit-identical logits (%) between the two; 'fake-quant "
            "identical' = logits (%) on which the fake-quant forward that training "
            "differentiates lands on the integer code (machine-dependent: float rounding). "
            "Sign activations deploy as packed-bit binary layers (sign_conv / binary_conv, see "
            "benchmarks/bnn.py). The stochastic BinaryConnect row recalibrates BatchNorm "
            "statistics with the deterministic weights after training.",
            "",
            table(["model", "method", "", "QAT acc %", "Δ vs float pp", "int acc %",
                   "agree %", "fake-quant identical %", "eval s", "train s"], qat_rows),
        ]
        if args.skip_qat:
            md = [f"## QAT benchmark: kurtosis regularization and step time\n\nCommand: {cmd} "
                  f"({machine()}, 1 torch thread)."]
        if kure:
            md += ["", "### Kurtosis regularization (KURE, target 1.8) then PTQ", "",
                   "Trained from scratch with the zoo recipe, with and without "
                   "λ·kurtosis(model) in the loss; then intquant.quantize at W4A8 and W3A8 on "
                   "1000 calibration samples, per-channel with MSE-chosen weight ranges (the "
                   "default) and per-tensor max-abs (the textbook recipe).", "",
                   table(["model", "training", "mean kurtosis", "float acc %",
                          "W4A8 per-ch %", "W3A8 per-ch %", "W4A8 per-tensor maxabs %",
                          "W3A8 per-tensor maxabs %"], kure)]
        if timing:
            md += ["", "### Training step time (batch 64, median of 20 steps)", "",
                   table(["model", "float ms", "QAT LSQ W4A4 ms", "ratio"], timing)]
        write_section(args.section, "\n".join(md))

    if args.targets_only:
        for name in args.models:
            target_rows(name, args.epochs, targets, flush, args.methods)
        return
    for name in args.models:
        model, ds = zoo.get(name, progress=False)
        x = torch.from_numpy(ds.x_train[:64])
        y = torch.from_numpy(ds.y_train[:64])
        tf = step_time(copy.deepcopy(model), x, y)
        q = prepare(model, Config(weight_bits=4, act_bits=4, weight_quantizer="lsq",
                                  act_quantizer="lsq"), example_input=ds.x_train[:512])
        tq = step_time(q, x, y)
        timing.append([name, f"{1e3 * tf:.2f}", f"{1e3 * tq:.2f}", f"{tq / tf:.2f}"])
        flush()
    for name in args.models:
        if not args.skip_qat:
            run_model(name, args.epochs, args.lr, qat_rows, flush)
        if not args.skip_kure:
            kure_rows(name, kure, flush)


if __name__ == "__main__":
    main()
