"""binary_fully_connected — W1A1 Linear (BNN, XNOR-Net): XOR + popcount on packed bits

- inputs `[x]`, x a "bit" vector `(Cin,)`; output `(Cout,)`, "bit" or int8 / uint8 / int16.
- consts: `weight` uint32 `[Cout, ceil(Cin/32)]` (each row's ±1 weights packed like the input:
  −1 = set bit, MSB first, zero padded; `ops/_bits.py`); output stage `threshold`, or `bias`,
  `multiplier`, `shift` (`ops/_binary.py`).
- attrs: none for a "bit" output; `output_zero_point`, `act_min`, `act_max`, `rounding` for an
  8/16-bit output.
- math: `acc[co] = Σ_ci w[co, ci] · x[ci]`; bit output `+1 if acc ≥ threshold[co] else −1`,
  otherwise `clamp(requantize(acc + bias[co]) + output_zero_point, act_min, act_max)`.
  In C: `acc = Cin − 2·popcount(x ^ w[co])` over ``ceil(Cin/32)`` words.

Lowered from ``linear`` when the input is a packed "bit" vector and every weight is ±1.
"""

from __future__ import annotations

import numpy as np

from ..intgraph.check import OpCheck, arity
from ..intgraph.types import BIT, IntGraph, Op, TensorInfo
from . import _binary, _bits
from .registry import OpDef, register


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    if x.dtype != BIT:
        raise chk.fail(f"input '{x.name}' must be a packed 'bit' tensor, got {x.dtype}")
    if len(x.shape) != 1:
        raise chk.fail(f"input '{x.name}' must have shape (Cin,), got {x.shape}")
    weight = _binary.check_weight_stream(chk, x.shape[0], 1, 1)
    chk.expect_output_shape((weight.shape[0],))
    _binary.check_output_stage(chk, weight.shape[0], x.shape[0], clamped_threshold=True)


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """acc = Σ w·x; threshold to ±1 or requantize per output channel."""
    x = inputs[0]
    w = _bits.unpack_words(op.consts["weight"], x.shape[1]).astype(np.int32)
    acc = x.astype(np.int32) @ w.T
    return _binary.output_stage(acc.astype(np.int64), op, out, axis=1)


def macs(op: Op, graph: IntGraph) -> int:
    return op.consts["weight"].shape[0] * graph.tensors[op.inputs[0]].shape[0]


def scratch_bytes(graph: IntGraph, op: Op) -> int:
    return _binary.pops_scratch_bytes(graph, op, False)


def emit_c(em, i: int, op: Op, p: str) -> None:
    n = em.g.tensors[op.inputs[0]].shape[0]
    weight, kernels = _binary.emit_weights(em, op, p, n, border=False)
    prm = em.params(
        "iq_binary_fc_params_t",
        f"{p}_params",
        {
            "in_features": n,
            "out_features": op.consts["weight"].shape[0],
            "words": int(op.consts["weight"].shape[1]),
            "pixel": kernels["pixel"],
        },
    )
    out = _binary.emit_output_stage(em, op, p, n, threshold_array=False)
    scratch = (f"(uint16_t*)(IQ_ARENA + {em.plan.scratch[i][0]})" if i in em.plan.scratch
               else "NULL")
    args = ", ".join([f"&{prm}", em.typed(op.inputs[0], True), weight, *out,
                      em.ptr(op.output, False), scratch])
    em.calls.append(f"    iq_binary_fully_connected({args});")


register(
    OpDef(
        kind="binary_fully_connected",
        summary="W1A1 Linear on a packed bit vector: XOR + popcount; bits out (per-channel "
        "threshold) or 8/16-bit out (requantized)",
        attrs=_binary.STAGE_ATTRS,
        consts=frozenset({"weight"}) | _binary.STAGE_CONSTS,
        check=check,
        run=run,
        emit_c=emit_c,
        to_onnx=_binary.to_onnx_layer,
        c_files=("iq_binary_fully_connected.c", "iq_binary_fully_connected.h", "iq_binary.h"),
        c_header="iq_binary_fully_connected.h",
        macs=macs,
        scratch_bytes=scratch_bytes,
        dtypes=("bit", "int8", "uint8", "int16"),
    ),
)
