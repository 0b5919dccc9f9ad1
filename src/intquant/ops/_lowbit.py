"""The C side of packed weights (conv, fully_connected): kernel path, C layout, folded bias.

The IntGraph layouts are in ``_packed``; the kernels in ``runtime/iq_conv_packed.h`` and the
template ``iq_conv_packed_impl.h``. Which way a layer forms its products (``path``) is chosen
here, from the weight format, the input type, the channels per group and the accumulator
bound; the scratch buffer and the C weight layout follow from it. The C weight array always
holds exactly ``_packed.packed_nbytes`` bytes (the byte count every report uses): only the
int4 ``lanes`` path reorders them (eight channels interleaved per input), the other paths use
the IntGraph rows as they are.
"""

from __future__ import annotations

import math

import numpy as np

from ..codegen.c_syntax import C_TYPE, INT32_LIMIT, SHORT, dtype_max_abs, requant_mode
from ..intgraph.types import IntGraph, Op
from . import _packed
from ._packed import weight_codes, weight_format, weight_shape

C_FILES = ("iq_conv_packed.h", "iq_conv_packed_impl.h")
FORMAT_MACRO = {"int4": "IQ_PK_INT4", "pow2": "IQ_PK_POW2", "int2": "IQ_PK_INT2",
                "binary": "IQ_PK_BINARY"}
PATHS = ("generic", "direct", "subset", "product", "lanes")
SUBSET_CHUNK = 128  # IQ_PK_SUBSET_CHUNK: inputs per set of subset tables (8 bytes per input)
PRODUCT_CHUNK = 64  # IQ_PK_PRODUCT_CHUNK: inputs per set of product tables (32 bytes per input)
TABLES = {"subset": (SUBSET_CHUNK, 8), "product": (PRODUCT_CHUNK, 32)}
LANES_BLOCK = 8  # output channels per interleaved int4 block
MIN_TABLE_CHANNELS = 4  # fewer channels per group: tables cost more than they save


def is_packed(op: Op) -> bool:
    return op.kind in ("conv", "fully_connected") and weight_format(op) is not None


def _geometry(graph: IntGraph, op: Op) -> tuple[int, int, int]:
    """(groups, output channels per group, K = reduction length per output)."""
    shape = weight_shape(op)
    groups = int(op.attrs.get("groups", 1))
    return groups, shape[0] // groups, math.prod(shape[1:])


def _eight_bit_bias(graph: IntGraph, op: Op) -> np.ndarray:
    """C[c] = b[c] − (z + xoff)·Σw[c]: the constant of acc = C + Σ w·xu (xu = x + xoff)."""
    x = graph.tensors[op.inputs[0]]
    xoff = 128 if x.dtype == "int8" else 0
    w = weight_codes(op).astype(np.int64).reshape(weight_shape(op)[0], -1)
    z = int(op.attrs["input_zero_point"])
    return op.consts["bias"].astype(np.int64) - (z + xoff) * w.sum(axis=1)


def eight_bit_fits(graph: IntGraph, op: Op) -> bool:
    """The 8-bit paths apply: 8-bit input, int32 contract, and every partial sum of
    C + Σ w·xu (|w·xu| ≤ 255·|w|) provably inside int32."""
    x = graph.tensors[op.inputs[0]]
    if x.dtype not in ("int8", "uint8") or int(op.attrs.get("acc_bits", 32)) != 32:
        return False
    w = np.abs(weight_codes(op).astype(np.int64)).reshape(weight_shape(op)[0], -1)
    bias = np.abs(_eight_bit_bias(graph, op))
    return int((bias + 255 * w.sum(axis=1)).max(initial=0)) < INT32_LIMIT


def packed_path(graph: IntGraph, op: Op) -> str:
    """How the kernel forms the products (see iq_conv_packed_impl.h)."""
    if not eight_bit_fits(graph, op):
        return "generic"
    fmt = weight_format(op)
    groups, cout_g, k = _geometry(graph, op)
    if fmt == "int4":
        group_bytes = cout_g * _packed.row_bytes(fmt, k)
        aligned = groups == 1 or group_bytes % 4 == 0
        return "lanes" if cout_g >= LANES_BLOCK and aligned else "direct"
    if cout_g < MIN_TABLE_CHANNELS:
        return "direct"
    return "product" if fmt == "pow2" else "subset"


