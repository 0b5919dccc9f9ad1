"""Mixed precision: per-layer weight (and activation) widths that maximise accuracy under a budget.

Not every layer needs 8 bits: a wide, redundant conv often loses nothing at 4 (or 1), while a
thin first layer or the classifier may need 8 or 16. :func:`search_bits` chooses the widths:

1. Candidate formats: for each weighted layer and each candidate, the weight format PTQ would
   pick: 16 and 8 bits per-channel max-abs, 4 bits MSE-optimal clipping, 2 bits the full grid
   {−2, −1, 0, 1}·s, ``"ternary"`` the narrow grid {−1, 0, 1}·s, 1 bit binary ±α.
2. Score of an assignment: accuracy of the float graph with every layer fake-quantized at its
   width and every activation at its calibrated format (``sensitivity.simulate``), ties broken
   by the logit error to the float model. Cheap: no lowering, one float pass per candidate.
3. Greedy ascent from the cheapest assignment: each step takes the upgrade (one layer to a wider
   candidate) with the best score gain per extra byte that still fits the budget. Then a swap
   pass (narrow one layer, widen another) escapes the greedy's first choices.
4. Activation widths (``act_candidates`` with more than one width and a RAM budget): layers
   whose output gains from 16-bit activations are widened while the predicted arena fits.
5. The result is a ``Config`` (per-layer ``overrides``) that ``intquant.quantize`` and the C
   back end accept; it is quantized for real and its accuracy and costs measured.

Cost model (the budget): *weight bytes* = Σ over conv/linear layers of the bytes their weight
array takes in the IntGraph and in the generated C (``ops._packed.packed_nbytes``: 1, 2 and 4-bit
codes packed, rows on byte boundaries), computed from the candidate's actual codes with the
format choice lowering makes, so the prediction is the generated size exactly. Biases,
multipliers and shifts (12 bytes per output channel, 16 with 16-bit weights or activations) do
not depend on the width choice below 16 bits and are reported by the C back end.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..graph.ir import OWN_FORMAT, WEIGHTED
from ..numerics import QParams, quantize
from ..ops import _packed
from .sensitivity import FloatCache, accuracy, float_cache, simulate, weight_format

LOGIT_ERROR_WEIGHT = 0.01  # score = accuracy − this · (logit MSE / logit variance)
TERNARY = "ternary"
Candidate = int | str  # a width in bits, or "ternary"


def candidate_rank(c: Candidate) -> float:
    """Order of candidates from narrowest: 1 < ternary < 2 < 4 < 8 < 16."""
    return 1.5 if c == TERNARY else float(c)


def candidate_settings(c: Candidate) -> dict[str, Any]:
    """The per-layer Config settings of a candidate."""
    if c == TERNARY:
        return {"weight_bits": 2, "weight_quantizer": TERNARY}
    return {"weight_bits": int(c)}


def parse_candidates(candidates: Any) -> list[Candidate]:
    """Widths in [1, 16] and "ternary" (also "t"), narrowest first, each once."""
    out: set[Candidate] = set()
    for c in candidates:
        if isinstance(c, str) and c.strip().lower() in (TERNARY, "t"):
            out.add(TERNARY)
            continue
        try:
            b = int(c)
        except (TypeError, ValueError):
            raise ValueError(f"search_bits: candidate {c!r} is neither a width nor "
                             f"'ternary'") from None
        if not 1 <= b <= 16:
            raise ValueError(f"search_bits: candidate widths must be in [1, 16], got {b}")
        out.add(b)
    return sorted(out, key=candidate_rank)


def stored_weight_bytes(graph: Any, layer: str, config: Any, qp: QParams) -> int:
    """Bytes of the layer's weight array once lowered with format ``qp``: the codes lowering
    will store, in the format it will choose (packed or int8/int16), rows on byte bounds."""
    from ..ptq import per_block_weights

    w = graph.node(layer).params["weight"]
    cfg = config.for_layer(layer)
    gran = cfg["granularity"]
    if isinstance(gran, (tuple, list)) and gran[0] == "per_block":
        cfg.update(weight_bits=qp.bits)
        w, qp = per_block_weights(layer, w, cfg, int(gran[1]))
    codes = quantize(w, qp)
    fmt = _packed.choose_format(codes, qp.bits)
    return _packed.packed_nbytes(fmt, codes.shape, 1 if qp.bits <= 8 else 2)


@dataclass
class BitSearchResult:
    """What :func:`search_bits` chose and what it costs, predicted and measured.

    ``config`` is the Config to quantize with; ``qmodel`` the model quantized with it (when
    ``measure``); ``history`` the accepted steps of the search.
    """

    config: Any
    weight_bits: dict[str, Candidate]
    act_bits: dict[str, int]
    budget_bytes: int | None
    ram_budget_bytes: int | None
    predicted: dict[str, float]
    measured: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluations: int = 0
    seconds: float = 0.0
    qmodel: Any = field(default=None, repr=False)
    layer_bytes: dict[str, int] = field(default_factory=dict)  # chosen weight array bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": json.loads(self.config.to_json()),
            "weight_bits": self.weight_bits,
            "layer_bytes": self.layer_bytes,
            "act_bits": self.act_bits,
            "budget_bytes": self.budget_bytes,
            "ram_budget_bytes": self.ram_budget_bytes,
            "predicted": self.predicted,
            "measured": self.measured,
            "history": self.history,
            "evaluations": self.evaluations,
            "seconds": round(self.seconds, 2),
        }


def weight_cost(costs: dict[str, dict[Candidate, int]], choice: dict[str, Candidate]) -> int:
    """Budgeted bytes: every layer's weight array as stored for its chosen candidate."""
    return sum(costs[n][choice[n]] for n in choice)


