"""Per-layer statistics of a quantized model: what the weights look like, and what quantization did.

The question an engineer asks when an int8 model loses accuracy is *which layer, and why*. The
"why" is usually visible in the float weights: a heavy tail (large kurtosis), a skew, or a few
outliers beyond 3 standard deviations stretch a max-abs scale so that most weights collapse onto
a handful of levels. The "which" is the SQNR of each layer's weights and activations (float run
vs integer run) and the accuracy change when only that layer is quantized (see
``sensitivity.py``). :func:`analyze` gathers all of it into one :class:`Analysis`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..data import check_labels
from ..graph.ir import VIEWS
from ..numerics import QParams, dequantize, quantize

# ----------------------------------------------------------------------------------------------
# Statistics of one array
# ----------------------------------------------------------------------------------------------


def central_moments(x: np.ndarray) -> tuple[float, float, float, float]:
    """Mean and the 2nd, 3rd, 4th central moments (population, float64)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    mean = float(x.mean())
    d = x - mean
    d2 = d * d
    return mean, float(d2.mean()), float((d2 * d).mean()), float((d2 * d2).mean())


def skewness(x: np.ndarray) -> float:
    """m3 / m2^1.5: 0 for a symmetric distribution; a skewed layer wastes half its levels."""
    _, m2, m3, _ = central_moments(x)
    return 0.0 if m2 == 0 else m3 / m2**1.5


def excess_kurtosis(x: np.ndarray) -> float:
    """m4 / m2² − 3: 0 for a Gaussian, large for heavy tails (outliers stretch max-abs scales)."""
    _, m2, _, m4 = central_moments(x)
    return 0.0 if m2 == 0 else m4 / (m2 * m2) - 3.0


def share_beyond(x: np.ndarray, k: float = 3.0) -> float:
    """Share of values farther than k standard deviations from the mean (Gaussian: 0.27 %)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    std = x.std()
    if std == 0:
        return 0.0
    return float(np.mean(np.abs(x - x.mean()) > k * std))


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio 10·log10(Σr² / Σ(r − a)²) in dB; inf when exact.

    A rule of thumb: each bit of a well-used uniform grid is worth about 6 dB.
    """
    r = np.asarray(reference, dtype=np.float64)
    a = np.asarray(approx, dtype=np.float64)
    if r.shape != a.shape:
        raise ValueError(f"sqnr_db: shapes differ, {r.shape} vs {a.shape}")
    noise = float(np.sum((r - a) ** 2))
    signal = float(np.sum(r * r))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


# ----------------------------------------------------------------------------------------------
# The per-layer record and the whole analysis
# ----------------------------------------------------------------------------------------------


@dataclass
class LayerStats:
    """One float node of the (BN-folded) graph and what quantization did to it."""

    name: str
    op: str
    out_shape: tuple[int, ...]
    act_bits: int | None = None
    act_scale: float | None = None
    act_zero_point: int | None = None
    act_sqnr_db: float | None = None
    # The node's own error: its integer output vs the float op applied to its *dequantized
    # integer inputs* (the error it adds, not the one it inherits; act_sqnr_db has both).
    own_sqnr_db: float | None = None
    # weighted layers only
    weight_shape: tuple[int, ...] | None = None
    params: int = 0
    weight_bits: int | None = None
    granularity: str | None = None
    w_min: float | None = None
    w_max: float | None = None
    w_mean: float | None = None
    w_std: float | None = None
    kurtosis: float | None = None
    skew: float | None = None
    sparsity: float | None = None  # share of exactly-zero float weights
    zero_after_quant: float | None = None  # share of weights that quantize to 0
    outliers_3std: float | None = None
    weight_scale_min: float | None = None
    weight_scale_max: float | None = None
    weight_zero_point: int | None = None
    levels_used: int | None = None  # distinct integer values among the quantized weights
    weight_sqnr_db: float | None = None
    weight_bytes: int | None = None  # the weight array in the IntGraph (= in flash, in the C)
    weight_storage: str | None = None  # int8, int16, or the packed format (int4, binary, ...)
    # Only this layer quantized: KL of the output distribution from the float one (nats) and
    # logit SQNR (dB) — continuous, so they rank layers on test sets too small for accuracy
    # to move — and, secondary, the accuracy change; the same with its weights at low_bits.
    sensitivity_kl: float | None = None
    sensitivity_sqnr_db: float | None = None
    sensitivity: float | None = None  # accuracy(only this layer quantized) − accuracy(float)
    sensitivity_kl_low: float | None = None
    sensitivity_low: float | None = None

    @property
    def weighted(self) -> bool:
        return self.weight_shape is not None


