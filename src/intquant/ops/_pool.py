"""What max_pool and avg_pool share: window checks, the C parameter struct, the QDQ form."""

from __future__ import annotations

from ..codegen.c_syntax import spatial, window_fields
from ..intgraph.check import (
    OpCheck,
    arity,
    check_out_len,
    check_windows_touch_input,
    out_len,
    window_attrs,
)
from ..intgraph.check import spatial as checked_spatial
from ..intgraph.types import Op, TensorInfo

C_FILES = ("iq_pool.h",)


def check_pool(chk: OpCheck, dilation: bool) -> tuple[TensorInfo, list[int]]:
    """Geometry, every window touching a real element, same qparams in and out, act range."""
    arity(chk, 1)
    x = chk.ins()[0]
    c, h, w = checked_spatial(chk, x.shape, f"input '{x.name}'")
    stride, padding, dil, kernel = window_attrs(chk, x, kernel_from="kernel", dilation=dilation)
    ho = out_len(h, padding[0], padding[2], kernel[0], stride[0], dil[0])
    wo = out_len(w, padding[1], padding[3], kernel[1], stride[1], dil[1])
    check_out_len(chk, "H", ho)
    check_out_len(chk, "W", wo)
    check_windows_touch_input(chk, "H", h, ho, padding[0], kernel[0], stride[0], dil[0])
    check_windows_touch_input(chk, "W", w, wo, padding[1], kernel[1], stride[1], dil[1])
    chk.expect_output_shape((c, wo) if len(x.shape) == 2 else (c, ho, wo))
    chk.expect_same_qparams(x, chk.out)
    chk.act_range()
    return x, kernel


def emit_pool(em, op: Op, p: str, fn: str, dilation: list[int]) -> None:
    """One ``iq_pool_params_t`` and the call ``fn(&params, x, y, dtype)``."""
    a = op.attrs
    c, h, w = spatial(em.g.tensors[op.inputs[0]].shape)
    _, ho, wo = spatial(em.g.tensors[op.output].shape)
    prm = em.params(
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
    em.calls.append(
        f"    {fn}(&{prm}, {em.ptr(x, True)}, {em.ptr(op.output, False)}, {em.code(x)});"
    )


def to_onnx_pool(ex, op: Op) -> None:
    """DQ, MaxPool / AveragePool, Clip, Q."""
    a = op.attrs
    x_info, out = ex.g.tensors[op.inputs[0]], ex.g.tensors[op.output]
    x = ex.dq_tensor(op.inputs[0], op.name)
    t, left, bottom, r = a["padding"]
    one_d = len(x_info.shape) == 2
    kw = dict(kernel_shape=a["kernel"][1:] if one_d else a["kernel"],
              strides=a["stride"][1:] if one_d else a["stride"],
              pads=[left, r] if one_d else [t, left, bottom, r])
    if op.kind == "max_pool":
        kw["dilations"] = a["dilation"][1:] if one_d else a["dilation"]
        y = ex.node("MaxPool", [x], op.name, **kw)
    else:
        y = ex.node("AveragePool", [x], op.name, count_include_pad=a["count_include_pad"], **kw)
    ex.clip_and_q(y, op, out)


def pool_geometry(node) -> dict:
    a = node.attrs
    return dict(kernel=list(a["kernel"]), stride=list(a["stride"]), padding=list(a["padding"]))
