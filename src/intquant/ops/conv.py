"""conv — Conv1d / Conv2d / depthwise / grouped (also standalone BatchNorm and Mul-by-constant, as
1x1 depthwise)

- inputs: `[x]`, x shape `(Cin, L)` (1-D) or `(Cin, H, W)` (2-D); output `(Cout, L')` / `(Cout,
  H', W')`.
- consts: `weight` int8/int16 `[Cout, Cin/groups, kh, kw]` (always 4-D; 1-D conv has kh = 1),
  `bias` int32 (acc_bits 32) or int64 (acc_bits 64) `[Cout]`, `multiplier` int32 `[Cout]`,
  `shift` int32 `[Cout]`.
- packed weights (optional attrs `weight_format` in {int4, pow2, int2, binary} and
  `weight_shape` = the logical `[Cout, Cin/groups, kh, kw]`): `weight` is uint8 `[Cout,
  row_bytes]`, each output channel's Cin/g·kh·kw codes (C order) packed on its own row —
  int4 / pow2 nibbles low first (⌈K/2⌉ bytes), int2 as two bit planes (2·⌈K/8⌉), binary one
  bit per code, 1 = +1 (⌈K/8⌉); layouts in `ops/_packed.py` and docs/intgraph.md. The math
  below reads the unpacked codes.
- attrs: `stride [sh, sw]`, `padding [top, left, bottom, right]`, `dilation [dh, dw]`, `groups`,
  `input_zero_point`, `output_zero_point`, `act_min`, `act_max`, `acc_bits` (32|64), `rounding`.
  1-D convs use sh = dh = 1, top = bottom = 0 and are run as 2-D with H = 1.
- math: `acc[co, oy, ox] = bias[co] + Σ_{ci in group, ky, kx} weight[co, ci, ky, kx] ·
  (x[g·Cin/g + ci, iy, ix] − input_zero_point)`
  with `iy = oy·sh − top + ky·dh`, `ix = ox·sw − left + kx·dw`; positions outside the input
  contribute 0 (i.e. padding holds the input zero point — TFLM semantics). Then requantize per
  output channel with (multiplier[co], shift[co]).

Float ops lowered here: ``conv``; standalone ``batchnorm`` and ``mul_const`` (x·a[c] + b[c]) as a
depthwise 1x1 conv.
"""

from __future__ import annotations

import math

import numpy as np

from ..codegen.c_syntax import spatial, window_fields
from ..intgraph.check import OpCheck, arity, check_out_len, out_len, window_attrs
from ..intgraph.check import spatial as checked_spatial
from ..intgraph.types import IntGraph, Op, TensorInfo
from . import _lowbit
from . import _weighted as wl
from ._conv_tile import conv16_scratch, emit_conv16, tile_scratch
from ._depthwise import depthwise_scratch, emit_depthwise
from ._packed import weight_codes, weight_shape
from ._reference import as_nchw, from_nchw, pad_hw, to_out, windows
from .registry import FloatOpDef, OpDef, register

# Conv im2col buffers are built per batch chunk so memory stays bounded (int64 patches).
_IM2COL_CHUNK_BYTES = 64 * 2**20


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    cin, h, w = checked_spatial(chk, x.shape, f"input '{x.name}'")
    acc_bits, rounding = wl.check_weight_layer_attrs(chk, x)
    stride, padding, dil, _ = window_attrs(chk, x, kernel_from=None, dilation=True)
    groups = chk.int_attr("groups", 1)
    weight = wl.check_weight(chk, 4)
    cout, cin_g, kh, kw = wl.check_grouped_weight(chk, weight, cin, groups, len(x.shape), "conv")
    wl.check_requant_consts(chk, cout, acc_bits, rounding)
    ho = out_len(h, padding[0], padding[2], kh, stride[0], dil[0])
    wo = out_len(w, padding[1], padding[3], kw, stride[1], dil[1])
    check_out_len(chk, "H", ho)
    check_out_len(chk, "W", wo)
    chk.expect_output_shape((cout, wo) if len(x.shape) == 2 else (cout, ho, wo))
    wl.check_accumulator_bound(chk, weight, x, x.zero_point, acc_bits, rounding)


# ----------------------------------------------------------------------------------------------
# Reference
# ----------------------------------------------------------------------------------------------


