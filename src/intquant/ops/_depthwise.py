"""Depthwise convs on the row kernels of runtime/iq_depthwise_impl.h (8-bit activations).

A conv with groups == in_channels (any channel multiplier), 8-bit input and output, int8
weights and an int32 accumulator is emitted as one iq_depthwise_impl.h instance when its
requantization has the exact 32-bit window form of requant.py; otherwise the generic conv
template keeps it. The planner asks `depthwise_scratch` for the kernel's scratch (a row of
int32 sums and a ring of padded input rows), from the geometry alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codegen.requant import accumulator_bound, rqw_rows, scratch_budget, window_requant
from ..intgraph import IntGraph, Op

C_TYPE8 = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t"}
XOFF = {"int8": 128, "uint8": 0, "int16": 32768}  # the band holds x + XOFF, unsigned


def _spatial(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (shape[0], 1, shape[1]) if len(shape) == 2 else (shape[0], shape[1], shape[2])


def is_depthwise8(graph: IntGraph, op: Op) -> bool:
    """The shapes and types the depthwise kernel handles (the constants may still refuse):
    8-bit in and out, or 16x8 (int16 in and out) whose accumulator provably fits int32."""
    if op.kind != "conv" or op.attrs.get("weight_format") is not None:  # packed: ops/_lowbit
        return False
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    w = op.consts["weight"]
    cin = x.shape[0]
    wide = x.dtype == "int16"
    return (
        int(op.attrs["groups"]) == cin
        and w.shape[1] == 1
        and x.dtype in C_TYPE8
        and (y.dtype == "int16") == wide
        and str(w.dtype) == "int8"
        and (
            int(op.attrs.get("acc_bits", 32)) == 32
            or int(accumulator_bound(graph, op).max(initial=0)) < 2**31
        )
        and cin > 1  # one input channel: the im2col path shares each window over channels
    )


def _elem_bytes(graph: IntGraph, op: Op) -> int:
    """Bytes of one element of the band of padded input rows (uint8 or uint16)."""
    return 2 if graph.tensors[op.inputs[0]].dtype == "int16" else 1


def transposed(graph: IntGraph, op: Op) -> bool:
    """Run the kernel on the transposed plane, whose rows are the input's columns: when that
    makes the rows three taps wide (a 3x1 kernel) or longer (the per-row cost amortized)."""
    _, ho, wo = _spatial(graph.tensors[op.output].shape)
    kh, kw = op.consts["weight"].shape[2:]
    if kw == 1 and kh > 1:
        return True
    return kh == kw and ho > 2 * wo


def _geometry(graph: IntGraph, op: Op) -> dict[str, int]:
    """iq_dw_params_t: shapes in the kernel's orientation (see ``transposed``), the padded
    row width and the band of output rows."""
    a = op.attrs
    cin, h, w = _spatial(graph.tensors[op.inputs[0]].shape)
    cout, ho, wo = _spatial(graph.tensors[op.output].shape)
    kh, kw = (int(v) for v in op.consts["weight"].shape[2:])
    (sh, sw), (dh, dw) = a["stride"], a["dilation"]
    pt, pl = a["padding"][0], a["padding"][1]
    pitch, opitch = (w, 1), (wo, 1)
    if transposed(graph, op):
        h, w, ho, wo, kh, kw = w, h, wo, ho, kw, kh
        sh, sw, dh, dw, pt, pl = sw, sh, dw, dh, pl, pt
        pitch, opitch = pitch[::-1], opitch[::-1]
    span = (kh - 1) * dh + 1
    row_w = max((wo - 1) * sw + (kw - 1) * dw + 1, pl + w)
    size = _elem_bytes(graph, op)

    def scratch(rows: int) -> int:
        return 4 * rows * wo + ((rows - 1) * sh + span) * row_w * size

    band = ho
    while band > 1 and scratch(band) > scratch_budget(graph, op):
        band -= 1
    return {
        "channels": cin,
        "in_h": h,
        "in_w": w,
        "out_h": ho,
        "out_w": wo,
        "row_pitch": pitch[0],
        "col_pitch": pitch[1],
        "out_row_pitch": opitch[0],
        "out_col_pitch": opitch[1],
        "k_h": kh,
        "k_w": kw,
        "stride_h": sh,
        "stride_w": sw,
        "pad_top": pt,
        "pad_left": pl,
        "dil_h": dh,
        "dil_w": dw,
        "mult": cout // cin,
        "row_w": row_w,
        "band": band,
        "band_rows": (band - 1) * sh + span,
    }


def depthwise_scratch(graph: IntGraph, op: Op) -> int | None:
    """Scratch bytes of the depthwise kernel (a band of sums and of padded input rows), None
    if it does not apply to the op's shapes and types."""
    if not is_depthwise8(graph, op):
        return None
    g = _geometry(graph, op)
    return 4 * g["band"] * g["out_w"] + g["band_rows"] * g["row_w"] * _elem_bytes(graph, op)


