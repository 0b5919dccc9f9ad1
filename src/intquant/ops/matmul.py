"""matmul — product of two activations (attention scores Q·Kᵀ, attention·V), batched

- inputs `[a, b]`: a `(…, M, K)`, b `(…, K, N)` (or `(…, N, K)` with `transpose_b` = 1), the
  same leading axes; output `(…, M, N)`.
- `acc[…, m, n] = Σ_k (a[…, m, k] − a_zero_point)·(b[…, k, n] − b_zero_point)` (int32 for
  acc_bits 32, int64 for 64);
  `out = clamp(apply_multiplier(acc, multiplier, shift) + output_zero_point, act_min, act_max)`,
  one per-tensor multiplier for `s_a·s_b·alpha / s_out` (alpha: a constant factor of the
  product, e.g. attention's 1/√d, folded offline). Modes as conv: `rounding` "double" |
  "single" with acc_bits 32, TFLM's int64 path with acc_bits 64 (shift <= 7).
- Validation: `K·max|a − z_a|·max|b − z_b| < 2^31` (acc_bits 32) or `< 2^47` (64), over the
  dtype ranges, so no partial sum can overflow.

Float op lowered here: ``matmul`` (aten.matmul / bmm of two activations, the two products of
scaled_dot_product_attention, ONNX MatMul of two activations).
"""

from __future__ import annotations

import math

import numpy as np

from ..codegen.c_syntax import requant_mode
from ..intgraph.check import OpCheck, arity, max_abs_offset
from ..intgraph.types import ACC_LIMIT, SHIFT_MAX_16X8, IntGraph, Op, TensorInfo
from ..numerics import requantize
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register

_ATTRS = ("a_zero_point", "b_zero_point", "transpose_b", "output_zero_point", "multiplier",
          "shift", "act_min", "act_max", "acc_bits", "rounding")


def operand_dims(a: TensorInfo, b: TensorInfo, transpose_b: int) -> tuple[int, int, int]:
    """(M, K, N) of the product."""
    n, kb = (b.shape[-2], b.shape[-1]) if transpose_b else (b.shape[-1], b.shape[-2])
    return a.shape[-2], kb, n


def check(chk: OpCheck) -> None:
    arity(chk, 2)
    a, b = chk.ins()
    if len(a.shape) < 2 or len(a.shape) != len(b.shape) or a.shape[:-2] != b.shape[:-2]:
        raise chk.fail(f"inputs must be (…, M, K) and (…, K, N) with the same leading axes, "
                       f"got {a.shape} and {b.shape}")
    tb = chk.int_attr("transpose_b", 0, 1)
    m, k, n = operand_dims(a, b, tb)
    if a.shape[-1] != k:
        raise chk.fail(f"inner dimensions differ: a {a.shape}, b {b.shape}, transpose_b {tb}")
    chk.expect_output_shape(a.shape[:-2] + (m, n))
    za = chk.zero_point_attr("a_zero_point", a)
    zb = chk.zero_point_attr("b_zero_point", b)
    chk.zero_point_attr("output_zero_point", chk.out)
    chk.act_range()
    acc_bits = chk.int_attr("acc_bits")
    if acc_bits not in (32, 64):
        raise chk.fail(f"attr 'acc_bits' = {acc_bits}, expected 32 or 64")
    chk.rounding(("double", "single"))
    chk.multiplier_attr("multiplier")
    chk.shift_attr("shift", hi=SHIFT_MAX_16X8 if acc_bits == 64 else 30)
    bound = k * max_abs_offset(a, za) * max_abs_offset(b, zb)
    if bound >= ACC_LIMIT[acc_bits]:
        limit = int(math.log2(ACC_LIMIT[acc_bits]))
        raise chk.fail(f"accumulator bound {bound} (K = {k}) >= 2^{limit} for acc_bits "
                       f"{acc_bits}")


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """Σ_k (a − z_a)(b − z_b) exactly in int64, one requantization per output."""
    at = op.attrs
    a = inputs[0].astype(np.int64) - at["a_zero_point"]
    b = inputs[1].astype(np.int64) - at["b_zero_point"]
    if at["transpose_b"]:
        b = np.swapaxes(b, -1, -2)
    acc = np.matmul(a, b)
    y = requantize(acc, at["multiplier"], at["shift"], at["output_zero_point"], at["act_min"],
                   at["act_max"], rounding=at["rounding"], acc_bits=at["acc_bits"])
    return to_out(y, out)


