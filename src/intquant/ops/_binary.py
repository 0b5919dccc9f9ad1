"""What the binary-network ops share: the output stage, the weight bit streams, the C structs.

``binary_conv``, ``binary_fully_connected`` and ``sign_conv`` compute an exact integer
accumulator and then either

- emit **bits** (output dtype "bit"): ``out = +1 if acc >= threshold[c] else −1`` — BatchNorm
  followed by sign folded into one integer per channel (lowering: ``threshold = −bias``, see
  :func:`threshold_from_bias`), so the next binary layer consumes packed bits; or
- emit **8/16-bit values** (the last binary layer before an 8-bit one):
  ``out = clamp(requantize(acc + bias[c]) + output_zero_point, act_min, act_max)``, the same
  per-channel requantization as conv (int32 accumulator, any ``rounding``).

The output dtype selects the stage; each stage has its own attrs and consts and validation
rejects the other's. NumPy only at import time.
"""

from __future__ import annotations

import numpy as np

from ..intgraph.check import OpCheck
from ..intgraph.types import BIT, Op, TensorInfo
from ..numerics import requantize
from . import _bits
from . import _weighted as wl

STAGE_ATTRS = frozenset({"output_zero_point", "act_min", "act_max", "rounding"})
BITS_CONSTS = frozenset({"threshold"})
REQUANT_CONSTS = frozenset({"bias", "multiplier", "shift"})
STAGE_CONSTS = BITS_CONSTS | REQUANT_CONSTS
MAX_FIELD = 2**16  # Cin·kh·kw of a binary layer: |acc| ≤ 2^16, popcounts fit any int32
ACC_LIMIT = 2**31


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def check_output_stage(chk: OpCheck, cout: int, acc_bound: int,
                       clamped_threshold: bool = False) -> None:
    """The stage the output dtype selects: threshold for "bit", requantization otherwise.

    ``acc_bound`` bounds |acc|; with the bias it must stay below 2^31 (the C accumulator).
    ``clamped_threshold`` (binary layers, |acc| ≤ n = acc_bound): thresholds lie in
    [−n, n + 1] — any other value is equivalent to one of those ends, and the kernel's unsigned
    popcount comparison relies on the range.
    """
    op, out = chk.op, chk.out
    if out.dtype == BIT:
        for key in sorted(STAGE_ATTRS & set(op.attrs)):
            raise chk.fail(f"attr '{key}' belongs to an 8/16-bit output; a 'bit' output "
                           "has only const 'threshold'")
        for key in sorted(REQUANT_CONSTS & set(op.consts)):
            raise chk.fail(f"const '{key}' belongs to an 8/16-bit output; a 'bit' output "
                           "has only const 'threshold'")
        t = chk.const("threshold", ("int32",), 1)
        if t.shape[0] != cout:
            raise chk.fail(f"const 'threshold' has {t.shape[0]} entries, expected Cout = {cout}")
        if clamped_threshold and (t.min() < -acc_bound or t.max() > acc_bound + 1):
            raise chk.fail(f"const 'threshold' values must lie in [{-acc_bound}, "
                           f"{acc_bound + 1}] (|acc| <= {acc_bound}; clamp them), got "
                           f"[{t.min()}, {t.max()}]")
        return
    if "threshold" in op.consts:
        raise chk.fail(f"const 'threshold' belongs to a 'bit' output; output '{out.name}' is "
                       f"{out.dtype}")
    chk.zero_point_attr("output_zero_point", out)
    chk.act_range()
    rounding = chk.rounding()
    wl.check_requant_consts(chk, cout, 32, rounding)
    bias = int(np.abs(op.consts["bias"].astype(np.int64)).max())
    if acc_bound + bias >= ACC_LIMIT:
        raise chk.fail(f"accumulator bound {acc_bound} + max|bias| {bias} >= 2^31")
    if rounding == "pow2":
        e = int(op.consts["shift"].astype(np.int64).max()) - 1
        if e > 0 and (acc_bound + bias) << e >= 2**62:
            raise chk.fail(f"pow2 left shift {e} of accumulator bound overflows int64")


def check_weight_stream(chk: OpCheck, cin: int, kh: int, kw: int) -> np.ndarray:
    """const 'weight': uint32 [Cout, ceil(Cin·kh·kw/32)], padding bits 0 (see ``_bits``)."""
    if cin * kh * kw > MAX_FIELD:
        raise chk.fail(f"receptive field Cin·kh·kw = {cin * kh * kw} exceeds {MAX_FIELD}")
    w = chk.const("weight", ("uint32",), 2)
    words = _bits.stream_words(cin, kh, kw)
    if w.shape[1] != words or w.shape[0] < 1:
        raise chk.fail(f"const 'weight' shape {w.shape}: expected [Cout, {words}] (Cin·kh·kw = "
                       f"{cin * kh * kw} bits packed 32 per word)")
    if _bits.padding_bits(w, cin * kh * kw).any():
        raise chk.fail("const 'weight' has set bits beyond Cin·kh·kw (padding must be 0)")
    return w


