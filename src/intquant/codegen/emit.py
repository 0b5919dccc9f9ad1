"""Generate a self-contained C99 project from an IntGraph.

Output folder (``export_c``):
  <name>.h            the API: element typedefs, sizes, shapes, scale/zero point as exact integers
  <name>.c            weights as ``const`` arrays (flash), op parameters, one static arena, and
                      ``<name>_run``: the call sequence with offsets fixed by the memory planner
  <name>_kernels.c    the conv / fully_connected template instances this model needs
  <name>_weights.S    only above BINARY_WEIGHTS_THRESHOLD bytes of constants: the arrays as
  <name>_weights.bin  raw little-endian bytes (.incbin), declared ``extern const`` in <name>.c;
  <name>_weights_be.bin  the multi-byte arrays big-endian, chosen by __BYTE_ORDER__
  iq_*.h, iq_*.c      the hand-written runtime (copied from ``runtime/``): the core files and
                      those of the op kinds the model uses
  <name>_host_main.c  host test driver (stdin -> stdout), kept apart from the library
  m0/                 Cortex-M0 startup, linker script and semihosting test main
  Makefile, README.md (how to build and run on the host, QEMU and every target),
  <name>_info.json

Each op kind's C binding is in its op module (``intquant.ops.<kind>``); ``emitter.CEmitter`` is
the core they call back into and ``project`` writes the files. Offline transformations (integers
only, exact): the conv/linear input zero point is folded into the bias (bias' = bias − z_in·Σw,
CMSIS-NN style; the im2col buffer pads with z_in so this holds at the borders too), and an
accumulator width that provably fits int32 is used where it does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..intgraph import IntGraph, op_macs, weight_bytes
from ..outdir import normalize, staged_dir
from .c_syntax import c_identifier
from .emitter import CEmitter
from .planner import MemoryPlan, plan_memory
from .project import write_files

# Above this many bytes of constants, arrays go to <name>_weights.bin, pulled in by the small
# assembly file <name>_weights.S (.incbin): a C initializer costs ~5 characters per byte and
# gcc's memory and time grow with it (VGG-19's 144 MB of weights made a 729 MB model.c).
BINARY_WEIGHTS_THRESHOLD = 4 * 2**20


@dataclass
class ExportResult:
    """What ``export_c`` wrote and the numbers a user needs before flashing."""

    out_dir: Path
    name: str
    paths: list[Path]
    arena_bytes: int
    arena_lower_bound: int
    weight_bytes: int
    plan: MemoryPlan
    macs: int
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.name}: weights {self.weight_bytes} B (flash), arena {self.arena_bytes} B "
            f"(lower bound {self.arena_lower_bound} B), {self.macs} MACs per inference"
        )


def export_c(
    graph: IntGraph,
    out_dir: str | os.PathLike,
    name: str = "model",
    *,
    meta: dict[str, Any] | None = None,
    binary_weights: bool | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write the C project for ``graph`` to ``out_dir`` (replaced atomically).

    ``binary_weights``: constants in ``<name>_weights.bin`` + ``<name>_weights.S`` (GNU as
    ``.incbin``, for gcc and arm-none-eabi-gcc) instead of C initializers; default (None):
    only when the graph's constants exceed ``BINARY_WEIGHTS_THRESHOLD`` bytes.

    Files are written to a temporary folder next to ``out_dir`` and moved into place at the
    end, so a failure never leaves a half-written project. An existing ``out_dir`` is replaced
    only if intquant wrote it and ``overwrite=True``; any other non-empty folder is refused
    (see ``intquant.outdir``).
    """
    if c_identifier(name) != name or len(name) > 64:
        raise ValueError(
            f"name {name!r} must be a C identifier of at most 64 ASCII letters, digits and '_' "
            "(it prefixes every file and symbol of the project)"
        )
    graph.validate()
    plan = plan_memory(graph)
    if binary_weights is None:
        binary_weights = weight_bytes(graph) > BINARY_WEIGHTS_THRESHOLD
    em = CEmitter(graph, name, plan, binary_weights)
    em.emit()
    out = normalize(out_dir)
    with staged_dir(out, overwrite=overwrite) as tmp:
        files = write_files(tmp, graph, name, plan, em, meta)
    macs = sum(op_macs(op, graph) for op in graph.ops)
    info = json.loads((out / f"{name}_info.json").read_text())
    return ExportResult(
        out,
        name,
        [out / f for f in files],
        plan.arena_bytes,
        plan.lower_bound,
        em.weight_bytes,
        plan,
        macs,
        info,
    )
