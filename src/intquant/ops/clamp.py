"""clamp — standalone ReLU / ReLU6 / Hardtanh / clamp (when not fused)

- attrs `act_min`, `act_max`; same qparams in and out; `out = clamp(x, act_min, act_max)`.
  In-place safe.
"""

from __future__ import annotations

import numpy as np

from ..intgraph.check import OpCheck, arity
from ..intgraph.types import Op, TensorInfo
from ..numerics import saturate
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    chk.expect_same_qparams(x, chk.out)
    chk.expect_output_shape(x.shape)
    chk.act_range()


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Standalone ReLU / ReLU6 / Hardtanh: clamp raw values to [act_min, act_max]."""
    return to_out(saturate(inputs[0], op.attrs["act_min"], op.attrs["act_max"]), out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    x = op.inputs[0]
    em.calls.append(
        f"    iq_clamp({em.ptr(x, True)}, {em.code(x)}, {em.ptr(op.output, False)}, "
        f"{em.code(op.output)}, {em.size(x)}, {op.attrs['act_min']}, "
        f"{op.attrs['act_max']});"
    )


def to_onnx(ex, op: Op) -> None:
    ex.clip_and_q(ex.dq_tensor(op.inputs[0], op.name), op, ex.g.tensors[op.output])


def run_float_relu(node, inputs):
    import torch.nn.functional as F

    return F.relu(inputs[0])


def run_float_clamp(node, inputs):
    import torch

    return torch.clamp(inputs[0], node.attrs.get("min"), node.attrs.get("max"))


def relu_bounds(node) -> tuple[float | None, float | None]:
    return 0.0, None


def clamp_bounds(node) -> tuple[float | None, float | None]:
    return node.attrs.get("min"), node.attrs.get("max")


def lower(lw, node, inputs: list[str]) -> str:
    """Standalone ReLU / clamp (not fusable): an integer clamp with the same format."""
    from ..graph.ir import Node
    from ..lower import act_bounds

    qp = lw.fmt[inputs[0]]
    bounds = relu_bounds(node) if node.op == "relu" else clamp_bounds(node)
    probe = Node(node.name, node.op, act=bounds)
    lo, hi = act_bounds(probe, qp)
    if node.act is not None:
        lo2, hi2 = act_bounds(node, qp)
        lo, hi = max(lo, lo2), min(hi, hi2)
    attrs = dict(act_min=lo, act_max=max(lo, hi))
    return lw.emit(node.name, "clamp", inputs, node.shape, qp, attrs)


register(
    OpDef(
        kind="clamp",
        summary="standalone ReLU / ReLU6 / Hardtanh on raw values",
        attrs=frozenset({"act_min", "act_max"}),
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_clamp.c", "iq_clamp.h"),
        c_header="iq_clamp.h",
        to_onnx=to_onnx,
        in_place=True,
    ),
    FloatOpDef(
        name="relu",
        summary="ReLU",
        run=run_float_relu,
        lower=lower,
        lowers_to=("clamp",),
        same_format=True,
        keeps_grid=True,
        act_bounds=relu_bounds,
    ),
    FloatOpDef(
        name="clamp",
        summary="clamp / ReLU6 / Hardtanh; attrs min, max (None = unbounded)",
        run=run_float_clamp,
        lower=lower,
        lowers_to=("clamp",),
        same_format=True,
        keeps_grid=True,
        act_bounds=clamp_bounds,
    ),
)