def activation_ram(graph: Any, act_bits: dict[str, int], default_bits: int) -> int:
    """Predicted RAM: the largest (inputs + output) activation bytes over the nodes.

    With ping-pong buffers this is what a sequential network needs; the C planner's arena (the
    measured value) can be smaller (in-place ops) or larger (skip connections held alive).
    """
    def nbytes(name: str) -> int:
        node = graph.node(name)
        width = 2 if act_bits.get(name, default_bits) > 8 else 1
        return math.prod(node.shape) * width

    best = 0
    for node in graph.nodes:
        if node.op == "input":
            continue
        best = max(best, nbytes(node.name) + sum(nbytes(i) for i in node.inputs))
    return best


class _Scorer:
    """Memoised score of (weight bits, act bits) assignments on the evaluation data."""

    def __init__(self, cache: FloatCache, targets: np.ndarray,
                 formats: dict[str, dict[int, QParams]], acts_by_bits: dict[int, dict]):
        self.cache = cache
        self.targets = targets
        self.formats = formats
        self.acts_by_bits = acts_by_bits
        ref = cache.values[cache.graph.output].numpy().reshape(len(targets), -1)
        self.ref = ref
        self.ref_var = float(ref.var()) or 1.0
        self.memo: dict[tuple, tuple[float, float]] = {}

    def acts(self, act_bits: dict[str, int], default: int) -> dict[str, QParams]:
        """Each node's format at its width; format-preserving ops inherit their input's, as
        in PTQ's calibration."""
        from ..ptq import SAME_FORMAT

        out: dict[str, QParams] = {}
        for node in self.cache.graph.nodes:
            if node.op in SAME_FORMAT and node.inputs:
                out[node.name] = out[node.inputs[0]]
            else:
                out[node.name] = self.acts_by_bits[act_bits.get(node.name, default)][node.name]
        return out

    def __call__(self, wbits: dict[str, int], abits: dict[str, int], default_act: int
                 ) -> tuple[float, float]:
        """(score, accuracy)."""
        key = (tuple(sorted(wbits.items())), tuple(sorted(abits.items())), default_act)
        if key not in self.memo:
            weights = {n: self.formats[n][b] for n, b in wbits.items()}
            logits = simulate(self.cache, weights, self.acts(abits, default_act))
            logits = logits.reshape(len(self.targets), -1)
            acc = accuracy(logits, self.targets)
            mse = float(np.mean((logits - self.ref) ** 2))
            self.memo[key] = (acc - LOGIT_ERROR_WEIGHT * mse / self.ref_var, acc)
        return self.memo[key]


