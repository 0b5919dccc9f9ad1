"""conv_transpose — ConvTranspose1d / ConvTranspose2d (stride, padding, output_padding,
dilation, groups) with per-channel requantization

- inputs: `[x]`, x shape `(Cin, L)` (1-D) or `(Cin, H, W)` (2-D); output `(Cout, L')` /
  `(Cout, H', W')`.
- consts: `weight` int8/int16 `[Cout, Cin/groups, kh, kw]` — output channel first like conv
  (so per-channel scales, the accumulator bound and the C weight rows are conv's), *not*
  flipped: `weight[g·Cout/g + j, ci] = torch_weight[g·Cin/g + ci, j]` (torch and ONNX store
  `[Cin, Cout/groups, kh, kw]`; ``swap_channel_axes`` maps one to the other); `bias` int32
  (acc_bits 32) or int64 (acc_bits 64) `[Cout]`, `multiplier` int32 `[Cout]`, `shift` int32
  `[Cout]`.
- attrs: `stride [sh, sw]`, `padding [top, left, bottom, right]` (outputs cropped from each
  side of the full result), `output_padding [oh, ow]` (outputs added at the bottom / right),
  `dilation [dh, dw]`, `groups`, `input_zero_point`, `output_zero_point`, `act_min`,
  `act_max`, `acc_bits` (32|64), `rounding`. 1-D uses sh = dh = 1, top = bottom = oh = 0 and
  runs as 2-D with H = 1.
- size: `H' = (H − 1)·sh + dh·(kh − 1) + 1 − top − bottom + oh` (PyTorch's and ONNX's).
- math: `acc[co, oy, ox] = bias[co] + Σ w[co, ci, ky, kx]·(x[g·Cin/g + ci, iy, ix] − z_in)`
  over the taps with `oy + top = iy·sh + ky·dh`, `ox + left = ix·sw + kx·dw` and (iy, ix) a
  real input pixel — every input pixel scatters its kernel onto the output, nothing is
  multiplied by an inserted zero (the zero-insertion rewrite spends sh·sw times the MACs).
  Then requantize per output channel with (multiplier[co], shift[co]), clamp to
  [act_min, act_max] (fused ReLU), as conv.
- C (`iq_conv_transpose.c`): the gather form of the same sum — per output position the taps
  that land are listed once (division-free phase tracking), then every output channel sums
  them: 8-bit inputs with int8 weights and acc_bits 32 as conv's fast kernels do (the inputs
  under the taps gathered once, four channels per pass of iq_dot4_u8 over offset-binary
  weights), 16-bit inputs with int64 sums, any other combination by element type code.

Float op lowered here: ``conv_transpose`` (weights in the layout above, 1-D without kh).
"""

from __future__ import annotations

import numpy as np

from ..codegen.c_syntax import C_TYPE, requant_mode, spatial
from ..intgraph.check import OpCheck, arity, check_out_len, window_attrs
from ..intgraph.check import spatial as checked_spatial
from ..intgraph.types import IntGraph, Op, TensorInfo
from . import _weighted as wl
from ._reference import as_nchw, from_nchw, to_out
from .registry import FloatOpDef, OpDef, register

ATTRS = (wl.ATTRS - {"weight_format", "weight_shape"}) | {
    "stride", "padding", "output_padding", "dilation", "groups"}
# Reference scatter buffers are built per batch chunk so memory stays bounded.
_CHUNK_BYTES = 64 * 2**20
# Float ConvTranspose of integer-valued digits is exact while every partial sum is < 2^24.
_FLOAT_EXACT = 2**24


def out_len(n: int, k: int, s: int, d: int, before: int, after: int, extra: int) -> int:
    """Output length along one axis: (n − 1)·s + d·(k − 1) + 1 − before − after + extra."""
    return (n - 1) * s + d * (k - 1) + 1 - before - after + extra


