"""What conv and fully_connected share: acc = bias + Σ w·(x − z_in), requantized per channel.

Both kinds have the same constants (weight, bias, multiplier, shift), the same accumulator
bound, the same lowering from float weights, the same C template (``iq_conv_impl.h``) and the
same ONNX forms; only the geometry differs. Each section below is one of the op's aspects.
"""

from __future__ import annotations

import math

import numpy as np

from ..codegen.c_syntax import C_TYPE, INT32_LIMIT, SHORT, dtype_max_abs, requant_mode
from ..intgraph.check import OpCheck, max_abs_offset
from ..intgraph.types import ACC_LIMIT, M_LIMIT, SHIFT_MAX_16X8, SHIFT_RANGE, IntGraph, Op
from ..numerics import QParams, quantize, quantize_multipliers, requantize
from . import _lowbit, _packed
from ._conv_tile import TILE_RUNTIME, TileRequant, tile_requant
from ._packed import weight_codes

ATTRS = frozenset(
    {"input_zero_point", "output_zero_point", "act_min", "act_max", "acc_bits", "rounding",
     "weight_format", "weight_shape"}
)
CONSTS = frozenset({"weight", "bias", "multiplier", "shift"})
# iq_requant.h and the .c files of the batched kernels: _conv_tile.TILE_RUNTIME, added per use
C_FILES = ("iq_conv.h", "iq_conv_impl.h", "iq_dot.h", "iq_dot_avr.h", "iq_requant.h",
           *_lowbit.C_FILES)
ACC32_LIMIT = 2**31 - 1
ACC64_LIMIT = 2**47  # TFLM's int64 requantization path requires |acc| < 2^47


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def check_weight_layer_attrs(chk: OpCheck, x) -> tuple[int, str]:
    """Attrs shared by conv and fully_connected: zero points, act range, acc_bits, rounding."""
    chk.zero_point_attr("input_zero_point", x)
    chk.zero_point_attr("output_zero_point", chk.out)
    chk.act_range()
    acc_bits = chk.int_attr("acc_bits")
    if acc_bits not in (32, 64):
        raise chk.fail(f"attr 'acc_bits' = {acc_bits}, expected 32 or 64")
    return acc_bits, chk.rounding()


def check_weight(chk: OpCheck, ndim: int) -> np.ndarray:
    """The weight in its logical shape: an int8/int16 const of ``ndim`` dims, or packed.

    A packed weight (attr ``weight_format``, see ``_packed``) is a uint8 const of exactly
    (rows, row_bytes) for its attr ``weight_shape``, in canonical form (zero padding), so the
    logical size is bounded by the bytes actually stored.
    """
    a = chk.op.attrs
    fmt = a.get("weight_format")
    if fmt is None:
        if "weight_shape" in a:
            raise chk.fail("attr 'weight_shape' is only for packed weights (no 'weight_format')")
        return chk.const("weight", ("int8", "int16"), ndim)
    if fmt not in _packed.FORMATS:
        raise chk.fail(f"attr 'weight_format' = {fmt!r}, expected one of {list(_packed.FORMATS)}")
    shape = chk.list_attr("weight_shape", ndim, lo=1)
    w = chk.const("weight", ("uint8",), 2)
    k = math.prod(shape[1:])
    if shape[0] * k > chk.limits.max_const_bytes:  # before anything is unpacked
        raise chk.fail(f"attr 'weight_shape' {shape} holds {shape[0] * k} codes, above the "
                       f"limit {chk.limits.max_const_bytes} (intgraph.Limits.max_const_bytes)")
    expected = (shape[0], _packed.row_bytes(fmt, k))
    if w.shape != expected:
        raise chk.fail(f"const 'weight' has shape {w.shape}; a packed {fmt} weight of "
                       f"'weight_shape' {shape} is stored as {expected} bytes")
    err = _packed.canonical_error(w, fmt, k)
    if err:
        raise chk.fail(f"const 'weight' ({fmt}): {err}")
    return _packed.unpack(w, fmt, k).reshape(shape)


