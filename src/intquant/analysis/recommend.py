""""What should I do?": measured quantization options for the user's own model, and one to take.

:func:`recommend` answers with numbers measured on the user's model and data, not with a rule
of thumb:

1. Options. Uniform widths (W8A8, W4A8) with each PTQ method asked for (``methods``: preset
   names, ``Config.PRESETS``), 16-bit activations everywhere (W8A16), and per-layer mixes from
   :func:`~intquant.analysis.mixed.search_bits` (weights at 8/4/2/1 bits priced with the exact
   packed bytes; 16-bit activations on the layers whose output gains from them). One search
   runs up to the largest weight budget needed; the points its greedy ascent passed through on
   the way (each is what the search holds at that cost) give the smaller mixes, at about
   ``MIXED_SHARES`` of the int8 weight bytes. With ``finetune`` data, the model is also
   fine-tuned with the kurtosis regularizer (KURE) and quantized at the narrow widths.
2. Every option is quantized for real with ``intquant.quantize`` and measured: accuracy of the
   integer model (the NumPy interpreter = the C) on ``data``, mean |logit error| against the
   float model given (for KURE options it includes what the fine-tuning changed), flash =
   every constant of the generated C (packed weights, biases, multipliers, shifts:
   ``<NAME>_WEIGHT_BYTES``), RAM = the C planner's activation arena.
3. The Pareto front over (accuracy ↑, logit error ↓, flash ↓, RAM ↓). For the options on it
   that fit the budgets, the generated C is built and run on the emulated Cortex-M0
   (``codegen.cost_report``: cycles per inference, 1-cycle multiplier; when the ARM
   toolchain is installed).
4. The recommendation: among the options that fit ``flash_budget`` and ``ram_budget`` and lose
   at most ``max_drop_pp`` against float, the one with the least flash (then RAM, then the best
   accuracy and logit error); that option is always on the Pareto front. When none is within
   ``max_drop_pp``, the most accurate option that fits; when none fits, no recommendation and a
   message naming the smallest flash and RAM measured.

Each option's ``settings()`` are the Config fields it changes from the defaults:
``intquant.quantize(model, calib, Config.from_dict(settings))`` reproduces it byte for byte
(the KURE options: with their fine-tuned ``model``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import bar

MIXED_CANDIDATES = (1, 2, 4, 8)  # weight widths per layer; 16-bit weights rarely pay in flash
MIXED_SHARES = (0.25, 0.4, 0.6)  # mixed options at about these shares of the int8 weight bytes
DEFAULT_METHODS = ("fast", "nearest")
SEARCH_SAMPLES = 500  # samples the width search simulates on (the options are measured on all)
KURE_WEIGHT = 0.5  # λ of λ·kurtosis(model) while fine-tuning
EVAL_BATCH = 256


@dataclass
class Option:
    """One measured way to quantize the model."""

    name: str
    method: str  # the preset (PTQ recipe) name
    config: Any
    accuracy: float
    logit_error: float  # mean |integer logits − float logits|
    flash_bytes: int  # every constant of the generated C (weights packed)
    weight_bytes: int  # the conv/linear weight arrays among them
    ram_bytes: int | None  # the C arena; None without the C back end
    quantize_seconds: float = 0.0
    m0: float | None = None  # per inference on the emulated Cortex-M0 (cost_report)
    m0_counter: str | None = None  # what ``m0`` counts: "cycles" (or the target's counter)
    pareto: bool = False
    fits: bool = True
    model: Any = field(default=None, repr=False)  # the fine-tuned model (KURE options)
    qmodel: Any = field(default=None, repr=False)

    def settings(self) -> dict[str, Any]:
        """The Config fields this option changes from ``Config()``: JSON, for ``from_dict``."""
        from ..config import Config

        mine, default = json.loads(self.config.to_json()), json.loads(Config().to_json())
        return {k: v for k, v in mine.items() if v != default[k]}

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name not in ("config", "model", "qmodel")}
        d["settings"] = self.settings()
        d["finetuned"] = self.model is not None
        return d


@dataclass
class Recommendation:
    """The options measured, which are Pareto-optimal, and the one recommended (and why)."""

    options: list[Option]
    recommended: int | None  # index into ``options``
    reason: str
    float_accuracy: float
    samples: int
    max_drop_pp: float
    flash_budget: int | None
    ram_budget: int | None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def best(self) -> Option | None:
        return None if self.recommended is None else self.options[self.recommended]

    def pareto(self) -> list[Option]:
        return [o for o in self.options if o.pareto]

    def to_dict(self) -> dict[str, Any]:
        return {"float_accuracy": self.float_accuracy, "samples": self.samples,
                "max_drop_pp": self.max_drop_pp, "flash_budget": self.flash_budget,
                "ram_budget": self.ram_budget, "recommended": self.recommended,
                "reason": self.reason, "notes": self.notes, "seconds": round(self.seconds, 1),
                "options": [o.to_dict() for o in self.options]}

    def markdown(self) -> str:
        from .report import render_markdown

        return render_markdown(recommendation_blocks(self))


# ----------------------------------------------------------------------------------------------
# Pareto front and choice
# ----------------------------------------------------------------------------------------------


def dominates(a: Option, b: Option) -> bool:
    """``a`` is at least as good as ``b`` on accuracy, logit error, flash and RAM, and better on
    one of them."""
    ga, gb = _goals(a), _goals(b)
    return all(x <= y for x, y in zip(ga, gb, strict=True)) and ga != gb


def _goals(o: Option) -> tuple[float, ...]:
    """What is minimised (accuracy negated; an unknown RAM counts as 0 for every option)."""
    return (-o.accuracy, o.logit_error, float(o.flash_bytes), float(o.ram_bytes or 0))


def mark_pareto(options: list[Option]) -> None:
    for o in options:
        o.pareto = not any(dominates(p, o) for p in options if p is not o)


def fits_budgets(o: Option, flash_budget: int | None, ram_budget: int | None) -> bool:
    return ((flash_budget is None or o.flash_bytes <= flash_budget)
            and (ram_budget is None or o.ram_bytes is None or o.ram_bytes <= ram_budget))


def choose(options: list[Option], float_accuracy: float, max_drop_pp: float,
           flash_budget: int | None, ram_budget: int | None) -> tuple[int | None, str]:
    """(index of the recommended option or None, the reason in one or two sentences)."""
    for o in options:
        o.fits = fits_budgets(o, flash_budget, ram_budget)
    budgets = _budget_text(flash_budget, ram_budget)
    feasible = [i for i, o in enumerate(options) if o.fits]
    if not feasible:
        small_f = min(options, key=lambda o: o.flash_bytes)
        small_r = min(options, key=lambda o: o.ram_bytes or 0)
        return None, (f"no option fits {budgets}: the smallest flash measured is "
                      f"{small_f.flash_bytes} B ({small_f.name}), the smallest RAM "
                      f"{small_r.ram_bytes} B ({small_r.name}); raise the budget or shrink the "
                      f"model")
    drop = {i: 100 * (float_accuracy - options[i].accuracy) for i in feasible}
    within = [i for i in feasible if drop[i] <= max_drop_pp + 1e-9]
    fit_text = f" that fit {budgets}" if budgets != "no budget" else ""
    if within:
        best = min(within, key=lambda i: (options[i].flash_bytes, options[i].ram_bytes or 0,
                                          -options[i].accuracy, options[i].logit_error))
        o = options[best]
        reason = (f"{o.name} ({o.method}): the least flash of the {len(within)} options within "
                  f"{max_drop_pp:g} pp of float{fit_text}; {o.flash_bytes} B, "
                  f"{-drop[best]:+.2f} pp")
        better = [i for i in within if options[i].accuracy > o.accuracy]
        if better:
            nxt = min(better, key=lambda i: options[i].flash_bytes)
            reason += (f"; {options[nxt].flash_bytes - o.flash_bytes:+d} B buy "
                       f"{100 * (options[nxt].accuracy - o.accuracy):+.2f} pp "
                       f"({options[nxt].name}, {options[nxt].method})")
        return best, reason + "."
    best = min(feasible, key=lambda i: (-options[i].accuracy, options[i].logit_error,
                                        options[i].flash_bytes))
    o = options[best]
    return best, (f"no option is within {max_drop_pp:g} pp of float{fit_text}; {o.name} "
                  f"({o.method}) is the most accurate that does ({-drop[best]:+.2f} pp): "
                  f"quantization-aware training (intquant.qat) may close the gap.")


def _budget_text(flash_budget: int | None, ram_budget: int | None) -> str:
    parts = ([f"flash ≤ {flash_budget} B"] if flash_budget is not None else []) + (
        [f"RAM ≤ {ram_budget} B"] if ram_budget is not None else [])
    return " and ".join(parts) or "no budget"


# ----------------------------------------------------------------------------------------------
# Measuring one option
# ----------------------------------------------------------------------------------------------


def integer_logits(qmodel: Any, x: np.ndarray) -> np.ndarray:
    """Dequantized integer logits of ``x`` (batched: bounded memory)."""
    outs = [qmodel.predict(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)]
    return np.concatenate(outs).reshape(len(x), -1)


def measure_option(name: str, method: str, config: Any, model: Any, calib: Any,
                   x: np.ndarray, y: np.ndarray, float_logits: np.ndarray) -> Option:
    """Quantize with ``config`` (``intquant.quantize`` itself) and measure the integer model."""
    import torch

    from ..graph import GraphModule
    from ..ptq import quantize
    from .stats import arena_bytes

    start = time.perf_counter()
    qmodel = quantize(model, calib, config, progress=False)
    seconds = time.perf_counter() - start
    logits = integer_logits(qmodel, x)
    weights = sum(int(op.consts["weight"].nbytes) for op in qmodel.graph.ops
                  if "weight" in op.consts)
    return Option(name=name, method=method, config=config,
                  accuracy=float(np.mean(logits.argmax(1) == y)),
                  logit_error=float(np.mean(np.abs(logits - float_logits))),
                  flash_bytes=int(qmodel.weight_bytes()), weight_bytes=weights,
                  ram_bytes=arena_bytes(qmodel.graph), quantize_seconds=round(seconds, 2),
                  model=model if isinstance(model, torch.nn.Module)
                  and not isinstance(model, GraphModule) else None, qmodel=qmodel)


def m0_available(target: str = "cortex-m0") -> bool:
    """Whether the C back end and the target's toolchain are installed."""
    try:
        from ..codegen.targets import get_target
    except ImportError:
        return False
    return not get_target(target).missing_tools()


