"""Cost of a generated model on Cortex-M0: flash, RAM, instructions and cycles per inference.

Instruction counts come from unicorn's Cortex-M0 model; cycles from the same executed trace
with the Cortex-M0 TRM timings (cycles.py: loads 2, taken branches 3, BL 4, LDM/STM 1 + N,
MULS 1 or 32 for the "fast" or "small" multiplier). Both are deterministic figures,
reproducible on a noisy machine. A profiling build calls a marker function between ops so
every instruction is attributed to the op that executed it; the totals and the hot spots
(functions by cycles) come from a separate build without markers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..intgraph import ACTIVATION_DTYPES
from .cycles import Tally, check_multiplier
from .toolchain import HARNESS_SYMBOLS, elf_symbols, emulate_unicorn, project_info

FLASH_TYPES = set("tTrRdD")  # text, read-only data, initialised data (its image is in flash)
RAM_TYPES = set("bBdD")
HOT_SPOTS = 5


def default_samples(out_dir: str | os.PathLike, n: int = 2, seed: int = 0) -> np.ndarray:
    """Full-range random raw inputs (the cost of integer kernels does not depend much on data)."""
    info = project_info(out_dir)
    lo, hi = ACTIVATION_DTYPES[info.input_dtype.name]
    rng = np.random.default_rng(seed)
    return rng.integers(lo, hi + 1, size=(n, *info.input_shape)).astype(info.input_dtype)


def library_footprint(elf: Path) -> dict[str, int]:
    """Bytes of flash (code + const data + .data image) and static RAM used by the model,
    excluding the test harness (startup, main, samples, semihosting)."""
    flash = ram = 0
    for name, typ, _addr, size in elf_symbols(elf):
        if name in HARNESS_SYMBOLS:
            continue
        if typ in FLASH_TYPES:
            flash += size
        if typ in RAM_TYPES:
            ram += size
    return {"flash_bytes": flash, "static_ram_bytes": ram}


def cost_report(
    out_dir: str | os.PathLike,
    inputs: np.ndarray | None = None,
    *,
    write: bool = True,
    opt: str = "-O2",
    multiplier: str = "fast",
) -> dict[str, Any]:
    """Flash, RAM (arena + measured stack), M0 instructions and cycles per inference, per MAC
    and per op, and the hot spots (functions taking the most cycles).

    ``multiplier``: the Cortex-M0's MULS takes 1 cycle ("fast") or 32 ("small"). Written to
    ``<out_dir>/<name>_cost.json`` when ``write``.
    """
    check_multiplier(multiplier)
    info = project_info(out_dir)
    x = default_samples(out_dir) if inputs is None else inputs
    plain = emulate_unicorn(out_dir, x, opt=opt)
    prof = emulate_unicorn(out_dir, x[:1], profile=True, opt=opt)
    ops = info.raw["ops"]
    per_op = prof.traces[0].per_key
    mac_ops = [o for o in ops if o["macs"]]
    mac_tally = [per_op.get(o["index"], Tally()) for o in mac_ops]
    mac_instr = sum(t.instructions for t in mac_tally)
    mac_cycles = sum(t.cycles(multiplier) for t in mac_tally)
    macs = sum(o["macs"] for o in mac_ops)
    foot = library_footprint(plain.build.elf)
    instr = float(np.mean(plain.instructions))
    cycles = float(np.mean(plain.cycles(multiplier)))
    all_macs = info.raw["macs"]
    report: dict[str, Any] = {
        "name": info.name,
        "board": plain.build.board,
        "flash_bytes": foot["flash_bytes"],
        "weight_bytes": info.raw["weight_bytes"],
        "arena_bytes": info.raw["arena_bytes"],
        "arena_lower_bound": info.raw["arena_lower_bound"],
        "arena_greedy_bytes": info.raw["arena_greedy_bytes"],
        "stack_bytes": plain.stack_bytes,
        "ram_bytes": info.raw["arena_bytes"] + plain.stack_bytes,
        "static_ram_bytes": foot["static_ram_bytes"],
        "m0_instructions_per_inference": instr,
        "m0_instructions_min_max": [min(plain.instructions), max(plain.instructions)],
        "macs": info.raw["macs"],
        "m0_instructions_per_mac_conv_linear": (mac_instr / macs) if macs else None,
        "m0_instructions_per_mac_total": (instr / all_macs) if all_macs else None,
        "multiplier": multiplier,
        "cycles_per_inference": cycles,
        "cycles_per_mac_conv_linear": (mac_cycles / macs) if macs else None,
        "cycles_per_mac_total": (cycles / all_macs) if all_macs else None,
        "per_op": [_op_row(o, per_op.get(o["index"], Tally()), multiplier) for o in ops],
        "hot_spots": plain.traces[0].hot_spots(multiplier, top=HOT_SPOTS),
        "samples": int(x.shape[0]),
    }
    if write:
        path = Path(out_dir) / f"{info.name}_cost.json"
        path.write_text(json.dumps(report, indent=1))
    return report


def _op_row(o: dict[str, Any], t: Tally, multiplier: str) -> dict[str, Any]:
    macs = o["macs"]
    return {
        "index": o["index"],
        "name": o["name"],
        "kind": o["kind"],
        "macs": macs,
        "instructions": t.instructions,
        "per_mac": (t.instructions / macs) if macs else None,
        "cycles": t.cycles(multiplier),
        "cycles_per_mac": (t.cycles(multiplier) / macs) if macs else None,
    }


def format_report(r: dict[str, Any], per_op: bool = False) -> str:
    """Summary lines; with ``per_op`` also a table of ops by cycles and the hot spots."""
    per_mac = r["m0_instructions_per_mac_conv_linear"]
    cyc_mac = r["cycles_per_mac_conv_linear"]
    lines = [
        f"{r['name']}: flash {r['flash_bytes']} B (weights {r['weight_bytes']} B), "
        f"RAM {r['ram_bytes']} B = arena {r['arena_bytes']} B "
        f"(lower bound {r['arena_lower_bound']} B) + stack {r['stack_bytes']} B",
        f"  Cortex-M0 ({r['board']}): {r['m0_instructions_per_inference']:.0f} instructions per "
        f"inference, {r['macs']} MACs"
        + (f", {per_mac:.2f} instructions/MAC over conv/linear" if per_mac else ""),
        f"  {r['cycles_per_inference']:.0f} cycles ({r['multiplier']} multiplier)"
        + (f", {cyc_mac:.2f} cycles/MAC over conv/linear" if cyc_mac else ""),
    ]
    if per_op:
        total = max(1.0, sum(o["cycles"] for o in r["per_op"]))
        lines.append(
            f"  {'op':>4s} {'name':24s} {'kind':16s} {'MACs':>9s} {'cycles':>10s} "
            f"{'share':>6s} {'cyc/MAC':>8s}"
        )
        for o in r["per_op"]:
            cm = f"{o['cycles_per_mac']:.2f}" if o["cycles_per_mac"] else ""
            lines.append(
                f"  {o['index']:4d} {o['name'][:24]:24s} {o['kind']:16s} {o['macs']:9d} "
                f"{o['cycles']:10d} {o['cycles'] / total:6.1%} {cm:>8s}"
            )
        lines.append("  hot spots (functions by cycles):")
        for h in r["hot_spots"]:
            lines.append(f"    {h['function'][:48]:48s} {h['cycles']:10d} {h['share']:6.1%}")
    return "\n".join(lines)