def swap_channel_axes(w, groups: int):
    """[g·A, B, *k] → [g·B, A, *k]: the two channel axes swapped within each group — torch's
    and ONNX's [Cin, Cout/groups, *k] to this op's [Cout, Cin/groups, *k] and back (the same
    map both ways). NumPy arrays and torch tensors alike (the float forward and QAT pass
    tensors that require grad)."""
    a, b, k = w.shape[0] // groups, w.shape[1], tuple(w.shape[2:])
    return w.reshape(groups, a, b, *k).swapaxes(1, 2).reshape(groups * b, a, *k)


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    cin, h, w = checked_spatial(chk, x.shape, f"input '{x.name}'")
    acc_bits, rounding = wl.check_weight_layer_attrs(chk, x)
    stride, padding, dil, _ = window_attrs(chk, x, kernel_from=None, dilation=True)
    extra = chk.list_attr("output_padding", 2, lo=0, hi=chk.limits.max_window)
    if len(x.shape) == 2 and extra[0] != 0:
        raise chk.fail(f"1-D op (input (C, L)) must have output_padding[0] = 0, got {extra}")
    groups = chk.int_attr("groups", 1)
    weight = chk.const("weight", ("int8", "int16"), 4)
    cout, cin_g, kh, kw = wl.check_grouped_weight(chk, weight, cin, groups, len(x.shape),
                                                  "conv_transpose")
    wl.check_requant_consts(chk, cout, acc_bits, rounding)
    ho = out_len(h, kh, stride[0], dil[0], padding[0], padding[2], extra[0])
    wo = out_len(w, kw, stride[1], dil[1], padding[1], padding[3], extra[1])
    check_out_len(chk, "H", ho)
    check_out_len(chk, "W", wo)
    chk.expect_output_shape((cout, wo) if len(x.shape) == 2 else (cout, ho, wo))
    # Each output sees each weight at most once: conv's bound holds for every partial sum.
    wl.check_accumulator_bound(chk, weight, x, x.zero_point, acc_bits, rounding)


# ----------------------------------------------------------------------------------------------
# Reference
# ----------------------------------------------------------------------------------------------