def measure_m0(option: Option, target: str = "cortex-m0") -> None:
    """Build the option's C and cost one inference on the emulated core (cost_report): cycles
    where the target has a cycle model (Cortex-M0 TRM timings, 1-cycle MULS), else its count."""
    from ..codegen.cost import cost_report

    with tempfile.TemporaryDirectory(prefix="intquant-recommend-") as tmp:
        out = Path(tmp) / "c"
        option.qmodel.export_c(out)
        r = cost_report(out, target=target, write=False)
    if r.get("cycles_per_inference") is not None:  # the Cortex-M0 cycle model (1-cycle MULS)
        option.m0, option.m0_counter = r["cycles_per_inference"], "cycles"
    else:
        option.m0, option.m0_counter = r["per_inference"], r["counter"]


# ----------------------------------------------------------------------------------------------
# Candidate configurations
# ----------------------------------------------------------------------------------------------


def uniform_configs(methods: tuple[str, ...]) -> list[tuple[str, str, Any]]:
    """(name, method, Config): W8A8 and W4A8 per method, W8A16 with the first method."""
    from ..config import Config

    out = []
    for m in methods:
        out += [("W8A8", m, Config.preset(m)), ("W4A8", m, Config.preset(m, weight_bits=4))]
    out.append(("W8A16", methods[0], Config.preset(methods[0], act_bits=16)))
    return out