def packed_scratch_bytes(graph: IntGraph, op: Op) -> int:
    """col (K rounded up to 8 inputs, then to 4 bytes) + tables + one int32 sum per channel."""
    path = packed_path(graph, op)
    _, cout_g, k = _geometry(graph, op)
    kp = -(-k // 8) * 8
    item = np.dtype(graph.tensors[op.inputs[0]].dtype).itemsize if path == "generic" else 1
    col = -(-kp * item // 4) * 4
    if path not in TABLES:
        return col
    chunk, per_input = TABLES[path]
    coded = kp if path == "subset" else -(-k // 2) * 2  # whole plane bytes / nibble bytes
    return col + min(coded, chunk) * per_input + 4 * cout_g  # tables, then int32 sums


def lanes_layout(op: Op) -> tuple[np.ndarray, np.ndarray]:
    """The int4 weights for the lanes path: (blocks, rows). Per group, blocks of eight channels
    with one uint32 word per input k (channel 2j in bits 4j.., channel 2j+1 in bits 16+4j..,
    as w + 8) and a zero word after a block of odd K, so that a block is exactly its eight
    IntGraph rows' bytes; the remaining rows of every group stay as in IntGraph (uint8)."""
    shape = weight_shape(op)
    groups = int(op.attrs.get("groups", 1))
    cout_g, k = shape[0] // groups, math.prod(shape[1:])
    codes = weight_codes(op).astype(np.int64).reshape(shape[0], k)
    packed = op.consts["weight"]
    blocks: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    for g in range(groups):
        grp = codes[g * cout_g:(g + 1) * cout_g]
        full = cout_g // LANES_BLOCK * LANES_BLOCK
        for j in range(0, full, LANES_BLOCK):
            wu = (grp[j:j + LANES_BLOCK] + 8).astype(np.uint32)  # (8, K)
            words = np.zeros(k + (k & 1), dtype=np.uint32)
            for lane in range(4):
                words[:k] |= wu[2 * lane] << (4 * lane)
                words[:k] |= wu[2 * lane + 1] << (16 + 4 * lane)
            blocks.append(words)
        rows.append(packed[g * cout_g + full:(g + 1) * cout_g].ravel())
    return _arrays(blocks, np.uint32, rows, packed)


def block_layout(op: Op) -> tuple[np.ndarray, np.ndarray]:
    """Weights for the table paths: (blocks, rows). Per group, blocks of four channels hold,
    per plane, one uint16 per nibble position (channel j's nibble in bits 4j..4j+3, the nibble
    positions of an IntGraph row in order): exactly the four rows' bytes, rearranged. The
    remaining rows of every group stay as in IntGraph (uint8)."""
    shape = weight_shape(op)
    groups = int(op.attrs.get("groups", 1))
    cout_g = shape[0] // groups
    packed = op.consts["weight"]
    planes = 2 if weight_format(op) == "int2" else 1
    blocks: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    for g in range(groups):
        grp = packed[g * cout_g:(g + 1) * cout_g]
        full = cout_g // MIN_TABLE_CHANNELS * MIN_TABLE_CHANNELS
        for j in range(0, full, MIN_TABLE_CHANNELS):
            for plane in np.split(grp[j:j + MIN_TABLE_CHANNELS], planes, axis=1):
                nib = np.stack([plane & 0xF, plane >> 4], axis=2).reshape(4, -1)
                blocks.append(sum(nib[c].astype(np.uint16) << (4 * c) for c in range(4)))
        rows.append(grp[full:].ravel())
    return _arrays(blocks, np.uint16, rows, packed)


def _arrays(blocks: list[np.ndarray], dtype, rows: list[np.ndarray], packed: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    b = np.concatenate(blocks).astype(dtype) if blocks else np.zeros(0, dtype)
    r = np.concatenate(rows).astype(np.uint8) if rows else np.zeros(0, np.uint8)
    assert b.nbytes + r.nbytes == packed.nbytes, "a C layout keeps the byte count"
    return b, r


class PackedLayer:
    """A packed conv / fully_connected ready to emit: template instance, constants."""

    def __init__(self, graph: IntGraph, op: Op) -> None:
        x, y = graph.tensors[op.inputs[0]], graph.tensors[op.output]
        self.path = packed_path(graph, op)
        self.format = weight_format(op)
        self.tin, self.tout = x.dtype, y.dtype
        self.mode = requant_mode(op)
        self.tile = None  # the tiled int8 kernels (ops/_conv_tile.py) never take packed weights
        if self.path == "generic":
            w = weight_codes(op).astype(np.int64).reshape(weight_shape(op)[0], -1)
            z = int(op.attrs["input_zero_point"])
            self.bias = op.consts["bias"].astype(np.int64) - z * w.sum(axis=1)
            bound = int((np.abs(w).sum(axis=1) * dtype_max_abs(x.dtype)).max(initial=0))
            fits = (int(op.attrs["acc_bits"]) == 32 and bound < INT32_LIMIT
                    and int(np.abs(self.bias).max(initial=0)) < INT32_LIMIT)
            self.acc = 32 if fits else 64
        else:
            self.bias, self.acc = _eight_bit_bias(graph, op), 32
        # the channel blocks (word / halfword arrays) and the remaining IntGraph rows
        self.blocks, self.rows = np.zeros(0, np.uint8), op.consts["weight"].ravel()
        if self.path == "lanes":
            self.blocks, self.rows = lanes_layout(op)
        elif self.path in TABLES:
            self.blocks, self.rows = block_layout(op)
        kind = "conv" if op.kind == "conv" else "fc"
        rq = self.mode.removeprefix("IQ_RQ_").lower()
        self.instance = (f"iq_{kind}_{self.format}_{self.path}_{SHORT[self.tin]}_"
                         f"{SHORT[self.tout]}_a{self.acc}_{rq}")
        self.kind = op.kind

    @property
    def bias_ctype(self) -> str:
        return "int32_t" if self.acc == 32 else "int64_t"

    def source(self) -> str:
        lines = [
            f"#define IQ_FN {self.instance}",
            f"#define IQ_TIN {C_TYPE[self.tin]}",
            f"#define IQ_TOUT {C_TYPE[self.tout]}",
            f"#define IQ_MODE {self.mode}",
            f"#define IQ_PK_FORMAT {FORMAT_MACRO[self.format]}",
            f"#define IQ_PK_PATH {PATHS.index(self.path)}",
            f"#define IQ_ACC {self.acc}",
            f"#define IQ_PK_BLOCK4 {int(self.path in TABLES)}",
        ]
        if self.kind == "fully_connected":
            lines.append("#define IQ_FC_TEMPLATE 1")
        lines.append('#include "iq_conv_packed_impl.h"')
        return "\n".join(lines) + "\n"

    @property
    def weight_nbytes(self) -> int:
        return int(self.blocks.nbytes + self.rows.nbytes)

    def declaration(self) -> str:
        params = "iq_fc_params_t" if self.kind == "fully_connected" else "iq_conv_params_t"
        return (f"void {self.instance}(const {params}* p, const {C_TYPE[self.tin]}* x, "
                f"const void* wb, const uint8_t* w, const {self.bias_ctype}* bias, "
                f"const int32_t* mult, const int32_t* shift, {C_TYPE[self.tout]}* y, "
                f"void* scratch);\n")


def emit_packed_consts(em, op: Op, p: str) -> tuple[PackedLayer, list[str]]:
    """The template instance of a packed layer and its four constant arrays."""
    layer = PackedLayer(em.g, op)
    em.add_kernel_instance(layer.instance, layer.declaration(), layer.source())
    wb = wr = None
    if layer.blocks.size:
        ctype = {np.dtype(np.uint32): "uint32_t", np.dtype(np.uint16): "uint16_t"}
        wb = em.const_array(f"{p}_weight_blocks", ctype[layer.blocks.dtype], layer.blocks)
    if layer.rows.size:
        wr = em.const_array(f"{p}_weight", "uint8_t", layer.rows)
    # no NULL pointers (the kernel offsets both by 0 when an array is absent)
    wb_arg = f"(const void*){wb or wr}"
    wr_arg = wr or f"(const uint8_t*){wb}"
    b = em.const_array(f"{p}_bias", layer.bias_ctype, layer.bias)
    m = em.const_array(f"{p}_multiplier", "int32_t", op.consts["multiplier"])
    s = em.const_array(f"{p}_shift", "int32_t", op.consts["shift"])
    return layer, [wb_arg, wr_arg, b, m, s]
