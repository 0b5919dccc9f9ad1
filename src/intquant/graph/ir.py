"""The float Graph: what capture (torch.fx or ONNX) produces and calibration/lowering consume.

A deliberately small IR: a topologically ordered list of nodes, each naming its op, its input
nodes, JSON-able attributes and float parameters (NumPy). Shapes are without the batch
dimension, in PyTorch layout (C, L) / (C, H, W) / (F,).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# What the float graph can hold is the registry's FLOAT_OPS (``intquant.ops``: each op module
# registers the float ops it lowers). These names are derived from it on first use.
_DERIVED = {
    "OPS": lambda ops: {"input": "graph input", **{k: d.summary for k, d in ops.items()}},
    # Ops whose output keeps its input's quantization format (they move or select raw values,
    # or clamp them): no requantization, no calibration of their own.
    "SAME_FORMAT": lambda ops: tuple(k for k, d in ops.items() if d.same_format),
    # Activations that can be fused into the producing conv/linear/add as clamp bounds.
    "FUSABLE_ACTIVATIONS": lambda ops: tuple(k for k, d in ops.items() if d.fusable),
    # Layers with a weight tensor (per-layer weight formats, bias correction, statistics).
    "WEIGHTED": lambda ops: tuple(k for k, d in ops.items() if d.weighted),
    # The graph input and the ops whose integer tensor is a plain copy / view of their input.
    "VIEWS": lambda ops: ("input", *(k for k, d in ops.items() if d.view)),
    # Ops whose output gets a calibrated format of its own (its width can be chosen).
    "OWN_FORMAT": lambda ops: tuple(k for k, d in ops.items()
                                    if not d.same_format and d.fixed_format is None),
    # Ops whose output values are input values (moves, selects, clamps): grids are kept.
    "KEEPS_GRID": lambda ops: tuple(k for k, d in ops.items() if d.keeps_grid),
}


def __getattr__(name: str):
    if name in _DERIVED:
        from ..ops import FLOAT_OPS

        return _DERIVED[name](FLOAT_OPS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def unique_name(base: str, used: set[str], sep: str = ":") -> str:
    """``base``, or ``base:2``, ``base:3``, … — the first not in ``used`` (which it joins)."""
    name, k = base, 1
    while name in used:
        k += 1
        name = f"{base}{sep}{k}"
    used.add(name)
    return name


@dataclass
class Node:
    """One operation. ``act`` holds fused clamp bounds (lo, hi) in real units (None = none)."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    shape: tuple[int, ...] = ()
    act: tuple[float | None, float | None] | None = None
    source: str = ""  # where it came from (module path / ONNX node), for error messages
    # recurrent layers merged below this one (passes.stack_recurrent_layers), bottom first:
    # their per-layer overrides (QAT's trained row scales) still apply to their layers
    stacked_below: list[str] = field(default_factory=list)


@dataclass
class Graph:
    """A float network as an ordered list of nodes with one input node and one output node."""

    nodes: list[Node]
    output: str
    name: str = "model"

    def __post_init__(self) -> None:
        self._index = {n.name: n for n in self.nodes}

    @property
    def input(self) -> Node:
        return next(n for n in self.nodes if n.op == "input")

    def node(self, name: str) -> Node:
        return self._index[name]

    def reindex(self) -> None:
        """Rebuild the name index after passes edited ``nodes``."""
        self._index = {n.name: n for n in self.nodes}

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def validate(self) -> None:
        """Check ops are known, inputs exist and come earlier (topological order)."""
        from ..ops import FLOAT_OPS

        seen: set[str] = set()
        for n in self.nodes:
            if n.op != "input" and n.op not in FLOAT_OPS:
                raise ValueError(f"node {n.name!r}: unknown op {n.op!r}")
            for i in n.inputs:
                if i not in seen:
                    raise ValueError(f"node {n.name!r}: input {i!r} is not defined before it")
            if n.name in seen:
                raise ValueError(f"node name {n.name!r} is used twice")
            seen.add(n.name)
        if self.output not in seen:
            raise ValueError(f"graph output {self.output!r} is not a node")
        self.reindex()

    def summary(self) -> str:
        lines = []
        for n in self.nodes:
            act = f" +act{n.act}" if n.act else ""
            lines.append(f"{n.name:30s} {n.op:16s} {str(n.shape):18s} <- {n.inputs}{act}")
        return "\n".join(lines)