def greedy_path(result: Any, cheapest: Any) -> list[tuple[dict[str, Any], int]]:
    """(weight widths, weight bytes) at every step search_bits' greedy ascent and swap pass
    took, replayed from its history (the widest-activation steps come after and are left out)."""
    wbits = {n: cheapest for n in result.weight_bits}
    path = []
    for h in result.history:
        if h["step"] == "widen":
            wbits[h["layer"]] = h["to"]
        elif h["step"] == "swap":
            wbits[h["narrow"]], wbits[h["widen"]] = h["narrow_to"], h["widen_to"]
        else:
            continue
        path.append((dict(wbits), int(h["weight_bytes"])))
    return path


def mixed_name(wbits: dict[str, Any], abits: dict[str, int], act_default: int) -> str:
    """'mixed W8·4·1·2·8' (layer order), '+A16 ×2' when two layers' outputs are 16-bit."""
    name = "mixed W" + "·".join("t" if b == "ternary" else str(b) for b in wbits.values())
    wide = sum(1 for a in abits.values() if a != act_default)
    return name + (f" +A16 ×{wide}" if wide else "")


def mixed_configs(model: Any, calib: Any, search: Any, method: str, int8_weight_bytes: int,
                  weight_budget: int | None, ram_budget: int | None,
                  notes: list[str]) -> list[tuple[str, str, Any]]:
    """Per-layer mixes from one search_bits run: its final choice (with 8-bit activations,
    and with 16-bit ones where they help) and the greedy path's points at about
    ``MIXED_SHARES`` of int8 bytes (those below ``weight_budget``, then the search's budget)."""
    from ..config import Config
    from .mixed import _to_config, search_bits

    budgets = sorted({int(s * int8_weight_bytes) for s in MIXED_SHARES
                      if weight_budget is None or s * int8_weight_bytes < weight_budget}
                     | ({weight_budget} if weight_budget is not None else set()))
    top = max(budgets)
    base = Config.preset(method)
    try:
        res = search_bits(model, calib, search, budget_bytes=top, candidates=MIXED_CANDIDATES,
                          act_candidates=(8, 16), ram_budget_bytes=ram_budget, config=base,
                          measure=False, max_samples=SEARCH_SAMPLES, progress=False)
    except ValueError as e:
        notes.append(f"per-layer widths: {e}")
        return []
    chosen: dict[str, tuple[str, Any]] = {}
    path = greedy_path(res, min(MIXED_CANDIDATES))
    for b in budgets[:-1]:
        below = [(w, cost) for w, cost in path if cost <= b]
        if below:
            w, _ = below[-1]
            cfg = _to_config(base, w, {}, 8)
            chosen.setdefault(cfg.to_json(), (mixed_name(w, {}, 8), cfg))
    # the search's choice with 8-bit activations, then with its 16-bit ones (they cost RAM
    # and 4 more bytes of constants per channel, which the weight budget does not see)
    cfg = _to_config(base, res.weight_bits, {}, 8)
    chosen.setdefault(cfg.to_json(), (mixed_name(res.weight_bits, {}, 8), cfg))
    cfg = res.config
    chosen.setdefault(cfg.to_json(), (mixed_name(res.weight_bits, res.act_bits, 8), cfg))
    return [(name, method, c) for name, c in chosen.values()]


