"""Transformer family of issue 13: attention layers, the tiny transformer and the TCN of the zoo,
and the integer LayerNorm and softmax on their own.

Per architecture, as written (no edits to the model), and per mode (W8A8: int8 weights and
activations, except attention's Q/K/V projection and scores, int16 by default
(Config.attention_act_bits); 16x8: int8 weights, int16 activations), default Config,
calibration on 256 inputs:
- SQNR vs float = 10·log10(Σ f² / Σ (q − f)²) of the dequantized integer outputs q against the
  float model's outputs f on the test inputs (targets: >= 30 dB W8A8, >= 40 dB 16x8);
- float and integer test accuracy (the zoo classifiers);
- host C (-O2) == interpreter on every test input; Cortex-M0 (unicorn) == interpreter on one
  sample;
- flash (library text + rodata), arena, Cortex-M0 instructions per inference (unicorn, -O2) and
  the board the model links for (micro:bit 16 KB RAM, else MPS2 AN385), Cortex-M0 cycles per
  inference (intquant.codegen.cycles via cost_report: TRM timings on the executed trace,
  1-cycle multiplier);
- quantize time (CPU and wall seconds; target < 20 s).

The layers (nn.MultiheadAttention, nn.TransformerEncoderLayer post- and pre-norm, ReLU) run on
N(0, 1) sequences of 8 tokens of 32 features with seeded random weights; LayerNorm and softmax
alone on N(0, 1)·(per-sample scale in [0.5, 3]) rows / N(0, 2²) logits.

    .venv/bin/python benchmarks/arch_tf.py

``architecture_rows()`` returns the models and layers in benchmarks/architectures.py's row format
(they are rows of its table); run alone, this writes the ``arch_tf`` section of
benchmarks/RESULTS.md: LayerNorm and softmax alone.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import intquant  # noqa: E402
from intquant import zoo  # noqa: E402
from intquant.analysis.stats import sqnr_db  # noqa: E402
from intquant.codegen.cost import cost_report  # noqa: E402
from intquant.codegen.toolchain import compile_and_run_host, emulate_unicorn  # noqa: E402
from results import machine, table, write_section  # noqa: E402

SECTION = "arch_tf"
MODES = {"W8A8": 8, "16x8": 16}
TARGET_DB = {"W8A8": 30.0, "16x8": 40.0}
ZOO = {
    "mnist1d_transformer": "tiny transformer (conv patches + pos. embedding + pre-norm "
                           "TransformerEncoderLayer + LayerNorm + mean), MNIST-1D",
    "mnist1d_tcn": "TCN (causal dilated convs, chomp slices, x[:, :, -1]), MNIST-1D",
}
ARCH_NOTES = ["The nn.TransformerEncoderLayer rows use ReLU (GELU alone is in the activation "
              "table of the arch_elem section).",
              "W8A8 attention (the tiny transformer, nn.MultiheadAttention, "
              "nn.TransformerEncoderLayer) keeps the Q/K/V projection and the scores in int16 "
              "(default Config.attention_act_bits = 16; the probabilities, the attention "
              "output and everything else int8)."]


class SelfAttention(nn.Module):
    """nn.MultiheadAttention as written, self-attention (q = k = v = x), output only."""

    def __init__(self, dim: int, heads: int, batch_first: bool) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=batch_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0]


def _layers() -> dict[str, tuple[nn.Module, np.ndarray, np.ndarray]]:
    """name -> (module, calibration inputs, test inputs), seeded."""
    rng = np.random.default_rng(0)
    seq = lambda n: rng.standard_normal((n, 8, 32)).astype(np.float32)  # noqa: E731
    rows = lambda n: (rng.standard_normal((n, 8, 32))  # noqa: E731
                      * rng.uniform(0.5, 3, (n, 1, 1))).astype(np.float32)
    logits = lambda n: (2 * rng.standard_normal((n, 8, 10))).astype(np.float32)  # noqa: E731
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ln = nn.LayerNorm(32)
        with torch.no_grad():
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-0.5, 0.5)
        mods = {
            "nn.MultiheadAttention(32, 4), batch_first": (SelfAttention(32, 4, True), seq),
            "nn.TransformerEncoderLayer(32, 4, 64), post-norm, ReLU": (
                nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True), seq),
            "nn.TransformerEncoderLayer(32, 4, 64), pre-norm (norm_first), ReLU": (
                nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True,
                                           norm_first=True), seq),
            "nn.LayerNorm(32) alone": (ln, rows),
            "softmax(dim=-1) alone, 10 classes": (Softmax(), logits),
        }
    return {k: (m.eval(), make(256), make(1000)) for k, (m, make) in mods.items()}


class Softmax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=-1)


def _mode(model: nn.Module, calib: np.ndarray, x: np.ndarray, y_true, act_bits: int,
          work: Path) -> dict:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    q = intquant.quantize(model, calib, intquant.Config(act_bits=act_bits), progress=False)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    with torch.no_grad():
        ref = model(torch.as_tensor(x)).double().numpy()
    xq = q.quantize_input(x)
    y_int = q.run(xq)
    y = q.dequantize_output(y_int).astype(np.float64).reshape(ref.shape)
    res = q.export_c(work / f"c{act_bits}", name="model")
    cost = cost_report(res.out_dir, xq[:1], write=False)
    m0 = emulate_unicorn(res.out_dir, xq[:1])
    row = {
        "sqnr": sqnr_db(ref, y),
        "sqnr_target": TARGET_DB["W8A8" if act_bits == 8 else "16x8"],
        "host_bit_exact": bool(np.array_equal(compile_and_run_host(res.out_dir, xq), y_int)),
        "m0_bit_exact": bool(np.array_equal(m0.outputs.reshape(y_int[:1].shape), y_int[:1])),
        "flash": cost["flash_bytes"],
        "arena": cost["arena_bytes"],
        "stack": cost["stack_bytes"],
        "board": cost["board"],
        "m0_instructions": cost["m0_instructions_per_inference"],
        "m0_cycles": cost["cycles_per_inference"],
        "quantize_cpu_s": cpu,
        "quantize_wall_s": wall,
        "kinds": sorted({op.kind for op in q.graph.ops}),
    }
    if y_true is not None:
        row["acc"] = float(np.mean(y.argmax(1) == y_true))
        row["agree"] = float(np.mean(y.argmax(1) == ref.argmax(1)))
    return row


def _row(title: str, model: nn.Module, calib, x, y_true=None, float_acc=None) -> dict:
    row: dict = {"architecture": title, "accepted_as_written": True}
    if float_acc is not None:
        row["float_acc"] = float_acc
    try:
        with tempfile.TemporaryDirectory() as tmp:
            row["modes"] = {m: _mode(model, calib, x, y_true, bits, Path(tmp) / m)
                            for m, bits in MODES.items()}
    except Exception as e:  # report where it stops, never hide it
        row["accepted_as_written"] = False
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        row["modes"] = {}
    return row


OPS_ALONE = ("nn.LayerNorm(32) alone", "softmax(dim=-1) alone, 10 classes")


def architecture_rows() -> list[dict]:
    """The zoo models and the attention layers (benchmarks/architectures.py's row format)."""
    torch.set_num_threads(1)
    out = []
    for name, title in ZOO.items():
        model, ds = zoo.get(name, progress=False)
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            f = model(torch.as_tensor(ds.x_test)).numpy()
        out.append(_row(f"{title} ({name}, {params / 1000:.1f}k params)", model,
                        ds.x_train[:256], ds.x_test, ds.y_test,
                        float(np.mean(f.argmax(1) == ds.y_test))))
    for title, (model, calib, x) in _layers().items():
        if title not in OPS_ALONE:
            out.append(_row(title, model, calib, x))
    return out


def op_rows() -> list[dict]:
    """Integer LayerNorm and softmax on their own (this module's section)."""
    torch.set_num_threads(1)
    return [_row(title, model, calib, x) for title, (model, calib, x) in _layers().items()
            if title in OPS_ALONE]


def _db(v: float) -> str:
    return "exact" if math.isinf(v) else f"{v:.1f}"


def markdown(rs: list[dict], cmd: str) -> str:
    body, misses = [], []
    for r in rs:
        if not r["modes"]:
            body.append([r["architecture"], "NO: " + r.get("error", "?")] + ["n/a"] * 11)
            continue
        for mode, m in r["modes"].items():
            acc = ("n/a" if "acc" not in m else
                   f"{100 * r['float_acc']:.1f} → {100 * m['acc']:.1f}")
            met = m["sqnr"] >= m["sqnr_target"]
            if not met:
                misses.append(f"{r['architecture']}, {mode}: {_db(m['sqnr'])} dB < "
                              f"{m['sqnr_target']:.0f} dB")
            body.append([
                r["architecture"], "yes", mode,
                f"{_db(m['sqnr'])} ({'met' if met else 'MISSED'})", acc,
                "yes" if m["host_bit_exact"] else "NO", "yes" if m["m0_bit_exact"] else "NO",
                m["flash"], m["arena"], m["board"], f"{m['m0_instructions']:.0f}",
                f"{m['m0_cycles']:.0f}",
                f"{m['quantize_cpu_s']:.1f} / {m['quantize_wall_s']:.1f}",
            ])
    md = [
        "## Integer LayerNorm and softmax alone (issue 13)",
        "",
        f"Command: `{cmd}` ({machine()}).",
        "",
        "The transformer family's models and layers (tiny transformer, TCN, "
        "nn.MultiheadAttention, nn.TransformerEncoderLayer) are rows of the architectures "
        "section. Here the two ops alone. "
        "As written, default Config, calibration on 256 inputs; W8A8 = int8 weights and "
        "activations, 16x8 = int8 weights and int16 activations. SQNR: dequantized integer "
        "outputs vs the float model on 1000 test inputs (targets 30 / 40 dB). host C: -O2 == "
        "interpreter on every test input; M0: "
        "unicorn Cortex-M0, one sample, == interpreter. Flash: library text + rodata; M0 "
        "cycles: Cortex-M0 TRM timings on the executed trace (codegen/cycles.py, 1-cycle "
        "multiplier, no wait states). Quantize: CPU / wall seconds (shared 2-core machine).",
        "",
        table(["architecture", "as written", "mode", "SQNR vs float dB", "accuracy %",
               "host C = interp.", "M0 = interp.", "flash B", "arena B", "M0 board",
               "M0 instr/inference", "M0 cycles/inference", "quantize CPU / wall s"], body),
    ]
    md += ([f"- SQNR target missed: {m}." for m in misses] if misses
           else ["- Every SQNR target met."])
    return "\n".join(md) + "\n"


def main() -> None:
    rs = op_rows()
    md = markdown(rs, ".venv/bin/python benchmarks/arch_tf.py")
    print(md)
    write_section(SECTION, md)


if __name__ == "__main__":
    main()