def macs(op: Op, graph: IntGraph) -> int:
    a, b = (graph.tensors[t] for t in op.inputs)
    m, k, n = operand_dims(a, b, op.attrs["transpose_b"])
    return math.prod(a.shape[:-2]) * m * k * n


def emit_c(em, i: int, op: Op, p: str) -> None:
    at = op.attrs
    ta, tb = op.inputs
    a, b = em.g.tensors[ta], em.g.tensors[tb]
    m, k, n = operand_dims(a, b, at["transpose_b"])
    product32 = max_abs_offset(a, at["a_zero_point"]) * max_abs_offset(b, at["b_zero_point"]) \
        < 2**31
    prm = em.params(
        "iq_matmul_params_t",
        f"{p}_params",
        {
            "batch": math.prod(a.shape[:-2]),
            "m": m,
            "k": k,
            "n": n,
            "transpose_b": at["transpose_b"],
            "a_zero_point": at["a_zero_point"],
            "b_zero_point": at["b_zero_point"],
            "output_zero_point": at["output_zero_point"],
            "multiplier": at["multiplier"],
            "shift": at["shift"],
            "act_min": at["act_min"],
            "act_max": at["act_max"],
            "mode": requant_mode(op),
            "acc64": int(at["acc_bits"] == 64),
            "product32": int(product32),
        },
    )
    em.calls.append(
        f"    iq_matmul(&{prm}, {em.ptr(ta, True)}, {em.code(ta)}, {em.ptr(tb, True)}, "
        f"{em.code(tb)}, {em.ptr(op.output, False)}, {em.code(op.output)});"
    )


def _transposed_b(ex, op: Op, b: str) -> str:
    if not op.attrs["transpose_b"]:
        return b
    rank = len(ex.g.tensors[op.inputs[1]].shape) + 1
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    return ex.node("Transpose", [b], op.name + "_bt", perm=perm)


def to_onnx(ex, op: Op) -> None:
    """DQ(a) @ DQ(b) times the real factor the multiplier stands for, Clip, Q (plain QDQ)."""
    from ..onnx_export import real_multiplier

    at = op.attrs
    a, b = (ex.g.tensors[t] for t in op.inputs)
    out = ex.g.tensors[op.output]
    factor = float(real_multiplier(at["multiplier"], at["shift"])) * out.scale / (
        a.scale * b.scale)
    y = ex.node("MatMul", [ex.dq_tensor(op.inputs[0], op.name + "_a"),
                           _transposed_b(ex, op, ex.dq_tensor(op.inputs[1], op.name + "_b"))],
                op.name)
    y = ex.node("Mul", [y, ex.const(op.name + "_alpha", np.float32(factor))], op.name + "_s")
    ex.clip_and_q(y, op, out)


def to_onnx_int(ex, op: Op) -> None:
    """int64 MatMul of the offset operands (exact), then the integer requantization."""
    from onnx import TensorProto

    at, h = op.attrs, op.name
    ops = []
    for t, key in zip(op.inputs, ("a", "b"), strict=True):
        v = ex.cast(t, TensorProto.INT64, f"{h}_{key}")
        ops.append(ex.node("Sub", [v, ex.i64(f"{h}_{key}_zp", at[f"{key}_zero_point"])],
                           f"{h}_{key}_off"))
    acc = ex.node("MatMul", [ops[0], _transposed_b(ex, op, ops[1])], h + "_acc")
    y = ex.apply_multiplier_int(acc, at["multiplier"], at["shift"], at["rounding"],
                                at["acc_bits"], h + "_mbqm")
    ex.finish_int(y, op, at["output_zero_point"])