def check_grouped_weight(chk: OpCheck, weight: np.ndarray, cin: int, groups: int, rank: int,
                         kind: str) -> tuple[int, int, int, int]:
    """(Cout, Cin/groups, kh, kw) of a grouped (Cout, Cin/groups, kh, kw) weight: groups must
    divide both channel counts, and a 1-D op (input of ``rank`` 2) has kh = 1."""
    cout, cin_g, kh, kw = weight.shape
    if cin % groups or cout % groups:
        raise chk.fail(f"attr 'groups' = {groups} must divide Cin = {cin} and Cout = {cout}")
    if cin_g != cin // groups:
        raise chk.fail(
            f"const 'weight' shape {weight.shape}: dim 1 must be Cin/groups = {cin // groups}"
        )
    if rank == 2 and kh != 1:
        raise chk.fail(f"1-D {kind} needs const 'weight' with kh = 1, got shape {weight.shape}")
    return cout, cin_g, kh, kw


def check_requant_consts(chk: OpCheck, cout: int, acc_bits: int, rounding: str) -> None:
    bias_dtype = "int32" if acc_bits == 32 else "int64"
    for key, dt in (("bias", bias_dtype), ("multiplier", "int32"), ("shift", "int32")):
        a = chk.const(key, (dt,), 1)
        if a.shape[0] != cout:
            raise chk.fail(f"const '{key}' has {a.shape[0]} entries, expected Cout = {cout}")
    m = chk.op.consts["multiplier"].astype(np.int64)
    s = chk.op.consts["shift"].astype(np.int64)
    if np.any(m < 0) or np.any(m >= M_LIMIT):
        raise chk.fail(f"const 'multiplier' values must be in [0, 2^31), got min {m.min()}")
    shift_hi = SHIFT_MAX_16X8 if (acc_bits == 64 and rounding != "pow2") else SHIFT_RANGE[1]
    if np.any(s < SHIFT_RANGE[0]) or np.any(s > shift_hi):
        raise chk.fail(
            f"const 'shift' values must be in [{SHIFT_RANGE[0]}, {shift_hi}], got "
            f"[{s.min()}, {s.max()}]"
        )
    if rounding == "pow2" and np.any(m != 2**30):
        raise chk.fail("rounding 'pow2' needs every const 'multiplier' = 2^30 (real 2^(shift-1))")


def check_accumulator_bound(
    chk: OpCheck, weight: np.ndarray, x, zx: int, acc_bits: int, rounding: str
) -> None:
    """max_c(Σ|w_c|·max|x − z| + |b_c|) must fit the declared accumulator."""
    w_abs = np.abs(weight.astype(np.int64)).reshape(weight.shape[0], -1).sum(axis=1)
    bias = np.abs(chk.op.consts["bias"].astype(np.int64))
    bound = int((w_abs * max_abs_offset(x, zx) + bias).max())
    limit = ACC_LIMIT[acc_bits]
    if bound >= limit:
        hint = "use acc_bits 64" if acc_bits == 32 else "reduce the weight/bias range"
        raise chk.fail(
            f"accumulator bound {bound} >= 2^{int(math.log2(limit))} for acc_bits {acc_bits}; "
            f"{hint}"
        )
    if rounding == "pow2":
        e = int(chk.op.consts["shift"].astype(np.int64).max()) - 1
        if e > 0 and bound << e >= 2**62:
            raise chk.fail(f"pow2 left shift {e} of accumulator bound {bound} overflows int64")


# ----------------------------------------------------------------------------------------------
# Reference
# ----------------------------------------------------------------------------------------------


def acc_dtype(op: Op) -> type[np.signedinteger]:
    """int32 for acc_bits 32, else int64: both exact.

    Validation proved max_c(Σ|w_c|·max|x − z| + |b_c|) < 2^31 for acc_bits 32, which bounds
    every partial sum too, so int32 accumulation cannot wrap — exactly the C kernel's
    assumption. (NumPy's int32 einsum is ~2.5x faster than int64 matmul.)
    """
    return np.int32 if op.attrs["acc_bits"] == 32 else np.int64


