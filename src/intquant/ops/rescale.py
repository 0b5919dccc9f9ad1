"""rescale — change of quantization parameters (concat input alignment, raw-input boundary)

- inputs `[x]`; attrs: `input_zero_point_shifted` (= round(z_in·2^left_shift), allows a
  non-integer
  input zero point at the device boundary), `left_shift`, `multiplier`, `shift`,
  `output_zero_point`,
  `act_min`, `act_max`, `rounding`.
- `out = clamp(mbqm((x << left_shift) − input_zero_point_shifted, multiplier, shift) +
  output_zero_point, act_min, act_max)`.
  Real multiplier `s_in / (2^left_shift · s_out)`; left_shift chosen so that |x<<ls − zps| <
  2^31
  (validated over the whole input dtype range). `rounding` is `"double"|"single"`.
"""

from __future__ import annotations

import numpy as np

from ..codegen.c_syntax import requant_mode
from ..intgraph.check import OpCheck, arity
from ..intgraph.types import ACTIVATION_DTYPES, INT32_MAX, Op, TensorInfo
from ..numerics import apply_multiplier, saturate
from ._reference import to_out
from .registry import OpDef, register

_ATTRS = (
    "input_zero_point_shifted",
    "left_shift",
    "multiplier",
    "shift",
    "output_zero_point",
    "act_min",
    "act_max",
)


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    chk.expect_output_shape(x.shape)
    ls = chk.int_attr("left_shift", 0, 30)
    zps = chk.int_attr("input_zero_point_shifted")
    lo, hi = ACTIVATION_DTYPES[x.dtype]
    worst = max(abs((lo << ls) - zps), abs((hi << ls) - zps))
    if worst > INT32_MAX:
        raise chk.fail(
            f"attrs 'left_shift' = {ls} / 'input_zero_point_shifted' = {zps}: "
            f"(x << left_shift) − input_zero_point_shifted reaches {worst}, exceeding int32"
        )
    chk.multiplier_attr("multiplier")
    chk.shift_attr("shift")
    chk.zero_point_attr("output_zero_point", chk.out)
    chk.act_range()
    chk.rounding(("double", "single"))


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """mbqm((x << ls) − round(z_in·2^ls), M, shift) + z_out, clamped."""
    a = op.attrs
    shifted = (inputs[0].astype(np.int64) << a["left_shift"]) - a["input_zero_point_shifted"]
    scaled = apply_multiplier(shifted, a["multiplier"], a["shift"], a.get("rounding", "double"))
    y = saturate(scaled + a["output_zero_point"], a["act_min"], a["act_max"])
    return to_out(y, out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    a = op.attrs
    prm = em.params(
        "iq_rescale_params_t",
        f"{p}_params",
        {**{k: a[k] for k in _ATTRS}, "mode": requant_mode(op)},
    )
    x = op.inputs[0]
    em.calls.append(
        f"    iq_rescale(&{prm}, {em.ptr(x, True)}, {em.code(x)}, "
        f"{em.ptr(op.output, False)}, {em.code(op.output)}, {em.size(op.output)});"
    )


def to_onnx(ex, op: Op) -> None:
    """(x·2^ls − zps)·m + z_out: a possibly non-integer input zero point, so Cast/Sub/Mul."""
    from onnx import TensorProto

    from ..onnx_export import real_multiplier

    a = op.attrs
    out = ex.g.tensors[op.output]
    m = float(real_multiplier(a["multiplier"], a["shift"])) * 2.0 ** a["left_shift"]
    z_in = a["input_zero_point_shifted"] / 2.0 ** a["left_shift"]
    x = ex.node("Cast", [op.inputs[0]], op.name + "_f", to=TensorProto.FLOAT)
    x = ex.node("Sub", [x, ex.const(op.name + "_z", np.float32(z_in))], op.name + "_s")
    x = ex.node("Mul", [x, ex.const(op.name + "_m", np.float32(m * out.scale))],
                op.name + "_m")
    ex.clip_and_q(x, op, out)


def to_onnx_int(ex, op: Op) -> None:
    """mbqm((x << ls) − zps, M, shift) + z_out, clamped: the interpreter's integer steps."""
    from onnx import TensorProto

    a = op.attrs
    x = ex.cast(op.inputs[0], TensorProto.INT64, op.name)
    x = ex.node("Mul", [x, ex.i64(op.name + "_ls", 1 << a["left_shift"])], op.name + "_shl")
    x = ex.node("Sub", [x, ex.i64(op.name + "_zps", a["input_zero_point_shifted"])],
                op.name + "_sub")
    y = ex.apply_multiplier_int(x, a["multiplier"], a["shift"], a.get("rounding", "double"),
                                32, op.name + "_mbqm")
    ex.finish_int(y, op, a["output_zero_point"])


register(
    OpDef(
        kind="rescale",
        summary="change of scale / zero point / dtype (inserted by lowering)",
        attrs=frozenset(_ATTRS) | {"rounding"},
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_rescale.c", "iq_rescale.h"),
        c_header="iq_rescale.h",
        to_onnx=to_onnx,
        to_onnx_int=to_onnx_int,
        in_place=True,
    )
)