def lower(lw, node, inputs: list[str]) -> str:
    from ..lower import LoweringError, act_bounds, scalar_qparams
    from ..numerics import quantize_multiplier

    qa, qb = lw.fmt[inputs[0]], lw.fmt[inputs[1]]
    out_qp = lw.plan.acts[node.name]
    (sa, za), (sb, zb) = scalar_qparams(qa), scalar_qparams(qb)
    so, zo = scalar_qparams(out_qp)
    ta, tb = lw.tensors[inputs[0]], lw.tensors[inputs[1]]
    transpose_b = int(bool(node.attrs.get("transpose_b", False)))
    _, k, _ = operand_dims(ta, tb, transpose_b)
    bound = k * max_abs_offset(ta, za) * max_abs_offset(tb, zb)
    acc_bits = 32 if bound < ACC_LIMIT[32] else 64
    if bound >= ACC_LIMIT[64]:
        raise LoweringError(f"worst-case accumulator {bound} (K = {k}) exceeds 2^47")
    m, sh = quantize_multiplier(sa * sb * float(node.attrs.get("alpha", 1.0)) / so)
    if acc_bits == 64 and sh > SHIFT_MAX_16X8:
        raise LoweringError(f"output scale too small for the int64 path (shift {sh} > 7)")
    lo, hi = act_bounds(node, out_qp)
    attrs = dict(a_zero_point=za, b_zero_point=zb, transpose_b=transpose_b,
                 output_zero_point=zo, multiplier=m, shift=sh, act_min=lo, act_max=hi,
                 acc_bits=acc_bits,
                 rounding="double" if lw.rounding() == "pow2" else lw.rounding())
    return lw.emit(node.name, "matmul", inputs, node.shape, out_qp, attrs)


def run_float(node, inputs):
    a, b = inputs
    if node.attrs.get("transpose_b", False):
        b = b.transpose(-1, -2)
    return (a @ b) * float(node.attrs.get("alpha", 1.0))


register(
    OpDef(
        kind="matmul",
        summary="product of two activations (batched; Q·Kᵀ, attention·V), one requantization",
        attrs=frozenset(_ATTRS),
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_matmul.c", "iq_matmul.h"),
        c_header="iq_matmul.h",
        to_onnx=to_onnx,
        to_onnx_int=to_onnx_int,
        macs=macs,
    ),
    FloatOpDef(
        name="matmul",
        summary="a @ b (or a @ bᵀ) of two activations times alpha; attrs transpose_b, alpha",
        run=run_float,
        lower=lower,
        lowers_to=("matmul",),
        fuse_into=True,
        two_activation_matmul=True,
    ),
)


# -- a float-graph pass (graph/passes.py runs it): scalars and kᵀ folded into the matmul --


def _scalar_mul(graph, node) -> float | None:
    """The factor of a plain x·c node (c a scalar constant, no bias, no fused bounds)."""
    value = node.params.get("value")
    if (node.op != "mul_const" or value is None or np.size(value) != 1
            or node.params.get("bias") is not None or node.act is not None):
        return None
    return float(np.ravel(value)[0])


def fold_scalars_into_matmul(graph):
    """Fold x·c (c a scalar constant: attention's 1/√d, or √scale on q and on kᵀ as torch.onnx
    exports it) on a matmul's operand, or on its output, into the matmul's alpha:
    (a·c)@b = (a@b)·c, and alpha folds into the matmul's requantization for free. A transpose
    of the last two axes of b becomes the matmul's transpose_b (the kernel reads b
    transposed instead of a copy being made)."""
    from ..graph.passes import _remove

    changed = True
    while changed:
        changed = False
        for mm in [n for n in graph.nodes if n.op == "matmul"]:
            for k, name in enumerate(mm.inputs):
                mul = graph.node(name)
                c = _scalar_mul(graph, mul)
                if c is None or len(graph.consumers(mul.name)) != 1 or mul.name == graph.output:
                    continue
                mm.attrs["alpha"] = float(mm.attrs.get("alpha", 1.0)) * c
                mm.inputs[k] = mul.inputs[0]
                mm.source += f" + folded {mul.name}"
                graph.nodes.remove(mul)
                graph.reindex()
                changed = True
            t = graph.node(mm.inputs[1])
            rank = len(t.shape)
            if (t.op == "transpose" and rank >= 2 and t.act is None
                    and list(t.attrs["perm"]) == list(range(rank - 2)) + [rank - 1, rank - 2]
                    and len(graph.consumers(t.name)) == 1 and t.name != graph.output):
                # a @ bᵀ: the kernel reads b transposed, no copy
                mm.attrs["transpose_b"] = not mm.attrs.get("transpose_b", False)
                mm.inputs[1] = t.inputs[0]
                mm.source += f" + folded {t.name}"
                graph.nodes.remove(t)
                graph.reindex()
                changed = True
            users = graph.consumers(mm.name)
            if len(users) == 1 and mm.act is None and mm.name != graph.output:
                c = _scalar_mul(graph, users[0])
                if c is not None:
                    mm.attrs["alpha"] = float(mm.attrs.get("alpha", 1.0)) * c
                    mm.source += f" + folded {users[0].name}"
                    _remove(graph, users[0], mm.name)
                    changed = True
    return graph