def requantize_per_channel(acc: np.ndarray, op: Op, axis: int) -> np.ndarray:
    a = op.attrs
    return requantize(
        acc,
        op.consts["multiplier"],
        op.consts["shift"],
        a["output_zero_point"],
        a["act_min"],
        a["act_max"],
        rounding=a.get("rounding", "double"),
        acc_bits=a["acc_bits"],
        axis=axis,
    )


# ----------------------------------------------------------------------------------------------
# Lowering
# ----------------------------------------------------------------------------------------------


def accumulator_bound(w_q: np.ndarray, b_q: np.ndarray, in_qp: QParams) -> int:
    """max over output channels of Σ|w|·max|x − z| + |b|: the largest |accumulator| possible."""
    z = int(in_qp.zero_point[0])
    xmax = max(in_qp.qmax - z, z - in_qp.qmin)
    per_channel = np.abs(w_q.reshape(w_q.shape[0], -1).astype(np.int64)).sum(axis=1) * xmax
    return int((per_channel + np.abs(b_q.astype(np.int64))).max())


def choose_acc_bits(bound: int, in_qp: QParams, w_qp: QParams) -> int:
    """int32 for int8 activations with ≤ 8-bit weights when the bound allows; int64 otherwise."""
    from ..lower import LoweringError

    if in_qp.bits <= 8 and w_qp.bits <= 8 and bound <= ACC32_LIMIT:
        return 32
    if bound >= ACC64_LIMIT:
        raise LoweringError(
            f"worst-case accumulator {bound} exceeds 2^47 (the int64 requantization limit); "
            f"use fewer weight/activation bits for this layer"
        )
    return 64


def quantize_bias(bias: np.ndarray | None, s_in: float, w_scale: np.ndarray, cout: int,
                  acc_bits: int) -> np.ndarray:
    if bias is None:
        return np.zeros(cout, dtype=np.int64)
    q = np.rint(bias.astype(np.float64) / (s_in * w_scale.astype(np.float64)))
    lim = 2**31 - 1 if acc_bits == 32 else 2**46
    return np.clip(q, -lim, lim).astype(np.int64)


def weighted_layer(lw, node, x: str, kind: str, weight: np.ndarray,
                   bias: np.ndarray | None, w_qp: QParams, geometry: dict, out_shape,
                   packable: bool = True) -> str:
    """Integer weights, bias on the accumulator grid, per-channel multipliers, clamp bounds.

    A layer reading or producing packed ±1 bits (a sign) is lowered by ``_binary``; low-bit
    weights are packed (``_packed``) unless the kind's kernel reads only int8/int16 codes
    (``packable=False``: sub-byte codes are then stored one per int8).
    """
    from ..lower import LoweringError, act_bounds, dtype_of, scalar_qparams

    in_qp = lw.fmt[x]
    out_qp = lw.plan.acts[node.name]
    if packable and "bit" in (lw.tensors[x].dtype, dtype_of(out_qp)):
        from ._binary import lower_binary_layer

        return lower_binary_layer(lw, node, x, kind, weight, bias, w_qp, geometry, out_shape)
    s_in, z_in = scalar_qparams(in_qp)
    s_out, z_out = scalar_qparams(out_qp)
    cout = weight.shape[0]
    w_scale = np.broadcast_to(w_qp.scale, (cout,)) if w_qp.axis is not None else np.full(
        cout, w_qp.scale[0])
    w_q = quantize(weight, w_qp).astype(np.int64)
    b_q = quantize_bias(bias, s_in, w_scale, cout, 32)
    bound = accumulator_bound(w_q, b_q, in_qp)
    acc_bits = choose_acc_bits(bound, in_qp, w_qp)
    if acc_bits == 64:
        b_q = quantize_bias(bias, s_in, w_scale, cout, 64)
    reals = s_in * w_scale.astype(np.float64) / s_out
    mult, shift = quantize_multipliers(reals)
    rounding = lw.rounding()
    if acc_bits == 64 and np.any(shift > 7):
        raise LoweringError("multiplier too large for the int64 path (shift > 7)")
    lo, hi = act_bounds(node, out_qp)
    w_dtype = np.int8 if w_qp.bits <= 8 else np.int16
    attrs = dict(geometry, input_zero_point=z_in, output_zero_point=z_out, act_min=lo,
                 act_max=hi, acc_bits=acc_bits, rounding=rounding)
    fmt = _packed.choose_format(w_q, w_qp.bits) if packable else None
    if fmt is not None:
        attrs.update(weight_format=fmt, weight_shape=[int(s) for s in w_q.shape])
    consts = {
        "weight": w_q.astype(w_dtype) if fmt is None else _packed.pack(w_q, fmt),
        "bias": b_q.astype(np.int32 if acc_bits == 32 else np.int64),
        "multiplier": mult,
        "shift": shift,
    }
    return lw.emit(node.name, kind, [x], out_shape, out_qp, attrs, consts)


