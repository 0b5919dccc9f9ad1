"""8-bit convs requantized in batches: the tiled instances of runtime/iq_conv_impl.h.

A conv on the offset-binary 8-bit path (planner.is_fast8) with an 8-bit output whose
requantization has the exact 32-bit window form (requant.py) gathers ``tile`` positions, then
requantizes each channel's outputs of the tile in one run (iq_requant.h) instead of one
output at a time: the channel's constants are loaded once per tile and the 64-bit product of
the textbook requantization becomes three or four 16x16 products. ``tile_positions`` depends on
the geometry only, so the planner can size the scratch before the constants exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..codegen.c_syntax import spatial, window_fields
from ..codegen.requant import accumulator_bound, rqw_rows, scratch_budget, window_requant
from ..intgraph import IntGraph, Op

MAX_TILE = 16
# Runtime files of the tiled, in-place and 16x8 kernels (beyond the conv template's own)
TILE_RUNTIME = ("iq_requant.h", "iq_requant.c", "iq_dot8.c")


def tile_applies(graph: IntGraph, op: Op) -> bool:
    """Conv or fully_connected (a 1x1 conv at one position), 8-bit input and output, int8
    weights, int32 accumulator."""
    return (
        op.kind in ("conv", "fully_connected")
        and graph.tensors[op.inputs[0]].dtype in ("int8", "uint8")
        and graph.tensors[op.output].dtype in ("int8", "uint8")
        and op.attrs.get("weight_format") is None  # packed weights: ops/_lowbit.py
        and str(op.consts["weight"].dtype) == "int8"
        and int(op.attrs.get("acc_bits", 32)) == 32
    )


def _depth(op: Op) -> int:
    """K: products per output (receptive field of one group)."""
    return int(math.prod(op.consts["weight"].shape[1:]))


def tile_positions(graph: IntGraph, op: Op, elem: int = 1) -> int:
    """Positions per tile within the scratch budget: each takes K columns of ``elem``-byte
    inputs, its term and eight channels' sums."""
    k = _depth(op)
    out_plane = math.prod(graph.tensors[op.output].shape[1:])
    return int(max(1, min(MAX_TILE, out_plane, scratch_budget(graph, op) // (elem * k + 36))))




def rows_applies(graph: IntGraph, op: Op) -> bool:
    """The in-place path (iq_dot8_rows): groups 1, no dilation, kernel width 3 or 4, and a
    band of one output row within the scratch budget (a 1-D conv's one row is its whole input:
    im2col then takes far less RAM, for the same speed)."""
    a = op.attrs
    return (
        op.kind == "conv"
        and tile_applies(graph, op)
        and int(a.get("groups", 1)) == 1
        and list(a["dilation"]) == [1, 1]
        and int(op.consts["weight"].shape[3]) in (3, 4)
        and rows_geometry(graph, op)["scratch"] <= scratch_budget(graph, op)
    )


def rows_geometry(graph: IntGraph, op: Op, elem: int = 1) -> dict[str, int]:
    """tile (positions per run, along an output row), band (output rows per copy of the
    input) and row_w (padded input row) of the in-place path, and its scratch bytes for inputs
    of ``elem`` bytes (iq_conv_impl.h: a byte band shifted to word-align the interiors;
    iq_conv16_impl.h: a halfword band)."""
    x = graph.tensors[op.inputs[0]]
    y = graph.tensors[op.output]
    c_in = x.shape[0]
    w_in = x.shape[-1]
    h_out, w_out = (1, y.shape[1]) if len(y.shape) == 2 else y.shape[1:]
    kh, kw = (int(v) for v in op.consts["weight"].shape[2:])
    sh, sw = op.attrs["stride"]
    pl = op.attrs["padding"][1]
    row_w = (max((w_out - 1) * sw + kw, pl + w_in) + 3) // 4 * 4  # word-aligned rows
    tile = min(w_out, MAX_TILE)

    def scratch(band: int) -> int:
        rows = (band - 1) * sh + kh
        band_bytes = rows * c_in * row_w * elem
        band_bytes = (band_bytes + (6 if elem == 1 else 3)) // 4 * 4
        return band_bytes + 4 * rows * row_w + 4 * tile + 32 * tile

    budget = scratch_budget(graph, op)
    band = h_out
    while band > 1 and scratch(band) > budget:
        band -= 1
    return {"tile": tile, "band": band, "row_w": row_w, "scratch": scratch(band)}


def tile_scratch(graph: IntGraph, op: Op) -> int | None:
    """Bytes of the tiled kernel's scratch: the tile's columns, their sums of inputs, and the
    sums of eight channels (or the in-place path's band, column sums, terms and sums)."""
    if not tile_applies(graph, op):
        return None
    if rows_applies(graph, op):
        return rows_geometry(graph, op)["scratch"]
    k = _depth(op)
    t = tile_positions(graph, op)
    return (t * k + 3) // 4 * 4 + 4 * t + 32 * t


@dataclass
class TileRequant:
    """The tiled instance's requantization: constants, bias minus a_lo, sign variant."""

    rq: list[tuple[int, ...]]
    bias: np.ndarray  # uint32 (as stored): the offset-binary bias minus a_lo, modulo 2^32
    sign: bool
    tile: int
    weight: np.ndarray  # uint8 offset binary: blocks of 8 channels interleaved, then 4, then 1
    rows: dict[str, int] | None = None  # the in-place path's geometry (then K is (ky, ci, kx))


def tile_requant(graph: IntGraph, op: Op, bias_u32: np.ndarray) -> TileRequant | None:
    """Window constants for a fast8 conv whose kernel bias (offset binary, modulo 2^32) is
    ``bias_u32``, or None when the tiled path does not apply."""
    if not tile_applies(graph, op):
        return None
    w2 = op.consts["weight"].astype(np.int64).reshape(op.consts["weight"].shape[0], -1)
    bound = accumulator_bound(graph, op)
    wr = window_requant(op.consts, op.attrs, bound)
    rows = rqw_rows(wr, 256) if wr is not None else None
    # The kernel's acc - a_lo must stay inside int32 (the clamp reads its sign).
    if rows is None or any(int(b) + abs(r[0]) >= 2**31 for b, r in zip(bound, rows, strict=True)):
        return None
    a_lo = np.array([r[0] for r in rows], dtype=np.int64)
    adjusted = np.mod(bias_u32.astype(np.int64) - a_lo, 2**32).astype(np.uint64)
    if rows_applies(graph, op):
        geo = rows_geometry(graph, op)
        order = op.consts["weight"].astype(np.int64).transpose(0, 2, 1, 3)  # (co, ky, ci, kx)
        weight = interleave_blocks(order.reshape(len(rows), -1) + 128, 1)
        return TileRequant(rows, adjusted, wr.needs_sign, geo["tile"], weight, geo)
    weight = interleave_blocks(w2 + 128, int(op.attrs.get("groups", 1)))
    return TileRequant(rows, adjusted, wr.needs_sign, tile_positions(graph, op), weight)


def interleave_blocks(wu: np.ndarray, groups: int) -> np.ndarray:
    """Per group: blocks of eight channels as [k][8], then one block of four as [k][4], then
    the remaining rows (the order iq_conv_impl.h's tiled path reads them in)."""
    per_group = wu.shape[0] // groups
    blocks = []
    for g in range(groups):
        rows = wu[g * per_group : (g + 1) * per_group]
        j = 0
        while j + 8 <= len(rows):
            blocks.append(rows[j : j + 8].T.ravel())
            j += 8
        if j + 4 <= len(rows):
            blocks.append(rows[j : j + 4].T.ravel())
            j += 4
        blocks.extend(rows[j:])
    return np.concatenate(blocks).astype(np.uint8) if blocks else wu.ravel().astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# 16x8: iq_conv16_impl.h
# ----------------------------------------------------------------------------------------------


def conv16_applies(graph: IntGraph, op: Op) -> bool:
    """int16 in and out, int8 weights, groups 1, and an accumulator the weights bound below
    2^31 (then int32 sums are exact whatever the contract's width)."""
    if op.kind != "conv" or int(op.attrs.get("groups", 1)) != 1:
        return False
    if graph.tensors[op.inputs[0]].dtype != "int16" or graph.tensors[op.output].dtype != "int16":
        return False
    if op.attrs.get("weight_format") is not None or str(op.consts["weight"].dtype) != "int8":
        return False
    return int(accumulator_bound(graph, op).max(initial=0)) < 2**31


def _rows16(graph: IntGraph, op: Op) -> bool:
    """The in-place 16x8 path: no dilation, kernel width 3 or 4, and a band of one output row
    within the scratch budget (as rows_applies)."""
    return (
        list(op.attrs["dilation"]) == [1, 1]
        and int(op.consts["weight"].shape[3]) in (3, 4)
        and rows_geometry(graph, op, 2)["scratch"] <= scratch_budget(graph, op)
    )


def conv16_scratch(graph: IntGraph, op: Op) -> int | None:
    """Bytes of the 16x8 kernel's scratch: the halfword band, column sums, terms and sums of
    the in-place path, or the tile's halfword columns, terms and sums."""
    if not conv16_applies(graph, op):
        return None
    if _rows16(graph, op):
        return rows_geometry(graph, op, 2)["scratch"]
    k = _depth(op)
    t = tile_positions(graph, op, 2)
    return (2 * t * k + 3) // 4 * 4 + 4 * t + 32 * t


@dataclass
class Conv16Layer:
    """A 16x8 conv for iq_conv16_impl.h: instance, weights, bias (minus a_lo), constants."""

    instance: str
    weight: np.ndarray
    bias: np.ndarray
    rq: list[tuple[int, ...]]
    sign: bool
    params: dict[str, int]
    rows: bool

    def source(self) -> str:
        lines = [f"#define IQ16_FN {self.instance}"]
        lines += ["#define IQ16_ROWS 1"] if self.rows else []
        return "\n".join([*lines, '#include "iq_conv16_impl.h"', ""])

    def declaration(self) -> str:
        return f"IQ_CONV16_DECLARE({self.instance});\n"


def prepare_conv16(graph: IntGraph, op: Op) -> Conv16Layer | None:
    """The 16x8 kernel's constants for ``op``, or None (the generic template keeps it)."""
    if not conv16_applies(graph, op):
        return None
    w4 = op.consts["weight"].astype(np.int64)
    cout = w4.shape[0]
    w2 = w4.reshape(cout, -1)
    z = int(op.attrs["input_zero_point"])
    bias = op.consts["bias"].astype(np.int64)
    bound = accumulator_bound(graph, op)
    wr = window_requant(op.consts, op.attrs, bound)
    rows = rqw_rows(wr, 2**16) if wr is not None else None
    if rows is None or any(int(b) + abs(r[0]) >= 2**31 for b, r in zip(bound, rows, strict=True)):
        return None
    # sum w*x = sum wu*u - 32768*sum(wu) - 128*sum(u) + 128*32768*K, u = x + 32768, padding z
    k = w2.shape[1]
    wu = w2 + 128
    kernel_bias = bias - z * w2.sum(axis=1) - 32768 * wu.sum(axis=1) + 128 * 32768 * k
    a_lo = np.array([r[0] for r in rows], dtype=np.int64)
    bias_u32 = np.mod(kernel_bias - a_lo, 2**32).astype(np.uint64)
    in_place = _rows16(graph, op)
    order = w4.transpose(0, 2, 1, 3) if in_place else w4  # (ky, ci, kx) for the in-place path
    weight = interleave_blocks(order.reshape(cout, -1) + 128, 1)
    params = rows_geometry(graph, op, 2) if in_place else {"tile": tile_positions(graph, op, 2)}
    params = {key: params[key] for key in ("tile", "band", "row_w") if key in params}
    params["sign"] = int(wr.needs_sign)
    name = f"iq_conv16_{'rows' if in_place else 'tile'}"
    return Conv16Layer(name, weight, bias_u32, rows, wr.needs_sign, params, in_place)


def emit_conv16(em, i: int, op: Op, p: str) -> bool:
    """Emit a 16x8 conv on iq_conv16_impl.h if it applies (the C emitter's calls and data)."""
    layer = prepare_conv16(em.g, op)
    if layer is None:
        return False
    em.require_runtime((*TILE_RUNTIME, "iq_conv16_impl.h"), header="iq_requant.h")
    em.add_kernel_instance(layer.instance, layer.declaration(), layer.source())
    w = em.const_array(f"{p}_weight", "uint8_t", layer.weight)
    em.weight_array_bytes[op.name] = int(layer.weight.size)
    b = em.const_array(f"{p}_bias", "uint32_t", layer.bias)
    rq = em.rqw_array(f"{p}_rq", layer.rq)
    a = op.attrs
    cin, h, wd = spatial(em.g.tensors[op.inputs[0]].shape)
    cout, ho, wo = spatial(em.g.tensors[op.output].shape)
    kh, kw = op.consts["weight"].shape[2:]
    fields = {"in_c": cin, "in_h": h, "in_w": wd, "out_c": cout, "out_h": ho, "out_w": wo}
    fields.update(window_fields((kh, kw), a, a["dilation"]))
    fields.update(groups=1, input_zero_point=a["input_zero_point"], act_min=a["act_min"])
    prm = em.params("iq_conv_params_t", f"{p}_params", {**fields, **layer.params}, flash=True)
    off, _ = em.plan.scratch[i]
    args = [f"&{prm}", em.typed(op.inputs[0], True), w, b, rq, em.typed(op.output, False)]
    em.calls.append(f"    {layer.instance}({', '.join(args)}, (void*)(IQ_ARENA + {off}));")
    return True