# ----------------------------------------------------------------------------------------------
# Reference
# ----------------------------------------------------------------------------------------------


def output_stage(acc: np.ndarray, op: Op, out: TensorInfo, axis: int = 1) -> np.ndarray:
    """acc (int64, channels along ``axis``) → the output values (±1 int8, or requantized)."""
    view = [1] * acc.ndim
    view[axis] = -1
    if out.dtype == BIT:
        thr = op.consts["threshold"].astype(np.int64).reshape(view)
        return np.where(acc >= thr, 1, -1).astype(np.int8)
    a = op.attrs
    acc = acc + op.consts["bias"].astype(np.int64).reshape(view)
    y = requantize(acc, op.consts["multiplier"], op.consts["shift"], a["output_zero_point"],
                   a["act_min"], a["act_max"], rounding=a.get("rounding", "double"),
                   acc_bits=32, axis=axis)
    return y.astype(out.dtype)


# ----------------------------------------------------------------------------------------------
# Lowering
# ----------------------------------------------------------------------------------------------


def threshold_from_bias(bias: np.ndarray) -> np.ndarray:
    """sign(s·(acc + b)) with s > 0 and sign(0) = +1 is +1 exactly when acc ≥ −b."""
    return (-np.asarray(bias, dtype=np.int64)).astype(np.int32)


# ----------------------------------------------------------------------------------------------
# C
# ----------------------------------------------------------------------------------------------


def small_requant(op: Op, acc_bound: int) -> bool:
    """iq_mbqm_single_small applies: single rounding, |acc + bias| < 2^15, shifts in
    [−15, 14] (see iq_binary.h)."""
    if op.attrs.get("rounding", "double") != "single":
        return False
    shift = op.consts["shift"].astype(np.int64)
    bias = int(np.abs(op.consts["bias"].astype(np.int64)).max())
    return acc_bound + bias < 2**15 and shift.min() >= -15 and shift.max() <= 14


def emit_output_stage(em, op: Op, p: str, acc_bound: int, threshold_array: bool) -> list[str]:
    """The ``iq_binary_out_t`` of the stage (and its per-channel arrays); returns ``&<p>_out``.

    ``threshold_array``: a bit output passes its thresholds as an array (sign_conv); binary
    layers keep them in the weight stream instead (``_binary_asm.c_weights``).
    """
    from ..codegen.c_syntax import requant_mode

    out = em.g.tensors[op.output]
    c = op.consts
    if out.dtype == BIT:
        fields: dict[str, int | str] = {"bits": 1}
        if threshold_array:
            fields["threshold"] = em.const_array(f"{p}_threshold", "int32_t", c["threshold"])
    else:
        a = op.attrs
        fields = {
            "bits": 0,
            "bias": em.const_array(f"{p}_bias", "int32_t", c["bias"]),
            "multiplier": em.const_array(f"{p}_mult", "int32_t", c["multiplier"]),
            "shift": em.const_array(f"{p}_shift", "int32_t", c["shift"]),
            "mode": requant_mode(op),
            "small": int(small_requant(op, acc_bound)),
            "output_zero_point": a["output_zero_point"],
            "act_min": a["act_min"],
            "act_max": a["act_max"],
            "out_dtype": em.code(op.output),
        }
    return [f"&{em.params('iq_binary_out_t', f'{p}_out', fields)}"]


def emit_weights(em, op: Op, p: str, n_full: int,
                 border: bool) -> tuple[str, dict[str, str]]:
    """The C weight array (``_binary_asm.c_weights``) and the layer's pixel kernels: ``pixel``
    (bits, or popcounts for an 8/16-bit output) and, for a layer with border pixels
    (``border``), ``mpops`` (masked popcounts) or, beyond MAX_MASKED_WORDS, ``pops`` (two
    calls); the one not used is "NULL". Only kernels the layer calls are instantiated."""
    from . import _binary_asm

    bits = em.g.tensors[op.output].dtype == BIT
    k = int(op.consts["weight"].shape[1])
    layout = _binary_asm.c_weights(op.consts["weight"], op.consts.get("threshold"), n_full)
    w = em.const_array(f"{p}_weight", "uint32_t", layout)
    stride = k + 1 if bits else k
    kinds = {"pixel": "bits" if bits else "pops", "pops": None, "mpops": None}
    if border:
        role = "mpops" if k <= _binary_asm.MAX_MASKED_WORDS else "pops"
        kinds[role] = role
    kernels = {}
    for role, kind in kinds.items():
        if kind is None:
            kernels[role] = "NULL"
            continue
        name = _binary_asm.instance_name(k, kind, stride)
        em.add_kernel_instance(name, _binary_asm.declaration(name),
                               _binary_asm.instance_source(k, kind, stride))
        kernels[role] = name
    return w, kernels


