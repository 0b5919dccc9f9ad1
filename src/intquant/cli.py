"""``intquant``: the command line over the whole workflow.

    intquant quantize MODEL --calib CALIB.npz --out DIR [--data TEST.npz] [options]
    intquant eval DIR --data TEST.npz
    intquant run DIR --input X.npy --output Y.npy
    intquant inspect DIR | MODEL.iqm [--m0 [--multiplier fast|small]]
    intquant export-c MODEL.iqm OUT_DIR
    intquant run-c OUT_DIR --target T --input X.npy [--output Y.npy]
    intquant analyze DIR --data TEST.npz          (or MODEL --calib CALIB.npz --data TEST.npz)
    intquant report DIR --data TEST.npz [--out REPORT_DIR]
    intquant recommend MODEL --calib CALIB.npz --data TEST.npz [--max-drop PP]
                       [--flash-budget B] [--ram-budget B] [--out DIR]

MODEL is ``zoo:<name>``, a torch.export ``.pt2`` file or an ``.onnx`` file. Array files are
``.npz`` with keys ``x`` (and ``y`` for labels) or ``.npy`` (inputs only).

What ``quantize`` writes to DIR (see docs/cli.md):
    model.iqm          the integer model (NumPy-only format, no pickle)
    float_model.pt2    the float model (a copy of the .pt2 / .onnx given, or the zoo model
                       exported): ``eval`` compares against it, ``analyze``/``report`` re-quantize
    config.json        the Config used; calib.npz the calibration inputs used
    c/                 the C99 project (when the C back end is installed)
    report.md, report.html, report_files/, analysis.json   (unless --no-report)
    metrics.json       accuracies, logit error, flash / RAM / MACs, timings, the model source

User mistakes (missing, empty or truncated file, missing key, wrong shape, NaN, unsupported op,
bad option, an output location that cannot or must not be written) end with exit code 2 and one
message on stderr saying what is wrong and what to do; no traceback (``--debug`` shows it). Data
that run but are almost certainly wrong (too few or constant calibration samples, another scale
than the training data, labels outside the classes) give one ``warning:`` line each.

Outputs are written through ``intquant.outdir``: into a temporary sibling, renamed into place
only when complete; an existing DIR is replaced only if intquant wrote it and ``--force`` is
given; a folder with other files is never touched; a second concurrent writer fails at once.
Ctrl-C (exit 130) and SIGTERM (exit 143) at any point leave nothing behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from . import outdir
from .data import DataWarning, check_labels, shape_hint

EXIT_USER = 2
FLOAT_MODEL_FILES = ("float_model.pt2", "float_model.onnx")
MODEL_FILE = "model.iqm"
EVAL_BATCH = 256


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2."""


# ----------------------------------------------------------------------------------------------
# Small output helpers
# ----------------------------------------------------------------------------------------------


def say(msg: str) -> None:
    """Progress and results go to stderr, so stdout stays clean for --json / piping."""
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    start = time.perf_counter()
    say(f"• {title} ...")
    yield
    _hold_for_a_signal_if_testing(title)
    say(f"  done in {time.perf_counter() - start:.1f} s")


TEST_HOLD_SECONDS = 60.0


def _hold_for_a_signal_if_testing(title: str) -> None:
    """Test-only: with ``INTQUANT_TEST_HOLD_AT=<prefix>`` in the environment, the step whose
    title starts with it waits, after its work and before its "done" line, until a signal
    arrives (at most :data:`TEST_HOLD_SECONDS`).

    Why: the signal tests send SIGINT/SIGTERM once a step's line is printed; on an overloaded
    machine the run could otherwise finish before the signal lands, and the test would see a
    complete output instead of an interrupted one. Not a user feature (docs/security.md names
    it as test-only).
    """
    prefix = os.environ.get("INTQUANT_TEST_HOLD_AT")
    if not prefix or not title.startswith(prefix):
        return
    deadline = time.monotonic() + TEST_HOLD_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)  # the signal handler raises in here


def _quiet_torch() -> None:
    """torch.export warns about things a CLI user cannot act on; keep stderr readable.

    Also one intra-op thread (``INTQUANT_THREADS`` to change): MCU-sized layers are too small
    for OpenMP to pay off, and on a busy machine its barriers made ``analyze`` 2-3x slower.
    """
    import logging

    import torch

    torch.set_num_threads(max(1, int(os.environ.get("INTQUANT_THREADS", "1"))))
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("always", category=DataWarning)  # ours say what to do: keep them
    logging.getLogger("torch").setLevel(logging.ERROR)


def show_data_warnings(command: str) -> None:
    """Every DataWarning of the library becomes one line on stderr (each message once)."""
    shown: set[str] = set()
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, DataWarning):
            return original(message, category, filename, lineno, file, line)
        if str(message) not in shown:
            shown.add(str(message))
            say(f"intquant {command}: warning: {message}")

    warnings.filterwarnings("always", category=DataWarning)
    warnings.showwarning = show


# ----------------------------------------------------------------------------------------------
# Array files
# ----------------------------------------------------------------------------------------------


