"""Recurrent architectures of issue 13: the GRU and LSTM keyword spotters of the zoo.

Per model (nn.GRU / nn.LSTM as written, trained on the synthetic speech commands) and mode
(W8A8, 16x8): accepted as written, quantize time, SQNR of the logits vs float on the test set
(the calibration distribution; targets >= 30 dB W8A8, >= 40 dB 16x8; also without the 10 test
samples of largest error, a diagnostic: see NOTES), float and integer
accuracy, flash and arena of the generated C, Cortex-M0 instructions per inference (unicorn, the
whole 49-frame sequence through ``<name>_run``) and per frame (``<name>_step``, the streaming
API), and whether the C is bit-exact with the interpreter on the host (every test sample) and on
the M0 (the streamed sample).

    .venv/bin/python benchmarks/arch_rnn.py
    .venv/bin/python benchmarks/arch_rnn.py --draws 8   # SQNR over 8 calibration draws only

Calibration: 256 training samples drawn at random (seed 0). The speech_commands training split
is ordered by class: its first 256 samples are all of class 0, which is not the distribution
the test set comes from (the logits' calibrated range then clips test samples).

``architecture_rows()`` returns the measurements in benchmarks/architectures.py's row format (they
are rows of its table in benchmarks/RESULTS.md, ``ARCH_NOTES`` under it); run alone this prints
the same measurements as its own table and writes nothing.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import intquant  # noqa: E402
from intquant import zoo  # noqa: E402
from intquant.analysis.stats import sqnr_db  # noqa: E402
from intquant.codegen.cost import cost_report  # noqa: E402
from intquant.codegen.stream import emulate_stream, reference_frames  # noqa: E402
from intquant.codegen.toolchain import compile_and_run_host  # noqa: E402
from results import calibration_draw, machine, table  # noqa: E402

MODELS = ["gru_kws", "lstm_kws"]
MODES = {"W8A8": {"weight_bits": 8, "act_bits": 8}, "16x8": {"weight_bits": 8, "act_bits": 16}}
TARGET_DB = {"W8A8": 30.0, "16x8": 40.0}
CALIBRATION = 256
WORST = 10  # the diagnostic SQNR leaves out this many test samples (largest logit error)

# Measured separately (the scripts of the rnn16 branch, float64 PyTorch; `--draws 8` for the
# spread): where the error of the recurrent models comes from.
NOTES = """Where the error comes from (measured separately, not by this table): rounding the gate
matrices to int8 per row to nearest limits the float LSTM's logits to 38 dB and the GRU's to
47.5 dB; joint GPTQ of [W_ih | W_hh] over the calibration inputs [x_t; h_t-1] with bias
correction (the default methods) lifts them to about 49 and 52 dB. The LSTM's logit SQNR is
then decided by a handful of test samples: unit 16 of lstm_kws is a switch (candidate-gate
self-weight 1.39, its row's largest), and samples near its threshold flip under any
perturbation — rounding that one row alone puts 99.9 % of the logit error on 10 of the 1200
samples, and the integer arithmetic alone (the op vs float64 with its own weights) flips some
too (44.9 dB, 79 % of the error on 10 samples). Hence the large spread over calibration draws
(`--draws 8`: 16x8 LSTM 37.3-45.5 dB, median 41.2; W8A8 31.0-39.9) while the other 1190
samples sit at 47.5-48.0 dB (16x8) and 40.5-41.0 dB (W8A8) for every draw. 16-bit gate weights
would not remove the flips caused by the integer arithmetic. Both modes keep int16 gates and
state; in 16x8 only the input and output tensors are 16-bit, and calibrated 16-bit tensors get
one bit of headroom (Config.wide_act_headroom)."""
ARCH_NOTES = [NOTES.replace("\n", " ")]


def calibration_set(ds, seed: int = 0) -> np.ndarray:
    """CALIBRATION training samples drawn at random (the split is ordered by class)."""
    return calibration_draw(ds.x_train, CALIBRATION, seed)


def sqnr_without_worst(ref: np.ndarray, out: np.ndarray, worst: int = WORST) -> float:
    """SQNR over the test samples but the ``worst`` of largest squared logit error."""
    err = ((out.astype(np.float64) - ref) ** 2).sum(axis=1)
    keep = np.argsort(err, kind="stable")[:-worst]
    return sqnr_db(ref[keep], out[keep])


def measure(name: str, mode: str, model: torch.nn.Module, ds) -> dict:
    """One model in one mode (see the module docstring)."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    q = intquant.quantize(model, calibration_set(ds), intquant.Config(**MODES[mode]),
                          progress=False)
    quantize_s, quantize_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    with torch.no_grad():
        ref = model(torch.from_numpy(ds.x_test)).numpy()
    x = q.quantize_input(ds.x_test)
    y = q.run(x)
    out = q.dequantize_output(y)
    with tempfile.TemporaryDirectory() as tmp:
        res = q.export_c(Path(tmp) / "c", name="model")
        host_exact = bool(np.array_equal(compile_and_run_host(res.out_dir, x, opt="-O2"), y))
        cost = cost_report(res.out_dir, x[:1], target="cortex-m0", write=False)
        stream = emulate_stream(res.out_dir, x[:1])
        m0_exact = bool(np.array_equal(stream.outputs, reference_frames(q.graph, x[:1])))
    return {
        "architecture": name,
        "mode": mode,
        "accepted_as_written": True,
        "ops": " + ".join(op.kind for op in q.graph.ops),
        "quantize_s": quantize_s,
        "quantize_cpu_s": quantize_cpu_s,
        "sqnr_db": sqnr_db(ref, out),
        "sqnr_target_db": TARGET_DB[mode],
        "sqnr_without_worst_db": sqnr_without_worst(ref, out),
        "float_acc": float((ref.argmax(1) == ds.y_test).mean()),
        "int_acc": float((out.argmax(1) == ds.y_test).mean()),
        "flash_bytes": cost["flash_bytes"],
        "weight_bytes": cost["weight_bytes"],
        "arena_bytes": cost["arena_bytes"],
        "stack_bytes": cost["stack_bytes"],
        "m0_board": cost["board"],
        "m0_instructions_per_inference": cost["per_inference"],
        "m0_cycles_per_inference": cost["cycles_per_inference"],
        "m0_instructions_per_frame": float(np.mean(stream.per_frame)),
        "m0_cycles_per_frame": float(np.mean(stream.per_frame_cycles)),
        "m0_instructions_reset": stream.reset,
        "bit_exact_host": host_exact,
        "bit_exact_m0_stream": m0_exact,
    }


