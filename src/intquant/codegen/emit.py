"""Generate a self-contained C99 project from an IntGraph.

Output folder (``export_c``):
  <name>.h            the API: element typedefs, sizes, shapes, scale/zero point as exact integers
  <name>.c            weights as ``const`` arrays (flash), op parameters, one static arena, and
                      ``<name>_run``: the call sequence with offsets fixed by the memory planner
  <name>_kernels.c    the conv / fully_connected template instances this model needs
  <name>_weights.S    only above BINARY_WEIGHTS_THRESHOLD bytes of constants: the arrays as
  <name>_weights.bin  raw little-endian bytes (.incbin), declared ``extern const`` in <name>.c
  iq_*.h, iq_*.c      the hand-written runtime (copied from ``runtime/``)
  <name>_host_main.c  host test driver (stdin -> stdout), kept apart from the library
  m0/                 Cortex-M0 startup, linker script and semihosting test main
  Makefile, <name>_info.json

Offline transformations (integers only, exact): the conv/linear input zero point is folded into
the bias (bias' = bias − z_in·Σw, CMSIS-NN style; the im2col buffer pads with z_in so this holds
at the borders too), and an accumulator width that provably fits int32 is used where it does.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..intgraph import ACTIVATION_DTYPES, IntGraph, Op, TensorInfo, weight_bytes
from .conv_tile import Conv16Layer, TileRequant, prepare_conv16, tile_requant
from .depthwise import DepthwiseLayer, prepare_depthwise
from .planner import ARENA, INPUT, OUTPUT, MemoryPlan, is_fast8, plan_memory

RUNTIME_FILES = (
    "iq_runtime.h",
    "iq_kernels.h",
    "iq_dot.h",
    "iq_conv_impl.h",
    "iq_conv16_impl.h",
    "iq_requant.h",
    "iq_requant.c",
    "iq_depthwise.h",
    "iq_depthwise_impl.h",
    "iq_depthwise.c",
    "iq_dot8.c",
    "iq_ops.c",
    "iq_lrn.h",
    "iq_lrn.c",
)
C_TYPE = {
    "int8": "int8_t",
    "uint8": "uint8_t",
    "int16": "int16_t",
    "int32": "int32_t",
    "int64": "int64_t",
}
DTYPE_CODE = {"int8": "IQ_S8", "uint8": "IQ_U8", "int16": "IQ_S16", "int32": "IQ_S32"}
SHORT = {"int8": "s8", "uint8": "u8", "int16": "s16"}
INT32_LIMIT = 2**31
# Above this many bytes of constants, arrays go to <name>_weights.bin, pulled in by the small
# assembly file <name>_weights.S (.incbin): a C initializer costs ~5 characters per byte and
# gcc's memory and time grow with it (VGG-19's 144 MB of weights made a 729 MB model.c).
BINARY_WEIGHTS_THRESHOLD = 4 * 2**20


def window_fields(kernel, attrs: dict[str, Any], dilation) -> dict[str, int]:
    """The sliding-window geometry conv and pool parameter structs share (C field names)."""
    return {
        "k_h": int(kernel[0]),
        "k_w": int(kernel[1]),
        "stride_h": attrs["stride"][0],
        "stride_w": attrs["stride"][1],
        "pad_top": attrs["padding"][0],
        "pad_left": attrs["padding"][1],
        "dil_h": dilation[0],
        "dil_w": dilation[1],
    }


@dataclass
class ExportResult:
    """What ``export_c`` wrote and the numbers a user needs before flashing."""

    out_dir: Path
    name: str
    paths: list[Path]
    arena_bytes: int
    arena_lower_bound: int
    weight_bytes: int
    plan: MemoryPlan
    macs: int
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.name}: weights {self.weight_bytes} B (flash), arena {self.arena_bytes} B "
            f"(lower bound {self.arena_lower_bound} B), {self.macs} MACs per inference"
        )


# ----------------------------------------------------------------------------------------------
# Small formatting helpers
# ----------------------------------------------------------------------------------------------


def c_identifier(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "_" for ch in text)
    return out if out and not out[0].isdigit() else "_" + out


def c_int(v: int) -> str:
    """A C99 integer literal for any value in the int64 range (INT64_MIN needs an expression)."""
    v = int(v)
    if v == -(2**63):
        return "(-INT64_C(9223372036854775807) - 1)"
    if v == -(2**31):
        return "(-2147483647 - 1)"
    if abs(v) >= 2**31:
        return f"INT64_C({v})"
    return str(v)


def c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 16) -> str:
    if ctype == "uint32_t":
        flat = [f"{int(v)}u" for v in np.asarray(values).ravel().tolist()]
    else:
        flat = [c_int(v) for v in np.asarray(values).ravel().tolist()]
    if not flat:
        flat = ["0"]
    lines = [", ".join(flat[i : i + per_line]) for i in range(0, len(flat), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    {body}\n}};\n"


def scale_as_rational(scale: float) -> tuple[int, int]:
    """A binary float is exactly num / 2^k: return (num, k) with k possibly negative."""
    f = Fraction(float(scale))
    den = f.denominator
    k = den.bit_length() - 1
    if den != 1 << k:
        raise ValueError(f"scale {scale} is not a binary fraction")
    num = f.numerator
    if k == 0:  # integer scale: strip trailing zero bits into a negative exponent
        while num and num % 2 == 0:
            num //= 2
            k -= 1
    return num, k


def dtype_max_abs(dtype: str) -> int:
    lo, hi = ACTIVATION_DTYPES[dtype]
    return max(abs(lo), abs(hi))


# ----------------------------------------------------------------------------------------------
# Conv / FC preparation: folded bias, accumulator width, template instance
# ----------------------------------------------------------------------------------------------


@dataclass
class WeightLayer:
    """A conv or fully_connected op ready to emit: template instance and its constants."""

    instance: str
    acc: int  # 32 or 64: width of the kernel's accumulator and folded bias
    chunk: int  # products per int32 partial sum (acc 64)
    tin: str
    tw: str
    tout: str
    weight: np.ndarray
    bias: np.ndarray
    mode: str
    fast8: bool = False
    tile: TileRequant | None = None  # conv_tile.py: requantized in batches over positions

    @property
    def weight_ctype(self) -> str:
        return "uint8_t" if self.fast8 else C_TYPE[self.tw]

    @property
    def bias_ctype(self) -> str:
        if self.fast8:
            return "uint32_t"
        return "int32_t" if self.acc == 32 else "int64_t"


def requant_mode(op: Op) -> str:
    """Same dispatch order as numerics.apply_multiplier: pow2, then int64, then rounding."""
    rounding = op.attrs.get("rounding", "double")
    if rounding == "pow2":
        return "IQ_RQ_POW2"
    if op.attrs.get("acc_bits", 32) == 64:
        return "IQ_RQ_X16"
    return "IQ_RQ_SINGLE" if rounding == "single" else "IQ_RQ_DOUBLE"


def prepare_weight_layer(graph: IntGraph, op: Op) -> WeightLayer:
    """Fold −z_in·Σw into the bias and pick the narrowest accumulator that cannot overflow.

    The kernel computes Σ w·x (raw x, padding = z_in) + bias'. Partial sums are bounded by
    max|x|·Σ|w|; int32 is used when that bound and |bias'| are below 2^31 and the op's contract
    accumulator is int32 (then the final sum, the true accumulator, fits int32 too). Otherwise
    products are summed in int32 chunks short enough never to overflow, chunks in int64.
    """
    x = graph.tensors[op.inputs[0]]
    y = graph.tensors[op.output]
    w = op.consts["weight"]
    cout = w.shape[0]
    w2 = w.reshape(cout, -1).astype(np.int64)
    z = int(op.attrs["input_zero_point"])
    bias = op.consts["bias"].astype(np.int64) - z * w2.sum(axis=1)
    xmax = dtype_max_abs(x.dtype)
    partial_bound = int((np.abs(w2).sum(axis=1) * xmax).max(initial=0))
    fits32 = (
        op.attrs.get("acc_bits", 32) == 32
        and partial_bound < INT32_LIMIT
        and int(np.abs(bias).max(initial=0)) < INT32_LIMIT
    )
    wmax = max(1, int(np.abs(w2).max(initial=1)))
    chunk = max(1, (INT32_LIMIT - 1) // (xmax * wmax))
    acc = 32 if fits32 else 64
    tin, tw, tout = SHORT[x.dtype], SHORT[str(w.dtype)], SHORT[y.dtype]
    kind = "conv" if op.kind == "conv" else "fc"
    mode = requant_mode(op)
    fast8 = is_fast8(graph, op)
    if fast8:
        acc, chunk = 32, 0
        w2, bias = offset_binary_layout(w2, bias, op, xoff=128 if x.dtype == "int8" else 0)
    suffix = "_fast" if fast8 else ("" if acc == 32 else f"_c{chunk}")
    rq = mode.removeprefix("IQ_RQ_").lower()
    instance = f"iq_{kind}_{tin}_{tw}_{tout}_a{acc}_{rq}{suffix}"
    return WeightLayer(instance, acc, chunk, x.dtype, str(w.dtype), y.dtype, w2, bias, mode, fast8)


def offset_binary_layout(
    w2: np.ndarray, bias: np.ndarray, op: Op, xoff: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias for iq_dot.h: wu = w + 128 as uint8, four channels interleaved.

    Σ w·x = Σ wu·xu − xoff·Σwu − 128·Σxu + 128·xoff·K, with xu = x + xoff; the kernel
    subtracts 128·Σxu per receptive field, the channel constants go into the bias, which is
    stored modulo 2^32 (the kernel's uint32 arithmetic wraps; the true accumulator fits int32).
    Within each group: blocks of four channels as [k][4], then the 1-3 remaining rows.
    """
    groups = int(op.attrs.get("groups", 1))
    cout, k = w2.shape
    wu = w2 + 128
    bias = bias - xoff * wu.sum(axis=1) + 128 * xoff * k
    blocks = []
    per_group = cout // groups
    for g in range(groups):
        rows = wu[g * per_group : (g + 1) * per_group]
        full = per_group // 4 * 4
        for j in range(0, full, 4):
            blocks.append(rows[j : j + 4].T.ravel())
        blocks.extend(rows[full:])
    layout = np.concatenate(blocks) if blocks else wu.ravel()
    return layout.astype(np.uint8), np.mod(bias, 2**32).astype(np.uint64)