def load_arrays(path: str | Path, what: str, need_labels: bool = False
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y or None) from ``.npz`` (keys x, y) or ``.npy`` (x only), validated."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} file {p} does not exist")
    if p.suffix not in (".npz", ".npy"):
        raise UserError(f"{what} file {p} must be .npz (keys 'x' and 'y') or .npy (inputs only)")
    if p.is_file() and p.stat().st_size == 0:
        raise UserError(f"{what} file {p} is empty (0 bytes); write it with np.savez / np.save")
    try:
        if p.suffix == ".npy":
            x, y = np.load(p, allow_pickle=False), None
        else:
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.files)
                if "x" not in keys:
                    raise UserError(
                        f"{what} file {p} has no array 'x' (it has {keys}); save it with "
                        f"np.savez('{p.name}', x=inputs, y=labels)")
                x = z["x"]
                y = z["y"] if "y" in keys else None
    except UserError:
        raise
    except Exception as e:  # BadZipFile, EOFError, zlib.error, ...: a damaged or foreign file
        raise UserError(f"{what} file {p} cannot be read as a NumPy array file (truncated or "
                        f"damaged? {type(e).__name__}: {e}); write it with np.savez / np.save "
                        f"(no pickled objects)") from None
    if need_labels and y is None:
        raise UserError(f"{what} file {p} has no labels; save it with np.savez('{p.name}', "
                        f"x=inputs, y=labels)")
    if not np.issubdtype(x.dtype, np.number) or x.ndim < 2:
        raise UserError(f"{what} file {p}: 'x' must be a numeric array of shape (N, ...), got "
                        f"dtype {x.dtype} and shape {x.shape}")
    if len(x) == 0:
        raise UserError(f"{what} file {p} holds no samples ('x' has shape {x.shape}); pass at "
                        f"least one")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1)))
        raise UserError(f"{what} file {p}: 'x' contains NaN or inf values in {bad} of {len(x)} "
                        f"samples; remove or fix those samples")
    if y is not None:
        y = np.asarray(y)
        if not np.issubdtype(y.dtype, np.integer) or y.shape != (len(x),):
            raise UserError(f"{what} file {p}: 'y' must hold one integer class label per sample, "
                            f"shape ({len(x)},), got dtype {y.dtype} and shape {y.shape}")
    return x, y


def check_shape(x: np.ndarray, shape: tuple[int, ...], what: str) -> None:
    if tuple(x.shape[1:]) != tuple(shape):
        if tuple(x.shape) == tuple(shape):
            hint = " (a single sample? add the batch dimension: x[None])"
        else:
            hint = shape_hint(tuple(x.shape[1:]), tuple(shape))
        raise UserError(f"{what}: 'x' has shape {tuple(x.shape)}, the model expects "
                        f"(N, {', '.join(map(str, shape))}){hint}")


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


def check_model_spec(spec: str) -> None:
    """Fail fast (before importing torch) on a MODEL argument that cannot work."""
    if spec.startswith("zoo:"):
        from .zoo import names

        if spec[4:] not in names():
            raise UserError(f"unknown zoo model {spec[4:]!r}; choose one of {names()}")
        return
    p = Path(spec)
    if p.suffix not in (".pt2", ".onnx"):
        raise UserError(f"MODEL {spec!r} must be zoo:<name>, a torch.export .pt2 file or an "
                        f".onnx file")
    if not p.is_file():
        raise UserError(f"model file {p} does not exist")


def load_float_model(spec: str) -> tuple[Any, Any, str]:
    """(model for intquant.quantize, float Graph, kind) from ``zoo:<name>`` / .pt2 / .onnx."""
    check_model_spec(spec)
    _quiet_torch()
    from .graph import GraphModule
    from .graph.capture import capture_exported

    if spec.startswith("zoo:"):
        import torch

        from . import zoo

        model, ds = zoo.get(spec[4:], progress=True)
        # Export once: the same program is captured here and saved as DIR/float_model.pt2.
        ep = torch.export.export(model.eval(), (torch.as_tensor(ds.x_train[:1]),))
        _EXPORTED[spec] = ep
        graph = capture_exported(ep)
        return GraphModule(graph), graph, "zoo"
    p = Path(spec)
    if p.suffix == ".onnx":
        from .graph.onnx_import import from_onnx

        gm = from_onnx(p)
        return gm, gm.graph, "onnx"
    from .graph.pt2 import UnsafePt2Error, load_pt2

    try:
        ep = load_pt2(p)
    except UnsafePt2Error as e:
        raise UserError(f"{e}; create it with torch.export.save(torch.export.export(model, "
                        f"(example,)), '{p.name}')") from None
    graph = capture_exported(ep)
    return GraphModule(graph), graph, "pt2"


_EXPORTED: dict[str, Any] = {}  # zoo spec -> its ExportedProgram (exported once per process)


def save_float_model(spec: str, kind: str, out: Path) -> Path:
    """Keep the float model in DIR: the file given, or the zoo model exported to .pt2."""
    if kind == "pt2":
        dst = out / "float_model.pt2"
        shutil.copyfile(spec, dst)
    elif kind == "onnx":
        dst = out / "float_model.onnx"
        shutil.copyfile(spec, dst)
    else:
        import torch

        dst = out / "float_model.pt2"
        torch.export.save(_EXPORTED[spec], str(dst))
    return dst


def float_model_in(d: Path) -> Path:
    for f in FLOAT_MODEL_FILES:
        if (d / f).exists():
            return d / f
    raise UserError(f"{d} has no float model ({' or '.join(FLOAT_MODEL_FILES)}); it was not "
                    f"written by 'intquant quantize' — run that first")


def open_dir(path: str) -> Path:
    d = Path(path)
    if not d.is_dir() or not (d / MODEL_FILE).exists():
        raise UserError(f"{path} is not an intquant output folder (no {MODEL_FILE} in it); "
                        f"create one with 'intquant quantize MODEL --calib CALIB.npz --out {path}'")
    return d


def load_qmodel(path: str | Path):
    from .qmodel import load

    p = Path(path)
    if p.is_dir():
        p = open_dir(str(p)) / MODEL_FILE
    if not p.exists():
        raise UserError(f"{p} does not exist")
    return load(p)


