"""IntGraph → ONNX model, for cross-checks with ONNX Runtime (and any other ONNX back end).

Two modes (``requant=``), because ONNX Runtime's QDQ path requantizes in float (round half to
even of the real value) where our ops use TFLM's fixed-point multipliers (double rounding, ties
away from zero): the two differ by 1 LSB on some elements, and residual adds compound it
(measured on the zoo's ResNet: 97.7% of outputs within 1 LSB, 59% equal).

- ``"integer"`` (default): every requantizing op — conv, fully_connected, add, rescale,
  avg_pool, softmax — is an exact integer subgraph, so ONNX Runtime reproduces the interpreter
  bit for bit (all zoo models: 100% equal). Products are ``ConvInteger`` / ``MatMulInteger`` on
  int8 × int8 only (uint8 inputs shifted by 128, 16-bit operands split into base-128 int8
  digits); bias, ``MultiplyByQuantizedMultiplier`` (SRDHM + rounding divide by 2^e, the
  single-rounding, int64-16x8 and power-of-two variants), zero points and clamps are int64
  ``Mul`` / ``Add`` / ``Div`` / ``Mod`` / ``Sign`` / ``Abs`` / ``Clip``, where every ``Div``
  divides a non-negative number or an exact multiple (``v − Mod(v, d)``), so C-style and floor
  division agree.
  The output of each op is the int8 / int16 tensor itself; the ops that move raw values
  (max_pool, clamp, pad, reshape, transpose, concat, lut) are exported as below in both modes
  and are exact.
- ``"float"``: the standard QDQ pattern ``DequantizeLinear → float op → [Clip] →
  QuantizeLinear`` that ONNX Runtime fuses into its int8 kernels (QLinearConv, ...): the model
  other toolchains expect, agreeing within 1 LSB on nearly every element, not bit for bit.
  Scales are not stored in an IntGraph except on tensors, so the float scales are read back
  from the integer constants: conv / fully_connected weight scale of channel c
  ``s_w[c] = m_c · s_out / s_in`` with ``m_c = multiplier[c] · 2^(shift[c] − 31)``, bias int32
  with scale ``s_in·s_w[c]``; add / rescale: each input's effective scale is the product of the
  multipliers that reach the output, times ``s_out``. Fused activation bounds become a float
  ``Clip`` to the real values of ``[act_min, act_max]`` before ``QuantizeLinear``.

In both modes ``lut`` is an integer ``Gather`` from the table itself. Each op kind's export is
in its op module (``intquant.ops.<kind>``: ``OpDef.to_onnx``, and ``to_onnx_int`` where the
exact form differs); ``exporter`` holds the graph builder and ``integer_math`` the exact
integer subgraphs they share. The model's input and
output are the IntGraph's integer tensors (``float_io=True`` adds QuantizeLinear /
DequantizeLinear at the edges). Opset 19, or 21 when int16 Q/DQ is needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..intgraph import IntGraph
from ..ops import OPS
from .exporter import OPSET_8BIT, Exporter
from .integer_math import ONNX_DTYPE

Requant = Literal["integer", "float"]
# The op kinds each ``requant`` mode exports as exact integer subgraphs.
INTEGER_KINDS: dict[str, frozenset[str]] = {
    "float": frozenset(),
    "integer": frozenset(k for k, d in OPS.items() if d.to_onnx_int is not None),
}

__all__ = ["INTEGER_KINDS", "ONNX_DTYPE", "apply_multiplier_model", "intgraph_to_onnx",
           "real_multiplier"]


def intgraph_to_onnx(
    graph: IntGraph, path: str | os.PathLike | None = None, *, float_io: bool = False,
    per_op: bool = False, requant: Requant = "integer",
) -> Path | onnx.ModelProto:
    """Build the model; save it to ``path`` (returned) or return the ModelProto.

    ``requant="integer"`` (default) makes every requantization an exact integer subgraph
    (bit-identical to the interpreter); ``requant="float"`` is the plain QDQ model (float
    requantization, within 1 LSB per op). See the module docstring.

    ``per_op=True`` builds a diagnostic model in which every op reads its inputs from graph
    inputs named after the IntGraph tensors and writes a graph output ``<tensor>__op``: fed
    with the interpreter's own intermediate tensors, it compares each op in isolation, without
    the 1-LSB differences of earlier ops compounding through a deep network.
    """
    graph.validate()
    if requant not in INTEGER_KINDS:
        raise ValueError(f"requant must be one of {sorted(INTEGER_KINDS)}, got {requant!r}")
    model = Exporter(graph, float_io and not per_op, per_op, INTEGER_KINDS[requant]).build()
    onnx.checker.check_model(model)
    if path is None:
        return model
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def apply_multiplier_model(
    multiplier: np.ndarray | int, shift: np.ndarray | int, rounding: str = "double",
    acc_bits: int = 32,
) -> onnx.ModelProto:
    """A model ``x (int64) → numerics.apply_multiplier(x, M, shift, rounding, acc_bits)`` built
    from the same integer subgraph the export uses, so that it can be checked bit for bit
    against ``intquant.numerics`` (M and shift broadcast against x's trailing dimensions)."""
    ex = Exporter(IntGraph(tensors={}, ops=[], input="", output="", meta={}), False)
    y = ex.apply_multiplier_int("x", np.asarray(multiplier), np.asarray(shift), rounding,
                                acc_bits, "mbqm")
    ex.node("Identity", [y], "y", out="y")
    io = [helper.make_tensor_value_info(n, TensorProto.INT64, ["N", *np.shape(multiplier)])
          for n in ("x", "y")]
    graph = helper.make_graph(ex.nodes, "apply_multiplier", io[:1], io[1:], ex.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET_8BIT)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    return model


def real_multiplier(multiplier: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """m = M · 2^(shift − 31): the real number a (multiplier, shift) pair stands for."""
    return np.asarray(multiplier, np.float64) * np.exp2(np.asarray(shift, np.float64) - 31)
