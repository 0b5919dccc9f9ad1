"""Cost of a generated model on Cortex-M0: flash, RAM, instructions per inference and per MAC.

Instruction counts come from unicorn's Cortex-M0 model (instructions, not cycles: a deterministic
figure that is reproducible on a noisy machine). A profiling build calls a marker function
between ops so every instruction is attributed to the op that executed it; the totals come
from a separate build without markers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..intgraph import ACTIVATION_DTYPES
from .toolchain import HARNESS_SYMBOLS, elf_symbols, emulate_unicorn, project_info

FLASH_TYPES = set("tTrRdD")  # text, read-only data, initialised data (its image is in flash)
RAM_TYPES = set("bBdD")


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
) -> dict[str, Any]:
    """Flash, RAM (arena + measured stack), M0 instructions per inference and per MAC.

    Written to ``<out_dir>/<name>_cost.json`` when ``write``.
    """
    info = project_info(out_dir)
    x = default_samples(out_dir) if inputs is None else inputs
    plain = emulate_unicorn(out_dir, x, opt=opt)
    prof = emulate_unicorn(out_dir, x[:1], profile=True, opt=opt)
    ops = info.raw["ops"]
    per_op = prof.per_op[0]
    mac_ops = [o for o in ops if o["macs"]]
    mac_instr = sum(per_op.get(o["index"], 0) for o in mac_ops)
    macs = sum(o["macs"] for o in mac_ops)
    foot = library_footprint(plain.build.elf)
    instr = float(np.mean(plain.instructions))
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
        "m0_instructions_per_mac_total": (instr / info.raw["macs"]) if info.raw["macs"] else None,
        "per_op": [
            {
                "index": o["index"],
                "name": o["name"],
                "kind": o["kind"],
                "macs": o["macs"],
                "instructions": per_op.get(o["index"], 0),
                "per_mac": (per_op.get(o["index"], 0) / o["macs"]) if o["macs"] else None,
            }
            for o in ops
        ],
        "samples": int(x.shape[0]),
    }
    if write:
        path = Path(out_dir) / f"{info.name}_cost.json"
        path.write_text(json.dumps(report, indent=1))
    return report


def format_report(r: dict[str, Any]) -> str:
    per_mac = r["m0_instructions_per_mac_conv_linear"]
    lines = [
        f"{r['name']}: flash {r['flash_bytes']} B (weights {r['weight_bytes']} B), "
        f"RAM {r['ram_bytes']} B = arena {r['arena_bytes']} B "
        f"(lower bound {r['arena_lower_bound']} B) + stack {r['stack_bytes']} B",
        f"  Cortex-M0 ({r['board']}): {r['m0_instructions_per_inference']:.0f} instructions per "
        f"inference, {r['macs']} MACs"
        + (f", {per_mac:.2f} instructions/MAC over conv/linear" if per_mac else ""),
    ]
    return "\n".join(lines)