def pops_scratch_bytes(graph, op: Op, border: bool) -> int:
    """uint16 popcounts of one pixel: for a requantizing stage, and twice for border pixels."""
    cout = int(op.consts["weight"].shape[0])
    if border:
        return 4 * cout
    return 0 if graph.tensors[op.output].dtype == BIT else 2 * cout


def _binary_codes(w_q: np.ndarray, zero_channels_allowed: bool) -> bool:
    """Every channel's codes are ±1 (or, for a bit output, all 0: a constant channel)."""
    flat = w_q.reshape(w_q.shape[0], -1)
    pm1 = np.all(np.abs(flat) == 1, axis=1)
    zero = np.all(flat == 0, axis=1) if zero_channels_allowed else np.zeros_like(pm1)
    return bool(np.all(pm1 | zero))


def lower_binary_layer(lw, node, x: str, kind: str, weight: np.ndarray,
                       bias: np.ndarray | None, w_qp, geometry: dict, out_shape) -> str:
    """A conv / linear whose input is packed bits or whose output format is 1 bit (a sign).

    - bit input, ±1 weights, groups 1 → binary_conv / binary_fully_connected (threshold or
      requantized output);
    - other weights on a bit input → unpack the input to int8 first;
    - 8/16-bit input with a 1-bit output → sign_conv.
    The float bias is put on the accumulator grid as for every layer (b = round(bias/(s_in·
    s_w))); a sign output is then +1 exactly when acc ≥ −b.
    """
    from ..lower import LoweringError, dtype_of, scalar_qparams
    from ..numerics import quantize

    out_qp = lw.plan.acts[node.name]
    out_bit = dtype_of(out_qp) == BIT
    if out_bit and node.act is not None:
        raise LoweringError("an activation fused between a layer and its 1-bit (sign) output")
    cout = weight.shape[0]
    w4 = weight if kind == "conv" else weight.reshape(cout, -1, 1, 1)
    w_scale = (np.broadcast_to(w_qp.scale, (cout,)) if w_qp.axis is not None
               else np.full(cout, w_qp.scale[0])).astype(np.float64)
    w_q = quantize(w4, w_qp).astype(np.int64)
    s_in, z_in = scalar_qparams(lw.fmt[x])
    b_q = wl.quantize_bias(bias, s_in, w_scale, cout, 32)
    groups = geometry.get("groups", 1)
    if lw.tensors[x].dtype == BIT:
        if groups == 1 and _binary_codes(w_q, out_bit):
            return _emit_binary(lw, node, x, kind, w_q, b_q, s_in * w_scale, geometry,
                                out_shape, out_qp, out_bit)
        x = lw.unpacked(x)  # same scale, zero point 0
        if not out_bit:
            return wl.weighted_layer(lw, node, x, kind, weight, bias, w_qp, geometry, out_shape)
    w_dtype = np.int8 if w_qp.bits <= 8 else np.int16
    stride, padding, dilation = (
        (geometry["stride"], geometry["padding"], geometry["dilation"]) if kind == "conv"
        else ([1, 1], [0, 0, 0, 0], [1, 1]))
    attrs = dict(stride=list(stride), padding=list(padding), dilation=list(dilation),
                 groups=int(groups), input_zero_point=z_in)
    consts = {"weight": w_q.astype(w_dtype), "threshold": threshold_from_bias(b_q)}
    return lw.emit(node.name, "sign_conv", [x], out_shape, out_qp, attrs, consts)