def attach_tile(graph: IntGraph, op: Op, layer: WeightLayer) -> WeightLayer:
    """Switch a fast8 conv to the tiled instance (conv_tile.py) when its constants allow; a
    fully_connected then runs as a 1x1 conv at one position (the same instance)."""
    if layer.fast8:
        layer.tile = tile_requant(graph, op, layer.bias)
        if layer.tile is not None:
            layer.instance = layer.instance.replace("iq_fc_", "iq_conv_", 1)
            layer.instance += "_rows" if layer.tile.rows is not None else "_tile"
    return layer


def tile_params(tile: TileRequant) -> dict[str, int]:
    """iq_conv_params_t fields of a tiled conv instance."""
    if tile.rows is None:
        return {"tile": tile.tile, "sign": int(tile.sign)}
    return {**{k: tile.rows[k] for k in ("tile", "band", "row_w")}, "sign": int(tile.sign)}


def instance_source(layer: WeightLayer, kind: str) -> str:
    lines = [
        f"#define IQ_FN {layer.instance}",
        f"#define IQ_TIN {C_TYPE[layer.tin]}",
        f"#define IQ_TW {C_TYPE[layer.tw]}",
        f"#define IQ_TOUT {C_TYPE[layer.tout]}",
        f"#define IQ_ACC {layer.acc}",
        f"#define IQ_CHUNK {layer.chunk}",
        f"#define IQ_MODE {layer.mode}",
    ]
    if layer.fast8:
        lines[2] = "#define IQ_TW uint8_t"
        lines.append("#define IQ_FAST8 1")
    if kind == "fully_connected":
        lines.append("#define IQ_FC_TEMPLATE 1")
    if layer.tile is not None:
        lines.append("#define IQ_TILE 1")
        if layer.tile.rows is not None:
            lines.append("#define IQ_ROWS 1")
    lines.append('#include "iq_conv_impl.h"')
    return "\n".join(lines) + "\n"