def search_bits(model: Any, calib: Any, eval_data: Any, budget_bytes: int | None = None, *,
                candidates: tuple[Candidate, ...] = (1, TERNARY, 2, 4, 8, 16),
                act_candidates: tuple[int, ...] = (8,),
                ram_budget_bytes: int | None = None, config: Any = None, measure: bool = True,
                max_samples: int = 2000, progress: bool = False) -> BitSearchResult:
    """Choose per-layer weight (and activation) widths maximising accuracy under the budgets.

    ``calib``: calibration inputs. ``eval_data``: ``(x, y)`` (or a Dataset: its *training*
    split's last 20 % is used, so the test split stays unseen) on which accuracy is maximised.
    ``budget_bytes``: bound on the weight bytes (see the module docstring; None = unbounded).
    ``candidates``: weight widths (and "ternary") to choose from; ``act_candidates``:
    activation widths (more
    than one only makes sense with ``ram_budget_bytes``, a bound on the predicted RAM).
    ``config``: the base Config (granularity, calibration...); its per-layer overrides of widths
    are replaced. Returns a :class:`BitSearchResult` whose ``.config`` goes to ``quantize``.
    """
    from ..config import Config
    from ..ptq import as_batches, calibrate, prepare_graph
    from .stats import _numpy

    start = time.perf_counter()
    base = config or Config()
    cands = parse_candidates(candidates)
    acands = sorted({int(b) for b in act_candidates})
    if not cands or not all(1 <= b <= 16 for b in acands):
        raise ValueError(f"search_bits: candidates must be widths in [1, 16], got {candidates} "
                         f"and {act_candidates}")
    x_eval, y_eval = _eval_split(eval_data)
    x_eval = _numpy(x_eval)[:max_samples]
    batches = as_batches(calib, limit=base.max_calib_samples)
    graph = prepare_graph(model, batches[0])
    layers = [n.name for n in graph.nodes if n.op in WEIGHTED]
    if not layers:
        raise ValueError("search_bits: the model has no conv or linear layer to choose widths for")

    acts_by_bits = {}
    for a in acands:
        cfg = Config.from_dict({**json.loads(base.to_json()), "act_bits": a, "overrides": {}})
        acts_by_bits[a] = calibrate(graph, batches, cfg, progress=progress)
    default_act = acands[0]
    cache = float_cache(graph, x_eval)
    targets = (np.asarray(y_eval)[:max_samples].astype(np.int64) if y_eval is not None
               else cache.values[graph.output].numpy().reshape(len(x_eval), -1).argmax(1))
    formats = {n: {c: weight_format(graph, n, base,
                                    **{"weight_quantizer": "uniform", **candidate_settings(c)})
                   for c in cands}
               for n in layers}
    costs = {n: {c: stored_weight_bytes(graph, n, base, formats[n][c]) for c in cands}
             for n in layers}
    score = _Scorer(cache, targets, formats, acts_by_bits)

    wbits = {n: cands[0] for n in layers}
    if budget_bytes is not None and weight_cost(costs, wbits) > budget_bytes:
        raise ValueError(
            f"search_bits: budget_bytes={budget_bytes} is below the smallest possible weight "
            f"size {weight_cost(costs, wbits)} (every layer at {cands[0]}); raise the "
            f"budget or add a narrower candidate width")
    fits = (lambda b: True) if budget_bytes is None else (
        lambda b: weight_cost(costs, b) <= budget_bytes)
    history: list[dict[str, Any]] = []
    abits: dict[str, int] = {}
    wbits = _greedy_ascent(score, wbits, abits, default_act, cands, costs, fits, history)
    wbits = _swap_pass(score, wbits, abits, default_act, cands, costs, fits, history)
    if len(acands) > 1:
        abits = _widen_activations(score, graph, wbits, default_act, acands, ram_budget_bytes,
                                   history)

    final_score, final_acc = score(wbits, abits, default_act)
    cfg = _to_config(base, wbits, abits, default_act)
    ram = activation_ram(graph, abits, default_act)
    result = BitSearchResult(
        config=cfg, weight_bits=wbits, act_bits={n: abits.get(n, default_act) for n in layers},
        budget_bytes=budget_bytes, ram_budget_bytes=ram_budget_bytes,
        predicted={"weight_bytes": weight_cost(costs, wbits), "ram_bytes": ram,
                   "accuracy": final_acc, "score": final_score},
        history=history, evaluations=len(score.memo),
        layer_bytes={n: costs[n][wbits[n]] for n in layers})
    if measure:
        _measure(result, model, batches, x_eval, targets)
    result.seconds = time.perf_counter() - start
    return result