def requantize_from_dir(d: Path, progress: bool = True):
    """The QuantizedModel of DIR rebuilt with its float graph and plan (analyze, report)."""
    from .config import Config
    from .ptq import quantize

    model, _, _ = load_float_model(str(float_model_in(d)))
    config = Config.load(d / "config.json")
    calib, _ = load_arrays(d / "calib.npz", "calibration (saved in DIR)")
    return model, quantize(model, calib.astype(np.float32), config, progress=progress)


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def run_integer(qmodel: Any, x: np.ndarray, progress: bool = True) -> np.ndarray:
    """Integer logits (dequantized) of float inputs, in batches (a bar if it takes > 2 s)."""
    from .progress import bar

    outs = []
    for i in bar(range(0, len(x), EVAL_BATCH), "integer run", progress):
        xb = x[i:i + EVAL_BATCH]
        outs.append(qmodel.dequantize_output(qmodel.run(qmodel.quantize_input(xb))))
    return np.concatenate(outs).reshape(len(x), -1)


def compare(float_logits: np.ndarray, int_logits: np.ndarray, y: np.ndarray | None,
            where: str = "labels") -> dict[str, float]:
    from .analysis.stats import sqnr_db

    f, q = float_logits.reshape(len(float_logits), -1), int_logits.reshape(len(int_logits), -1)
    if y is not None:
        check_labels(y, f.shape[1], where)
    m: dict[str, Any] = {
        "samples": int(len(f)),
        "top1_agreement": float(np.mean(f.argmax(1) == q.argmax(1))),
        "logit_max_abs_error": float(np.max(np.abs(f - q))),
        "logit_mean_abs_error": float(np.mean(np.abs(f - q))),
        "logit_sqnr_db": sqnr_db(f, q),
    }
    if y is not None:
        m["float_accuracy"] = float(np.mean(f.argmax(1) == y))
        m["int_accuracy"] = float(np.mean(q.argmax(1) == y))
        m["accuracy_change_pp"] = 100 * (m["int_accuracy"] - m["float_accuracy"])
    return m


def format_metrics(m: dict[str, Any]) -> str:
    lines = [f"samples                 {m['samples']}"]
    if "int_accuracy" in m:
        lines += [f"float accuracy          {100 * m['float_accuracy']:.2f} %",
                  f"integer accuracy        {100 * m['int_accuracy']:.2f} %  "
                  f"({m['accuracy_change_pp']:+.2f} pp)"]
    lines += [f"top-1 agreement         {100 * m['top1_agreement']:.2f} %",
              f"logit error max / mean  {m['logit_max_abs_error']:.4g} / "
              f"{m['logit_mean_abs_error']:.4g}",
              f"logit SQNR              {m['logit_sqnr_db']:.1f} dB"]
    return "\n".join(lines)


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, Path):
        return str(v)
    raise TypeError(type(v).__name__)


def write_json(path: Path, obj: Any) -> None:
    from .analysis.stats import _json_safe

    path.write_text(json.dumps(_json_safe(obj), indent=2, default=_json_default) + "\n")


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------


def build_config(args: argparse.Namespace):
    from .config import Config

    d: dict[str, Any] = {}
    if args.config:
        if not Path(args.config).exists():
            raise UserError(f"config file {args.config} does not exist")
        d = json.loads(Config.load(args.config).to_json())
    if args.preset:
        if args.config:
            raise UserError("give --preset or --config, not both (a Config file states every "
                            "field; start it from Config.preset(...) instead)")
        d = json.loads(Config.preset(args.preset).to_json())
    for field in ("weight_bits", "act_bits", "granularity", "calibration", "weight_rounding",
                  "bias_correction", "equalize", "act_clipping"):
        v = getattr(args, field)
        if v is not None:
            d[field] = v
    return Config.from_dict(d, where=args.config or "command line")


def c_backend_available() -> bool:
    try:
        from .codegen import export_c  # noqa: F401
    except ImportError:
        return False
    return True


def cmd_quantize(args: argparse.Namespace) -> int:
    check_model_spec(args.model)
    out = outdir.normalize(args.out)
    outdir.check_dir(out, overwrite=args.force, flag="--force")
    config = build_config(args)
    calib, _ = load_arrays(args.calib, "calibration")
    data = load_arrays(args.data, "test data") if args.data else None
    with outdir.staged_dir(out, overwrite=args.force, flag="--force") as tmp:
        metrics: dict[str, Any] = {"model": args.model, "intquant_command": sys.argv[1:]}
        with step(f"loading {args.model}"):
            model, fgraph, kind = load_float_model(args.model)
        input_shape = tuple(fgraph.input.shape)
        check_shape(calib, input_shape, f"calibration file {args.calib}")
        if data is not None:
            check_shape(data[0], input_shape, f"test data file {args.data}")
        calib = calib.astype(np.float32)[:config.max_calib_samples]
        mixed_blocks = []
        if args.weight_budget:
            config, metrics["mixed"], mixed_blocks = choose_widths(args, model, fgraph, calib,
                                                                   config)
            (tmp / "mixed.json").write_text(json.dumps(metrics["mixed"], indent=2) + "\n")
        from .ptq import quantize

        extra = f" + {len(config.overrides)} per-layer overrides" if config.overrides else ""
        with step(f"quantizing (W{config.weight_bits}A{config.act_bits}, {config.granularity}, "
                  f"{config.calibration}{extra}; {config.methods()}) on {len(calib)} "
                  f"calibration samples"):
            t = time.perf_counter()
            qmodel = quantize(model, calib, config, progress=True)
            metrics["quantize_seconds"] = round(time.perf_counter() - t, 2)
        qmodel.save(tmp / MODEL_FILE)
        save_float_model(args.model, kind, tmp)
        (tmp / "config.json").write_text(config.to_json() + "\n")
        np.savez(tmp / "calib.npz", x=calib)
        metrics.update(input_shape=list(input_shape), config=json.loads(config.to_json()),
                       weight_bytes=qmodel.weight_bytes(), macs=qmodel.macs(),
                       input=_tensor_dict(qmodel.input_info),
                       output=_tensor_dict(qmodel.output_info))
        if data is not None:
            with step(f"evaluating on {len(data[0])} samples of {args.data}"):
                x, y = data
                x = x.astype(np.float32)
                from .graph import run_graph

                fl = run_graph(qmodel.float_graph, x).numpy()
                metrics["eval"] = compare(fl, run_integer(qmodel, x), y,
                                          f"test data file {args.data}")
                say(format_metrics(metrics["eval"]))
        if not args.no_c:
            if c_backend_available():
                with step("generating the C project (c/)"):
                    res = qmodel.export_c(tmp / "c", name=args.name)
                    metrics["c"] = {"dir": "c", "files": [p.name for p in res.paths],
                                    "arena_bytes": res.arena_bytes,
                                    "arena_lower_bound": res.arena_lower_bound,
                                    "weight_bytes": res.weight_bytes, "macs": res.macs}
                    say("  " + res.summary())
            else:
                say("• C back end not installed in this version: no c/ folder")
        if not args.no_report:
            with step("analysing and writing report.md / report.html"):
                from .analysis import analyze, write_report

                eval_data = (data[0].astype(np.float32), data[1]) if data else calib
                analysis = analyze(model, qmodel, eval_data, name=args.model,
                                   sweep=not args.no_sweep)
                write_report(analysis, tmp, extra=mixed_blocks)
                metrics["analysis_seconds"] = round(analysis.seconds, 2)
        write_json(tmp / "metrics.json", metrics)
    say(f"wrote {args.out}/ : {listing(out)}")
    return 0


