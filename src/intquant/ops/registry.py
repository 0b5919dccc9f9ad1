"""The op registry: one ``OpDef`` per IntGraph op kind, one ``FloatOpDef`` per float-graph op.

An op module (``intquant/ops/<kind>.py``) calls :func:`register` for its IntGraph kind and for
the float-graph ops it lowers; everything else — validation, the interpreter, lowering, the float
executor, the memory planner, the C emitter and the ONNX exporter — looks the op up here instead
of keeping a list of its own. Adding an op therefore touches its module, its C kernel file, its
test module and one capture entry (``docs/adding-an-op.md``).

NumPy only: op modules import torch and onnx lazily, inside the functions that need them, so the
interpreter runs without either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..intgraph.check import OpCheck
from ..intgraph.types import IntGraph, Op, TensorInfo

if TYPE_CHECKING:  # the float graph (and torch behind it) stays out of the integer side
    from ..graph.ir import Node

Reference = Callable[[Op, list[np.ndarray], TensorInfo], np.ndarray]
CEmit = Callable[[Any, int, Op, str], None]  # (emitter, op index, op, C identifier prefix)
OnnxExport = Callable[[Any, Op], None]  # (exporter, op)
FloatRun = Callable[["Node", list[Any]], Any]  # (node, input tensors) -> output tensor (torch)
Lowering = Callable[[Any, "Node", list[str]], str]  # (lowerer, node, input tensors) -> output


def no_macs(op: Op, graph: IntGraph) -> int:
    """Ops without multiply-accumulates."""
    return 0


def no_scratch(graph: IntGraph, op: Op) -> int:
    """Ops that need no scratch buffer in the arena."""
    return 0


def no_state(graph: IntGraph, op: Op) -> int:
    """Ops that keep nothing from one inference (or one streamed frame) to the next."""
    return 0


@dataclass(frozen=True)
class OpDef:
    """Everything intquant knows about one IntGraph op kind.

    ``run`` is the NumPy reference — THE specification the C kernel must match bit for bit.
    ``emit_c`` appends the op's parameter structs and kernel call to the C emitter; ``c_files``
    are the runtime files it needs (copied into the project; ``.c`` files are compiled) and
    ``c_header`` the one the generated model includes. ``to_onnx`` writes the plain QDQ form,
    ``to_onnx_int`` the exact integer form where that differs (None: ``to_onnx`` is exact).
    ``in_place``: an elementwise op whose output may overwrite its dying input; ``alias``: the
    output is the input's bytes (nothing to compute). ``state_bytes``: a recurrent op's state
    (kept in the arena for the whole program, so that ``<name>_step`` can carry it from one
    streamed frame to the next).
    """

    kind: str
    summary: str
    attrs: frozenset[str]
    consts: frozenset[str]
    check: Callable[[OpCheck], None]
    run: Reference
    emit_c: CEmit | None = None
    c_files: tuple[str, ...] = ()
    c_header: str | None = None
    to_onnx: OnnxExport | None = None
    to_onnx_int: OnnxExport | None = None
    macs: Callable[[Op, IntGraph], int] = no_macs
    scratch_bytes: Callable[[IntGraph, Op], int] = no_scratch
    state_bytes: Callable[[IntGraph, Op], int] = no_state
    in_place: bool = False
    alias: bool = False
    dtypes: tuple[str, ...] = ("int8", "uint8", "int16")


@dataclass(frozen=True)
class RowGroup:
    """Weight matrices of an op (``weight_tensors`` keys) whose products add into the same
    output rows, with what each one multiplies: a recurrent layer's W_ih (the layer input
    x_t) and W_hh (the previous state h_{t−1}). ``inputs[i]`` holds one row per (sample,
    step), the columns of ``weights[i]``; ``biases[i]`` is the bias (``node.params`` key)
    added to that matrix's product. PTQ rounds such a group jointly (GPTQ over the side-by-
    side matrix) and corrects the biases with the inputs' means."""

    weights: tuple[str, ...]
    biases: tuple[str, ...]
    inputs: tuple[Any, ...]