def _conv_acc(xz: np.ndarray, weight: np.ndarray, op: Op) -> np.ndarray:
    """Σ w·(x − z) for one batch chunk via im2col + batched matmul over the groups.

    ``xz`` is the (N, C, Hp, Wp) padded input with the zero point already subtracted, so
    padding with 0 is padding with the input zero point (TFLM semantics). Its dtype is the
    accumulator's (see ``_weighted.acc_dtype``).
    """
    a = op.attrs
    groups = a["groups"]
    cout, cin_g, kh, kw = weight.shape
    n = xz.shape[0]
    win = windows(xz, [kh, kw], a["stride"], a["dilation"])  # (N, C, Ho, Wo, kh, kw)
    ho, wo = win.shape[2], win.shape[3]
    win = win.reshape(n, groups, cin_g, ho, wo, kh, kw)
    cols = win.transpose(1, 0, 3, 4, 2, 5, 6).reshape(groups, n * ho * wo, cin_g * kh * kw)
    w = weight.astype(xz.dtype).reshape(groups, cout // groups, cin_g * kh * kw)
    acc = np.einsum("gmk,gok->gmo", cols, w)  # (G, N·Ho·Wo, Cout/G); einsum: fastest int path
    acc = acc.reshape(groups, n, ho, wo, cout // groups).transpose(1, 0, 4, 2, 3)
    return acc.reshape(n, cout, ho, wo)


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """acc = bias + Σ w·(x − z_in); requantize per channel."""
    a = op.attrs
    x = inputs[0]
    one_d = x.ndim == 3
    weight = weight_codes(op)
    _, cin_g, kh, kw = weight.shape
    acc_dtype = wl.acc_dtype(op)
    xz = pad_hw(as_nchw(x).astype(acc_dtype) - acc_dtype(a["input_zero_point"]), a["padding"], 0)
    per_sample = xz[0].size * kh * kw * xz.itemsize // max(1, a["stride"][0] * a["stride"][1])
    chunk = max(1, _IM2COL_CHUNK_BYTES // max(1, per_sample))
    acc = np.concatenate(
        [_conv_acc(xz[i : i + chunk], weight, op) for i in range(0, x.shape[0], chunk)]
    )
    acc = acc.astype(np.int64) + op.consts["bias"].astype(np.int64)[None, :, None, None]
    y = wl.requantize_per_channel(acc, op, axis=1)
    return to_out(from_nchw(y, one_d), out)


def macs(op: Op, graph: IntGraph) -> int:
    cout, cin_g, kh, kw = weight_shape(op)
    spatial_size = math.prod(graph.tensors[op.output].shape[1:])
    return cout * spatial_size * cin_g * kh * kw


def scratch_bytes(graph: IntGraph, op: Op) -> int:
    """The depthwise or 16x8 kernel's scratch (ops/_depthwise.py, _conv_tile.py), or the
    im2col buffer (one receptive field of one group, in the input's dtype) or the tiled
    kernel's (tiles of positions, bands of rows), whichever is larger; packed weights: the
    im2col buffer plus their tables (``_lowbit.packed_scratch_bytes``)."""
    if _lowbit.is_packed(op):
        return _lowbit.packed_scratch_bytes(graph, op)
    special = depthwise_scratch(graph, op)
    special = conv16_scratch(graph, op) if special is None else special
    if special is not None:
        return special
    _, cin_g, kh, kw = weight_shape(op)
    itemsize = np.dtype(graph.tensors[op.inputs[0]].dtype).itemsize
    return max(cin_g * kh * kw * itemsize, tile_scratch(graph, op) or 0)


# ----------------------------------------------------------------------------------------------
# C
# ----------------------------------------------------------------------------------------------


def emit_c(em, i: int, op: Op, p: str) -> None:
    if emit_depthwise(em, i, op, p) or emit_conv16(em, i, op, p):
        return
    a = op.attrs
    layer, consts = wl.emit_weight_consts(em, op, p)
    cin, h, w = spatial(em.g.tensors[op.inputs[0]].shape)
    cout, ho, wo = spatial(em.g.tensors[op.output].shape)
    kh, kw = weight_shape(op)[2:]
    prm = em.params(
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
            **(wl.tile_params(layer.tile) if layer.tile is not None else {}),
        },
    )
    off, _ = em.plan.scratch[i]
    col = f"(void*)(IQ_ARENA + {off})"
    args = ", ".join(
        [f"&{prm}", em.typed(op.inputs[0], True), *consts, em.typed(op.output, False), col]
    )
    em.calls.append(f"    {layer.instance}({args});")


# ----------------------------------------------------------------------------------------------
# Float ops: conv, standalone batchnorm, mul_const
# ----------------------------------------------------------------------------------------------


def _param(node, key: str):
    import torch

    v = node.params.get(key)
    return None if v is None else torch.as_tensor(np.asarray(v, dtype=np.float32))


def pad_input(x, padding: list[int], dims: int, value: float = 0.0):
    """Apply [top, left, bottom, right] padding (1-D uses left/right only)."""
    import torch.nn.functional as F

    t, left, b, r = padding
    if dims == 1:
        return F.pad(x, (left, r), value=value) if (left or r) else x
    return F.pad(x, (left, r, t, b), value=value) if (t or left or b or r) else x


def run_float_conv(node, inputs):
    import torch.nn.functional as F

    a = node.attrs
    dims = a["dims"]
    x = pad_input(inputs[0], a["padding"], dims)
    w, b = _param(node, "weight"), _param(node, "bias")
    if dims == 1:
        return F.conv1d(x, w, b, a["stride"][1], 0, a["dilation"][1], a["groups"])
    return F.conv2d(x, w, b, a["stride"], 0, a["dilation"], a["groups"])


def run_float_batchnorm(node, inputs):
    """Per-channel affine; an (N,) input (one scalar per sample) is one channel."""
    import torch.nn.functional as F

    x = inputs[0]
    y = F.batch_norm(
        x[:, None] if x.dim() == 1 else x, _param(node, "mean"), _param(node, "var"),
        _param(node, "weight"), _param(node, "bias"), False, 0.0, node.attrs.get("eps", 1e-5),
    )
    return y[:, 0] if x.dim() == 1 else y


def run_float_mul_const(node, inputs):
    x = inputs[0]
    v = _param(node, "value")
    if v.dim() == 1 and x.dim() > 1 and v.numel() == x.shape[1] and v.numel() > 1:
        v = v.reshape((1, -1) + (1,) * (x.dim() - 2))
    b = _param(node, "bias")
    if b is None:
        return x * v
    if b.dim() == 1 and x.dim() > 1 and b.numel() == x.shape[1] and b.numel() > 1:
        b = b.reshape((1, -1) + (1,) * (x.dim() - 2))
    return x * v + b


def lower_conv(lw, node, inputs: list[str]) -> str:
    a = node.attrs
    w = node.params["weight"]
    if a["dims"] == 1:
        w = w[:, :, None, :]
    geometry = dict(stride=list(a["stride"]), padding=list(a["padding"]),
                    dilation=list(a["dilation"]), groups=int(a["groups"]))
    return wl.weighted_layer(lw, node, inputs[0], "conv", w, node.params.get("bias"),
                             lw.plan.weights[node.name], geometry, node.shape)


def per_channel_affine(lw, node, x: str, a: np.ndarray, b: np.ndarray) -> str:
    """y = a[c]·x + b[c] as a depthwise 1x1 conv (standalone BatchNorm, mul by a constant).

    A rank-0 x (one scalar per sample, e.g. after ``x.mean(dim=1)``) is one channel."""
    from ..numerics import choose_qparams

    shape = lw.tensors[x].shape
    channels = shape[0] if shape else 1
    a = np.broadcast_to(np.asarray(a, dtype=np.float64).reshape(-1), (channels,)).copy()
    b = np.broadcast_to(np.asarray(b, dtype=np.float64).reshape(-1), (channels,)).copy()
    weight = a.reshape(channels, 1, 1, 1)
    w_qp = lw.plan.weights.get(node.name)
    if w_qp is None:
        w_qp = choose_qparams(absmax=np.abs(a), bits=8, symmetric=True, axis=0, name=node.name,
                              power_of_two=lw.rounding() == "pow2")
    geometry = dict(stride=[1, 1], padding=[0, 0, 0, 0], dilation=[1, 1], groups=channels)
    src = x
    if len(shape) <= 1:  # (C,) features or a scalar: run the 1x1 conv on (C, 1, 1)
        src = lw.emit(node.name + ".as_map", "reshape", [x], (channels, 1, 1), lw.fmt[x],
                      {"shape": [channels, 1, 1]})
    conv_shape = lw.tensors[src].shape
    y = wl.weighted_layer(lw, node, src, "conv", weight, b, w_qp, geometry, conv_shape)
    if len(shape) <= 1:
        y = lw.emit(node.name + ".as_vector", "reshape", [y], shape, lw.fmt[y],
                    {"shape": list(shape)})
    return y


def lower_batchnorm(lw, node, inputs: list[str]) -> str:
    from ..graph.passes import bn_scale_shift

    a, b = bn_scale_shift(node)
    return per_channel_affine(lw, node, inputs[0], a, b)


def lower_mul_const(lw, node, inputs: list[str]) -> str:
    bias = node.params.get("bias", np.zeros(1, np.float32))
    return per_channel_affine(lw, node, inputs[0], node.params["value"], bias)


register(
    OpDef(
        kind="conv",
        summary="Conv1d/2d, depthwise, grouped; per-channel requantization",
        attrs=wl.ATTRS | {"stride", "padding", "dilation", "groups"},
        consts=wl.CONSTS,
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=wl.C_FILES,
        c_header="iq_conv.h",
        to_onnx=wl.to_onnx,
        to_onnx_int=wl.to_onnx_int,
        macs=macs,
        scratch_bytes=scratch_bytes,
    ),
    FloatOpDef(
        name="conv",
        pads=lambda node: any(node.attrs["padding"]),
        summary="Conv1d/Conv2d (stride, padding, dilation, groups); params weight[, bias]",
        run=run_float_conv,
        lower=lower_conv,
        lowers_to=("conv", "binary_conv", "sign_conv", "unpack_bits"),
        weighted=True,
        fuse_into=True,
        bits_in=True,  # packed inputs / sign outputs: ops/_binary.py
    ),
    FloatOpDef(
        name="batchnorm",
        summary="standalone BatchNorm (eval statistics); params mean, var, weight, bias; "
        "attr eps",
        run=run_float_batchnorm,
        lower=lower_batchnorm,
        lowers_to=("conv",),
        fuse_into=True,
    ),
    FloatOpDef(
        name="mul_const",
        summary="x·value + bias, constants scalar or per channel; params value[, bias]",
        run=run_float_mul_const,
        lower=lower_mul_const,
        lowers_to=("conv", "reshape"),
        fuse_into=True,
    ),
)
