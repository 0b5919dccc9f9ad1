"""Reports of an Analysis: Markdown tables, and ``write_report`` → report.md + report.html.

Both formats are rendered from one list of blocks (heading, paragraph, table, image), so they
always say the same thing. The HTML embeds every image as base64 and uses no external file,
script or style sheet: it can be mailed or attached to a ticket and opens anywhere.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .stats import Analysis


@dataclass
class Block:
    kind: str  # "h1" | "h2" | "p" | "table" | "img" | "code"
    text: str = ""
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    path: Path | None = None


def _f(v: Any, fmt: str = ".3g") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return format(v, fmt)
    return str(v)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def _pp(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:+.2f} pp"


def summary_blocks(a: Analysis) -> list[Block]:
    cfg = a.config
    desc = (f"W{cfg.get('weight_bits')}A{cfg.get('act_bits')}, {cfg.get('granularity')} weights, "
            f"{cfg.get('calibration')} activation calibration")
    rows = (
        ("configuration", desc),
        ("PTQ methods", str(cfg.get("methods", "–"))),
        ("samples evaluated", str(a.samples)),
        (f"float {a.metric}", _pct(a.float_accuracy)),
        (f"integer {a.metric}", _pct(a.int_accuracy)),
        ("change", _pp(a.int_accuracy - a.float_accuracy)),
        ("output SQNR (integer vs float logits)", f"{_f(a.output_sqnr_db, '.1f')} dB"),
        ("max |logit error|", _f(a.logit_max_abs_error, ".4g")),
        ("flash: IntGraph constants", f"{a.weight_bytes} B"),
        ("RAM: C arena", "–" if a.arena_bytes is None else f"{a.arena_bytes} B"),
        ("MACs per inference", str(a.macs)),
    )
    return [Block("h2", "Summary"), Block("table", headers=("quantity", "value"), rows=rows)]


def weight_table(a: Analysis) -> Block:
    headers = ("layer", "op", "params", "bits", "stored as", "flash B", "min", "max", "std",
               "kurtosis", "skew",
               "zeros", ">3σ", "scale (min…max)", "levels used", "weight SQNR dB",
               "sensitivity KL", "sensitivity logit SQNR dB", "sensitivity Δacc",
               f"KL at W{a.low_bits}", f"Δacc at W{a.low_bits}")
    rows = []
    for s in a.layers:
        if not s.weighted:
            continue
        scale = (_f(s.weight_scale_min, ".3g") if s.weight_scale_min == s.weight_scale_max
                 else f"{_f(s.weight_scale_min)}…{_f(s.weight_scale_max)}")
        rows.append((s.name, s.op, str(s.params), str(s.weight_bits), s.weight_storage or "–",
                     "–" if s.weight_bytes is None else str(s.weight_bytes), _f(s.w_min),
                     _f(s.w_max), _f(s.w_std), _f(s.kurtosis, ".2f"), _f(s.skew, ".2f"),
                     _pct(s.sparsity), _pct(s.outliers_3std), scale,
                     f"{s.levels_used}/{2 if s.weight_bits == 1 else 2 ** s.weight_bits - 1}",
                     _f(s.weight_sqnr_db, ".1f"), _f(s.sensitivity_kl, ".2e"),
                     _f(s.sensitivity_sqnr_db, ".1f"), _pp(s.sensitivity),
                     _f(s.sensitivity_kl_low, ".2e"), _pp(s.sensitivity_low)))
    return Block("table", headers=headers, rows=tuple(rows))


def activation_table(a: Analysis) -> Block:
    headers = ("node", "op", "shape", "bits", "scale", "zero point", "activation SQNR dB",
               "own SQNR dB")
    rows = tuple(
        (s.name, s.op, "×".join(map(str, s.out_shape)), _f(s.act_bits), _f(s.act_scale, ".4g"),
         _f(s.act_zero_point), _f(s.act_sqnr_db, ".1f"), _f(s.own_sqnr_db, ".1f"))
        for s in a.layers)
    return Block("table", headers=headers, rows=rows)


def sweep_table(a: Analysis) -> Block:
    bits = sorted({b for curve in a.sweep.values() for b in curve})
    rows = tuple((m, *[_pct(curve.get(b)) for b in bits]) for m, curve in a.sweep.items())
    return Block("table", headers=("method", *[f"W{b}" for b in bits]), rows=rows)


def analysis_blocks(a: Analysis, images: dict[str, Path] | None = None) -> list[Block]:
    images = images or {}
    blocks = [Block("h1", f"intquant report: {a.model}"), *summary_blocks(a)]
    blocks += [
        Block("h2", "Weights per layer"),
        Block("p", "Statistics of the float weights (after BatchNorm folding) and of their "
                   "integer format. Kurtosis is excess kurtosis (0 for a Gaussian; large = "
                   "heavy tails, which stretch max-abs scales). Sensitivity, with only that "
                   "layer quantized (weights and output, as planned): KL divergence of the "
                   "output distribution from the float one (nats; larger = more sensitive) "
                   f"and logit SQNR (lower = more sensitive), then the change in {a.metric} "
                   f"(moves in steps of 1/{a.samples}); and the same with its weights at "
                   f"{a.low_bits} bits."),
        weight_table(a),
        Block("h2", "Activations per node"),
        Block("p", "SQNR of every node's integer output against the float run, layer by layer "
                   "(errors accumulate along the network)."),
        activation_table(a),
    ]
    if "sqnr" in images:
        blocks.append(Block("img", "SQNR per layer", path=images["sqnr"]))
    if "sensitivity" in images:
        blocks.append(Block("img", "Sensitivity per layer", path=images["sensitivity"]))
    if a.sweep:
        blocks += [Block("h2", "Accuracy vs weight bit width"),
                   Block("p", f"{a.metric} per method ({a.sweep_note})."), sweep_table(a)]
        if "sweep" in images:
            blocks.append(Block("img", "Accuracy vs weight bits", path=images["sweep"]))
    hists = [(k.split(":", 1)[1], p) for k, p in images.items() if k.startswith("hist:")]
    if hists:
        blocks += [Block("h2", "Weight histograms: float with grid (left), integer levels "
                               "used (right)")]
        blocks += [Block("img", f"weights of {n}", path=p) for n, p in hists]
    return blocks


# ----------------------------------------------------------------------------------------------
# Renderers
# ----------------------------------------------------------------------------------------------


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~$#!])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def md_text(s: str) -> str:
    """Text (layer names included) as literal Markdown on one line: every character that could
    start markup, HTML, a link, a table cell or a heading is backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", _CONTROL.sub(" ", s))