def finetune_kure(model: Any, data: Any, epochs: int, progress: bool) -> Any:
    """A copy of ``model`` fine-tuned with λ·kurtosis (KURE) added to the loss: flatter weight
    distributions lose less at low widths."""
    import torch

    from ..regularizers import kurtosis
    from ..training import train

    if not isinstance(model, torch.nn.Module) or not any(
            p.requires_grad for p in model.parameters()):
        raise ValueError("recommend: finetune needs a trainable nn.Module (an ONNX or .pt2 "
                         "graph cannot be fine-tuned here); pass the PyTorch model")
    tuned = copy.deepcopy(model)
    train(tuned, data, epochs=epochs, lr=3e-4, schedule="cosine", num_threads=1,
          extra_loss=lambda m: KURE_WEIGHT * kurtosis(m), progress=progress,
          desc="fine-tuning with KURE")
    return tuned.eval()


# ----------------------------------------------------------------------------------------------
# The entry point
# ----------------------------------------------------------------------------------------------


def recommend(model: Any, calib: Any, data: Any, max_drop_pp: float = 1.0,
              flash_budget: int | None = None, ram_budget: int | None = None, *,
              methods: tuple[str, ...] = DEFAULT_METHODS, search_data: Any = None,
              finetune: Any = None, finetune_epochs: int = 3, cycles: bool = True,
              target: str = "cortex-m0", progress: bool = True) -> Recommendation:
    """Measure quantization options for ``model`` and recommend one (see the module docstring).

    ``calib``: calibration inputs, as for ``quantize``. ``data``: labelled ``(x, y)`` (or a
    Dataset: its test split) every option is measured on. ``search_data``: labelled data the
    per-layer width search chooses on (default: a Dataset's last 20 % of the training split,
    else ``data`` itself — then the mixes are chosen on the data they are judged on).
    ``max_drop_pp``: the accuracy loss against float that is acceptable (percentage points).
    ``flash_budget`` / ``ram_budget``: bytes of constants / of the activation arena.
    ``methods``: PTQ presets tried at the uniform widths (the first also for the mixes).
    ``finetune``: labelled training data: also fine-tune with KURE for ``finetune_epochs``
    (needs an nn.Module; costs training time). ``cycles``: cost the Pareto options on the
    emulated ``target`` (skipped with a note when its toolchain is missing).
    """
    from ..config import PRESETS
    from ..graph import GraphModule, run_graph
    from ..ptq import as_batches, prepare_graph
    from .stats import _as_eval

    start = time.perf_counter()
    methods = tuple(methods)
    bad = [m for m in methods if m not in PRESETS]
    if not methods or bad:
        raise ValueError(f"recommend: methods must be preset names from {sorted(PRESETS)}, "
                         f"got {list(methods)}")
    if not max_drop_pp >= 0:
        raise ValueError(f"recommend: max_drop_pp must be >= 0, got {max_drop_pp}")
    for what, b in (("flash_budget", flash_budget), ("ram_budget", ram_budget)):
        if b is not None and int(b) <= 0:
            raise ValueError(f"recommend: {what} must be a positive number of bytes, got {b}")
    x, y = _as_eval(data)
    if y is None:
        raise ValueError("recommend: data must be labelled: (x, y) or a Dataset")
    batches = as_batches(calib)
    graph = prepare_graph(model, batches[0])
    float_logits = run_graph(graph, x).numpy().reshape(len(x), -1)
    float_acc = float(np.mean(float_logits.argmax(1) == y))
    notes: list[str] = []

    def captured() -> GraphModule:
        """The captured, optimized graph (a copy each time: quantize must not see another
        option's rewrites), so that options do not re-export the model."""
        return GraphModule(copy.deepcopy(graph))

    def measure(cands: list[tuple[str, str, Any]], tuned: Any = None, desc: str = "") -> list:
        return [measure_option(n, m, c, tuned if tuned is not None else captured(), calib, x,
                               y, float_logits) for n, m, c in bar(cands, desc, progress)]

    options = measure(uniform_configs(methods), desc="recommend: uniform widths")
    int8 = next(o for o in options if o.name == "W8A8")
    constants = int8.flash_bytes - int8.weight_bytes
    weight_budget = None if flash_budget is None else int(flash_budget) - constants
    if weight_budget is not None and weight_budget >= int8.weight_bytes:
        weight_budget = None
    mixes = mixed_configs(captured(), calib, data if search_data is None else search_data,
                          methods[0], int8.weight_bytes,
                          weight_budget, ram_budget, notes)
    options += measure(mixes, desc="recommend: per-layer widths")
    if finetune is not None:
        tuned = finetune_kure(model, finetune, finetune_epochs, progress)
        small = [(f"KURE + {n}", m, c) for n, m, c in
                 [t for t in uniform_configs(methods[:1]) if t[0] == "W4A8"] + mixes[:1]]
        options += measure(small, tuned, desc="recommend: KURE fine-tuned")
    mark_pareto(options)
    index, reason = choose(options, float_acc, max_drop_pp, flash_budget, ram_budget)
    if cycles:
        if m0_available(target):
            from ..codegen.toolchain import ToolchainError

            for o in bar([o for o in options if o.pareto and o.fits],
                         f"recommend: {target} cost", progress):
                try:
                    measure_m0(o, target)
                except (ToolchainError, NotImplementedError) as e:  # not costed, said so
                    notes.append(f"{o.name} ({o.method}): no {target} cost: {e}")
        else:
            notes.append(f"{target} cycles not measured: its toolchain is not installed "
                         f"(scripts/install_toolchain.sh)")
    return Recommendation(options=options, recommended=index, reason=reason,
                          float_accuracy=float_acc, samples=len(x), max_drop_pp=max_drop_pp,
                          flash_budget=flash_budget, ram_budget=ram_budget, notes=notes,
                          seconds=time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------
# Rendering (the CLI prints the Markdown; reports append the same blocks)
# ----------------------------------------------------------------------------------------------

TABLE_HEADERS = ("#", "option", "method", "acc %", "Δ pp", "logit err", "flash B", "RAM B",
                 "M0 per inference", "")


def option_row(i: int, o: Option, float_accuracy: float, recommended: bool) -> tuple[str, ...]:
    m0 = "–" if o.m0 is None else f"{o.m0:,.0f} {o.m0_counter or ''}".strip()
    mark = "◀ recommended" if recommended else ("over budget" if not o.fits else "")
    return (str(i), o.name, o.method, f"{100 * o.accuracy:.2f}",
            f"{100 * (o.accuracy - float_accuracy):+.2f}", f"{o.logit_error:.4f}",
            str(o.flash_bytes), "–" if o.ram_bytes is None else str(o.ram_bytes), m0, mark)


def recommendation_blocks(r: Recommendation) -> list[Any]:
    """Heading, summary, the Pareto table, the reason, the settings that reproduce each option
    (report Blocks: rendered escaped in Markdown and HTML)."""
    from .report import Block

    pareto = [(i, o) for i, o in enumerate(r.options) if o.pareto]
    rows = tuple(option_row(i, o, r.float_accuracy, i == r.recommended) for i, o in pareto)
    dominated = [f"{o.name} ({o.method})" for o in r.options if not o.pareto]
    blocks = [
        Block("h2", "Recommendation"),
        Block("p", f"{len(r.options)} options quantized and measured on {r.samples} samples "
                   f"(float accuracy {100 * r.float_accuracy:.2f} %); acceptable loss "
                   f"{r.max_drop_pp:g} pp; budgets: "
                   f"{_budget_text(r.flash_budget, r.ram_budget)}. The table lists the Pareto "
                   f"front over accuracy, logit error (mean |integer − float logit|), flash "
                   f"(every constant of the generated C, weights packed) and RAM (the C "
                   f"arena); M0: one inference on the emulated Cortex-M0 (cycles: Cortex-M0 "
                   f"TRM timings, 1-cycle multiplier)."),
        Block("table", headers=TABLE_HEADERS, rows=rows),
        Block("p", ("Recommended: " if r.recommended is not None else "No recommendation: ")
              + r.reason),
    ]
    if dominated:
        blocks.append(Block("p", "Dominated (another option is at least as good on all four): "
                                 + "; ".join(dominated) + "."))
    blocks += [Block("p", n) for n in r.notes]
    settings = "\n".join(
        f"#{i}: " + json.dumps(o.settings()) + ("   (the KURE fine-tuned model: finetuned.pt2)"
                                                if o.model is not None else "")
        for i, o in pareto)
    blocks += [Block("p", "Each option is intquant.quantize(model, calib, "
                          "Config.from_dict(settings)) with these settings ({} = the defaults):"),
               Block("code", settings)]
    return blocks