# ----------------------------------------------------------------------------------------------
# C: folded bias, accumulator width, template instance
# ----------------------------------------------------------------------------------------------


def is_fast8(graph: IntGraph, op: Op) -> bool:
    """conv / fully_connected on 8-bit inputs with int8 weights and an int32 accumulator: the
    offset-binary kernels of iq_dot.h apply."""
    return (
        op.kind in ("conv", "fully_connected")
        and graph.tensors[op.inputs[0]].dtype in ("int8", "uint8")
        and op.attrs.get("weight_format") is None
        and str(op.consts["weight"].dtype) == "int8"
        and int(op.attrs.get("acc_bits", 32)) == 32
    )


class WeightLayer:
    """A conv or fully_connected op ready to emit: template instance and its constants."""

    def __init__(self, instance: str, acc: int, chunk: int, tin: str, tw: str, tout: str,
                 weight: np.ndarray, bias: np.ndarray, mode: str, fast8: bool = False,
                 tile: TileRequant | None = None) -> None:
        self.instance = instance
        self.acc = acc  # 32 or 64: width of the kernel's accumulator and folded bias
        self.chunk = chunk  # products per int32 partial sum (acc 64)
        self.tin, self.tw, self.tout = tin, tw, tout
        self.weight, self.bias = weight, bias
        self.mode = mode
        self.fast8 = fast8
        self.tile = tile  # conv_tile.py: requantized in batches over positions

    @property
    def weight_ctype(self) -> str:
        return "uint8_t" if self.fast8 else C_TYPE[self.tw]

    @property
    def bias_ctype(self) -> str:
        if self.fast8:
            return "uint32_t"
        return "int32_t" if self.acc == 32 else "int64_t"


def prepare_weight_layer(graph: IntGraph, op: Op) -> WeightLayer:
    """Fold −z_in·Σw into the bias and pick the narrowest accumulator that cannot overflow.

    The kernel computes Σ w·x (raw x, padding = z_in) + bias'. Partial sums are bounded by
    max|x|·Σ|w|; int32 is used when that bound and |bias'| are below 2^31 and the op's contract
    accumulator is int32 (then the final sum, the true accumulator, fits int32 too). Otherwise
    products are summed in int32 chunks short enough never to overflow, chunks in int64.
    """
    x = graph.tensors[op.inputs[0]]
    y = graph.tensors[op.output]
    w = weight_codes(op)
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
    """Switch a fast8 conv to the tiled instance (ops/_conv_tile.py) when its constants
    allow; a fully_connected then runs as a 1x1 conv at one position (the same instance)."""
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
    if kind == "fully_connected" and layer.tile is None:
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


def emit_weight_consts(em, op: Op, p: str
                       ) -> tuple[WeightLayer | _lowbit.PackedLayer, list[str]]:
    """The template instance this op needs and its constant arrays: weights, bias, multipliers
    and shifts (packed weights: ``_lowbit``), or for a tiled instance weights, bias and
    iq_rqw_t constants. The weight array's bytes are recorded for the project info: they
    equal the IntGraph's, packed or not."""
    if _lowbit.is_packed(op):
        layer, arrays = _lowbit.emit_packed_consts(em, op, p)
        em.weight_array_bytes[op.name] = layer.weight_nbytes
        return layer, arrays
    return emit_int_consts(em, op, p)


