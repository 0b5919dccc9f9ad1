"""Cost of a generated model on a target: flash, RAM, instructions or cycles per inference.

Per target (``intquant.codegen.targets``): flash and static RAM of the library from nm (the
harness excluded), RAM = arena + the deepest stack measured in the emulator, and the
emulator's counter per inference: instructions on cortex-m0/-m0plus, riscv32 and powerpc
(unicorn: deterministic, reproducible on a noisy machine), cycles on avr (simavr, Timer1 at the
CPU clock). Where a profiling build calls a marker between ops (unicorn targets), every
instruction is attributed to the op that executed it; totals come from a build without markers.

On cortex-m0/-m0plus the report also has cycles: the same executed trace priced with the
Cortex-M0 TRM timings (cycles.py: loads 2, taken branches 3, BL 4, LDM/STM 1 + N, MULS 1 with
the "fast" multiplier or 32 with the "small" one), per inference, per MAC, per op, and the hot
spots (the functions taking the most cycles).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..intgraph import ACTIVATION_DTYPES
from .cycles import Tally, check_multiplier
from .targets import get_target
from .toolchain import project_info

HOT_SPOTS = 5


def default_samples(out_dir: str | os.PathLike, n: int = 2, seed: int = 0) -> np.ndarray:
    """Full-range random raw inputs (the cost of integer kernels does not depend much on data)."""
    info = project_info(out_dir)
    lo, hi = ACTIVATION_DTYPES[info.input_dtype.name]
    rng = np.random.default_rng(seed)
    return rng.integers(lo, hi + 1, size=(n, *info.input_shape)).astype(info.input_dtype)


def cost_report(
    out_dir: str | os.PathLike,
    inputs: np.ndarray | None = None,
    *,
    target: str = "cortex-m0",
    write: bool = True,
    opt: str = "-O2",
    multiplier: str = "fast",
) -> dict[str, Any]:
    """Flash, RAM (arena + measured stack), instructions or cycles per inference and per MAC;
    on cortex-m0/-m0plus also cycles per op and the hot spots, ``multiplier`` "fast" (1-cycle
    MULS) or "small" (32 cycles).

    Written to ``<out_dir>/<name>_cost.json`` (cortex-m0) or ``<name>_cost_<target>.json``
    when ``write``. The cortex-m0 report keeps its ``m0_*`` keys.
    """
    check_multiplier(multiplier)
    info = project_info(out_dir)
    x = default_samples(out_dir) if inputs is None else inputs
    c = get_target(target).cost(out_dir, x, opt)
    ops = info.raw["ops"]
    macs = info.raw["macs"]
    mac_ops = [o for o in ops if o["macs"]]
    mac_count = sum(c.per_op.get(o["index"], 0) for o in mac_ops)
    mac_total = sum(o["macs"] for o in mac_ops)
    per_inference = float(np.mean(c.per_inference)) if c.per_inference else None
    report: dict[str, Any] = {
        "name": info.name,
        "target": target,
        "machine": c.machine,
        "flash_bytes": c.flash_bytes,
        "weight_bytes": info.raw["weight_bytes"],
        "arena_bytes": info.raw["arena_bytes"],
        "arena_lower_bound": info.raw["arena_lower_bound"],
        "arena_greedy_bytes": info.raw["arena_greedy_bytes"],
        "stack_bytes": c.stack_bytes,
        "ram_bytes": info.raw["arena_bytes"] + c.stack_bytes,
        "static_ram_bytes": c.static_ram_bytes,
        "counter": c.counter,
        "per_inference": per_inference,
        "per_inference_min_max": [min(c.per_inference), max(c.per_inference)]
        if c.per_inference
        else None,
        "macs": macs,
        "per_mac_conv_linear": (mac_count / mac_total) if (mac_total and c.per_op) else None,
        "per_mac_total": (per_inference / macs) if (macs and per_inference) else None,
        "per_op": [
            {
                "index": o["index"],
                "name": o["name"],
                "kind": o["kind"],
                "macs": o["macs"],
                "count": c.per_op.get(o["index"], 0),
                "per_mac": (c.per_op.get(o["index"], 0) / o["macs"]) if o["macs"] else None,
            }
            for o in ops
        ]
        if c.per_op
        else [],
        "samples": int(x.shape[0]),
    }
    if c.traces:
        report.update(_cycle_keys(c, ops, macs, multiplier, report["per_op"]))
    if target == "cortex-m0":
        report.update(_m0_keys(report))
    if write:
        suffix = "" if target == "cortex-m0" else f"_{target}"
        path = Path(out_dir) / f"{info.name}_cost{suffix}.json"
        path.write_text(json.dumps(report, indent=1))
    return report


def _cycle_keys(
    c: Any, ops: list[dict], macs: int, multiplier: str, per_op: list[dict]
) -> dict[str, Any]:
    """Cycles of the Cortex-M0 cycle model: per inference, per MAC, per op, hot spots."""
    prof = c.profile_trace.per_key
    mac_ops = [o for o in ops if o["macs"]]
    mac_cycles = sum(prof.get(o["index"], Tally()).cycles(multiplier) for o in mac_ops)
    mac_total = sum(o["macs"] for o in mac_ops)
    cycles = float(np.mean([t.total.cycles(multiplier) for t in c.traces]))
    for row in per_op:
        n = prof.get(row["index"], Tally()).cycles(multiplier)
        row.update(cycles=n, cycles_per_mac=(n / row["macs"]) if row["macs"] else None)
    return {
        "multiplier": multiplier,
        "cycles_per_inference": cycles,
        "cycles_per_mac_conv_linear": (mac_cycles / mac_total) if mac_total else None,
        "cycles_per_mac_total": (cycles / macs) if macs else None,
        "hot_spots": c.traces[0].hot_spots(multiplier, top=HOT_SPOTS),
    }


def _m0_keys(r: dict[str, Any]) -> dict[str, Any]:
    """The Cortex-M0 report's historical key names (benchmarks and RESULTS.md read them)."""
    return {
        "board": "microbit" if "micro:bit" in r["machine"] else "an385",
        "m0_instructions_per_inference": r["per_inference"],
        "m0_instructions_min_max": r["per_inference_min_max"],
        "m0_instructions_per_mac_conv_linear": r["per_mac_conv_linear"],
        "m0_instructions_per_mac_total": r["per_mac_total"],
        "per_op": [{**o, "instructions": o["count"]} for o in r["per_op"]],
    }