@dataclass
class Analysis:
    """Everything :func:`analyze` measured; ``to_json`` here, ``analysis_markdown`` and
    ``write_report`` in ``report`` (which depends on this module, never the reverse)."""

    model: str
    config: dict[str, Any]
    layers: list[LayerStats]
    samples: int
    labelled: bool  # accuracies against labels (True) or agreement with the float model (False)
    float_accuracy: float
    int_accuracy: float
    output_sqnr_db: float
    logit_max_abs_error: float
    weight_bytes: int  # IntGraph constants (what the C back end stores in flash)
    macs: int
    arena_bytes: int | None = None
    seconds: float = 0.0
    sweep: dict[str, dict[int, float]] = field(default_factory=dict)  # method -> bits -> acc
    sweep_note: str = ""
    low_bits: int = 4  # width of the second sensitivity column ("what if this layer had N bits")
    # Kept for the plots, not serialized: float weights and weight formats per layer.
    weights: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    weight_qparams: dict[str, QParams] = field(default_factory=dict, repr=False)

    def layer(self, name: str) -> LayerStats:
        for s in self.layers:
            if s.name == name:
                return s
        raise KeyError(f"no layer {name!r}; layers: {[s.name for s in self.layers]}")

    @property
    def metric(self) -> str:
        return "accuracy" if self.labelled else "top-1 agreement with the float model"

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("weights", "weight_qparams")}
        d["sweep"] = {m: {str(b): a for b, a in v.items()} for m, v in self.sweep.items()}
        return _json_safe(d)

    def to_json(self, indent: int = 2) -> str:
        """JSON (infinite SQNR, i.e. exact, is written as null)."""
        return json.dumps(self.to_dict(), indent=indent)


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.ndarray):
        return _json_safe(v.tolist())
    return v


# ----------------------------------------------------------------------------------------------
# Filling the records
# ----------------------------------------------------------------------------------------------


def weight_record(stats: LayerStats, w: np.ndarray, qp: QParams) -> None:
    """Distribution statistics of the float weights and what their format does to them."""
    w64 = np.asarray(w, dtype=np.float64)
    q = quantize(w64, qp)
    mean, m2, _, _ = central_moments(w64)
    stats.weight_shape = tuple(int(s) for s in w.shape)
    stats.params = int(w.size)
    stats.weight_bits = int(qp.bits)
    stats.granularity = "per_tensor" if qp.axis is None else (
        "per_channel" if qp.block_size is None else f"per_block({qp.block_size})")
    stats.w_min, stats.w_max = float(w64.min()), float(w64.max())
    stats.w_mean, stats.w_std = mean, math.sqrt(m2)
    stats.kurtosis = excess_kurtosis(w64)
    stats.skew = skewness(w64)
    stats.sparsity = float(np.mean(w64 == 0.0))
    stats.zero_after_quant = float(np.mean(q.astype(np.int64) == qp.zero_point.reshape(-1)[0]))
    stats.outliers_3std = share_beyond(w64, 3.0)
    stats.weight_scale_min = float(qp.scale.min())
    stats.weight_scale_max = float(qp.scale.max())
    stats.weight_zero_point = int(qp.zero_point.reshape(-1)[0])
    stats.levels_used = int(np.unique(q).size)
    stats.weight_sqnr_db = sqnr_db(w64, dequantize(q, qp))
    stats.weight_bytes = packed_bytes(w.size, qp.bits)


def storage_record(stats: LayerStats, graph: Any, name: str) -> None:
    """How the IntGraph stores the layer's weights: format and bytes (what the C holds)."""
    op = next((o for o in graph.ops if o.name == name and "weight" in o.consts), None)
    if op is None:
        return
    w = op.consts["weight"]
    stats.weight_storage = op.attrs.get("weight_format") or str(w.dtype)
    stats.weight_bytes = int(w.nbytes)