def emit_int_consts(em, op: Op, p: str) -> tuple[WeightLayer, list[str]]:
    """Unpacked weights: the conv template instance (tiled where it applies) and its
    constant arrays."""
    layer = attach_tile(em.g, op, prepare_weight_layer(em.g, op))
    em.add_kernel_instance(layer.instance, instance_declaration(layer, op.kind),
                           instance_source(layer, op.kind))
    if layer.tile is not None:
        em.require_runtime(TILE_RUNTIME, header="iq_requant.h")
        w = em.const_array(f"{p}_weight", "uint8_t", layer.tile.weight)
        em.weight_array_bytes[op.name] = int(layer.tile.weight.size)
        b = em.const_array(f"{p}_bias", "uint32_t", layer.tile.bias)
        return layer, [w, b, em.rqw_array(f"{p}_rq", layer.tile.rq)]
    w = em.const_array(f"{p}_weight", layer.weight_ctype, layer.weight)
    itemsize = np.dtype(layer.weight_ctype[:-2]).itemsize
    em.weight_array_bytes[op.name] = int(layer.weight.size) * itemsize
    b = em.const_array(f"{p}_bias", layer.bias_ctype, layer.bias)
    m = em.const_array(f"{p}_multiplier", "int32_t", op.consts["multiplier"])
    s = em.const_array(f"{p}_shift", "int32_t", op.consts["shift"])
    return layer, [w, b, m, s]


# ----------------------------------------------------------------------------------------------
# ONNX
# ----------------------------------------------------------------------------------------------


def to_onnx(ex, op: Op) -> None:
    """DQ(x), DQ(w per channel), bias, float Conv / Gemm, Clip, Q (the plain QDQ form).

    Scales are not stored in an IntGraph except on tensors, so the weight scale of channel c is
    read back from the integer constants: s_w[c] = m_c · s_out / s_in with
    m_c = multiplier[c] · 2^(shift[c] − 31); the bias has scale s_in·s_w[c].
    """
    from ..onnx_export import real_multiplier

    a, c = op.attrs, op.consts
    x_info, out = ex.g.tensors[op.inputs[0]], ex.g.tensors[op.output]
    m = real_multiplier(c["multiplier"], c["shift"])
    s_w = np.maximum(m * out.scale / x_info.scale, 1e-30).astype(np.float32)
    x = ex.dq(op.inputs[0], x_info.scale, a["input_zero_point"], x_info.dtype, op.name)
    w = weight_codes(op)
    w_dt = "int16" if w.dtype == np.int16 else "int8"
    w_name = ex.const(op.name + "_w", w.astype(w_dt))
    wq = ex.dq(w_name, s_w, np.zeros(len(s_w)), w_dt, op.name + "_w", axis=0)
    s_b = (np.float64(x_info.scale) * s_w.astype(np.float64)).astype(np.float32)
    if c["bias"].dtype == np.int32:
        b_name = ex.const(op.name + "_b", c["bias"])
        bq = ex.dq(b_name, s_b, np.zeros(len(s_b)), "int32", op.name + "_b", axis=0)
    else:  # int64 biases have no DequantizeLinear: store the real values
        real_bias = c["bias"] * s_b.astype(np.float64)
        bq = ex.const(op.name + "_bf", real_bias.astype(np.float32))
    if op.kind == "fully_connected" and len(x_info.shape) == 1:
        y = ex.node("Gemm", [x, wq, bq], op.name, transB=1)
    elif op.kind == "fully_connected":  # (N, …, Cin): MatMul broadcasts over the rows
        wt = ex.node("Transpose", [wq], op.name + "_wt", perm=[1, 0])
        y = ex.node("Add", [ex.node("MatMul", [x, wt], op.name + "_mm"), bq], op.name)
    else:
        y = _float_conv(ex, op, x, wq, bq, x_info)
    ex.clip_and_q(y, op, out)


