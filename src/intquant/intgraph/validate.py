"""Validation of a whole IntGraph: tensors, topology, then each op kind's own checks.

Validation is strict on purpose: the C runtime does int32 arithmetic without overflow checks,
so every bound it relies on (accumulator width, shifted add operands, table sizes, windows that
touch at least one input element) is proved here, once, from the actual constants. The checks
of an op kind live in its module (``intquant.ops.<kind>``); this module runs them.
"""

from __future__ import annotations

import json
import math

import numpy as np

from ..ops import OPS, OpDef
from .check import OpCheck
from .limits import DEFAULT_LIMITS, Limits
from .types import ACTIVATION_DTYPES, BIT, IntGraph, IntGraphError, TensorInfo, value_dtype


def validate_graph(g: IntGraph, limits: Limits | None = None) -> None:
    """The whole contract: sizes first (nothing has been allocated for a declared size yet),
    tensors, topological order, then each op's own checks, then the total MACs."""
    limits = limits or DEFAULT_LIMITS
    if not isinstance(g.tensors, dict) or not isinstance(g.ops, list):
        raise IntGraphError("IntGraph.tensors must be a dict and IntGraph.ops a list")
    _check_counts(g, limits)
    activation_bytes = 0
    for key, t in g.tensors.items():
        validate_tensor(key, t, limits)
        activation_bytes += math.prod(t.shape) * value_dtype(t.dtype).itemsize
    if activation_bytes > limits.max_activation_bytes:
        raise IntGraphError(
            f"activation tensors hold {activation_bytes} bytes in all, above the limit "
            f"{limits.max_activation_bytes} (intgraph.Limits.max_activation_bytes)"
        )
    const_bytes = sum(int(getattr(c, "nbytes", 0)) for op in g.ops for c in op.consts.values())
    if const_bytes > limits.max_const_bytes:
        raise IntGraphError(
            f"constants hold {const_bytes} bytes, above the limit {limits.max_const_bytes} "
            "(intgraph.Limits.max_const_bytes)"
        )
    for role, name in (("input", g.input), ("output", g.output)):
        if name not in g.tensors:
            raise IntGraphError(f"graph {role} tensor {name!r} is not in tensors")
        if g.tensors[name].dtype == BIT:
            raise IntGraphError(
                f"graph {role} tensor {name!r} has dtype 'bit'; packed tensors live inside the "
                "graph only (add a sign / unpack_bits op at the edge)"
            )
    produced: set[str] = {g.input}
    names: set[str] = set()
    for i, op in enumerate(g.ops):
        chk = OpCheck(g, i, op, limits)
        if op.kind not in OPS:
            raise chk.fail(f"unknown op kind {op.kind!r}; expected one of {sorted(OPS)}")
        if op.name in names:
            raise chk.fail(f"op name {op.name!r} is not unique")
        names.add(op.name)
        for t in [*op.inputs, op.output]:
            if t not in g.tensors:
                raise chk.fail(f"tensor {t!r} is not in graph.tensors")
        for t in op.inputs:
            if t not in produced:
                raise chk.fail(
                    f"input tensor {t!r} is not produced by an earlier op (ops must be in "
                    "topological order)"
                )
        if op.output in produced:
            raise chk.fail(f"output tensor {op.output!r} is already produced by an earlier op")
        check_fields(chk, OPS[op.kind])
        produced.add(op.output)
    if g.output not in produced:
        raise IntGraphError(f"graph output tensor {g.output!r} is not produced by any op")
    macs = sum(OPS[op.kind].macs(op, g) for op in g.ops)
    if macs > limits.max_macs:
        raise IntGraphError(
            f"{macs} multiply-accumulates per inference, above the limit {limits.max_macs} "
            "(intgraph.Limits.max_macs)"
        )
    try:
        json.dumps(g.meta)
    except (TypeError, ValueError) as e:
        raise IntGraphError(f"graph meta must be JSON-serialisable: {e}") from e


def _check_counts(g: IntGraph, limits: Limits) -> None:
    if len(g.ops) > limits.max_ops:
        raise IntGraphError(f"{len(g.ops)} ops, above the limit {limits.max_ops}")
    if len(g.tensors) > limits.max_tensors:
        raise IntGraphError(f"{len(g.tensors)} tensors, above the limit {limits.max_tensors}")


MAX_RANK = 8


def validate_tensor(key: str, t: TensorInfo, limits: Limits = DEFAULT_LIMITS) -> None:
    where = f"tensor {key!r}"
    if not isinstance(t, TensorInfo):
        raise IntGraphError(f"{where}: expected TensorInfo, got {type(t).__name__}")
    if t.name != key:
        raise IntGraphError(f"{where}: TensorInfo.name is {t.name!r}, must equal its key")
    if t.dtype not in ACTIVATION_DTYPES:
        raise IntGraphError(
            f"{where}: dtype {t.dtype!r}, expected one of {list(ACTIVATION_DTYPES)}"
        )
    if not len(t.shape) <= MAX_RANK or any(s <= 0 for s in t.shape):
        raise IntGraphError(
            f"{where}: shape {t.shape[:MAX_RANK + 1]} must have 0 to {MAX_RANK} positive sizes"
        )
    elements = math.prod(t.shape)
    if elements > limits.max_tensor_elements:
        raise IntGraphError(
            f"{where}: shape {t.shape} has {elements} elements, above the limit "
            f"{limits.max_tensor_elements} (intgraph.Limits.max_tensor_elements)"
        )
    if not (isinstance(t.scale, float | int) and math.isfinite(t.scale) and t.scale > 0):
        raise IntGraphError(f"{where}: scale {t.scale!r} must be a finite float > 0")
    lo, hi = ACTIVATION_DTYPES[t.dtype]
    if isinstance(t.zero_point, bool) or not isinstance(t.zero_point, int | np.integer):
        raise IntGraphError(f"{where}: zero_point {t.zero_point!r} must be an integer")
    if not lo <= t.zero_point <= hi:
        raise IntGraphError(f"{where}: zero_point {t.zero_point} outside {t.dtype} [{lo}, {hi}]")
    if t.dtype == BIT and t.zero_point != 0:
        raise IntGraphError(f"{where}: a 'bit' tensor (values ±1) needs zero_point 0, "
                            f"got {t.zero_point}")


def check_fields(chk: OpCheck, op_def: OpDef) -> None:
    """Reject attrs and consts the kind does not define (a typo would otherwise be ignored),
    then run the kind's own checks."""
    extra_attrs = set(chk.op.attrs) - op_def.attrs
    if extra_attrs:
        raise chk.fail(f"unknown attr(s) {sorted(extra_attrs)}")
    extra_consts = set(chk.op.consts) - op_def.consts
    if extra_consts:
        raise chk.fail(f"unknown const(s) {sorted(extra_consts)}")
    if BIT not in op_def.dtypes:
        for t in [*chk.ins(), chk.out]:
            if t.dtype == BIT:
                raise chk.fail(
                    f"tensor '{t.name}' has dtype 'bit' (packed ±1), which this op kind does not "
                    "read or write; unpack it first (unpack_bits)"
                )
    op_def.check(chk)