@dataclass(frozen=True)
class FloatOpDef:
    """One op of the float graph: its float semantics and how it becomes integer ops.

    ``run`` is the plain PyTorch definition (the float reference calibration observes and the
    integer model is compared against). ``same_format``: the output keeps the input's
    quantization format (moves, selects or clamps raw values; no calibration of its own).
    ``act_bounds``: for an activation that can become the clamp bounds of its producer, its
    real (lo, hi) bounds (None = unbounded); ``fuse_into``: the op's output can carry such
    fused bounds. ``weighted``: a layer with a weight tensor (per-layer weight formats, bias
    correction, statistics). ``bits_in``: the lowering reads packed "bit" (±1) inputs itself;
    for every other op the lowerer unpacks such inputs to int8 first.
    ``observe``: tensors computed inside the op whose ranges
    calibration records next to its output (e.g. an LSTM's cell state), as
    ``{key: tensor}``, stored in the plan as ``acts["<node>/<key>"]``; ``weight_tensors``: the
    weight matrices of an op that is not ``weighted`` but still needs weight formats from the
    plan (``weights["<node>/<key>"]``, e.g. the gate matrices of a GRU); ``weight_inputs(node,
    inputs)``: those matrices as ``RowGroup``s with the values they multiply inside the op
    for the given float inputs (what GPTQ and bias correction need).
    ``weighted_forward(node, x, weight, bias)``: the pre-activation output of a weighted layer
    whose math is neither conv's nor linear's, with torch ``weight``/``bias`` that may require
    grad (bias correction, QDrop and the fake-quant simulation call it); GPTQ and AdaRound,
    which model conv / linear only, round such a layer to nearest.

    What the float-graph methods need to know without naming ops: ``fixed_format(bits, name)``
    is the output format the integer contract fixes (softmax / sigmoid on [0, 1], tanh on
    [−1, 1], sign ±1) — calibration never widens it; ``keeps_grid``: each output value is one
    of the input values (moves, selects, clamps), so a value on a quantization grid stays on
    it; ``view``: the integer output is a plain copy or view of the input (no new error to
    report); ``channel_scaling(node)``: f(s·x) = s·f(x) for a positive per-channel s with the
    channels left where they are (pools, zero padding, flatten), so cross-layer equalization
    may rescale across it; ``pads``: the op reads zeros outside its input (a shift of the
    input does not commute with it: bias absorption stops there). ``two_activation_matmul``:
    a matrix product of two activations (attention's Q·Kᵀ, P·V), whose operands carry both
    rounding errors into every sum; ``exponentiates_input``: the output depends on exp of the
    input (softmax), so an absolute input error δ becomes a relative output error ≈ δ — both
    mark the tensors ptq.attention_tensors holds wider.
    """

    name: str
    summary: str
    run: FloatRun
    lower: Lowering
    lowers_to: tuple[str, ...]
    same_format: bool = False
    act_bounds: Callable[[Node], tuple[float | None, float | None]] | None = None
    fuse_into: bool = False
    weighted: bool = False
    bits_in: bool = False
    fixed_format: Callable[[int, str], Any] | None = None
    keeps_grid: bool = False
    view: bool = False
    channel_scaling: Callable[[Node], bool] | None = None
    pads: Callable[[Node], bool] | None = None
    observe: Callable[[Node, list[Any]], dict[str, Any]] | None = None
    weight_tensors: Callable[[Node], dict[str, np.ndarray]] | None = None
    weight_inputs: Callable[[Node, list[Any]], list[RowGroup]] | None = None
    weighted_forward: Callable[[Node, Any, Any, Any], Any] | None = None
    two_activation_matmul: bool = False
    exponentiates_input: bool = False

    @property
    def fusable(self) -> bool:
        return self.act_bounds is not None


OPS: dict[str, OpDef] = {}
FLOAT_OPS: dict[str, FloatOpDef] = {}


def register(*defs: OpDef | FloatOpDef) -> None:
    """Add op definitions; a kind or float op defined twice is a programming error."""
    for d in defs:
        table: dict[str, Any] = OPS if isinstance(d, OpDef) else FLOAT_OPS
        key = d.kind if isinstance(d, OpDef) else d.name
        if key in table:
            raise RuntimeError(f"op {key!r} is registered twice")
        table[key] = d


def op_def(kind: str) -> OpDef:
    """The definition of an IntGraph op kind (KeyError naming the known kinds)."""
    try:
        return OPS[kind]
    except KeyError:
        raise KeyError(f"unknown IntGraph op kind {kind!r}; known: {sorted(OPS)}") from None


def float_op(name: str) -> FloatOpDef:
    """The definition of a float-graph op (KeyError naming the known ops)."""
    try:
        return FLOAT_OPS[name]
    except KeyError:
        raise KeyError(f"unknown float op {name!r}; known: {sorted(FLOAT_OPS)}") from None
