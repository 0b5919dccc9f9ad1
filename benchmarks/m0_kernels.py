"""Cortex-M0 kernel figures for benchmarks/c_backend.py: whole models, per layer, code size.

For each model (zoo and MLPerf-Tiny-like, int8 and the options): instructions and cycles per
MAC over the whole inference (unicorn, cycle model of intquant.codegen.cycles, fast and small
multiplier), the ratio to the floor 4.45 cycles x MACs + 30 cycles x conv/linear outputs,
runtime code bytes at -Os; per conv/linear layer the cycles per MAC next to CMSIS-NN's on the
same layer (cmsis_nn.py, when IQ_CMSIS_NN_DIR points at a checkout).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from elftools.elf.elffile import ELFFile

import cmsis_nn
from intquant.codegen import export_c
from intquant.codegen.cost import cost_report
from intquant.codegen.toolchain import HARNESS_SYMBOLS, build_m0
from intquant.intgraph import ACTIVATION_DTYPES, IntGraph, Op

FLOOR_CYCLES_PER_MAC = 4.45  # the best int8 byte loop measured (notes)
FLOOR_CYCLES_PER_OUTPUT = 30  # the per-output requantization target


def op_macs(g: IntGraph, op: Op) -> int:
    w = op.consts.get("weight")
    if op.kind == "fully_connected":
        return int(w.size)
    if op.kind == "conv":
        return int(w.shape[0] * math.prod(g.tensors[op.output].shape[1:]) * math.prod(w.shape[1:]))
    return 0


def floor_cycles(g: IntGraph) -> float:
    """4.45 cycles per MAC plus 30 per requantized output (conv/linear), the issue's floor."""
    weight_ops = [op for op in g.ops if op.kind in ("conv", "fully_connected")]
    outs = sum(math.prod(g.tensors[op.output].shape) for op in weight_ops)
    macs = sum(op_macs(g, op) for op in weight_ops)
    return FLOOR_CYCLES_PER_MAC * macs + FLOOR_CYCLES_PER_OUTPUT * outs


def describe(g: IntGraph, op: Op) -> str:
    """Short layer description: kind, kernel, stride, channels, output size."""
    x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
    if op.kind == "fully_connected":
        return f"FC {x.shape[0]}->{y.shape[0]}"
    w = op.consts["weight"]
    kh, kw = w.shape[2:]
    dw = int(op.attrs["groups"]) == x.shape[0] and x.shape[0] > 1
    kind = "dw" if dw else ("pw" if kh == kw == 1 else "conv")
    size = "x".join(str(s) for s in y.shape[1:])
    k = f"{kw}" if len(x.shape) == 2 else f"{kh}x{kw}"
    s = op.attrs["stride"][-1]
    return f"{kind} {k} s{s} {x.shape[0]}->{y.shape[0]} @{size}"


def sample(g: IntGraph, n: int = 1, seed: int = 0) -> np.ndarray:
    t = g.tensors[g.input]
    lo, hi = ACTIVATION_DTYPES[t.dtype]
    return np.random.default_rng(seed).integers(lo, hi + 1, size=(n, *t.shape)).astype(t.dtype)


def code_bytes(out_dir: Path, x: np.ndarray, opt: str = "-Os") -> int:
    """Bytes of the model library's functions (kernels, runtime, the call sequence) at ``opt``:
    the harness and all constant data excluded."""
    build = build_m0(out_dir, x[:1], opt=opt)
    with open(build.elf, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        return sum(
            s["st_size"]
            for s in symtab.iter_symbols()
            if s["st_info"]["type"] == "STT_FUNC" and s.name not in HARNESS_SYMBOLS
        )


def measure_model(g: IntGraph, work: Path, cmsis_objs: list[Path] | None) -> dict:
    """Whole-model and per-layer figures of one IntGraph."""
    res = export_c(g, work / "c", name="model")
    x = sample(g)
    fast = cost_report(res.out_dir, x, write=False)
    small = cost_report(res.out_dir, x, write=False, multiplier="small")
    macs = fast["macs"]
    layers = []
    for o, op in zip(fast["per_op"], g.ops, strict=True):
        if op.kind not in ("conv", "fully_connected"):
            continue
        row = {
            "op": o["index"],
            "layer": describe(g, op),
            "macs": o["macs"],
            "cycles": o["cycles"],
            "cycles_per_mac": o["cycles_per_mac"],
            "instructions_per_mac": o["per_mac"],
        }
        if cmsis_objs is not None and cmsis_nn.supported(g, op):
            r = cmsis_nn.measure_layer(g, op, cmsis_objs, work / f"cmsis{o['index']}")
            row.update(cmsis_cycles_per_mac=r.cycles / o["macs"], cmsis_identical=r.identical)
        layers.append(row)
    return {
        "macs": macs,
        "instructions": fast["m0_instructions_per_inference"],
        "instructions_per_mac": fast["m0_instructions_per_mac_total"],
        "cycles": fast["cycles_per_inference"],
        "cycles_per_mac": fast["cycles_per_mac_total"],
        "cycles_per_mac_small": small["cycles_per_mac_total"],
        "floor_ratio": fast["cycles_per_inference"] / floor_cycles(g),
        "code_bytes_Os": code_bytes(res.out_dir, x),
        "hot_spots": fast["hot_spots"],
        "layers": layers,
    }