def format_report(r: dict[str, Any], per_op: bool = False) -> str:
    """Summary lines; with ``per_op`` (and cycles in the report) also a table of the ops by
    cycles and the hot spots."""
    per_mac = r["per_mac_conv_linear"] or r["per_mac_total"]
    which = "over conv/linear" if r["per_mac_conv_linear"] else "over the whole model"
    lines = [
        f"{r['name']} on {r['target']}: flash {r['flash_bytes']} B (weights {r['weight_bytes']} "
        f"B), RAM {r['ram_bytes']} B = arena {r['arena_bytes']} B "
        f"(lower bound {r['arena_lower_bound']} B) + stack {r['stack_bytes']} B",
    ]
    if r["counter"]:
        lines.append(
            f"  {r['machine']}: {r['per_inference']:.0f} {r['counter']} per inference, "
            f"{r['macs']} MACs"
            + (f", {per_mac:.2f} {r['counter']}/MAC {which}" if per_mac else "")
        )
    if "cycles_per_inference" in r:
        cyc_mac = r["cycles_per_mac_conv_linear"]
        lines.append(
            f"  {r['cycles_per_inference']:.0f} cycles ({r['multiplier']} multiplier, Cortex-M0 "
            "timings)" + (f", {cyc_mac:.2f} cycles/MAC over conv/linear" if cyc_mac else "")
        )
        if per_op:
            lines += _cycles_table(r)
    return "\n".join(lines)


def _cycles_table(r: dict[str, Any]) -> list[str]:
    total = max(1.0, sum(o["cycles"] for o in r["per_op"]))
    lines = [
        f"  {'op':>4s} {'name':24s} {'kind':16s} {'MACs':>9s} {'cycles':>10s} "
        f"{'share':>6s} {'cyc/MAC':>8s}"
    ]
    for o in r["per_op"]:
        cm = f"{o['cycles_per_mac']:.2f}" if o["cycles_per_mac"] else ""
        lines.append(
            f"  {o['index']:4d} {o['name'][:24]:24s} {o['kind']:16s} {o['macs']:9d} "
            f"{o['cycles']:10d} {o['cycles'] / total:6.1%} {cm:>8s}"
        )
    lines.append("  hot spots (functions by cycles):")
    for h in r["hot_spots"]:
        lines.append(f"    {h['function'][:48]:48s} {h['cycles']:10d} {h['share']:6.1%}")
    return lines