def _emit_binary(lw, node, x: str, kind: str, w_q: np.ndarray, b_q: np.ndarray,
                 acc_scale: np.ndarray, geometry: dict, out_shape, out_qp, out_bit: bool) -> str:
    """binary_conv / binary_fully_connected from ±1 codes (all-0 channels: constant output)."""
    from ..lower import LoweringError, act_bounds, scalar_qparams
    from ..numerics import quantize_multipliers

    cout, cin, kh, kw = w_q.shape
    field = cin * kh * kw
    zero = np.all(w_q.reshape(cout, -1) == 0, axis=1)
    codes = np.where(zero[:, None, None, None], 1, w_q)
    consts: dict[str, np.ndarray] = {"weight": _bits.pack_weights(codes)}
    attrs: dict = {}
    if kind == "conv":
        attrs = dict(kernel=[kh, kw], stride=list(geometry["stride"]),
                     padding=list(geometry["padding"]), dilation=list(geometry["dilation"]))
    if out_bit:
        thr = threshold_from_bias(b_q).astype(np.int64)
        # acc of a zero channel is 0: always +1 if 0 ≥ −b, else always −1.
        thr = np.where(zero, np.where(b_q >= 0, -field, field + 1), thr)
        consts["threshold"] = np.clip(thr, -field, field + 1).astype(np.int32)  # |acc| ≤ field
    else:
        if int(np.abs(b_q).max()) + field >= ACC_LIMIT:
            raise LoweringError("bias too large for the int32 accumulator")
        s_out, z_out = scalar_qparams(out_qp)
        mult, shift = quantize_multipliers(acc_scale / s_out)
        lo, hi = act_bounds(node, out_qp)
        attrs.update(output_zero_point=z_out, act_min=lo, act_max=hi, rounding=lw.rounding())
        consts.update(bias=b_q.astype(np.int32), multiplier=mult, shift=shift)
    binary_kind = "binary_conv" if kind == "conv" else "binary_fully_connected"
    return lw.emit(node.name, binary_kind, [x], out_shape, out_qp, attrs, consts)


# ----------------------------------------------------------------------------------------------
# ONNX: a "bit" tensor is an int8 tensor of ±1; every binary kind exports exact integer ops
# ----------------------------------------------------------------------------------------------


def _shim(op: Op, kind: str, weight: np.ndarray) -> Op:
    """The op as the conv / fully_connected exporters of ``_weighted`` read it."""
    attrs = dict(op.attrs, groups=op.attrs.get("groups", 1))
    return Op(op.name, kind, op.inputs, op.output, attrs, {"weight": weight})


def onnx_product(ex, op: Op) -> tuple[str, tuple[int, ...]]:
    """Σ w·x (binary layers, ±1 int8 with zero padding) or Σ w·(x − z) (sign_conv) as an int64
    tensor, and the per-channel broadcast shape."""
    from onnx import TensorProto

    x_info = ex.g.tensors[op.inputs[0]]
    vector = len(x_info.shape) == 1
    view: tuple[int, ...] = (-1,) if vector else ((-1, 1) if len(x_info.shape) == 2 else
                                                  (-1, 1, 1))
    if op.kind == "sign_conv":
        w = op.consts["weight"]
        shim = _shim(op, "fully_connected", w[:, :, 0, 0]) if vector else _shim(op, "conv", w)
        return wl._digit_product(ex, shim, x_info, view), view
    if op.kind == "binary_fully_connected":
        w = _bits.unpack_words(op.consts["weight"], x_info.shape[0])
        acc = wl._integer_product(ex, _shim(op, "fully_connected", w), op.inputs[0], w, None)
    else:
        kh, kw = op.attrs["kernel"]
        w = _bits.unpack_weights(op.consts["weight"], x_info.shape[0], kh, kw)
        shim = _shim(op, "conv", w)
        x = wl._pad_int(ex, shim, op.inputs[0], x_info, np.int8(0))  # padded taps are 0
        acc = wl._integer_product(ex, shim, x, w, None)
    return ex.cast(acc, TensorProto.INT64, op.name + "_acc"), view


def to_onnx_layer(ex, op: Op) -> None:
    """binary_conv / binary_fully_connected / sign_conv: the exact product, then the stage."""
    acc, view = onnx_product(ex, op)
    if ex.g.tensors[op.output].dtype == BIT:
        thr = ex.i64(op.name + "_thr", op.consts["threshold"].reshape(view))
        ex_sign(ex, ex.node("GreaterOrEqual", [acc, thr], op.name + "_ge"), op)
        return
    c = op.consts
    acc = ex.node("Add", [acc, ex.i64(op.name + "_bias", c["bias"].reshape(view))], op.name + "_b")
    y = ex.apply_multiplier_int(acc, c["multiplier"].reshape(view), c["shift"].reshape(view),
                                op.attrs.get("rounding", "double"), 32, op.name + "_mbqm")
    ex.finish_int(y, op, op.attrs["output_zero_point"])


def ex_sign(ex, condition: str, op: Op) -> None:
    """int8 +1 where ``condition`` holds, −1 elsewhere, as the op's output."""
    ex.node("Where", [condition, ex.const(op.name + "_p1", np.int8(1)),
                      ex.const(op.name + "_m1", np.int8(-1))], op.name + "_sign",
            out=ex.oname(op))
