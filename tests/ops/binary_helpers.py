"""What the binary-op tests share: ±1 references in exact float64 PyTorch.

The references here never call intquant's binary code: a ±1 tensor is the float op "sign"
(BNN's: sign(0) = +1) of the dequantized input minus the dequantized threshold, convolutions
are float64 ``F.conv1d/2d`` / ``F.linear`` on ±1 (or x − z) values — exact, every partial sum
is an integer far below 2^53 — with zero padding (the float model's padding), and the output
stage is the threshold comparison or the contract's requantization (``numerics.requantize``)
of that exact accumulator. The C tests use the shared helpers of conftest.py.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from intquant.intgraph import IntGraph, Op
from intquant.numerics import requantize
from intquant.ops import float_op

from .conftest import deq, to_t


def pm1(x: np.ndarray, graph: IntGraph, sign: Op) -> torch.Tensor:
    """±1 float64 values of a sign op's input: float "sign" of deq(x) − deq(threshold).

    Exact on every IEEE machine: both terms are exact in float64 (a float32 scale times a
    17-bit integer), and the difference of two doubles is 0 only when they are equal, else it
    has the sign of the exact difference."""
    info = graph.tensors[sign.inputs[0]]
    real = deq(x, info) - deq(np.array(sign.attrs["threshold"]), info)
    return float_op("sign").run(None, [to_t(real)])


def float_conv(x: torch.Tensor, w: np.ndarray, attrs: dict, groups: int = 1) -> torch.Tensor:
    """Exact float64 conv (1-D when x is (N, C, L)) with zero padding [top, left, bottom, right]."""
    t, left, b, r = attrs["padding"]
    wt = torch.as_tensor(w.astype(np.float64))
    if x.dim() == 3:
        xp = F.pad(x, (left, r))
        return F.conv1d(xp, wt[:, :, 0, :], stride=attrs["stride"][1],
                        dilation=attrs["dilation"][1], groups=groups)
    xp = F.pad(x, (left, r, t, b))
    return F.conv2d(xp, wt, stride=attrs["stride"], dilation=attrs["dilation"], groups=groups)


def output_stage(acc: torch.Tensor, op: Op, out_dtype: str) -> np.ndarray:
    """±1 where acc ≥ threshold (bit output), else the contract's requantization."""
    acc_i = np.rint(acc.numpy()).astype(np.int64)
    view = (1, -1) + (1,) * (acc_i.ndim - 2)
    if out_dtype == "bit":
        thr = op.consts["threshold"].astype(np.int64).reshape(view)
        return np.where(acc_i >= thr, 1, -1).astype(np.int8)
    a = op.attrs
    acc_i = acc_i + op.consts["bias"].astype(np.int64).reshape(view)
    return requantize(acc_i, op.consts["multiplier"], op.consts["shift"], a["output_zero_point"],
                      a["act_min"], a["act_max"], rounding=a.get("rounding", "double"),
                      axis=1).astype(out_dtype)