def rows() -> list[dict]:
    """Every recurrent zoo model in every mode (trains a model if it is not cached)."""
    torch.set_num_threads(1)
    out = []
    for name in MODELS:
        model, ds = zoo.get(name, progress=False)
        for mode in MODES:
            out.append(measure(name, mode, model, ds))
    return out


TITLES = {"gru_kws": "GRU keyword spotter (nn.GRU(10, 32) + Linear), synthetic speech commands",
          "lstm_kws": "LSTM keyword spotter (nn.LSTM(10, 32) + Linear), synthetic speech commands"}


def architecture_rows() -> list[dict]:
    """Each model in benchmarks/architectures.py's format: one row, a dict per mode; a model
    that fails is a row saying where it stopped (never hidden)."""
    torch.set_num_threads(1)
    out = []
    for name in MODELS:
        arch = {"architecture": f"{TITLES[name]} ({name})", "accepted_as_written": True,
                "modes": {}}
        try:
            model, ds = zoo.get(name, progress=False)
            for mode in MODES:
                arch["modes"][mode] = _architecture_mode(measure(name, mode, model, ds))
                arch["float_acc"] = arch["modes"][mode].pop("float_acc")
        except Exception as e:  # report where it stops, never hide it
            arch.update(accepted_as_written=False, modes={},
                        error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        out.append(arch)
    return out


def _architecture_mode(r: dict) -> dict:
    """One measure() row under benchmarks/architectures.py's key names."""
    return {
        "sqnr": r["sqnr_db"], "acc": r["int_acc"], "float_acc": r["float_acc"],
        "host_bit_exact": r["bit_exact_host"], "m0_bit_exact": r["bit_exact_m0_stream"],
        "flash": r["flash_bytes"], "arena": r["arena_bytes"], "stack": r["stack_bytes"],
        "board": r["m0_board"], "m0_instructions": r["m0_instructions_per_inference"],
        "m0_cycles": r["m0_cycles_per_inference"],
        "m0_instructions_per_frame": r["m0_instructions_per_frame"],
        "m0_cycles_per_frame": r["m0_cycles_per_frame"],
        "quantize_cpu_s": r["quantize_cpu_s"], "quantize_wall_s": r["quantize_s"]}


def markdown(rs: list[dict]) -> str:
    header = ["model", "mode", "ops", "quantize s", "SQNR dB (target)",
              f"SQNR without {WORST} worst dB", "float acc", "int acc",
              "flash B", "arena B", "stack B", "M0 instr/inference", "M0 instr/frame",
              "M0 cycles/frame",
              "C == interpreter (host, M0 stream)"]
    body = []
    for r in rs:
        ok = "" if r["sqnr_db"] >= r["sqnr_target_db"] else " **MISS**"
        body.append([
            r["architecture"], r["mode"], r["ops"], f"{r['quantize_s']:.1f}",
            f"{r['sqnr_db']:.1f} (>= {r['sqnr_target_db']:.0f}){ok}",
            f"{r['sqnr_without_worst_db']:.1f}", f"{r['float_acc']:.4f}",
            f"{r['int_acc']:.4f}", r["flash_bytes"], r["arena_bytes"], r["stack_bytes"],
            f"{r['m0_instructions_per_inference']:.0f}", f"{r['m0_instructions_per_frame']:.0f}",
            f"{r['m0_cycles_per_frame']:.0f}",
            f"{'yes' if r['bit_exact_host'] else 'NO'}, "
            f"{'yes' if r['bit_exact_m0_stream'] else 'NO'}",
        ])
    boards = sorted({r["m0_board"] for r in rs})
    return "\n".join([
        "## Recurrent architectures (issue 13): GRU and LSTM keyword spotters",
        "",
        "`.venv/bin/python benchmarks/arch_rnn.py` on " + machine() + ". Zoo models `gru_kws` "
        "(nn.GRU(10, 32) + Linear) and `lstm_kws` (nn.LSTM(10, 32) + Linear) as written, on "
        "the synthetic speech commands (49 MFCC frames of 10, 12 classes); calibration on 256 "
        "training samples drawn at random (seed 0; the split is ordered by class), default "
        "Config; SQNR of the logits vs float over the 1200 test "
        "samples. Flash = the Cortex-M0 image (code + constants); M0 counts are unicorn "
        f"Cortex-M0 instructions, board {', '.join(boards)}; per frame = one `model_step` "
        "call of the streaming API, also in cycles (Cortex-M0 timings of "
        "`intquant/codegen/cycles.py`: single-cycle multiplier, no flash wait states). "
        "The gate pre-activations are int16 Q3.12, "
        "the state int16 Q0.15 (and the LSTM cell int16) in both modes: only the input and "
        "output tensors change between W8A8 and 16x8.",
        "",
        table(header, body),
        "",
        NOTES,
    ])


def draws(count: int) -> str:
    """SQNR of every model and mode over ``count`` calibration draws (seeds 0 ..)."""
    torch.set_num_threads(1)
    lines = []
    for name in MODELS:
        model, ds = zoo.get(name, progress=False)
        with torch.no_grad():
            ref = model(torch.from_numpy(ds.x_test)).numpy()
        for mode in MODES:
            got, rest = [], []
            for seed in range(count):
                q = intquant.quantize(model, calibration_set(ds, seed),
                                      intquant.Config(**MODES[mode]), progress=False)
                out = q.dequantize_output(q.run(q.quantize_input(ds.x_test)))
                got.append(sqnr_db(ref, out))
                rest.append(sqnr_without_worst(ref, out))
            lines.append(f"{name} {mode}: SQNR over {count} calibration draws min "
                         f"{min(got):.1f} median {np.median(got):.1f} max {max(got):.1f} dB; "
                         f"without the {WORST} worst samples {min(rest):.1f}-{max(rest):.1f} dB")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--draws":
        print(draws(int(sys.argv[2])))
        return
    print(markdown(rows()))


if __name__ == "__main__":
    main()