def listing(d: Path) -> str:
    return ", ".join(sorted(p.name for p in d.iterdir() if not p.name.startswith(".")))


def parse_budget(text: str, fgraph: Any) -> int:
    """'12000' bytes, or '60%' of the int8 weight bytes of the conv/linear layers."""
    from .graph import ir

    try:
        if text.endswith("%"):
            int8 = sum(int(n.params["weight"].size) for n in fgraph.nodes
                       if n.op in ir.WEIGHTED)
            return int(float(text[:-1]) / 100 * int8)
        return int(text)
    except ValueError:
        raise UserError(f"--weight-budget {text!r}: give bytes (12000) or a share of the int8 "
                        f"weight bytes (60%)") from None


def choose_widths(args: argparse.Namespace, model: Any, fgraph: Any, calib: np.ndarray,
                  config: Any) -> tuple[Any, dict[str, Any], list]:
    """Run search_bits under --weight-budget; return its Config, a summary and report blocks."""
    from .analysis.mixed import parse_candidates, search_bits
    from .analysis.report import Block

    budget = parse_budget(args.weight_budget, fgraph)
    try:
        cands = tuple(parse_candidates(args.candidates.split(",")))
    except ValueError:
        raise UserError(f"--candidates {args.candidates!r}: give widths in [1, 16] and/or "
                        f"'ternary', like 1,ternary,2,4,8") from None
    if args.search_data:
        x, y = load_arrays(args.search_data, "search data")
        check_shape(x, tuple(fgraph.input.shape), f"search data file {args.search_data}")
        eval_data, on = (x.astype(np.float32), y), args.search_data
    else:
        eval_data, on = calib, "the calibration inputs (agreement with the float model)"
    with step(f"choosing per-layer weight widths from {cands} under {budget} B on {on}"):
        res = search_bits(model, calib, eval_data, budget_bytes=budget, candidates=cands,
                          config=config, measure=False)
    widths = ", ".join(f"{n}: {b}" for n, b in res.weight_bits.items())
    say(f"  {widths}  ({res.predicted['weight_bytes']} of {budget} B)")
    summary = {"budget_bytes": budget, "candidates": list(cands), "chosen_on": on,
               **res.to_dict()}
    rows = tuple((n, str(b), str(res.layer_bytes[n])) for n, b in res.weight_bits.items())
    blocks = [Block("h2", "Mixed precision"),
              Block("p", f"search_bits chose these weight widths under a budget of {budget} B "
                         f"(weight arrays as stored in the IntGraph and the C, sub-byte widths "
                         f"packed), candidates {cands}, choosing on {on}: predicted "
                         f"{res.predicted['weight_bytes']} B."),
              Block("table", headers=("layer", "weight bits", "weight bytes"), rows=rows)]
    return res.config, summary, blocks


def _tensor_dict(info: Any) -> dict[str, Any]:
    return {"shape": list(info.shape), "dtype": info.dtype, "scale": info.scale,
            "zero_point": info.zero_point}