def packed_bytes(count: int, bits: int) -> int:
    """Bytes of ``count`` values of ``bits`` bits stored densely (sub-byte values packed)."""
    return -(-int(count) * int(bits) // 8)


def _as_eval(data: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) from a Dataset (its test split), an (x, y) pair, or x alone (no labels)."""
    if hasattr(data, "x_test") and hasattr(data, "y_test"):
        return np.asarray(data.x_test, dtype=np.float32), np.asarray(data.y_test)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        x = _numpy(x)
        y = None if y is None else _numpy(y).astype(np.int64).reshape(-1)
        if y is not None and len(y) != len(x):
            raise ValueError(f"data: {len(x)} inputs but {len(y)} labels; they must match")
        return x, y
    return _numpy(data), None


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("data contain NaN or inf values; clean them before analysing")
    return x


def _calib_of(data: Any, x_eval: np.ndarray) -> np.ndarray:
    if hasattr(data, "x_train"):
        return np.asarray(data.x_train[:1024], dtype=np.float32)
    return x_eval[:1024]


def analyze(model: Any, qmodel_or_config: Any = None, data: Any = None, *,
            calib: Any = None, sensitivity: bool = True, sweep: bool = True,
            sweep_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 8), max_samples: int = 2000,
            sweep_samples: int = 500, low_bits: int = 4,
            name: str | None = None, progress: bool = False) -> Analysis:
    """Per-layer analysis of quantizing ``model``.

    ``qmodel_or_config``: a ``QuantizedModel`` returned by ``intquant.quantize`` (it keeps the
    float graph and plan), or a ``Config`` (or None for the default) to quantize with here.
    ``data``: a zoo ``Dataset`` (test split evaluated, train split calibrates), an ``(x, y)``
    pair, or inputs ``x`` alone — then accuracies are top-1 agreement with the float model.
    ``calib``: calibration inputs when a Config is given (default: from ``data``).
    ``sensitivity``: measure, for each weighted layer, the accuracy when only it is quantized
    (at its planned format, and with its weights at ``low_bits``: which layers could go lower).
    ``sweep``: accuracy vs weight bit width for several weight-quantization methods (simulated
    weights, activations at the plan's formats), for the "what would N bits buy" plot.
    """
    from ..config import Config
    from ..graph import run_graph
    from ..qmodel import QuantizedModel
    from .sensitivity import (
        float_cache,
        layer_effect,
        weight_format,
        weight_method_sweep,
    )

    start = time.perf_counter()
    if data is None:
        raise ValueError("analyze needs data: a Dataset, an (x, y) pair or inputs x")
    x, y = _as_eval(data)
    if len(x) == 0:
        raise ValueError("analyze: data are empty")
    x, y = x[:max_samples], None if y is None else y[:max_samples]
    if isinstance(qmodel_or_config, QuantizedModel):
        qmodel = qmodel_or_config
    elif qmodel_or_config is None or isinstance(qmodel_or_config, Config):
        from ..ptq import quantize as ptq_quantize

        cal = _calib_of(data, x) if calib is None else calib
        qmodel = ptq_quantize(model, cal, qmodel_or_config or Config(), progress=progress)
    else:
        raise TypeError("analyze: second argument must be a QuantizedModel or a Config, got "
                        f"{type(qmodel_or_config).__name__}")
    if qmodel.float_graph is None or qmodel.plan is None:
        raise ValueError(
            "analyze needs the float graph and plan of the quantized model, which a loaded .iqm "
            "does not keep; pass the Config instead and analyze re-quantizes the model")
    graph, plan = qmodel.float_graph, qmodel.plan
    config = qmodel.config or Config()

    float_values = {k: v.numpy() for k, v in run_graph(graph, x, record=True).items()}
    float_logits = float_values[graph.output].reshape(len(x), -1)
    if y is not None:
        check_labels(y, float_logits.shape[1], "analyze: data")
    targets = y if y is not None else float_logits.argmax(1)
    int_values = _integer_values(qmodel, x)
    int_logits = qmodel.dequantize_output(int_values[qmodel.graph.output]).reshape(len(x), -1)

    layers: list[LayerStats] = []
    weights: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        if node.op in VIEWS:
            continue
        stats = LayerStats(node.name, node.op, tuple(int(s) for s in node.shape))
        act = plan.acts.get(node.name)
        if act is not None:
            stats.act_bits = int(act.bits)
            stats.act_scale = float(act.scale[0])
            stats.act_zero_point = int(act.zero_point[0])
        if node.name in int_values and node.name in qmodel.graph.tensors:
            info = qmodel.graph.tensors[node.name]
            real = info.scale * (int_values[node.name].astype(np.int64) - info.zero_point)
            if real.shape == float_values[node.name].shape:
                stats.act_sqnr_db = sqnr_db(float_values[node.name], real)
                stats.own_sqnr_db = own_sqnr_db(qmodel, node, int_values, real)
        if node.name in plan.weights:
            w = node.params["weight"]
            weights[node.name] = w
            weight_record(stats, w, plan.weights[node.name])
            storage_record(stats, qmodel.graph, node.name)
        layers.append(stats)

    cache = float_cache(graph, x, float_values)
    if sensitivity:
        base = accuracy_of(float_logits, targets)
        for stats in layers:
            if stats.weighted:
                eff = layer_effect(cache, plan, stats.name, targets)
                stats.sensitivity_kl, stats.sensitivity_sqnr_db = eff.kl, eff.sqnr_db
                stats.sensitivity = eff.accuracy - base
                low = weight_format(graph, stats.name, config, weight_bits=low_bits)
                eff = layer_effect(cache, plan, stats.name, targets, weight_qp=low)
                stats.sensitivity_kl_low = eff.kl
                stats.sensitivity_low = eff.accuracy - base
    sweep_result: dict[str, dict[int, float]] = {}
    if sweep:
        n = min(len(x), sweep_samples)
        small = float_cache(graph, x[:n], {k: v[:n] for k, v in float_values.items()})
        sweep_result = weight_method_sweep(small, plan, config, targets[:n], bits=sweep_bits)

    return Analysis(
        model=name or graph.name,
        config={**json.loads(config.to_json()), "methods": config.methods()},
        layers=layers,
        samples=int(len(x)),
        labelled=y is not None,
        float_accuracy=accuracy_of(float_logits, targets),
        int_accuracy=accuracy_of(int_logits, targets),
        output_sqnr_db=sqnr_db(float_logits, int_logits),
        logit_max_abs_error=float(np.max(np.abs(float_logits - int_logits))),
        weight_bytes=int(qmodel.weight_bytes()),
        macs=int(qmodel.macs()),
        arena_bytes=arena_bytes(qmodel.graph),
        seconds=time.perf_counter() - start,
        sweep=sweep_result,
        sweep_note=(f"weights fake-quantized at each width, every activation at the plan's "
                    f"format, float arithmetic otherwise; first {min(len(x), sweep_samples)} "
                    f"samples"),
        low_bits=low_bits,
        weights=weights,
        weight_qparams=dict(plan.weights),
    )


def dequantized(qmodel: Any, name: str, int_values: dict[str, np.ndarray]) -> np.ndarray:
    info = qmodel.graph.tensors[name]
    return info.scale * (int_values[name].astype(np.int64) - info.zero_point)


def own_sqnr_db(qmodel: Any, node: Any, int_values: dict[str, np.ndarray],
                out: np.ndarray) -> float | None:
    """SQNR of a node's dequantized integer output ``out`` against its float op run on its
    dequantized integer inputs: the error this node adds (weights, arithmetic, output
    rounding), apart from the error its inputs bring. None for the input node, or when an
    input has no integer tensor of the float shape (folded into another op)."""
    import torch

    from ..graph.execute import run_node

    if node.op == "input" or not node.inputs:
        return None
    ins = []
    for name in node.inputs:
        if name not in int_values or name not in qmodel.graph.tensors:
            return None
        ins.append(torch.as_tensor(dequantized(qmodel, name, int_values), dtype=torch.float32))
    try:
        with torch.no_grad():
            ref = run_node(node, ins).numpy()
    except (RuntimeError, ValueError):  # an input's integer tensor has another layout
        return None
    return sqnr_db(ref, out) if ref.shape == out.shape else None


def _integer_values(qmodel: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    from .. import interpreter

    return interpreter.run(qmodel.graph, qmodel.quantize_input(x), return_all=True)


def accuracy_of(logits: np.ndarray, targets: np.ndarray) -> float:
    logits = np.asarray(logits).reshape(len(targets), -1)
    return float(np.mean(logits.argmax(1) == targets))


def arena_bytes(graph: Any) -> int | None:
    """The C back end's static arena size, when its planner is available."""
    try:
        from ..codegen.planner import plan_memory
    except ImportError:
        return None
    try:
        return int(plan_memory(graph).arena_bytes)
    except Exception:  # a planner limitation must not break the analysis
        return None
