"""pad — constant pad

- attrs `pads` = flat list `[before_0, after_0, before_1, after_1, ...]` over the non-batch
  dims, `value` (int, the quantized constant).
"""

from __future__ import annotations

import numpy as np

from ..codegen.c_syntax import pad4
from ..intgraph.check import OpCheck, arity
from ..intgraph.types import ACTIVATION_DTYPES, Op, TensorInfo
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    pads = chk.list_attr("pads", 2 * len(x.shape), lo=0)
    lo, hi = ACTIVATION_DTYPES[x.dtype]
    chk.int_attr("value", lo, hi)
    chk.expect_same_qparams(x, chk.out)
    chk.expect_output_shape(tuple(s + pads[2 * d] + pads[2 * d + 1] for d, s in enumerate(x.shape)))


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Constant pad with the quantized ``value`` (the zero point for zero padding)."""
    p = op.attrs["pads"]
    widths = [(0, 0)] + [(p[2 * d], p[2 * d + 1]) for d in range(len(p) // 2)]
    return to_out(np.pad(inputs[0], widths, constant_values=op.attrs["value"]), out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    x = op.inputs[0]
    pads = op.attrs["pads"]
    ins = em.shape4(f"{p}_in_shape", pad4(list(em.g.tensors[x].shape), 1))
    outs = em.shape4(f"{p}_out_shape", pad4(list(em.g.tensors[op.output].shape), 1))
    before = em.shape4(f"{p}_before", pad4(pads[0::2], 0))
    em.calls.append(
        f"    iq_pad({em.ptr(x, True)}, {em.ptr(op.output, False)}, {ins}, {outs}, "
        f"{before}, {em.code(x)}, {op.attrs['value']});"
    )


def to_onnx(ex, op: Op) -> None:
    x_info = ex.g.tensors[op.inputs[0]]
    p = op.attrs["pads"]
    n = len(p) // 2
    pads = [0] + [p[2 * d] for d in range(n)] + [0] + [p[2 * d + 1] for d in range(n)]
    value = np.float32((op.attrs["value"] - x_info.zero_point) * x_info.scale)
    x = ex.dq_tensor(op.inputs[0], op.name)
    y = ex.node("Pad", [x, ex.const(op.name + "_pads", np.array(pads, np.int64)),
                        ex.const(op.name + "_v", value)], op.name, mode="constant")
    out = ex.g.tensors[op.output]
    ins = [y, ex.const(op.name + "_oscale", np.float32(out.scale)),
           ex.zp(op.name + "_o", out.zero_point, out.dtype)]
    ex.node("QuantizeLinear", ins, op.name + "_q", out=ex.oname(op))


def run_float(node, inputs):
    import torch.nn.functional as F

    pads = node.attrs["pads"]
    # F.pad wants pairs for the last dim first.
    torch_pads: list[int] = []
    for d in reversed(range(len(pads) // 2)):
        torch_pads += [pads[2 * d], pads[2 * d + 1]]
    return F.pad(inputs[0], torch_pads, value=float(node.attrs.get("value", 0.0)))


def lower(lw, node, inputs: list[str]) -> str:
    from ..numerics import quantize

    qp = lw.fmt[inputs[0]]
    value = int(quantize(np.array([node.attrs.get("value", 0.0)]), qp)[0])
    return lw.emit(node.name, "pad", inputs, node.shape, qp,
                   {"pads": list(node.attrs["pads"]), "value": value})



def zero_pad_keeps_channels(node) -> bool:
    """Zero padding off the channel axis: a positive per-channel scale passes through it."""
    pads = node.attrs["pads"]
    return float(node.attrs.get("value", 0.0)) == 0.0 and pads[0] == pads[1] == 0

register(
    OpDef(
        kind="pad",
        summary="constant pad with a quantized value",
        attrs=frozenset({"pads", "value"}),
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_pad.c", "iq_pad.h"),
        c_header="iq_pad.h",
        to_onnx=to_onnx,
    ),
    FloatOpDef(
        name="pad",
        summary="constant pad; attrs pads (flat [before_0, after_0, ...] over non-batch dims), "
        "value",
        run=run_float,
        lower=lower,
        lowers_to=("pad",),
        same_format=True,
        keeps_grid=True,
        channel_scaling=zero_pad_keeps_channels,
        pads=lambda node: True,
    ),
)