def instance_declaration(layer: WeightLayer, kind: str) -> str:
    if layer.tile is not None:
        types = f"{C_TYPE[layer.tin]}, {C_TYPE[layer.tout]}"
        return f"IQ_CONV_TILE_DECLARE({layer.instance}, {types});\n"
    macro = "IQ_FC_DECLARE" if kind == "fully_connected" else "IQ_CONV_DECLARE"
    tb = layer.bias_ctype
    return (
        f"{macro}({layer.instance}, {C_TYPE[layer.tin]}, {layer.weight_ctype}, "
        f"{C_TYPE[layer.tout]}, {tb});\n"
    )


# ----------------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------------


def spatial(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of a (C, L) or (C, H, W) tensor."""
    if len(shape) == 2:
        return shape[0], 1, shape[1]
    return shape[0], shape[1], shape[2]


def pad4(values: list[int], fill: int) -> list[int]:
    return [fill] * (4 - len(values)) + list(values)


class _Emitter:
    def __init__(
        self, graph: IntGraph, name: str, plan: MemoryPlan, binary_weights: bool = False
    ) -> None:
        self.g = graph
        self.name = name
        self.plan = plan
        self.data: list[str] = []  # const arrays and parameter structs
        self.calls: list[str] = []  # body of <name>_run
        self.instances: dict[str, tuple[WeightLayer, str]] = {}
        self.dw_instances: dict[str, DepthwiseLayer] = {}
        self.conv16_instances: dict[str, Conv16Layer] = {}
        self.weight_bytes = 0
        # (symbol, little-endian bytes, alignment) of arrays kept out of the C source
        self.blobs: list[tuple[str, bytes, int]] | None = [] if binary_weights else None

    # -- pointers ------------------------------------------------------------------------------
    def ptr(self, tensor: str, const: bool) -> str:
        where, off = self.plan.locations[tensor]
        if where == INPUT:
            return "(const void*)input"
        if where == OUTPUT:
            return "(const void*)output" if const else "(void*)output"
        assert where == ARENA
        return f"({'const ' if const else ''}void*)(IQ_ARENA + {off})"

    def typed(self, tensor: str, const: bool) -> str:
        ct = C_TYPE[self.g.tensors[tensor].dtype]
        return f"({'const ' if const else ''}{ct}*){self.ptr(tensor, const)}"

    def code(self, tensor: str) -> str:
        return DTYPE_CODE[self.g.tensors[tensor].dtype]

    def size(self, tensor: str) -> int:
        return math.prod(self.g.tensors[tensor].shape)

    def const_array(self, ident: str, ctype: str, values: np.ndarray) -> str:
        self.weight_bytes += int(np.asarray(values).size) * np.dtype(ctype[:-2]).itemsize
        if self.blobs is None:
            self.data.append(c_array(ctype, ident, values))
            return ident
        return self.binary_array(ident, ctype, values)

    def binary_array(self, ident: str, ctype: str, values: np.ndarray) -> str:
        """An ``extern const`` array whose bytes live in <name>_weights.bin (little-endian).

        The symbol is global, so it carries the model name to stay unique in a firmware.
        """
        assert self.blobs is not None
        symbol = f"{self.name}_{ident}"
        dt = np.dtype(ctype[:-2]).newbyteorder("<")
        flat = np.asarray(values).ravel()
        if flat.size == 0:
            flat = np.zeros(1, dtype=dt)
        self.blobs.append((symbol, flat.astype(dt).tobytes(), max(4, dt.itemsize)))
        self.data.append(f"extern const {ctype} {symbol}[{flat.size}];\n")
        return symbol

    # -- ops -----------------------------------------------------------------------------------
    def emit(self) -> None:
        for i, op in enumerate(self.g.ops):
            if not hasattr(self, f"op_{op.kind}"):  # one emitter method per supported kind
                raise ValueError(f"op {i} {op.name!r}: kind {op.kind!r} has no C kernel")
            self.calls.append(f"    /* op {i}: {op.kind} '{op.name}' -> {op.output} */")
            self.calls.append(f"    IQ_PROFILE_MARK({i});")
            getattr(self, f"op_{op.kind}")(i, op, f"op{i}")
        self.calls.append("    IQ_PROFILE_MARK(-1);")

    def params(self, ctype: str, ident: str, fields: dict[str, int | str]) -> str:
        body = ", ".join(
            f".{k} = {v if isinstance(v, str) else c_int(v)}" for k, v in fields.items()
        )
        self.data.append(f"static const {ctype} {ident} = {{{body}}};\n")
        return ident

    def weight_layer(self, i: int, op: Op, p: str) -> tuple[WeightLayer, list[str]]:
        layer = attach_tile(self.g, op, prepare_weight_layer(self.g, op))
        self.instances[layer.instance] = (layer, "conv" if layer.tile is not None else op.kind)
        if layer.tile is not None:
            w = self.const_array(f"{p}_weight", "uint8_t", layer.tile.weight)
            b = self.const_array(f"{p}_bias", "uint32_t", layer.tile.bias)
            return layer, [w, b, self.rqw_array(f"{p}_rq", layer.tile.rq)]
        w = self.const_array(f"{p}_weight", layer.weight_ctype, layer.weight)
        b = self.const_array(f"{p}_bias", layer.bias_ctype, layer.bias)
        m = self.const_array(f"{p}_multiplier", "int32_t", op.consts["multiplier"])
        s = self.const_array(f"{p}_shift", "int32_t", op.consts["shift"])
        return layer, [w, b, m, s]

    def rqw_array(self, ident: str, rows: list[tuple[int, ...]]) -> str:
        """An iq_rqw_t array (iq_requant.h): a_lo, width, m, c_hi, u0, c_lo, sh, d."""
        self.weight_bytes += 24 * len(rows)
        if self.blobs is None:
            body = ",\n    ".join(
                "{" + ", ".join(c_int(v) if k == 0 else f"{v}u" for k, v in enumerate(r)) + "}"
                for r in rows
            )
            self.data.append(f"static const iq_rqw_t {ident}[{len(rows)}] = {{\n    {body}\n}};\n")
            return ident
        symbol = f"{self.name}_{ident}"
        raw = b"".join(
            np.array(r[:5], dtype="<i8").astype("<u4").tobytes()
            + np.array([r[5]], dtype="<u2").tobytes()
            + np.array(r[6:], dtype="<u1").tobytes()
            for r in rows
        )
        self.blobs.append((symbol, raw, 4))
        self.data.append(f"extern const iq_rqw_t {symbol}[{len(rows)}];\n")
        return symbol

    def depthwise(self, i: int, op: Op, p: str) -> bool:
        """Emit ``op`` on the depthwise row kernels (depthwise.py) if they apply."""
        layer = prepare_depthwise(self.g, op)
        if layer is None:
            return False
        self.dw_instances[layer.instance] = layer
        w = self.const_array(f"{p}_weight", "int8_t", layer.weight)
        rq = self.rqw_array(f"{p}_rq", layer.rq)
        prm = self.params("iq_dw_params_t", f"{p}_params", layer.params)
        off, _ = self.plan.scratch[i]
        args = [f"&{prm}", self.typed(op.inputs[0], True), w, rq, self.typed(op.output, False)]
        args.append(f"(void*)(IQ_ARENA + {off})")
        self.calls.append(f"    {layer.instance}({', '.join(args)});")
        return True

    def conv16(self, i: int, op: Op, p: str) -> bool:
        """Emit a 16x8 conv on iq_conv16_impl.h (conv_tile.py) if it applies."""
        layer = prepare_conv16(self.g, op)
        if layer is None:
            return False
        self.conv16_instances[layer.instance] = layer
        w = self.const_array(f"{p}_weight", "uint8_t", layer.weight)
        b = self.const_array(f"{p}_bias", "uint32_t", layer.bias)
        rq = self.rqw_array(f"{p}_rq", layer.rq)
        a = op.attrs
        cin, h, wd = spatial(self.g.tensors[op.inputs[0]].shape)
        cout, ho, wo = spatial(self.g.tensors[op.output].shape)
        kh, kw = op.consts["weight"].shape[2:]
        fields = {"in_c": cin, "in_h": h, "in_w": wd, "out_c": cout, "out_h": ho, "out_w": wo}
        fields.update(window_fields((kh, kw), a, a["dilation"]))
        fields.update(groups=1, input_zero_point=a["input_zero_point"], act_min=a["act_min"])
        prm = self.params("iq_conv_params_t", f"{p}_params", {**fields, **layer.params})
        off, _ = self.plan.scratch[i]
        args = [f"&{prm}", self.typed(op.inputs[0], True), w, b, rq, self.typed(op.output, False)]
        self.calls.append(f"    {layer.instance}({', '.join(args)}, (void*)(IQ_ARENA + {off}));")
        return True

    def op_conv(self, i: int, op: Op, p: str) -> None:
        if self.depthwise(i, op, p) or self.conv16(i, op, p):
            return
        a = op.attrs
        layer, consts = self.weight_layer(i, op, p)
        cin, h, w = spatial(self.g.tensors[op.inputs[0]].shape)
        cout, ho, wo = spatial(self.g.tensors[op.output].shape)
        kh, kw = op.consts["weight"].shape[2:]
        prm = self.params(
            "iq_conv_params_t",
            f"{p}_params",
            {
                "in_c": cin,
                "in_h": h,
                "in_w": w,
                "out_c": cout,
                "out_h": ho,
                "out_w": wo,
                **window_fields((kh, kw), a, a["dilation"]),
                "groups": a["groups"],
                "input_zero_point": a["input_zero_point"],
                "output_zero_point": a["output_zero_point"],
                "act_min": a["act_min"],
                "act_max": a["act_max"],
                "mode": layer.mode,
                **(tile_params(layer.tile) if layer.tile is not None else {}),
            },
        )
        off, _ = self.plan.scratch[i]
        col = f"(void*)(IQ_ARENA + {off})"
        args = ", ".join(
            [f"&{prm}", self.typed(op.inputs[0], True), *consts, self.typed(op.output, False), col]
        )
        self.calls.append(f"    {layer.instance}({args});")

    def op_fully_connected(self, i: int, op: Op, p: str) -> None:
        a = op.attrs
        layer, consts = self.weight_layer(i, op, p)
        if layer.tile is not None:  # a 1x1 conv at one position (conv_tile.py)
            n_out, n_in = op.consts["weight"].shape
            fields = {"in_c": n_in, "in_h": 1, "in_w": 1, "out_c": n_out, "out_h": 1, "out_w": 1}
            fields.update(window_fields((1, 1), {"stride": [1, 1], "padding": [0, 0]}, [1, 1]))
            keys = ("input_zero_point", "output_zero_point", "act_min", "act_max")
            fields.update({k: a[k] for k in keys}, groups=1, mode=layer.mode)
            fields.update(tile_params(layer.tile))
            prm = self.params("iq_conv_params_t", f"{p}_params", fields)
            x, y = self.typed(op.inputs[0], True), self.typed(op.output, False)
            off = self.plan.scratch[i][0]
            self.calls.append(
                f"    {layer.instance}(&{prm}, {x}, {', '.join(consts)}, {y}, "
                f"(void*)(IQ_ARENA + {off}));"
            )
            return
        prm = self.params(
            "iq_fc_params_t",
            f"{p}_params",
            {
                "in_features": op.consts["weight"].shape[1],
                "out_features": op.consts["weight"].shape[0],
                "output_zero_point": a["output_zero_point"],
                "act_min": a["act_min"],
                "act_max": a["act_max"],
                "mode": layer.mode,
            },
        )
        args = ", ".join(
            [
                f"&{prm}",
                self.typed(op.inputs[0], True),
                *consts,
                self.typed(op.output, False),
                f"(void*)(IQ_ARENA + {self.plan.scratch[i][0]})"
                if i in self.plan.scratch
                else "NULL",
            ]
        )
        self.calls.append(f"    {layer.instance}({args});")

    def op_add(self, i: int, op: Op, p: str) -> None:
        a = op.attrs
        keys = (
            "a_zero_point",
            "b_zero_point",
            "left_shift",
            "a_multiplier",
            "a_shift",
            "b_multiplier",
            "b_shift",
            "output_multiplier",
            "output_shift",
            "output_zero_point",
            "act_min",
            "act_max",
        )
        prm = self.params(
            "iq_add_params_t", f"{p}_params", {**{k: a[k] for k in keys}, "mode": requant_mode(op)}
        )
        ta, tb = op.inputs
        self.calls.append(
            f"    iq_add(&{prm}, {self.ptr(ta, True)}, {self.code(ta)}, {self.ptr(tb, True)}, "
            f"{self.code(tb)}, {self.ptr(op.output, False)}, {self.code(op.output)}, "
            f"{self.size(op.output)});"
        )

    def op_rescale(self, i: int, op: Op, p: str) -> None:
        a = op.attrs
        keys = (
            "input_zero_point_shifted",
            "left_shift",
            "multiplier",
            "shift",
            "output_zero_point",
            "act_min",
            "act_max",
        )
        prm = self.params(
            "iq_rescale_params_t",
            f"{p}_params",
            {**{k: a[k] for k in keys}, "mode": requant_mode(op)},
        )
        x = op.inputs[0]
        self.calls.append(
            f"    iq_rescale(&{prm}, {self.ptr(x, True)}, {self.code(x)}, "
            f"{self.ptr(op.output, False)}, {self.code(op.output)}, {self.size(op.output)});"
        )

    def op_clamp(self, i: int, op: Op, p: str) -> None:
        x = op.inputs[0]
        self.calls.append(
            f"    iq_clamp({self.ptr(x, True)}, {self.code(x)}, {self.ptr(op.output, False)}, "
            f"{self.code(op.output)}, {self.size(x)}, {op.attrs['act_min']}, "
            f"{op.attrs['act_max']});"
        )

    def op_lut(self, i: int, op: Op, p: str) -> None:
        x = op.inputs[0]
        table = op.consts["table"]
        xt = self.g.tensors[x].dtype
        amin, amax = op.attrs["act_min"], op.attrs["act_max"]
        if xt in ("int8", "uint8"):
            tdt = str(table.dtype)
            t = self.const_array(f"{p}_table", C_TYPE[tdt], table)
            self.calls.append(
                f"    iq_lut8({self.ptr(x, True)}, {self.code(x)}, {t}, {DTYPE_CODE[tdt]}, "
                f"{self.ptr(op.output, False)}, {self.code(op.output)}, {self.size(x)}, "
                f"{amin}, {amax});"
            )
        else:
            t = self.const_array(f"{p}_table", "int32_t", table)
            self.calls.append(
                f"    iq_lut16({self.typed(x, True)}, {t}, {self.ptr(op.output, False)}, "
                f"{self.code(op.output)}, {self.size(x)}, {amin}, {amax});"
            )

    def pool(self, i: int, op: Op, p: str, fn: str, dilation: list[int]) -> None:
        a = op.attrs
        c, h, w = spatial(self.g.tensors[op.inputs[0]].shape)
        _, ho, wo = spatial(self.g.tensors[op.output].shape)
        prm = self.params(
            "iq_pool_params_t",
            f"{p}_params",
            {
                "channels": c,
                "in_h": h,
                "in_w": w,
                "out_h": ho,
                "out_w": wo,
                **window_fields(a["kernel"], a, dilation),
                "count_include_pad": a.get("count_include_pad", 0),
                "zero_point": a.get("zero_point", 0),
                "act_min": a["act_min"],
                "act_max": a["act_max"],
            },
        )
        x = op.inputs[0]
        self.calls.append(
            f"    {fn}(&{prm}, {self.ptr(x, True)}, {self.ptr(op.output, False)}, {self.code(x)});"
        )

    def op_max_pool(self, i: int, op: Op, p: str) -> None:
        self.pool(i, op, p, "iq_max_pool", op.attrs["dilation"])

    def op_avg_pool(self, i: int, op: Op, p: str) -> None:
        self.pool(i, op, p, "iq_avg_pool", [1, 1])

    def op_softmax(self, i: int, op: Op, p: str) -> None:
        a = op.attrs
        x = op.inputs[0]
        shape = self.g.tensors[x].shape
        table = op.consts["exp_table"]
        t = self.const_array(f"{p}_exp_table", "int32_t", table)
        prm = self.params(
            "iq_softmax_params_t",
            f"{p}_params",
            {
                "rows": math.prod(shape[:-1]),
                "row_len": shape[-1],
                "lut_shift": a["lut_shift"],
                "table_len": table.shape[0],
                "output_range": a["output_range"],
                "output_zero_point": a["output_zero_point"],
                "act_min": a["act_min"],
                "act_max": a["act_max"],
            },
        )
        self.calls.append(
            f"    iq_softmax(&{prm}, {t}, {self.ptr(x, True)}, {self.code(x)}, "
            f"{self.ptr(op.output, False)}, {self.code(op.output)});"
        )

    def op_lrn(self, i: int, op: Op, p: str) -> None:
        a = op.attrs
        x = op.inputs[0]
        shape = self.g.tensors[x].shape
        t = self.const_array(f"{p}_table", "int32_t", op.consts["table"])
        keys = (
            "size",
            "input_zero_point",
            "lut_shift",
            "left_shift",
            "multiplier",
            "shift",
            "output_zero_point",
            "act_min",
            "act_max",
        )
        prm = self.params(
            "iq_lrn_params_t",
            f"{p}_params",
            {"channels": shape[0], "inner": math.prod(shape[1:]), **{k: a[k] for k in keys}},
        )
        self.calls.append(
            f"    iq_lrn(&{prm}, {t}, {self.ptr(x, True)}, {self.code(x)}, "
            f"{self.ptr(op.output, False)}, {self.code(op.output)});"
        )

    def op_concat(self, i: int, op: Op, p: str) -> None:
        axis = op.attrs["axis"]
        out_shape = self.g.tensors[op.output].shape
        outer = math.prod(out_shape[:axis])
        inner_y = math.prod(out_shape[axis:])
        es = np.dtype(self.g.tensors[op.output].dtype).itemsize
        offset = 0
        for x in op.inputs:
            inner_x = math.prod(self.g.tensors[x].shape[axis:])
            self.calls.append(
                f"    iq_concat_part({self.ptr(op.output, False)}, {self.ptr(x, True)}, {outer}, "
                f"{inner_x}, {inner_y}, {offset}, {es});"
            )
            offset += inner_x

    def shape4(self, ident: str, values: list[int]) -> str:
        self.data.append(f"static const int32_t {ident}[4] = {{{', '.join(map(str, values))}}};\n")
        return ident

    def op_pad(self, i: int, op: Op, p: str) -> None:
        x = op.inputs[0]
        pads = op.attrs["pads"]
        ins = self.shape4(f"{p}_in_shape", pad4(list(self.g.tensors[x].shape), 1))
        outs = self.shape4(f"{p}_out_shape", pad4(list(self.g.tensors[op.output].shape), 1))
        before = self.shape4(f"{p}_before", pad4(pads[0::2], 0))
        self.calls.append(
            f"    iq_pad({self.ptr(x, True)}, {self.ptr(op.output, False)}, {ins}, {outs}, "
            f"{before}, {self.code(x)}, {op.attrs['value']});"
        )

    def op_transpose(self, i: int, op: Op, p: str) -> None:
        x = op.inputs[0]
        shape = list(self.g.tensors[x].shape)
        lead = 4 - len(shape)
        perm = list(range(lead)) + [q + lead for q in op.attrs["perm"]]
        ins = self.shape4(f"{p}_in_shape", pad4(shape, 1))
        pm = self.shape4(f"{p}_perm", perm)
        es = np.dtype(self.g.tensors[x].dtype).itemsize
        self.calls.append(
            f"    iq_transpose({self.ptr(x, True)}, {self.ptr(op.output, False)}, {ins}, {pm}, "
            f"{es});"
        )

    def op_reshape(self, i: int, op: Op, p: str) -> None:
        if (
            i in self.plan.copies
            or self.plan.locations[op.inputs[0]] != self.plan.locations[op.output]
        ):
            nbytes = self.size(op.output) * np.dtype(self.g.tensors[op.output].dtype).itemsize
            self.calls.append(
                f"    memmove({self.ptr(op.output, False)}, {self.ptr(op.inputs[0], True)}, "
                f"{nbytes});"
            )
        else:
            self.calls.append("    /* alias: same bytes, nothing to do */")


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def _tensor_defines(prefix: str, what: str, t: TensorInfo) -> list[str]:
    num, k = scale_as_rational(t.scale)
    lines = [
        f"/* {what} '{t.name}': {t.dtype} {list(t.shape)}, real = scale * (q - zero_point), */",
        f"/* scale = {prefix}_{what}_SCALE_NUM / 2^{prefix}_{what}_SCALE_LOG2_DEN exactly     */",
        f"#define {prefix}_{what}_SIZE {math.prod(t.shape)}",
        f"#define {prefix}_{what}_RANK {len(t.shape)}",
        f"#define {prefix}_{what}_SHAPE {{{', '.join(map(str, t.shape))}}}",
        f"#define {prefix}_{what}_ZERO_POINT ({t.zero_point})",
        f"#define {prefix}_{what}_SCALE_NUM {c_int(num)}",
        f"#define {prefix}_{what}_SCALE_LOG2_DEN ({k})",
    ]
    return lines


def header_source(
    graph: IntGraph, name: str, plan: MemoryPlan, weight_bytes: int, meta: dict[str, Any] | None
) -> str:
    up = c_identifier(name).upper()
    tin, tout = graph.tensors[graph.input], graph.tensors[graph.output]
    guard = f"{up}_H"
    meta_lines = [f" * {k}: {v}" for k, v in sorted((meta or {}).items())]
    lines = [
        "/*",
        f" * {name}: integer-only model generated by intquant. No float anywhere.",
        *meta_lines,
        " *",
        f" * int {name}_run(input, output): one inference, batch 1, C-contiguous PyTorch layout.",
        " * input is exactly QuantizedModel.quantize_input(x)[i], output exactly",
        " * QuantizedModel.run(...)[i]. Returns 0, or a negative error code.",
        " */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stdint.h>",
        "",
        f"typedef {C_TYPE[tin.dtype]} {name}_input_t;",
        f"typedef {C_TYPE[tout.dtype]} {name}_output_t;",
        "",
        *_tensor_defines(up, "INPUT", tin),
        "",
        *_tensor_defines(up, "OUTPUT", tout),
        "",
        "/* RAM: one static arena of activations (exact size, and its lower bound). */",
        f"#define {up}_ARENA_BYTES {plan.arena_bytes}",
        f"#define {up}_ARENA_LOWER_BOUND {plan.lower_bound}",
        "/* Flash: const weights, biases, multipliers, shifts and tables. */",
        f"#define {up}_WEIGHT_BYTES {weight_bytes}",
        "",
        f"#define {up}_ERR_NULL_ARGUMENT (-1)",
        "",
        f"int {name}_run(const {name}_input_t* input, {name}_output_t* output);",
        "",
        f"#endif /* {guard} */",
        "",
    ]
    return "\n".join(lines)


def model_source(em: _Emitter, name: str) -> str:
    decls = "".join(instance_declaration(layer, kind) for layer, kind in em.instances.values())
    decls += "".join(layer.declaration() for layer in em.dw_instances.values())
    decls += "".join(layer.declaration() for layer in em.conv16_instances.values())
    arena_words = max(1, (em.plan.arena_bytes + 3) // 4)
    return "\n".join(
        [
            f"/* {name}: const weights (flash), the arena, the call sequence. Generated. */",
            f'#include "{name}.h"',
            '#include "iq_kernels.h"',
            '#include "iq_depthwise.h"',
            '#include "iq_lrn.h"',
            "",
            "#ifdef IQ_PROFILE",
            "void iq_profile_mark(int32_t op);",
            "#define IQ_PROFILE_MARK(i) iq_profile_mark(i)",
            "#else",
            "#define IQ_PROFILE_MARK(i) ((void)0)",
            "#endif",
            "",
            decls,
            f"/* {em.plan.summary()} */",
            f"static int32_t iq_arena_words[{arena_words}];",
            "#define IQ_ARENA ((uint8_t*)iq_arena_words)",
            "",
            "".join(em.data),
            f"int {name}_run(const {name}_input_t* input, {name}_output_t* output)",
            "{",
            "    if (input == NULL || output == NULL) {",
            "        return IQ_ERR_NULL_ARGUMENT;",
            "    }",
            "    (void)iq_arena_words; /* unused when every tensor lives in input/output */",
            *em.calls,
            "    return 0;",
            "}",
            "",
        ]
    )


def weights_asm_source(blobs: list[tuple[str, bytes, int]], name: str) -> tuple[str, bytes]:
    """<name>_weights.S and <name>_weights.bin: one aligned ``.incbin`` slice per array.

    GNU as syntax common to x86-64/AArch64 gcc and arm-none-eabi-gcc (``%object``, ``.balign``).
    The .bin is found next to the .S (gcc passes its ``-I`` folders to the assembler too).
    """
    lines = [
        f"/* {name}: constant arrays (weights, biases, multipliers, shifts, tables) as raw",
        " * little-endian bytes from " + f"{name}_weights.bin. Generated. */",
        "#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__",
        f"#error \"{name}_weights.bin holds little-endian data\"",
        "#endif",
        f'    .section .rodata.{name}_weights,"a"',
    ]
    data = bytearray()
    for symbol, raw, align in blobs:
        lines += [
            f"    .balign {align}",
            f"    .global {symbol}",
            f"    .type {symbol}, %object",
            f"    .size {symbol}, {len(raw)}",
            f"{symbol}:",
            f'    .incbin "{name}_weights.bin", {len(data)}, {len(raw)}',
        ]
        data += raw
    lines += [
        "#if defined(__ELF__) && defined(__linux__)",
        '    .section .note.GNU-stack,"",%progbits',
        "#endif",
        "",
    ]
    return "\n".join(lines), bytes(data)


def fast_kernel_sources(em: _Emitter) -> list[str]:
    """The runtime .c files of the batched-requantization kernels this model uses."""
    tiled = any(layer.tile is not None for layer, _ in em.instances.values())
    sources = []
    if tiled or em.dw_instances or em.conv16_instances:
        sources.append("iq_requant.c")
    if em.dw_instances:
        sources.append("iq_depthwise.c")
    if tiled or em.conv16_instances:
        sources.append("iq_dot8.c")
    return sources


def kernels_source(em: _Emitter, name: str) -> str:
    parts = [
        f"/* {name}: conv / fully_connected instances of iq_conv_impl.h. Generated. */",
        '#include "iq_kernels.h"',
        "",
    ]
    for layer, kind in em.instances.values():
        parts.append(instance_source(layer, kind))
    parts.extend(layer.source() for layer in em.dw_instances.values())
    parts.extend(layer.source() for layer in em.conv16_instances.values())
    return "\n".join(parts)


HOST_MAIN = r"""/* Host test driver for {name} (not part of the model library).
 * Reads raw input samples ({name}_input_t x {up}_INPUT_SIZE each) from stdin until EOF and
 * writes each raw output to stdout. "--bench N" runs the first sample N times and prints the
 * elapsed wall time in nanoseconds (an integer) on stdout instead. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "{name}.h"

static {name}_input_t in_buf[{up}_INPUT_SIZE];
static {name}_output_t out_buf[{up}_OUTPUT_SIZE];

static long parse_count(const char* s)
{{
    long n = 0;
    while (*s >= '0' && *s <= '9') {{
        n = n * 10 + (*s++ - '0');
    }}
    return n;
}}

int main(int argc, char** argv)
{{
    if (argc > 2 && strcmp(argv[1], "--bench") == 0) {{
        long n = parse_count(argv[2]), i;
        struct timespec t0, t1;
        long long ns;
        if (fread(in_buf, sizeof(in_buf[0]), {up}_INPUT_SIZE, stdin) != {up}_INPUT_SIZE) {{
            return 3;
        }}
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (i = 0; i < n; ++i) {{
            if ({name}_run(in_buf, out_buf) != 0) {{
                return 2;
            }}
        }}
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
        printf("%lld\n", ns);
        return 0;
    }}
    while (fread(in_buf, sizeof(in_buf[0]), {up}_INPUT_SIZE, stdin) == {up}_INPUT_SIZE) {{
        if ({name}_run(in_buf, out_buf) != 0) {{
            return 2;
        }}
        if (fwrite(out_buf, sizeof(out_buf[0]), {up}_OUTPUT_SIZE, stdout) != {up}_OUTPUT_SIZE) {{
            return 4;
        }}
    }}
    return 0;
}}
"""

MAKEFILE = """# {name}: generated by intquant. `make` builds the host test driver; `make m0` the
# Cortex-M0 image (needs arm-none-eabi-gcc). Library sources: {lib}
CC ?= gcc
CFLAGS ?= -std=c99 -O2 -Wall -Wextra -Werror
LIB_SRCS = {lib}
ARM_CC ?= arm-none-eabi-gcc
ARM_FLAGS = -mcpu=cortex-m0 -mthumb -mfloat-abi=soft -std=c99 -O2 -ffreestanding \\
	-ffunction-sections -fdata-sections -Wall -Wextra -Werror

all: {name}_host

{name}_host: $(LIB_SRCS) {name}_host_main.c *.h
\t$(CC) $(CFLAGS) -o $@ $(LIB_SRCS) {name}_host_main.c

m0: $(LIB_SRCS) m0/*.c m0/microbit.ld
\t$(ARM_CC) $(ARM_FLAGS) -I. -nostdlib -T m0/microbit.ld -Wl,--gc-sections -o {name}_m0.elf \\
\t\t$(LIB_SRCS) m0/*.c -Wl,--start-group -lc -lgcc -Wl,--end-group

clean:
\trm -f {name}_host {name}_m0.elf

.PHONY: all m0 clean
"""


def export_c(
    graph: IntGraph,
    out_dir: str | os.PathLike,
    name: str = "model",
    *,
    meta: dict[str, Any] | None = None,
    binary_weights: bool | None = None,
) -> ExportResult:
    """Write the C project for ``graph`` to ``out_dir`` (replaced atomically).

    ``binary_weights``: constants in ``<name>_weights.bin`` + ``<name>_weights.S`` (GNU as
    ``.incbin``, for gcc and arm-none-eabi-gcc) instead of C initializers; default (None):
    only when the graph's constants exceed ``BINARY_WEIGHTS_THRESHOLD`` bytes.

    Files are written to a temporary folder next to ``out_dir`` and moved into place at the
    end, so a failure never leaves a half-written project.
    """
    if c_identifier(name) != name:
        raise ValueError(f"name {name!r} must be a C identifier (letters, digits, '_')")
    graph.validate()
    plan = plan_memory(graph)
    if binary_weights is None:
        binary_weights = weight_bytes(graph) > BINARY_WEIGHTS_THRESHOLD
    em = _Emitter(graph, name, plan, binary_weights)
    em.emit()
    out = Path(out_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        files = _write_files(tmp, graph, name, plan, em, meta)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    macs = sum(_op_macs(graph, op) for op in graph.ops)
    info = json.loads((out / f"{name}_info.json").read_text())
    return ExportResult(
        out,
        name,
        [out / f for f in files],
        plan.arena_bytes,
        plan.lower_bound,
        em.weight_bytes,
        plan,
        macs,
        info,
    )


def _op_macs(graph: IntGraph, op: Op) -> int:
    if op.kind == "conv":
        cout, cin_g, kh, kw = op.consts["weight"].shape
        return cout * math.prod(graph.tensors[op.output].shape[1:]) * cin_g * kh * kw
    if op.kind == "fully_connected":
        return int(op.consts["weight"].size)
    return 0


def _write_files(
    d: Path, graph: IntGraph, name: str, plan: MemoryPlan, em: _Emitter, meta: dict[str, Any] | None
) -> list[str]:
    up = name.upper()
    runtime = resources.files("intquant.codegen") / "runtime"
    written: list[str] = []

    def put(rel: str, text: str) -> None:
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        written.append(rel)

    for f in RUNTIME_FILES:
        put(f, (runtime / f).read_text())
    lib = [f"{name}.c", f"{name}_kernels.c", "iq_ops.c", "iq_lrn.c", *fast_kernel_sources(em)]
    if em.blobs is not None:
        asm, blob = weights_asm_source(em.blobs, name)
        (d / f"{name}_weights.bin").write_bytes(blob)
        written.append(f"{name}_weights.bin")
        put(f"{name}_weights.S", asm)
        lib.append(f"{name}_weights.S")
    put(f"{name}.h", header_source(graph, name, plan, em.weight_bytes, meta))
    put(f"{name}.c", model_source(em, name))
    put(f"{name}_kernels.c", kernels_source(em, name))
    put(f"{name}_host_main.c", HOST_MAIN.format(name=name, up=up))
    put("Makefile", MAKEFILE.format(name=name, lib=" ".join(lib)))
    from .m0 import m0_files  # local import: keeps the M0 bits in one module

    tin, tout = graph.tensors[graph.input], graph.tensors[graph.output]
    zero = np.full(math.prod(tin.shape), tin.zero_point, dtype=np.int64)
    for rel, text in m0_files(name, C_TYPE[tin.dtype], zero).items():
        put(rel, text)
    info = {
        "name": name,
        "library_sources": lib,
        "input": {
            "dtype": tin.dtype,
            "shape": list(tin.shape),
            "zero_point": tin.zero_point,
            "scale": tin.scale,
        },
        "output": {
            "dtype": tout.dtype,
            "shape": list(tout.shape),
            "zero_point": tout.zero_point,
            "scale": tout.scale,
        },
        "arena_bytes": plan.arena_bytes,
        "arena_lower_bound": plan.lower_bound,
        "arena_greedy_bytes": plan.greedy_bytes,
        "plan_strategy": plan.strategy,
        "in_place_ops": plan.in_place,
        "weight_bytes": em.weight_bytes,
        "macs": sum(_op_macs(graph, op) for op in graph.ops),
        "ops": [
            {"index": i, "name": op.name, "kind": op.kind, "macs": _op_macs(graph, op)}
            for i, op in enumerate(graph.ops)
        ],
        "meta": meta or {},
    }
    put(f"{name}_info.json", json.dumps(info, indent=1, default=str))
    return written