def _float_conv(ex, op: Op, x: str, w: str, b: str, x_info) -> str:
    a = op.attrs
    t, left, bottom, r = a["padding"]
    kh, kw = _packed.weight_shape(op)[2:]
    if len(x_info.shape) == 2:  # 1-D: weights are stored [Cout, Cin/g, 1, kw]
        w = ex.node("Squeeze", [w, ex.const("axis2", np.array([2], np.int64))], "w1d")
        return ex.node("Conv", [x, w, b], op.name, kernel_shape=[kw],
                       strides=[a["stride"][1]], pads=[left, r],
                       dilations=[a["dilation"][1]], group=a["groups"])
    return ex.node("Conv", [x, w, b], op.name, kernel_shape=[kh, kw], strides=a["stride"],
                   pads=[t, left, bottom, r], dilations=a["dilation"], group=a["groups"])


def to_onnx_int(ex, op: Op) -> None:
    """Exact integer products (ConvInteger / MatMulInteger, int32), + bias, per-channel integer
    requantization.

    Only int8 × int8 products are used: on an AVX2 machine ONNX Runtime 1.32 computes
    MatMulInteger uint8 × int8 with saturating 16-bit pair sums and ConvInteger int8 × uint8
    wrongly (measured: most outputs differ for full-range operands), so uint8 inputs are moved
    to int8 (x − 128 with zero point z − 128) and 16-bit operands are split into int8 digits.
    The bit-exact tests on full-range uint8 / int16 graphs would catch a regression.
    """
    from onnx import TensorProto

    a, c = op.attrs, op.consts
    x_info = ex.g.tensors[op.inputs[0]]
    if op.kind == "fully_connected":
        view: tuple[int, ...] = (-1,)
    else:
        view = (-1, 1) if len(x_info.shape) == 2 else (-1, 1, 1)
    w = weight_codes(op)
    if x_info.dtype == "int8" and w.dtype == np.int8 and a["acc_bits"] == 32:
        # Validation bounds |Σ w·(x − z)| + |b| < 2^31: ConvInteger's int32 sum is exact.
        zp_value = np.int8(a["input_zero_point"])
        x = _pad_int(ex, op, op.inputs[0], x_info, zp_value)
        zp = ex.const(op.name + "_x_zp", zp_value)
        acc = _integer_product(ex, op, x, w, zp)
        acc = ex.cast(acc, TensorProto.INT64, op.name + "_acc")
    else:
        acc = _digit_product(ex, op, x_info, view)
    acc = ex.node("Add", [acc, ex.i64(op.name + "_bias", c["bias"].reshape(view))],
                  op.name + "_b")
    y = ex.apply_multiplier_int(acc, c["multiplier"].reshape(view),
                                c["shift"].reshape(view), a.get("rounding", "double"),
                                a["acc_bits"], op.name + "_mbqm")
    ex.finish_int(y, op, a["output_zero_point"])


def _digit_product(ex, op: Op, x_info, view: tuple[int, ...]) -> str:
    """Σ w·(x − z) in int64 from int8 × int8 products of base-128 digits.

    The input is padded with its zero point (so every window position is a real value and
    the zero point's share is the constant z·Σ_kernel w[c], subtracted at the end), moved to
    a signed range (uint8: x − 128, z − 128), and each 16-bit operand v is written as
    16384·d2 + 128·d1 + d0 with d0, d1 in [0, 127] and d2 in [−2, 1] — every digit an int8.
    Each digit pair goes through ConvInteger / MatMulInteger (int32, exact while
    K·max|digit_x|·max|digit_w| < 2^31, checked) and the terms are summed in int64.
    """
    from onnx import TensorProto

    a, w = op.attrs, weight_codes(op)
    off = 128 if x_info.dtype == "uint8" else 0
    z = a["input_zero_point"] - off
    x = ex.cast(op.inputs[0], TensorProto.INT32, op.name + "_x32")
    if off:
        x = ex.node("Sub", [x, ex.const(op.name + "_off", np.int32(off))], op.name + "_s8")
    x = _pad_int(ex, op, x, x_info, np.int32(z))
    if x_info.dtype == "int16":
        x_parts = _digits_int(ex, x, op.name + "_x")
    else:
        x_parts = [(ex.cast(x, TensorProto.INT8, op.name + "_x8"), 1, 128)]
    w_parts = _digits(w) if w.dtype == np.int16 else [(w, 1)]
    k = int(np.prod(w.shape[1:]))
    acc = None
    for xp, xf, x_max in x_parts:
        for wp, wf in w_parts:
            if k * x_max * int(np.abs(wp.astype(np.int64)).max()) >= 2**31:
                raise ValueError(
                    f"op {op.name!r} ({op.kind}): an int8-digit partial product can overflow "
                    f"int32 ({k} terms); export this graph with requant='float'")
            term = ex.cast(_integer_product(ex, op, xp, wp, None), TensorProto.INT64,
                           op.name + "_p")
            if xf * wf != 1:
                term = ex.node("Mul", [term, ex.i64(op.name + "_f", xf * wf)], op.name + "_pf")
            # Add, not Sum: ONNX Runtime's Sum has no int64 kernel.
            acc = term if acc is None else ex.node("Add", [acc, term], op.name + "_sum")
    zw = z * w.astype(np.int64).reshape(w.shape[0], -1).sum(axis=1)
    return ex.node("Sub", [acc, ex.i64(op.name + "_zw", zw.reshape(view))], op.name + "_acc")


