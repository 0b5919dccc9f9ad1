"""Figures of an Analysis (matplotlib, Agg, PNG).

The central picture is the "left vs right" one engineers draw for this problem: on the left the
float weight distribution with the quantization grid laid over it (a heavy-tailed layer shows
most weights squeezed between a few grid lines), on the right how often each integer level is
used after quantization. Then SQNR per layer, sensitivity per layer, and accuracy vs bit width
for each weight-quantization method.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas directly, never through
pyplot, so importing this module does not change the caller's matplotlib backend or state.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..numerics import QParams, quantize
from .stats import Analysis

MAX_GRID_LINES = 40
DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def plot_label(name: str, limit: int = 40) -> str:
    """A layer name as figure text: literal (``$`` would start mathtext), one line, short."""
    text = " ".join(name.split())
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return text.replace("$", r"\$")


def _widest_channel(qp: QParams) -> int:
    return int(np.argmax(qp.scale.reshape(-1))) if qp.scale.size > 1 else 0


def grid_levels(qp: QParams, channel: int = 0) -> np.ndarray:
    """Real values of every integer level of one channel's grid: s·(q − z), q in [qmin, qmax]."""
    s = float(qp.scale.reshape(-1)[channel])
    z = int(qp.zero_point.reshape(-1)[channel])
    return s * (np.arange(qp.qmin, qp.qmax + 1) - z)


def weight_histogram(w: np.ndarray, qp: QParams, name: str, path: Path) -> Path:
    """Left: float weights with the grid overlaid. Right: use of each integer level."""
    w = np.asarray(w, dtype=np.float64)
    q = quantize(w, qp).astype(np.int64).ravel()
    fig = Figure(figsize=(9.5, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    ch = _widest_channel(qp)
    if qp.axis is not None and qp.scale.size > 1:
        sel = np.take(w, ch, axis=qp.axis).ravel()
        vals, label = sel, f"channel {ch} (widest scale) of {qp.scale.size}"
    else:
        vals, label = w.ravel(), "whole tensor"
    levels = grid_levels(qp, ch)
    lo, hi = min(vals.min(), levels[0]), max(vals.max(), levels[-1])
    left.hist(vals, bins=min(120, max(20, vals.size // 8)), range=(lo, hi), color="#4477aa")
    step = max(1, math.ceil(len(levels) / MAX_GRID_LINES))
    for v in levels[::step]:
        left.axvline(v, color="#cc3311", lw=0.6, alpha=0.55)
    shown = "every level" if step == 1 else f"every {step}th level"
    left.set_title(f"{plot_label(name)}: float weights, {label}\n{qp.bits}-bit grid ({shown})",
                   fontsize=9)
    left.set_xlabel("weight value")
    left.set_ylabel("count")
    counts = np.bincount(q - qp.qmin, minlength=qp.qmax - qp.qmin + 1)
    xs = np.arange(qp.qmin, qp.qmax + 1)
    right.bar(xs, counts, width=1.0, color="#228833")
    used = int(np.count_nonzero(counts))
    right.set_title(f"after quantization: {used} of {len(xs)} levels used "
                    f"(all channels)", fontsize=9)
    right.set_xlabel("integer level")
    right.set_ylabel("count")
    return _save(fig, path)


def sqnr_chart(analysis: Analysis, path: Path) -> Path:
    """Weight and activation SQNR (dB) per layer; low bars are where the error enters."""
    rows = [s for s in analysis.layers if s.act_sqnr_db is not None or s.weighted]
    names = [plot_label(s.name) for s in rows]
    cap = 100.0

    def finite(v):
        return np.nan if v is None else min(v, cap)

    w = [finite(s.weight_sqnr_db) for s in rows]
    a = [finite(s.act_sqnr_db) for s in rows]
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(6.0, 0.7 * len(rows) + 2), 3.4), layout="constrained")
    ax = fig.subplots()
    ax.bar(x - 0.2, w, 0.4, label="weights", color="#4477aa")
    ax.bar(x + 0.2, a, 0.4, label="activations (integer vs float run)", color="#ee7733")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("SQNR (dB)")
    ax.set_title("SQNR per layer (higher is better; ~6 dB per bit)", fontsize=10)
    _legend_outside(ax)
    return _save(fig, path)


def _legend_outside(ax) -> None:
    """The legend right of the plot: inside, it covers bars whatever place is chosen."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def sensitivity_chart(analysis: Analysis, path: Path) -> Path:
    rows = [s for s in analysis.layers if s.sensitivity is not None]
    fig = Figure(figsize=(max(6.0, 0.7 * len(rows) + 2), 3.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(rows))
    ax.axhline(0, color="black", lw=0.8)
    for dx, values, color, label in (
            (-0.2, [100 * s.sensitivity for s in rows], "#4477aa", "at its planned width"),
            (0.2, [100 * (s.sensitivity_low or 0.0) for s in rows], "#cc3311",
             f"weights at {analysis.low_bits} bits")):
        ax.bar(x + dx, values, 0.4, color=color, label=label)
        # A marker on every bar: a layer at 0.00 pp has a bar of height 0, which looks missing.
        ax.plot(x + dx, values, linestyle="none", marker="D", markersize=4, color=color,
                markeredgecolor="black", markeredgewidth=0.5, zorder=3)
    _legend_outside(ax)
    ax.set_xticks(range(len(rows)), [plot_label(s.name) for s in rows], rotation=45, ha="right",
                  fontsize=8)
    ax.set_ylabel("change (pp)")
    ax.set_title(f"{analysis.metric}: only this layer quantized, vs float", fontsize=10)
    return _save(fig, path)


def sweep_chart(analysis: Analysis, path: Path) -> Path:
    """Accuracy vs weight bit width, one line per method, float accuracy dashed."""
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.subplots()
    for method, curve in analysis.sweep.items():
        bits = sorted(curve)
        ax.plot(bits, [100 * curve[b] for b in bits], marker="o", label=method)
    ax.axhline(100 * analysis.float_accuracy, color="gray", ls="--", lw=1, label="float")
    ax.set_xlabel("weight bits")
    ax.set_ylabel(f"{analysis.metric} (%)")
    ax.set_title("accuracy vs weight bit width per method", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def write_plots(analysis: Analysis, out_dir: str | Path) -> dict[str, Path]:
    """Every figure of ``analysis`` as PNG files in ``out_dir``; returns {key: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    paths["sqnr"] = sqnr_chart(analysis, out / "sqnr.png")
    if any(s.sensitivity is not None for s in analysis.layers):
        paths["sensitivity"] = sensitivity_chart(analysis, out / "sensitivity.png")
    if analysis.sweep:
        paths["sweep"] = sweep_chart(analysis, out / "accuracy_vs_bits.png")
    used: set[str] = set()
    for name, w in analysis.weights.items():
        qp = analysis.weight_qparams.get(name)
        if qp is not None:
            file = histogram_file_name(name, used)
            paths[f"hist:{name}"] = weight_histogram(w, qp, name, out / file)
    return paths


def histogram_file_name(name: str, used: set[str]) -> str:
    """``weights_<name>.png``, made safe for any file system and distinct from ``used``.

    Names that sanitizing changes (``/a;b/Gemm`` and ``/a:b/Gemm`` both give ``_a_b_Gemm``)
    get a short hash of the real name, so two layers never share (overwrite) one image.
    """
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)
    safe = safe.lstrip(".")[:80] or "_"
    if safe != name or safe.lower() in used:
        safe += "-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    base, n = safe, 1
    while safe.lower() in used:
        n += 1
        safe = f"{base}-{n}"
    used.add(safe.lower())
    return f"weights_{safe}.png"
