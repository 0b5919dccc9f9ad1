"""fully_connected — Linear over the last axis: (Cin,) or (…, Cin), e.g. tokens (T, C)

- inputs `[x]` shape `(…, Cin)`; output `(…, Cout)`; consts `weight [Cout, Cin]`, `bias`,
  `multiplier`, `shift` `[Cout]`;
  attrs as conv minus stride/padding/dilation/groups. Packed weights as conv's
  (`weight_format`, `weight_shape` = `[Cout, Cin]`, uint8 `[Cout, row_bytes]`).
- `acc[…, co] = bias[co] + Σ_ci weight[co, ci] · (x[…, ci] − input_zero_point)`; requantize
  per channel. Every row of the leading axes is one vector product (C: the kernel called once
  per row).

Float op lowered here: ``linear``.

"""

from __future__ import annotations

import math

import numpy as np

from ..codegen.c_syntax import window_fields
from ..intgraph.check import OpCheck, arity
from ..intgraph.types import IntGraph, Op, TensorInfo
from . import _lowbit
from . import _weighted as wl
from ._conv_tile import tile_scratch
from ._packed import weight_codes, weight_shape
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    if not x.shape:
        raise chk.fail(f"input {x.name!r} is rank 0 (one scalar per sample); needs (..., Cin)")
    acc_bits, rounding = wl.check_weight_layer_attrs(chk, x)
    weight = wl.check_weight(chk, 2)
    if weight.shape[1] != x.shape[-1]:
        raise chk.fail(f"const 'weight' shape {weight.shape}: dim 1 must be Cin = {x.shape[-1]}")
    wl.check_requant_consts(chk, weight.shape[0], acc_bits, rounding)
    chk.expect_output_shape(x.shape[:-1] + (weight.shape[0],))
    wl.check_accumulator_bound(chk, weight, x, x.zero_point, acc_bits, rounding)


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """acc = bias + Σ w·(x − z_in); requantize per output channel."""
    acc_dtype = wl.acc_dtype(op)
    x = inputs[0]
    xz = x.reshape(-1, x.shape[-1]).astype(acc_dtype) - acc_dtype(op.attrs["input_zero_point"])
    acc = np.einsum("nk,ok->no", xz, weight_codes(op).astype(acc_dtype))
    acc = acc.astype(np.int64) + op.consts["bias"].astype(np.int64)
    acc = acc.reshape(x.shape[:-1] + (acc.shape[-1],))
    return to_out(wl.requantize_per_channel(acc, op, axis=acc.ndim - 1), out)


def rows(graph: IntGraph, op: Op) -> int:
    """Vectors the layer multiplies: the product of the input's leading axes."""
    return math.prod(graph.tensors[op.inputs[0]].shape[:-1])


def macs(op: Op, graph: IntGraph) -> int:
    return math.prod(weight_shape(op)) * rows(graph, op)


def scratch_bytes(graph: IntGraph, op: Op) -> int:
    """The offset-binary copy of the input vector of an 8-bit layer (iq_dot.h), or the tiled
    kernel's scratch (ops/_conv_tile.py), whichever is larger; packed weights: the unsigned
    input and its tables (``_lowbit.packed_scratch_bytes``)."""
    if _lowbit.is_packed(op):
        return _lowbit.packed_scratch_bytes(graph, op)
    fast = int(weight_shape(op)[1]) if wl.is_fast8(graph, op) else 0
    return max(fast, tile_scratch(graph, op) or 0)


def _per_row(em, op: Op, call) -> None:
    """``call(x, y)`` once for a vector layer, else in a loop over the rows of (…, Cin)."""
    x, y = em.typed(op.inputs[0], True), em.typed(op.output, False)
    n = rows(em.g, op)
    if n == 1:
        em.calls.append(f"    {call(x, y)};")
        return
    cout, cin = weight_shape(op)
    em.calls.append(
        f"    {{\n        int32_t r;\n        for (r = 0; r < {n}; ++r) {{\n"
        f"            {call(f'({x} + r * {cin})', f'({y} + r * {cout})')};\n        }}\n    }}"
    )


def emit_c(em, i: int, op: Op, p: str) -> None:
    a = op.attrs
    layer, consts = wl.emit_weight_consts(em, op, p)
    if layer.tile is not None:  # a 1x1 conv at one position (ops/_conv_tile.py), per row
        n_out, n_in = weight_shape(op)
        fields = {"in_c": n_in, "in_h": 1, "in_w": 1, "out_c": n_out, "out_h": 1, "out_w": 1}
        fields.update(window_fields((1, 1), {"stride": [1, 1], "padding": [0, 0]}, [1, 1]))
        keys = ("input_zero_point", "output_zero_point", "act_min", "act_max")
        fields.update({k: a[k] for k in keys}, groups=1, mode=layer.mode)
        fields.update(wl.tile_params(layer.tile))
        prm = em.params("iq_conv_params_t", f"{p}_params", fields)
        off = em.plan.scratch[i][0]
        _per_row(em, op, lambda x, y: f"{layer.instance}(&{prm}, {x}, {', '.join(consts)}, "
                                      f"{y}, (void*)(IQ_ARENA + {off}))")
        return
    prm = em.params(
        "iq_fc_params_t",
        f"{p}_params",
        {
            "in_features": weight_shape(op)[1],
            "out_features": weight_shape(op)[0],
            "output_zero_point": a["output_zero_point"],
            "act_min": a["act_min"],
            "act_max": a["act_max"],
            "mode": layer.mode,
        },
    )
    scratch = f"(void*)(IQ_ARENA + {em.plan.scratch[i][0]})" if i in em.plan.scratch else "NULL"
    _per_row(em, op, lambda x, y: f"{layer.instance}(&{prm}, {x}, {', '.join(consts)}, {y}, "
                                  f"{scratch})")


def run_float_linear(node, inputs):
    import torch
    import torch.nn.functional as F

    w = torch.as_tensor(np.asarray(node.params["weight"], dtype=np.float32))
    b = node.params.get("bias")
    b = None if b is None else torch.as_tensor(np.asarray(b, dtype=np.float32))
    return F.linear(inputs[0], w, b)


def lower_linear(lw, node, inputs: list[str]) -> str:
    return wl.weighted_layer(lw, node, inputs[0], "fully_connected", node.params["weight"],
                             node.params.get("bias"), lw.plan.weights[node.name], {}, node.shape)


register(
    OpDef(
        kind="fully_connected",
        summary="Linear over the last axis ((Cin,) or (…, Cin)); per-channel requantization",
        attrs=wl.ATTRS,
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
        name="linear",
        summary="Linear; params weight[, bias]",
        run=run_float_linear,
        lower=lower_linear,
        lowers_to=("fully_connected", "binary_fully_connected", "sign_conv", "unpack_bits"),
        weighted=True,
        fuse_into=True,
        bits_in=True,  # packed inputs / sign outputs: ops/_binary.py
    ),
)
