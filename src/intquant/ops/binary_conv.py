"""binary_conv — W1A1 Conv1d / Conv2d (BNN, XNOR-Net): XOR + popcount on packed bits

- inputs `[x]`, x a "bit" tensor `(Cin, L)` or `(Cin, H, W)` (values ±1, packed); output
  `(Cout, L')` / `(Cout, H', W')`, either "bit" or int8 / uint8 / int16.
- consts: `weight` uint32 `[Cout, ceil(Cin·kh·kw/32)]`: each output channel's ±1 weights as one
  bit stream in (kh, kw, Cin) order (−1 = set bit, MSB first, zero padded; `ops/_bits.py`);
  output stage: `threshold` int32 `[Cout]` for a "bit" output, else `bias` int32,
  `multiplier`, `shift` int32 `[Cout]` (see `ops/_binary.py`).
- attrs: `kernel [kh, kw]`, `stride`, `padding [top, left, bottom, right]`, `dilation`; with an
  8/16-bit output also `output_zero_point`, `act_min`, `act_max`, `rounding`. 1-D convs use
  kh = sh = dh = 1, top = bottom = 0.
- math: `acc[co, oy, ox] = Σ_{ci, ky, kx} w[co, ci, ky, kx] · x[ci, iy, ix]` over the taps
  inside the input (`iy = oy·sh − top + ky·dh`, `ix = ox·sw − left + kx·dw`); a padded tap
  contributes 0, exactly as the float model's zero padding does (it is not a ±1 value).
  Bit output: `+1 if acc ≥ threshold[co] else −1`; otherwise
  `clamp(requantize(acc + bias[co]) + output_zero_point, act_min, act_max)`.
- C: per output pixel the kernel gathers the receptive field into one bit stream (the weight
  layout) and each output channel costs ``ceil(Cin·kh·kw/32)`` XOR + popcount steps:
  `acc = n_valid − 2·popcount(field ^ weight)`; border pixels mask their padded taps.

Lowered from ``conv`` when the input is a packed "bit" tensor and every weight of the layer is
±1 (``ops/_binary.py``).
"""

from __future__ import annotations

import math

import numpy as np

from ..codegen.c_syntax import spatial, window_fields
from ..intgraph.check import OpCheck, arity, check_out_len, out_len, window_attrs
from ..intgraph.check import spatial as checked_spatial
from ..intgraph.types import BIT, IntGraph, Op, TensorInfo
from . import _binary, _bits
from ._reference import as_nchw, from_nchw, pad_hw, windows
from .registry import OpDef, register

_CHUNK_VALUES = 2**24  # im2col values per batch chunk (int8 patches, bounded memory)


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    if x.dtype != BIT:
        raise chk.fail(f"input '{x.name}' must be a packed 'bit' tensor, got {x.dtype}")
    cin, h, w = checked_spatial(chk, x.shape, f"input '{x.name}'")
    stride, padding, dil, kernel = window_attrs(chk, x, kernel_from="kernel", dilation=True)
    kh, kw = kernel
    weight = _binary.check_weight_stream(chk, cin, kh, kw)
    cout = weight.shape[0]
    ho = out_len(h, padding[0], padding[2], kh, stride[0], dil[0])
    wo = out_len(w, padding[1], padding[3], kw, stride[1], dil[1])
    check_out_len(chk, "H", ho)
    check_out_len(chk, "W", wo)
    chk.expect_output_shape((cout, wo) if len(x.shape) == 2 else (cout, ho, wo))
    _binary.check_output_stage(chk, cout, cin * kh * kw, clamped_threshold=True)