def _fence(text: str) -> str:
    """A backtick fence longer than any backtick run in ``text``: the block cannot be closed."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def render_markdown(blocks: list[Block], base: Path | None = None) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {md_text(b.text)}\n")
        elif b.kind == "h2":
            out.append(f"## {md_text(b.text)}\n")
        elif b.kind == "p":
            out.append(md_text(b.text) + "\n")
        elif b.kind == "code":
            fence = _fence(b.text)
            out.append(f"{fence}\n{b.text}\n{fence}\n")
        elif b.kind == "table":
            out.append("| " + " | ".join(md_text(h) for h in b.headers) + " |")
            out.append("|" + "---|" * len(b.headers))
            out += ["| " + " | ".join(md_text(c) for c in r) + " |" for r in b.rows]
            out.append("")
        elif b.kind == "img" and b.path is not None:
            rel = b.path.relative_to(base) if base is not None else b.path
            out.append(f"![{md_text(b.text)}]({rel.as_posix()})\n")
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:.8em 0}
figcaption{color:#555;font-size:12px}pre{background:#f6f6f6;padding:.8em;overflow:auto}"""


def render_html(blocks: list[Block]) -> str:
    """A self-contained page: inline CSS, images as base64 data URIs."""
    e = html.escape
    title = next((b.text for b in blocks if b.kind == "h1"), "intquant report")
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2"):
            out.append(f"<{b.kind}>{e(b.text)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{e(b.text)}</p>")
        elif b.kind == "code":
            out.append(f"<pre>{e(b.text)}</pre>")
        elif b.kind == "table":
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b.headers) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b.rows]
            out.append("</table>")
        elif b.kind == "img" and b.path is not None:
            data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
            out.append(f"<figure><img alt='{e(b.text)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{e(b.text)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def analysis_markdown(a: Analysis) -> str:
    """The tables of ``a`` as Markdown (no images)."""
    return render_markdown(analysis_blocks(a))


def write_report(analysis: Analysis, out_dir: str | Path,
                 extra: list[Block] | None = None) -> dict[str, Path]:
    """Write ``report.md`` (images in ``report_files/``) and a self-contained ``report.html``.

    ``extra``: more blocks appended (e.g. the mixed-precision choice, the C export's costs).
    Returns {"md": ..., "html": ..., "json": ..., "images": dir}.
    """
    from .plots import write_plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    img_dir = out / "report_files"
    images = write_plots(analysis, img_dir)
    blocks = analysis_blocks(analysis, images) + list(extra or [])
    md = out / "report.md"
    md.write_text(render_markdown(blocks, base=out), encoding="utf-8")
    page = out / "report.html"
    page.write_text(render_html(blocks), encoding="utf-8")
    js = out / "analysis.json"
    js.write_text(analysis.to_json() + "\n", encoding="utf-8")
    return {"md": md, "html": page, "json": js, "images": img_dir}