@dataclass
class DepthwiseLayer:
    """A depthwise conv ready to emit: instance, params, weights and window constants."""

    instance: str
    tin: str
    tout: str
    sign: bool
    params: dict[str, int]
    weight: np.ndarray  # int8 (cout, kh * kw)
    rq: list[tuple[int, ...]]  # iq_rqw_t per output channel

    def source(self) -> str:
        lines = [
            f"#define IQ_DW_FN {self.instance}",
            f"#define IQ_DW_TIN {C_TYPE8[self.tin]}",
            f"#define IQ_DW_TOUT {C_TYPE8[self.tout]}",
        ]
        lines += ["#define IQ_DW_TIN_IS_16 1"] if self.tin == "int16" else []
        lines += ["#define IQ_DW_TOUT_IS_16 1"] if self.tout == "int16" else []
        return "\n".join([*lines, '#include "iq_depthwise_impl.h"', ""])

    def declaration(self) -> str:
        return f"IQ_DW_DECLARE({self.instance}, {C_TYPE8[self.tin]}, {C_TYPE8[self.tout]});\n"


def prepare_depthwise(graph: IntGraph, op: Op) -> DepthwiseLayer | None:
    """The depthwise kernel's constants for ``op``, or None (the generic template keeps it)."""
    if not is_depthwise8(graph, op):
        return None
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    w = op.consts["weight"].astype(np.int64)
    if transposed(graph, op):
        w = w.transpose(0, 1, 3, 2)
    cout = w.shape[0]
    w2 = w.reshape(cout, -1)
    z = int(op.attrs["input_zero_point"])
    xoff = XOFF[x.dtype]
    bias = op.consts["bias"].astype(np.int64)
    # The kernel sums w * (x + xoff) over the padded window (padding = z): the true
    # accumulator minus offset = bias - (z + xoff) * sum(w).
    offset = bias - (z + xoff) * w2.sum(axis=1)
    wr = window_requant(op.consts, op.attrs, accumulator_bound(graph, op), offset)
    fold = 2 ** (8 * np.dtype(y.dtype).itemsize)
    rows = rqw_rows(wr, fold) if wr is not None else None
    # The kernel's sums minus a_lo must stay inside int32 (the clamp reads their sign).
    sums = np.abs(w2).sum(axis=1) * (2 * xoff if xoff else 255)
    if rows is None or any(int(b) + abs(r[0]) >= 2**31 for b, r in zip(sums, rows, strict=True)):
        return None
    params = {**_geometry(graph, op), "input_zero_point": z, "act_min": wr.lo}
    params["sign"] = int(wr.needs_sign)
    short = {"int8": "s8", "uint8": "u8", "int16": "s16"}
    instance = f"iq_dw_{short[x.dtype]}_{short[y.dtype]}"
    return DepthwiseLayer(
        instance, x.dtype, y.dtype, wr.needs_sign, params, w2.astype(np.int8), rows
    )


DW_RUNTIME = ("iq_requant.h", "iq_requant.c", "iq_depthwise.h", "iq_depthwise_impl.h")
DW_RUNTIME += ("iq_depthwise.c",)


def emit_depthwise(em, i: int, op: Op, p: str) -> bool:
    """Emit ``op`` on the depthwise row kernels if they apply (the C emitter's calls and
    data; codegen/emitter.py)."""
    layer = prepare_depthwise(em.g, op)
    if layer is None:
        return False
    em.require_runtime(DW_RUNTIME, header="iq_depthwise.h")
    em.add_kernel_instance(layer.instance, layer.declaration(), layer.source())
    w = em.const_array(f"{p}_weight", "int8_t", layer.weight)
    em.weight_array_bytes[op.name] = int(layer.weight.size)
    rq = em.rqw_array(f"{p}_rq", layer.rq)
    prm = em.params("iq_dw_params_t", f"{p}_params", layer.params)
    off, _ = em.plan.scratch[i]
    args = [f"&{prm}", em.typed(op.inputs[0], True), w, rq, em.typed(op.output, False)]
    args.append(f"(void*)(IQ_ARENA + {off})")
    em.calls.append(f"    {layer.instance}({', '.join(args)});")
    return True