def _eval_split(eval_data: Any) -> tuple[np.ndarray, np.ndarray | None]:
    if hasattr(eval_data, "x_train"):
        n = len(eval_data.x_train)
        cut = n - max(1, n // 5)
        return eval_data.x_train[cut:], eval_data.y_train[cut:]
    if isinstance(eval_data, (tuple, list)) and len(eval_data) == 2:
        x, y = eval_data
        if y is not None and len(y) != len(x):
            raise ValueError(f"eval_data: {len(x)} inputs but {len(y)} labels; they must match")
        return x, y
    return eval_data, None


def _upgrades(wbits: dict[str, Candidate], cands: list[Candidate]):
    for n, b in wbits.items():
        for c in cands:
            if candidate_rank(c) > candidate_rank(b):
                yield n, c


def _greedy_ascent(score, wbits, abits, default_act, cands, costs, fits, history):
    """Widen one layer at a time: best score gain per extra byte, while the budget allows."""
    wbits = dict(wbits)
    current, _ = score(wbits, abits, default_act)
    while True:
        best = None
        for n, c in _upgrades(wbits, cands):
            trial = {**wbits, n: c}
            if not fits(trial):
                continue
            s, acc = score(trial, abits, default_act)
            extra = max(1, weight_cost(costs, trial) - weight_cost(costs, wbits))
            gain = (s - current) / extra
            if s > current and (best is None or gain > best[0]):
                best = (gain, n, c, s, acc)
        if best is None:
            return wbits
        _, n, c, current, acc = best
        history.append({"step": "widen", "layer": n, "from": wbits[n], "to": c,
                        "accuracy": acc, "weight_bytes": weight_cost(costs, {**wbits, n: c})})
        wbits[n] = c


def _swap_pass(score, wbits, abits, default_act, cands, costs, fits, history):
    """Try every (narrow one layer, widen another) pair once; keep any that raises the score."""
    wbits = dict(wbits)
    current, _ = score(wbits, abits, default_act)
    improved = True
    while improved:
        improved = False
        for down, b in list(wbits.items()):
            for lower in [c for c in cands if candidate_rank(c) < candidate_rank(b)]:
                for up, c in _upgrades({k: v for k, v in wbits.items() if k != down}, cands):
                    trial = {**wbits, down: lower, up: c}
                    if not fits(trial):
                        continue
                    s, acc = score(trial, abits, default_act)
                    if s > current + 1e-12:
                        history.append({"step": "swap", "narrow": down, "narrow_to": lower,
                                        "widen": up, "widen_to": c, "accuracy": acc,
                                        "weight_bytes": weight_cost(costs, trial)})
                        wbits, current, improved = trial, s, True
                        break
                if improved:
                    break
            if improved:
                break
    return wbits


def _widen_activations(score, graph, wbits, default_act, acands, ram_budget, history):
    """Give wider activations to the nodes that gain most, while the predicted RAM fits."""
    abits: dict[str, int] = {}
    nodes = [n.name for n in graph.nodes if n.op in OWN_FORMAT]
    current, _ = score(wbits, abits, default_act)
    while True:
        best = None
        for n in nodes:
            for a in acands:
                if a <= abits.get(n, default_act):
                    continue
                trial = {**abits, n: a}
                if ram_budget is not None and activation_ram(graph, trial,
                                                             default_act) > ram_budget:
                    continue
                s, acc = score(wbits, trial, default_act)
                if s > current and (best is None or s > best[0]):
                    best = (s, n, a, acc)
        if best is None:
            return abits
        current, n, a, acc = best
        abits[n] = a
        history.append({"step": "widen activation", "layer": n, "to": a, "accuracy": acc,
                        "ram_bytes": activation_ram(graph, abits, default_act)})


def _to_config(base: Any, wbits: dict[str, Candidate], abits: dict[str, int], default_act: int):
    """A Config: the most common width globally, per-layer overrides for the others (ternary
    layers: 2 bits with the ternary grid)."""
    from ..config import Config

    widths = [b for b in wbits.values() if b != TERNARY]
    common = Counter(widths).most_common(1)[0][0] if widths else 8
    overrides: dict[str, dict[str, Any]] = {}
    ternary_base = base.weight_quantizer == TERNARY
    for n, b in wbits.items():
        if b != common:
            overrides.setdefault(n, {}).update(candidate_settings(b))
        if b == 2 and ternary_base:
            overrides.setdefault(n, {})["weight_quantizer"] = "uniform"
    for n, a in abits.items():
        if a != default_act:
            overrides.setdefault(n, {})["act_bits"] = a
    d = json.loads(base.to_json())
    d.update(weight_bits=common, act_bits=default_act, overrides=overrides)
    return Config.from_dict(d)


def _measure(result: BitSearchResult, model: Any, batches: list, x_eval: np.ndarray,
             targets: np.ndarray) -> None:
    """Quantize with the chosen Config and measure accuracy, flash and RAM for real."""
    from ..ptq import quantize as ptq_quantize
    from .stats import arena_bytes

    qmodel = ptq_quantize(model, np.concatenate(batches), result.config, progress=False)
    result.qmodel = qmodel
    result.measured = {
        "accuracy": qmodel.accuracy(x_eval, targets),
        "weight_bytes": sum(int(op.consts["weight"].nbytes) for op in qmodel.graph.ops
                            if op.name in result.weight_bits),
        "intgraph_const_bytes": int(qmodel.weight_bytes()),
    }
    arena = arena_bytes(qmodel.graph)
    if arena is not None:
        result.measured["arena_bytes"] = arena