def _scatter_acc(xz: np.ndarray, weight: np.ndarray, op: Op, ho: int, wo: int) -> np.ndarray:
    """Σ w·(x − z) for one batch chunk: each tap (ky, kx) adds its channel product onto the
    output grid it lands on (rows ky·dh + iy·sh), then the padding is cropped."""
    a = op.attrs
    groups = a["groups"]
    (sh, sw), (dh, dw) = a["stride"], a["dilation"]
    top, left = a["padding"][0], a["padding"][1]
    n, _, h, w = xz.shape
    cout, cin_g, kh, kw = weight.shape
    full_h = max((h - 1) * sh + dh * (kh - 1) + 1, top + ho)
    full_w = max((w - 1) * sw + dw * (kw - 1) + 1, left + wo)
    acc = np.zeros((n, cout, full_h, full_w), dtype=xz.dtype)
    xg = xz.reshape(n, groups, cin_g, h, w)
    wg = weight.astype(xz.dtype).reshape(groups, cout // groups, cin_g, kh, kw)
    for ky in range(kh):
        for kx in range(kw):
            part = np.einsum("ngchw,gdc->ngdhw", xg, wg[:, :, :, ky, kx]).reshape(n, cout, h, w)
            acc[:, :, ky * dh : ky * dh + (h - 1) * sh + 1 : sh,
                kx * dw : kx * dw + (w - 1) * sw + 1 : sw] += part
    return acc[:, :, top : top + ho, left : left + wo]


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """acc = bias + Σ over the taps that land of w·(x − z_in); requantize per channel."""
    x = inputs[0]
    one_d = x.ndim == 3
    weight = op.consts["weight"]
    acc_dtype = wl.acc_dtype(op)
    xz = as_nchw(x).astype(acc_dtype) - acc_dtype(op.attrs["input_zero_point"])
    _, ho, wo = spatial(out.shape)
    per_sample = weight.shape[0] * (ho + xz.shape[2]) * (wo + xz.shape[3]) * 8
    chunk = max(1, _CHUNK_BYTES // max(1, per_sample))
    acc = np.concatenate(
        [_scatter_acc(xz[i : i + chunk], weight, op, ho, wo) for i in range(0, x.shape[0], chunk)]
    )
    acc = acc.astype(np.int64) + op.consts["bias"].astype(np.int64)[None, :, None, None]
    y = wl.requantize_per_channel(acc, op, axis=1)
    return to_out(from_nchw(y, one_d), out)


def _landing_taps(n: int, k: int, s: int, d: int, before: int, out: int) -> int:
    """Pairs (input index i, tap j) along one axis whose output i·s + j·d − before is kept."""
    o = np.arange(n)[:, None] * s + np.arange(k)[None, :] * d - before
    return int(np.count_nonzero((o >= 0) & (o < out)))


def macs(op: Op, graph: IntGraph) -> int:
    """Only the products that land on a kept output (no inserted zeros)."""
    a = op.attrs
    cout, cin_g, kh, kw = op.consts["weight"].shape
    _, h, w = spatial(graph.tensors[op.inputs[0]].shape)
    _, ho, wo = spatial(graph.tensors[op.output].shape)
    rows = _landing_taps(h, kh, a["stride"][0], a["dilation"][0], a["padding"][0], ho)
    cols = _landing_taps(w, kw, a["stride"][1], a["dilation"][1], a["padding"][1], wo)
    return cout * cin_g * rows * cols


def fast_path(graph: IntGraph, op: Op) -> str | None:
    """The C kernel's offset-binary path over the gathered inputs (int8 weights): "fast8" for
    8-bit inputs with an int32 accumulator, "fast16" for int16 inputs (16x8) while a tap's
    Σ_ci (w + 128)·(x + 32768) stays below 2^32; None: the kernels by element type."""
    if op.consts["weight"].dtype != np.int8:
        return None
    dtype = graph.tensors[op.inputs[0]].dtype
    if dtype in ("int8", "uint8") and op.attrs["acc_bits"] == 32:
        return "fast8"
    if dtype == "int16" and op.consts["weight"].shape[1] * 255 * 65535 < 2**32:
        return "fast16"
    return None


def scratch_bytes(graph: IntGraph, op: Op) -> int:
    """The C kernel's tap list of one output position ((weight, input) offsets, int32) and on
    the fast paths the inputs under those taps (fast8: a byte per tap and input channel;
    fast16: two, after one uint32 sum per tap)."""
    _, cin_g, kh, kw = op.consts["weight"].shape
    extra = {"fast8": kh * kw * cin_g, "fast16": 4 * kh * kw + 2 * kh * kw * cin_g}
    return 8 * kh * kw + extra.get(fast_path(graph, op), 0)


def offset_binary_weights(weight: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """The fast paths' constants: wu = w + 128 as uint8 laid out
    [group][block of 4 channels][ky][kx][ci][channel in block] (channels padded to a multiple
    of four with w = 0), and swu[padded channel][ky·kw + kx] = Σ_ci wu (uint32)."""
    cout, cin_g, kh, kw = weight.shape
    cout_g = cout // groups
    blocks = -(-cout_g // 4)
    wu = np.full((groups, blocks * 4, cin_g, kh, kw), 128, dtype=np.int64)
    wu[:, :cout_g] = weight.astype(np.int64).reshape(groups, cout_g, cin_g, kh, kw) + 128
    swu = wu.sum(axis=2).reshape(groups * blocks * 4, kh * kw)
    wu = wu.reshape(groups, blocks, 4, cin_g, kh, kw).transpose(0, 1, 4, 5, 3, 2)
    return np.ascontiguousarray(wu).astype(np.uint8).ravel(), swu.astype(np.uint32)


# ----------------------------------------------------------------------------------------------
# C
# ----------------------------------------------------------------------------------------------


def emit_c(em, i: int, op: Op, p: str) -> None:
    a, c = op.attrs, op.consts
    cin, h, w = spatial(em.g.tensors[op.inputs[0]].shape)
    cout, ho, wo = spatial(em.g.tensors[op.output].shape)
    kh, kw = c["weight"].shape[2:]
    acc64 = a["acc_bits"] == 64
    w16 = c["weight"].dtype == np.int16
    fast = fast_path(em.g, op)
    prm = em.params(
        "iq_conv_transpose_params_t",
        f"{p}_params",
        {
            "in_c": cin, "in_h": h, "in_w": w, "out_c": cout, "out_h": ho, "out_w": wo,
            "k_h": kh, "k_w": kw, "stride_h": a["stride"][0], "stride_w": a["stride"][1],
            "pad_top": a["padding"][0], "pad_left": a["padding"][1],
            "dil_h": a["dilation"][0], "dil_w": a["dilation"][1], "groups": a["groups"],
            "input_zero_point": a["input_zero_point"],
            "output_zero_point": a["output_zero_point"],
            "act_min": a["act_min"], "act_max": a["act_max"], "mode": requant_mode(op),
            "acc64": int(acc64), "w16": int(w16),
        },
    )
    if fast is not None:
        wu, swu = offset_binary_weights(c["weight"], a["groups"])
        weight = em.const_array(f"{p}_weight", "uint8_t", wu)
        swu_arg = em.const_array(f"{p}_swu", "uint32_t", swu)
        em.weight_array_bytes[op.name] = int(wu.nbytes)
    else:
        weight = em.const_array(f"{p}_weight", C_TYPE[str(c["weight"].dtype)], c["weight"])
        swu_arg = "NULL"
        em.weight_array_bytes[op.name] = int(c["weight"].nbytes)
    bias = em.const_array(f"{p}_bias", "int64_t" if acc64 else "int32_t", c["bias"])
    mult = em.const_array(f"{p}_multiplier", "int32_t", c["multiplier"])
    shift = em.const_array(f"{p}_shift", "int32_t", c["shift"])
    x = op.inputs[0]
    kernel = {"fast8": "iq_conv_transpose8", "fast16": "iq_conv_transpose16"}.get(
        fast, "iq_conv_transpose")
    em.calls.append(
        f"    {kernel}(&{prm}, {em.ptr(x, True)}, {em.code(x)}, {weight}, {swu_arg}, "
        f"{bias}, {mult}, {shift}, {em.ptr(op.output, False)}, {em.code(op.output)}, "
        f"{em.scratch_ptr(i)});"
    )


# ----------------------------------------------------------------------------------------------
# ONNX
# ----------------------------------------------------------------------------------------------


def _onnx_attrs(op: Op, one_d: bool) -> dict:
    a = op.attrs
    t, left, b, r = a["padding"]
    kh, kw = op.consts["weight"].shape[2:]
    if one_d:
        return dict(kernel_shape=[kw], strides=[a["stride"][1]], pads=[left, r],
                    output_padding=[a["output_padding"][1]], dilations=[a["dilation"][1]],
                    group=a["groups"])
    return dict(kernel_shape=[kh, kw], strides=a["stride"], pads=[t, left, b, r],
                output_padding=a["output_padding"], dilations=a["dilation"], group=a["groups"])


def _onnx_weight(op: Op, w: np.ndarray, one_d: bool) -> np.ndarray:
    """[Cout, Cin/g, kh, kw] codes → ONNX's [Cin, Cout/g, (kh,) kw]."""
    w = swap_channel_axes(w, op.attrs["groups"])
    return w[:, :, 0] if one_d else w


def to_onnx(ex, op: Op) -> None:
    """DQ(x), dequantized weights (per output channel: DQ on axis 1 without groups), bias,
    float ConvTranspose, Clip, Q — the plain QDQ form; scales read back as in conv."""
    from ..onnx_export import real_multiplier

    c = op.consts
    x_info, out = ex.g.tensors[op.inputs[0]], ex.g.tensors[op.output]
    one_d = len(x_info.shape) == 2
    m = real_multiplier(c["multiplier"], c["shift"])
    s_w = np.maximum(m * out.scale / x_info.scale, 1e-30).astype(np.float32)
    x = ex.dq(op.inputs[0], x_info.scale, op.attrs["input_zero_point"], x_info.dtype, op.name)
    w_codes = _onnx_weight(op, c["weight"], one_d)
    if op.attrs["groups"] == 1:
        w_dt = str(c["weight"].dtype)
        w = ex.dq(ex.const(op.name + "_w", w_codes), s_w, np.zeros(len(s_w)), w_dt,
                  op.name + "_w", axis=1)
    else:  # axis 1 holds Cout/groups channels: per-channel DQ cannot say it; the same floats
        scale = _onnx_weight(op, np.broadcast_to(s_w[:, None, None, None],
                                                 c["weight"].shape), one_d)
        w = ex.const(op.name + "_wf", (w_codes.astype(np.float32) * scale).astype(np.float32))
    s_b = np.float64(x_info.scale) * s_w.astype(np.float64)
    b = ex.const(op.name + "_bf", (c["bias"] * s_b).astype(np.float32))
    y = ex.node("ConvTranspose", [x, w, b], op.name, **_onnx_attrs(op, one_d))
    ex.clip_and_q(y, op, out)


def to_onnx_int(ex, op: Op) -> None:
    """Exact: x − z in int32, split into base-128 digits (and int16 weights likewise); each
    digit pair goes through a float ConvTranspose whose every partial sum is an integer below
    2^24 (checked), so exact on any machine; terms summed in int64, + bias, integer
    per-channel requantization."""
    from onnx import TensorProto

    from ._weighted import _digits, _digits_int

    a, c = op.attrs, op.consts
    x_info = ex.g.tensors[op.inputs[0]]
    one_d = len(x_info.shape) == 2
    view = (-1, 1) if one_d else (-1, 1, 1)
    x = ex.cast(op.inputs[0], TensorProto.INT32, op.name + "_x32")
    x = ex.node("Sub", [x, ex.const(op.name + "_z", np.int32(a["input_zero_point"]))],
                op.name + "_xz")
    # |x − z| < 2^16: the top digit is in [−4, 3]
    x_parts = [(t, f, 4 if f == 16384 else m) for t, f, m in _digits_int(ex, x, op.name + "_x")]
    w = c["weight"]
    w_parts = _digits(w) if w.dtype == np.int16 else [(w, 1)]
    k = int(np.prod(w.shape[1:]))
    acc = None
    for xp, xf, x_max in x_parts:
        xf32 = ex.cast(xp, TensorProto.FLOAT, op.name + "_xf")
        for wp, wf in w_parts:
            if k * x_max * int(np.abs(wp.astype(np.int64)).max()) >= _FLOAT_EXACT:
                raise ValueError(
                    f"op {op.name!r} (conv_transpose): a digit product can exceed 2^24 "
                    f"({k} terms), so float ConvTranspose would round; export this graph with "
                    f"requant='float'")
            wc = ex.const(op.name + "_wd", _onnx_weight(op, wp, one_d).astype(np.float32))
            term = ex.node("ConvTranspose", [xf32, wc], op.name + "_p", **_onnx_attrs(op, one_d))
            term = ex.cast(term, TensorProto.INT64, op.name + "_p64")
            if xf * wf != 1:
                term = ex.node("Mul", [term, ex.i64(op.name + "_f", xf * wf)], op.name + "_pf")
            acc = term if acc is None else ex.node("Add", [acc, term], op.name + "_sum")
    acc = ex.node("Add", [acc, ex.i64(op.name + "_bias", c["bias"].reshape(view))],
                  op.name + "_b")
    y = ex.apply_multiplier_int(acc, c["multiplier"].reshape(view), c["shift"].reshape(view),
                                a.get("rounding", "double"), a["acc_bits"], op.name + "_mbqm")
    ex.finish_int(y, op, a["output_zero_point"])


# ----------------------------------------------------------------------------------------------
# Float op
# ----------------------------------------------------------------------------------------------


def crop_or_extend(y, before: list[int], out: list[int]):
    """y[..., before : before + out] per spatial axis, zeros past the end (output_padding
    beyond the full result); ``before``/``out`` list the spatial axes of ``y`` in order."""
    import torch.nn.functional as F

    for axis, (b, n) in enumerate(zip(before, out, strict=True), start=2):
        y = y.narrow(axis, b, min(n, y.shape[axis] - b))
        if y.shape[axis] < n:
            pad = [0, 0] * (y.dim() - axis - 1) + [0, n - y.shape[axis]]
            y = F.pad(y, pad)
    return y


def conv_transpose_float(node, x, weight, bias=None):
    """The float layer with ``weight`` [Cout, Cin/g, *k] and ``bias`` (torch tensors, may
    require grad): F.conv_transpose without padding, cropped (padding) and extended
    (output_padding) to the node's geometry, plus the bias."""
    import torch.nn.functional as F

    a = node.attrs
    g = a["groups"]
    w = swap_channel_axes(weight, g)
    if a["dims"] == 1:
        y = F.conv_transpose1d(x, w, None, a["stride"][1], 0, 0, g, a["dilation"][1])
        _, left, _, r = a["padding"]
        before = [left]
        out = [y.shape[2] - left - r + a["output_padding"][1]]
    else:
        y = F.conv_transpose2d(x, w, None, a["stride"], 0, 0, g, a["dilation"])
        t, left, b, r = a["padding"]
        oh, ow = a["output_padding"]
        before = [t, left]
        out = [y.shape[2] - t - b + oh, y.shape[3] - left - r + ow]
    y = crop_or_extend(y, before, out)
    if bias is not None:
        y = y + bias.reshape((1, -1) + (1,) * (y.dim() - 2))
    return y


def run_float(node, inputs):
    import torch

    def param(key):
        v = node.params.get(key)
        return None if v is None else torch.as_tensor(np.asarray(v, dtype=np.float32))

    return conv_transpose_float(node, inputs[0], param("weight"), param("bias"))


def lower(lw, node, inputs: list[str]) -> str:
    a = node.attrs
    w = node.params["weight"]
    if a["dims"] == 1:
        w = w[:, :, None, :]
    geometry = dict(stride=list(a["stride"]), padding=list(a["padding"]),
                    output_padding=list(a["output_padding"]), dilation=list(a["dilation"]),
                    groups=int(a["groups"]))
    return wl.weighted_layer(lw, node, inputs[0], "conv_transpose", w, node.params.get("bias"),
                             lw.plan.weights[node.name], geometry, node.shape, packable=False)


register(
    OpDef(
        kind="conv_transpose",
        summary="ConvTranspose1d/2d (stride, padding, output_padding, dilation, groups); only "
        "the taps that land on input pixels are multiplied; per-channel requantization",
        attrs=frozenset(ATTRS),
        consts=wl.CONSTS,
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_conv_transpose.c", "iq_conv_transpose.h", "iq_dot.h", "iq_dot_avr.h"),
        c_header="iq_conv_transpose.h",
        to_onnx=to_onnx,
        to_onnx_int=to_onnx_int,
        macs=macs,
        scratch_bytes=scratch_bytes,
    ),
    FloatOpDef(
        name="conv_transpose",
        summary="ConvTranspose1d/2d; params weight [Cout, Cin/groups, *k] (output channel "
        "first, not flipped)[, bias]; attrs stride, padding, output_padding, dilation, groups",
        run=run_float,
        lower=lower,
        lowers_to=("conv_transpose",),
        weighted=True,
        fuse_into=True,
        pads=lambda node: True,  # outputs past the input's reach read zeros
        weighted_forward=conv_transpose_float,
    ),
)