def _digits_int(ex, x: str, hint: str) -> list[tuple[str, int, int]]:
    """int32 tensor of int16 values → its base-128 digits as int8 tensors:
    [(d0, 1, 127), (d1, 128, 127), (d2, 16384, 2)] (tensor, weight, max |digit|)."""
    from onnx import TensorProto

    c128 = ex.const(hint + "_128", np.int32(128))
    parts = []
    for weight in (1, 128):
        d = ex.node("Mod", [x, c128], hint + "_mod")  # floor mod: [0, 127]
        parts.append((ex.cast(d, TensorProto.INT8, hint + "_d8"), weight, 127))
        x = ex.node("Div", [ex.node("Sub", [x, d], hint + "_sub"), c128], hint + "_div")
    parts.append((ex.cast(x, TensorProto.INT8, hint + "_d8"), 16384, 2))
    return parts


def _pad_int(ex, op: Op, x: str, x_info, value: np.ndarray) -> str:
    """Explicit constant Pad with the input zero point (fully_connected: unchanged).

    Padded positions then contribute w·(z − z) = 0, as in the interpreter, whatever padding
    convention ConvInteger itself follows.
    """
    if op.kind == "fully_connected":
        return x
    t, left, bottom, r = op.attrs["padding"]
    pads = [0, 0, left, 0, 0, r] if len(x_info.shape) == 2 else [0, 0, t, left, 0, 0, bottom, r]
    if not any(pads):
        return x
    return ex.node("Pad", [x, ex.i64(op.name + "_pads", pads),
                           ex.const(op.name + "_padv", value)], op.name + "_pad",
                   mode="constant")


def _integer_product(ex, op: Op, x: str, w: np.ndarray, zp: str | None) -> str:
    """ConvInteger / MatMulInteger of an 8-bit tensor and an 8-bit weight array (int32)."""
    a = op.attrs
    zps = [] if zp is None else [zp]
    if op.kind == "fully_connected":
        w_name = ex.const(op.name + "_wT", np.ascontiguousarray(w.T))
        return ex.node("MatMulInteger", [x, w_name, *zps], op.name)
    one_d = len(ex.g.tensors[op.inputs[0]].shape) == 2
    if one_d:
        w, kw = w[:, :, 0, :], {"strides": a["stride"][1:], "dilations": a["dilation"][1:]}
    else:
        kw = {"strides": a["stride"], "dilations": a["dilation"]}
    w_name = ex.const(op.name + "_w", np.ascontiguousarray(w))
    return ex.node("ConvInteger", [x, w_name, *zps], op.name, group=a["groups"],
                   kernel_shape=list(w.shape[2:]), **kw)


def _digits(w: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """int16 array → its non-zero base-128 digits [(int8 digit array, weight)]:
    w = 16384·d2 + 128·d1 + d0 with d0, d1 in [0, 127] and d2 in [−2, 1]."""
    v = w.astype(np.int64)
    parts = []
    for weight in (1, 128, 16384):
        d = v % 128 if weight < 16384 else v
        if d.any():
            parts.append((d.astype(np.int8), weight))
        v = (v - d) // 128
    return parts or [(np.zeros_like(w, np.int8), 1)]