def cmd_eval(args: argparse.Namespace) -> int:
    d = open_dir(args.dir)
    x, y = load_arrays(args.data, "test data")
    qmodel = load_qmodel(d)
    check_shape(x, tuple(qmodel.input_info.shape), f"test data file {args.data}")
    _, fgraph, _ = load_float_model(str(float_model_in(d)))
    from .graph import run_graph

    x = x.astype(np.float32)
    with step(f"running the float and the integer model on {len(x)} samples"):
        fl = np.concatenate([run_graph(fgraph, x[i:i + EVAL_BATCH]).numpy()
                             for i in range(0, len(x), EVAL_BATCH)])
        m = compare(fl, run_integer(qmodel, x), y, f"test data file {args.data}")
    if args.json:
        print(json.dumps(m, indent=2, default=_json_default))
    else:
        print(format_metrics(m))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.suffix != ".npy":
        raise UserError(f"--output {out} must end in .npy")
    outdir.check_file(out)
    qmodel = load_qmodel(args.model)
    x, _ = load_arrays(args.input, "input")
    info = qmodel.input_info
    check_shape(x, tuple(info.shape), f"input file {args.input}")
    if np.issubdtype(x.dtype, np.integer):
        if x.dtype != np.dtype(info.dtype):
            raise UserError(f"input file {args.input} holds {x.dtype} integers but the model "
                            f"input is {info.dtype}; pass raw {info.dtype} values, or floats "
                            f"to have them quantized on the host")
        y = qmodel.run(x)
        what = f"integer {info.dtype} input -> integer {qmodel.output_info.dtype} output"
    else:
        y = run_integer(qmodel, x.astype(np.float32), progress=False)
        what = "float input (quantized on the host) -> dequantized float output"
    outdir.write_file(out, lambda tmp: np.save(tmp, y))
    say(f"{what}: wrote {out} with shape {y.shape}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .intgraph import op_macs

    q = load_qmodel(args.model)
    g = q.graph
    rows = [f"{'layer':24s} {'kind':16s} {'out shape':14s} {'dtype':6s} {'weights':20s} "
            f"{'bytes':>7s} {'MACs':>9s}"]
    for op in g.ops:
        t = g.tensors[op.output]
        w = op.consts.get("weight")
        wdesc = "" if w is None else f"{w.dtype}{list(w.shape)}"
        if "weight_format" in op.attrs:  # packed: the format and the logical shape
            wdesc = f"{op.attrs['weight_format']}{list(op.attrs['weight_shape'])}"
        nbytes = sum(int(c.nbytes) for c in op.consts.values())
        rows.append(f"{op.name:24s} {op.kind:16s} {str(list(t.shape)):14s} {t.dtype:6s} "
                    f"{wdesc:20s} {nbytes:7d} {op_macs(op, g):9d}")
    i, o = q.input_info, q.output_info
    print("\n".join(rows))
    print(f"\ninput  {i.dtype}{list(i.shape)}  real = {_affine(i)}")
    print(f"output {o.dtype}{list(o.shape)}  real = {_affine(o)}")
    print(f"flash (constants) {q.weight_bytes()} B, {q.macs()} MACs per inference", end="")
    from .analysis.stats import arena_bytes

    arena = arena_bytes(g)
    print("" if arena is None else f", RAM arena {arena} B")
    if args.m0:
        print(m0_cost_text(q, args.multiplier))
    return 0


def m0_cost_text(q: Any, multiplier: str) -> str:
    """The model's C on the emulated Cortex-M0: cycles per op and the hot spots."""
    import tempfile

    from .codegen.cost import cost_report, format_report
    from .codegen.toolchain import ToolchainError

    if not c_backend_available():
        raise UserError("inspect --m0 needs the C back end, which is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        res = q.export_c(Path(tmp) / "c", name="model")
        try:
            report = cost_report(res.out_dir, write=False, multiplier=multiplier)
        except ToolchainError as e:
            raise UserError(f"inspect --m0: {str(e).splitlines()[0]}") from e
    return "\n" + format_report(report, per_op=True)


def _affine(info: Any) -> str:
    z = int(info.zero_point)
    q = "q" if z == 0 else (f"(q - {z})" if z > 0 else f"(q + {-z})")
    return f"{info.scale:.6g} * {q}"


def cmd_export_c(args: argparse.Namespace) -> int:
    if not c_backend_available():
        raise UserError("the C back end is not installed in this version of intquant")
    out = outdir.normalize(args.out_dir)
    outdir.check_dir(out, overwrite=args.force, flag="--force")
    q = load_qmodel(args.model)
    res = q.export_c(out, name=args.name, overwrite=args.force)
    say(res.summary())
    say(f"wrote {args.out_dir}/ : {listing(out)}")
    return 0


def cmd_run_c(args: argparse.Namespace) -> int:
    """Run an export-c folder's C on a target (host, emulated MCUs) with raw integer inputs."""
    from .codegen.toolchain import ToolchainError, project_info, run_on

    try:
        info = project_info(args.out_dir)
    except ToolchainError as e:
        raise UserError(f"{args.out_dir} is not an export-c folder ({e})") from None
    x, _ = load_arrays(args.input, "input")
    check_shape(x, info.input_shape, f"input file {args.input}")
    if x.dtype != info.input_dtype:
        raise UserError(f"input file {args.input} holds {x.dtype} values; the C model takes raw "
                        f"{info.input_dtype} inputs (QuantizedModel.quantize_input)")
    try:
        y = run_on(args.out_dir, x, target=args.target)
    except ToolchainError as e:
        raise UserError(str(e)) from None
    if args.output is None:
        for row in y.reshape(len(y), -1):
            print(" ".join(str(int(v)) for v in row))
    else:
        out = Path(args.output)
        if out.suffix != ".npy":
            raise UserError(f"--output {out} must end in .npy")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.partial.npy")
        np.save(tmp, y)
        os.replace(tmp, out)
        say(f"{len(y)} samples on {args.target}: wrote {out} ({y.dtype} {tuple(y.shape)})")
    return 0


def _analysis_inputs(args: argparse.Namespace):
    """(model, qmodel, (x, y)) for analyze/report: from DIR, or from MODEL + --calib."""
    x, y = load_arrays(args.data, "test data")
    if Path(args.target).is_dir():
        d = open_dir(args.target)
        with step(f"re-quantizing {d} from its float model, config and calibration data"):
            model, qmodel = requantize_from_dir(d)
    else:
        if not args.calib:
            raise UserError("analyzing a MODEL (not an output folder) needs --calib CALIB.npz")
        from .config import Config
        from .ptq import quantize

        calib, _ = load_arrays(args.calib, "calibration")
        model, fgraph, _ = load_float_model(args.target)
        check_shape(calib, tuple(fgraph.input.shape), f"calibration file {args.calib}")
        config = Config.load(args.config) if args.config else Config()
        with step("quantizing"):
            qmodel = quantize(model, calib.astype(np.float32), config)
    check_shape(x, tuple(qmodel.input_info.shape), f"test data file {args.data}")
    return model, qmodel, (x.astype(np.float32), y)


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis import analysis_markdown, analyze

    if args.json:
        outdir.check_file(args.json)  # before minutes of work, not after
    model, qmodel, data = _analysis_inputs(args)
    with step("analysing"):
        a = analyze(model, qmodel, data, name=args.target, sweep=not args.no_sweep)
    if args.json:
        outdir.write_file(args.json, lambda tmp: tmp.write_text(a.to_json() + "\n"))
        say(f"wrote {args.json}")
    print(analysis_markdown(a))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .analysis import analyze, write_report

    dest = Path(args.out) if args.out else (Path(args.target) if Path(args.target).is_dir()
                                            else None)
    if dest is None:
        raise UserError("reporting on a MODEL (not an output folder) needs --out REPORT_DIR")
    outdir.check_dir(dest, update=True)  # before the work: a file, a foreign folder, read-only
    model, qmodel, data = _analysis_inputs(args)
    with step("analysing"):
        a = analyze(model, qmodel, data, name=args.target, sweep=not args.no_sweep)
    # Only the report's entries are replaced: the rest of an output DIR stays as it is.
    with outdir.staged_dir(dest, update=True) as tmp, step("writing report.md / report.html"):
        write_report(a, tmp)
    say(f"wrote {dest / 'report.md'} and {dest / 'report.html'}")
    return 0


def parse_methods(text: str) -> tuple[str, ...]:
    from .config import PRESETS

    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in methods if m not in PRESETS]
    if not methods or bad:
        raise UserError(f"--methods {text!r}: give preset names separated by commas, from "
                        f"{', '.join(sorted(PRESETS))}")
    return methods


def cmd_recommend(args: argparse.Namespace) -> int:
    """Quantize the model several ways, print the Pareto options and the one to take."""
    check_model_spec(args.model)
    methods = parse_methods(args.methods)
    if args.max_drop < 0:
        raise UserError(f"--max-drop {args.max_drop:g}: give the acceptable accuracy loss in "
                        f"percentage points (>= 0)")
    for flag, v in (("--flash-budget", args.flash_budget), ("--ram-budget", args.ram_budget)):
        if v is not None and v <= 0:
            raise UserError(f"{flag} {v}: give a positive number of bytes")
    if args.finetune and not args.model.startswith("zoo:"):
        raise UserError("--finetune needs a zoo model: a .pt2 or .onnx graph cannot be trained "
                        "here (fine-tune it in PyTorch with intquant.regularizers.kurtosis)")
    out = outdir.normalize(args.out) if args.out else None
    if out is not None:
        outdir.check_dir(out, overwrite=args.force, flag="--force")
    if args.json:
        outdir.check_file(args.json)
    calib, _ = load_arrays(args.calib, "calibration")
    x, y = load_arrays(args.data, "test data", need_labels=True)
    search = load_arrays(args.search_data, "search data", need_labels=True) \
        if args.search_data else None
    tune = load_arrays(args.finetune, "fine-tuning data", need_labels=True) \
        if args.finetune else None
    with step(f"loading {args.model}"):
        model, fgraph, _ = load_float_model(args.model)
    shape = tuple(fgraph.input.shape)
    check_shape(calib, shape, f"calibration file {args.calib}")
    check_shape(x, shape, f"test data file {args.data}")
    check_labels(y, int(np.prod(fgraph.node(fgraph.output).shape)), f"test data file {args.data}")
    if search is not None:
        check_shape(search[0], shape, f"search data file {args.search_data}")
        search = (search[0].astype(np.float32), search[1])
    if tune is not None:
        from . import zoo

        check_shape(tune[0], shape, f"fine-tuning data file {args.finetune}")
        tune = (tune[0].astype(np.float32), tune[1])
        model = zoo.get(args.model[4:])[0]  # the trainable nn.Module
    from .analysis.recommend import recommend

    with step("quantizing and measuring the options"):
        rec = recommend(model, calib.astype(np.float32), (x.astype(np.float32), y),
                        max_drop_pp=args.max_drop, flash_budget=args.flash_budget,
                        ram_budget=args.ram_budget, methods=methods, search_data=search,
                        finetune=tune, finetune_epochs=args.finetune_epochs,
                        cycles=not args.no_cycles)
    print(rec.markdown())
    if rec.best is None:
        raise UserError(rec.reason)
    if args.json:
        outdir.write_file(args.json, lambda tmp: write_json(tmp, rec.to_dict()))
        say(f"wrote {args.json}")
    if out is not None:
        write_recommendation(rec, args.model, out, args.force, calib[:1].astype(np.float32))
        say(f"wrote {args.out}/ : {listing(out)}")
    return 0


def write_recommendation(rec: Any, model_spec: str, out: Path, force: bool,
                         example: np.ndarray) -> None:
    """DIR/report.md, report.html (the Recommendation section), recommend.json, one
    config-<#>.json per Pareto option (``intquant quantize --config``) and, when a KURE option
    is among them, the fine-tuned model as finetuned.pt2 (quantize that one with its config)."""
    from .analysis.recommend import recommendation_blocks
    from .analysis.report import Block, render_html, render_markdown

    blocks = [Block("h1", f"intquant recommend: {model_spec}")] + recommendation_blocks(rec)
    with outdir.staged_dir(out, overwrite=force, flag="--force") as tmp:
        (tmp / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(blocks), encoding="utf-8")
        write_json(tmp / "recommend.json", rec.to_dict())
        for i, o in enumerate(rec.options):
            if o.pareto:
                (tmp / f"config-{i}.json").write_text(o.config.to_json() + "\n")
        tuned = next((o.model for o in rec.options if o.pareto and o.model is not None), None)
        if tuned is not None:
            import torch

            program = torch.export.export(tuned.eval(), (torch.as_tensor(example),))
            torch.export.save(program, str(tmp / "finetuned.pt2"))


# ----------------------------------------------------------------------------------------------
# Parser and entry point
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.Namespace:
    from . import __version__
    from .config import BIAS_CORRECTIONS, CALIBRATIONS, GRANULARITIES, PRESETS, WEIGHT_ROUNDINGS

    p = argparse.ArgumentParser(
        prog="intquant",
        description="Float PyTorch/ONNX networks to integer-only networks for MCUs with no FPU.",
        epilog="MODEL: zoo:<name>, a torch.export .pt2 file, or an .onnx file. Arrays: .npz with "
               "keys x (and y) or .npy. Walkthrough: docs/cli.md")
    p.add_argument("--version", action="version", version=f"intquant {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks for every error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    q = sub.add_parser("quantize", help="quantize a float model; write DIR with model.iqm, c/, "
                                        "report, metrics")
    q.add_argument("model", metavar="MODEL")
    q.add_argument("--calib", required=True, metavar="CALIB.npz",
                   help="representative inputs (key x; 100-2000 samples)")
    q.add_argument("--out", required=True, metavar="DIR")
    q.add_argument("--data", metavar="TEST.npz", help="labelled test data (x, y) for metrics "
                                                      "and the report")
    q.add_argument("--weight-bits", type=int, dest="weight_bits")
    q.add_argument("--act-bits", type=int, dest="act_bits")
    q.add_argument("--granularity", choices=GRANULARITIES)
    q.add_argument("--calibration", choices=CALIBRATIONS)
    q.add_argument("--preset", choices=sorted(PRESETS),
                   help="a named PTQ recipe: fast (the default), accurate (slower, best "
                        "measured), or one method alone (docs/cli.md)")
    q.add_argument("--weight-rounding", dest="weight_rounding", choices=WEIGHT_ROUNDINGS,
                   help="how integer weights are chosen (default gptq)")
    q.add_argument("--bias-correction", dest="bias_correction", choices=BIAS_CORRECTIONS,
                   help="remove the mean output shift layer by layer (default full)")
    q.add_argument("--equalize", action=argparse.BooleanOptionalAction, default=None,
                   help="cross-layer equalization + bias absorption (default off)")
    q.add_argument("--act-clipping", dest="act_clipping",
                   action=argparse.BooleanOptionalAction, default=None,
                   help="search activation ranges for the output error (default off)")
    q.add_argument("--config", metavar="CONFIG.json",
                   help="a Config as JSON (per-layer overrides...); options above override it")
    q.add_argument("--weight-budget", metavar="BYTES|PCT%",
                   help="mixed precision: choose per-layer weight widths (search_bits) so the "
                        "dense weight bytes fit, e.g. 12000 or 60%% (of int8)")
    q.add_argument("--candidates", default="1,ternary,2,4,8,16",
                   help="weight widths (and 'ternary') for --weight-budget")
    q.add_argument("--search-data", metavar="VAL.npz",
                   help="labelled data to choose widths on (default: the calibration inputs)")
    q.add_argument("--name", default="model", help="C identifier prefix (default: model)")
    q.add_argument("--no-c", action="store_true", help="skip the C project")
    q.add_argument("--no-report", action="store_true", help="skip report.md/html")
    q.add_argument("--no-sweep", action="store_true",
                   help="skip the accuracy-vs-bits sweep in the report (faster)")
    q.add_argument("--force", action="store_true",
                   help="replace DIR if an earlier intquant run wrote it")
    q.set_defaults(fn=cmd_quantize)

    e = sub.add_parser("eval", help="accuracy and logit error of DIR's integer model vs float")
    e.add_argument("dir", metavar="DIR")
    e.add_argument("--data", required=True, metavar="TEST.npz")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(fn=cmd_eval)

    r = sub.add_parser("run", help="run the integer model on inputs (float in -> float out; "
                                   "integer in -> integer out)")
    r.add_argument("model", metavar="DIR|MODEL.iqm")
    r.add_argument("--input", required=True, metavar="X.npy")
    r.add_argument("--output", required=True, metavar="Y.npy")
    r.set_defaults(fn=cmd_run)

    i = sub.add_parser("inspect", help="layers, formats, sizes of an integer model")
    i.add_argument("model", metavar="DIR|MODEL.iqm")
    i.add_argument("--m0", action="store_true",
                   help="also build the C for Cortex-M0 and show cycles per op and hot spots")
    i.add_argument("--multiplier", choices=("fast", "small"), default="fast",
                   help="Cortex-M0 multiplier for --m0: 1-cycle (fast) or 32-cycle (small)")
    i.set_defaults(fn=cmd_inspect)

    c = sub.add_parser("export-c", help="write the C99 project of an integer model")
    c.add_argument("model", metavar="MODEL.iqm")
    c.add_argument("out_dir", metavar="OUT_DIR")
    c.add_argument("--name", default="model")
    c.add_argument("--force", action="store_true",
                   help="replace OUT_DIR if an earlier intquant run wrote it")
    c.set_defaults(fn=cmd_export_c)

    from .codegen.targets import TARGETS

    rc = sub.add_parser("run-c", help="run an export-c folder's C on the host or an emulated "
                                      "MCU (raw integer inputs -> raw outputs)")
    rc.add_argument("out_dir", metavar="OUT_DIR")
    rc.add_argument("--target", default="host", choices=list(TARGETS),
                    help="where to run (default: host); cross toolchains: "
                         "scripts/install_toolchain.sh")
    rc.add_argument("--input", required=True, metavar="X.npy", help="raw model inputs (N, ...)")
    rc.add_argument("--output", metavar="Y.npy", help="default: one line of integers per sample")
    rc.set_defaults(fn=cmd_run_c)

    rec = sub.add_parser("recommend", help="quantize several ways (methods, uniform and "
                                           "per-layer widths) and recommend one (Pareto table)")
    rec.add_argument("model", metavar="MODEL")
    rec.add_argument("--calib", required=True, metavar="CALIB.npz")
    rec.add_argument("--data", required=True, metavar="TEST.npz",
                     help="labelled data every option is measured on")
    rec.add_argument("--search-data", metavar="VAL.npz",
                     help="labelled data the per-layer width search chooses on (default: "
                          "--data)")
    rec.add_argument("--max-drop", type=float, default=1.0, metavar="PP",
                     help="acceptable accuracy loss vs float, percentage points (default 1)")
    rec.add_argument("--flash-budget", type=int, metavar="BYTES",
                     help="bytes of model constants (weights packed, biases, multipliers)")
    rec.add_argument("--ram-budget", type=int, metavar="BYTES", help="bytes of the C arena")
    rec.add_argument("--methods", default="fast,nearest", metavar="PRESET,...",
                     help="PTQ presets to try at uniform widths (default fast,nearest)")
    rec.add_argument("--finetune", metavar="TRAIN.npz",
                     help="also fine-tune a zoo model with the kurtosis regularizer (slower)")
    rec.add_argument("--finetune-epochs", type=int, default=3, metavar="N")
    rec.add_argument("--no-cycles", action="store_true",
                     help="skip the emulated Cortex-M0 cost of the Pareto options")
    rec.add_argument("--out", metavar="DIR",
                     help="write report.md/html, recommend.json, config-<#>.json there")
    rec.add_argument("--json", metavar="OUT.json", help="also write the options as JSON")
    rec.add_argument("--force", action="store_true",
                     help="replace DIR if an earlier intquant run wrote it")
    rec.set_defaults(fn=cmd_recommend)

    for cmd, fn, helptext in (("analyze", cmd_analyze, "per-layer statistics, SQNR, sensitivity "
                                                       "(Markdown on stdout)"),
                              ("report", cmd_report, "write report.md and report.html")):
        a = sub.add_parser(cmd, help=helptext)
        a.add_argument("target", metavar="DIR|MODEL")
        a.add_argument("--data", required=True, metavar="TEST.npz")
        a.add_argument("--calib", metavar="CALIB.npz", help="with MODEL: calibration inputs")
        a.add_argument("--config", metavar="CONFIG.json", help="with MODEL: the Config")
        a.add_argument("--no-sweep", action="store_true", help="skip the accuracy-vs-bits sweep")
        if cmd == "analyze":
            a.add_argument("--json", metavar="OUT.json", help="also write the analysis as JSON")
        else:
            a.add_argument("--out", metavar="REPORT_DIR", help="default: DIR itself")
        a.set_defaults(fn=fn)
    return p


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (the library raises ValueError with a clear message) or a
    machine that refuses (disk full, read-only file system: OSError)."""
    return (UserError, ValueError, OSError, NotImplementedError)


def _interrupted(signum: int) -> int:
    say(f"intquant: {'interrupted' if signum == signal.SIGINT else 'terminated'}; nothing was "
        f"left half-written")
    return outdir.exit_code(signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USER
    show_data_warnings(args.command)
    with outdir.signals_as_exceptions():
        try:
            code = int(args.fn(args) or 0)
        except KeyboardInterrupt:
            return _interrupted(int(signal.SIGINT))
        except outdir.Terminated:
            return _interrupted(int(signal.SIGTERM))
        except BrokenPipeError:  # `intquant inspect DIR | head`: the reader left, not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except _user_errors() as e:
            if args.debug:
                raise
            msg = " ".join((str(e).strip() or type(e).__name__).split())
            say(f"intquant {args.command}: error: {msg}")
            return EXIT_USER
        # A Ctrl-C some library code swallowed (KeyboardInterrupt raised inside a __del__):
        # outputs were not committed after it, and the exit code still says so.
        signum = outdir.signalled()
        return _interrupted(signum) if signum else code


def run() -> None:
    """The ``intquant`` process entry point: :func:`main` with SIGINT/SIGTERM honoured from the
    first line of argument parsing to the process exit.

    A Ctrl-C that lands after :func:`main` left its own handlers (while it returns, or while
    Python shuts down) would otherwise hit Python's default handler: a KeyboardInterrupt
    traceback and death by SIGINT (status -2) instead of exit code 130. Such a signal still
    ends with 128 + signal; after the exit code is settled, signals are ignored. Either way
    the output is complete or absent, never half-written.
    """
    with outdir.signals_as_exceptions(then_ignore=True):
        try:
            code = main()
        except KeyboardInterrupt:
            code = _interrupted(int(signal.SIGINT))
        except outdir.Terminated:
            code = _interrupted(int(signal.SIGTERM))
    _forget_handled_keyboard_interrupts()
    sys.exit(code)


def _forget_handled_keyboard_interrupts() -> None:
    """Keep CPython from turning a handled Ctrl-C into death by SIGINT at exit.

    CPython (3.8 and later) sets a process-wide "unhandled KeyboardInterrupt" flag whenever a
    KeyboardInterrupt leaves an ``exec``/``eval`` of a *string* — dataclasses, namedtuple and
    torch build code that way, so a Ctrl-C during an import or a model load often passes
    through one — even when the CLI catches it later. At exit the interpreter then re-sends
    itself SIGINT (status -2) instead of returning our 130: a clean interrupt looks like a
    crash to the caller. Running any string clears the flag first (``run_eval_code_obj``), and
    signals are ignored from here on, so nothing can set it again.
    """
    exec("pass")  # noqa: S102 - a constant string; see the docstring


if __name__ == "__main__":
    run()