def accumulate(x: np.ndarray, weight: np.ndarray, attrs: dict) -> np.ndarray:
    """Σ w·x over the in-bounds taps for a batch of ±1 inputs (N, Cin, H, W): int32 acc.

    Zero padding makes a padded tap contribute 0 (the float model's padding).
    """
    kh, kw = attrs["kernel"]
    cout = weight.shape[0]
    w = weight.reshape(cout, -1).astype(np.int32)  # (Cin, kh, kw) order, as the columns below
    xp = pad_hw(x.astype(np.int32), attrs["padding"], 0)
    win = windows(xp, [kh, kw], attrs["stride"], attrs["dilation"])  # (N, C, Ho, Wo, kh, kw)
    n, _, ho, wo = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, -1)
    acc = cols @ w.T
    return acc.reshape(n, ho, wo, cout).transpose(0, 3, 1, 2)


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """acc = Σ w·x (padded taps 0); threshold to ±1 or requantize per channel."""
    a = op.attrs
    x = inputs[0]
    one_d = x.ndim == 3
    xn = as_nchw(x)
    kh, kw = a["kernel"]
    weight = _bits.unpack_weights(op.consts["weight"], xn.shape[1], kh, kw)
    per_sample = max(1, xn[0].size * kh * kw)
    chunk = max(1, _CHUNK_VALUES // per_sample)
    acc = np.concatenate(
        [accumulate(xn[i : i + chunk], weight, a) for i in range(0, xn.shape[0], chunk)]
    )
    y = _binary.output_stage(acc.astype(np.int64), op, out, axis=1)
    return from_nchw(y, one_d)


def macs(op: Op, graph: IntGraph) -> int:
    cin = graph.tensors[op.inputs[0]].shape[0]
    kh, kw = op.attrs["kernel"]
    return op.consts["weight"].shape[0] * math.prod(graph.tensors[op.output].shape[1:]) * (
        cin * kh * kw
    )


def scratch_bytes(graph: IntGraph, op: Op) -> int:
    """The gathered receptive field of one output pixel and its masked copy (words each), then
    two popcounts per output channel (border pixels)."""
    return 2 * int(op.consts["weight"].shape[1]) * 4 + _binary.pops_scratch_bytes(graph, op, True)


def emit_c(em, i: int, op: Op, p: str) -> None:
    a = op.attrs
    cin, h, w = spatial(em.g.tensors[op.inputs[0]].shape)
    cout, ho, wo = spatial(em.g.tensors[op.output].shape)
    kh, kw = a["kernel"]
    n_full = cin * kh * kw
    weight, kernels = _binary.emit_weights(em, op, p, n_full, border=any(a["padding"]))
    prm = em.params(
        "iq_binary_conv_params_t",
        f"{p}_params",
        {
            "in_c": cin,
            "in_h": h,
            "in_w": w,
            "out_c": cout,
            "out_h": ho,
            "out_w": wo,
            **window_fields(a["kernel"], a, a["dilation"]),
            "field_words": int(op.consts["weight"].shape[1]),
            "contiguous": int(kh == 1 and a["dilation"][1] == 1 and cin % 32 == 0),
            **kernels,
        },
    )
    out = _binary.emit_output_stage(em, op, p, n_full, threshold_array=False)
    scratch = f"(uint32_t*)(IQ_ARENA + {em.plan.scratch[i][0]})"
    args = ", ".join([f"&{prm}", em.typed(op.inputs[0], True), weight, *out,
                      em.ptr(op.output, False), scratch])
    em.calls.append(f"    iq_binary_conv({args});")


register(
    OpDef(
        kind="binary_conv",
        summary="W1A1 Conv1d/2d on packed bits: XOR + popcount; bits out (per-channel "
        "threshold) or 8/16-bit out (requantized)",
        attrs=frozenset({"kernel", "stride", "padding", "dilation"}) | _binary.STAGE_ATTRS,
        consts=frozenset({"weight"}) | _binary.STAGE_CONSTS,
        check=check,
        run=run,
        emit_c=emit_c,
        to_onnx=_binary.to_onnx_layer,
        c_files=("iq_binary_conv.c", "iq_binary_conv.h", "iq_binary.h"),
        c_header="iq_binary_conv.h",
        macs=macs,
        scratch_bytes=scratch_bytes,
        dtypes=("bit", "int8", "uint8", "int16"),
    ),
)
