"""transpose — permute the non-batch dims (ONNX Transpose, e.g. ShuffleNet's channel shuffle)

- attr `perm`: a permutation of `0..ndim−1` over the non-batch dims; output shape
  `out.shape[i] = in.shape[perm[i]]`, and `out[i_0, …] = in[j_0, …]` with `j_{perm[k]} = i_k`
  (NumPy `transpose` semantics). Raw values are copied, output C-contiguous; same qparams.
"""

from __future__ import annotations

import numpy as np

from ..codegen.c_syntax import pad4
from ..intgraph.check import OpCheck, arity
from ..intgraph.types import Op, TensorInfo
from ._reference import to_out
from .registry import FloatOpDef, OpDef, register


def check(chk: OpCheck) -> None:
    arity(chk, 1)
    x = chk.ins()[0]
    perm = chk.list_attr("perm", len(x.shape))
    if sorted(perm) != list(range(len(x.shape))):
        raise chk.fail(f"attr 'perm' {perm} is not a permutation of 0..{len(x.shape) - 1}")
    chk.expect_same_qparams(x, chk.out)
    chk.expect_output_shape(tuple(x.shape[p] for p in perm))


def run(op: Op, inputs: list[np.ndarray], out: TensorInfo) -> np.ndarray:
    """out[n, i_perm[0], ...] = x permuted by ``perm`` over the non-batch dims (C-contiguous)."""
    perm = [0] + [p + 1 for p in op.attrs["perm"]]
    return to_out(np.ascontiguousarray(inputs[0].transpose(perm)), out)


def emit_c(em, i: int, op: Op, p: str) -> None:
    x = op.inputs[0]
    shape = list(em.g.tensors[x].shape)
    lead = 4 - len(shape)
    perm = list(range(lead)) + [q + lead for q in op.attrs["perm"]]
    ins = em.shape4(f"{p}_in_shape", pad4(shape, 1))
    pm = em.shape4(f"{p}_perm", perm)
    es = np.dtype(em.g.tensors[x].dtype).itemsize
    em.calls.append(
        f"    iq_transpose({em.ptr(x, True)}, {em.ptr(op.output, False)}, {ins}, {pm}, "
        f"{es});"
    )


def to_onnx(ex, op: Op) -> None:
    perm = [0] + [p + 1 for p in op.attrs["perm"]]
    ex.node("Transpose", [op.inputs[0]], op.name, out=ex.oname(op), perm=perm)


def run_float(node, inputs):
    return inputs[0].permute(0, *[p + 1 for p in node.attrs["perm"]])


def lower(lw, node, inputs: list[str]) -> str:
    return lw.emit(node.name, "transpose", inputs, node.shape, lw.fmt[inputs[0]],
                   {"perm": list(node.attrs["perm"])})


register(
    OpDef(
        kind="transpose",
        summary="permutation of the non-batch axes",
        attrs=frozenset({"perm"}),
        consts=frozenset(),
        check=check,
        run=run,
        emit_c=emit_c,
        c_files=("iq_transpose.c", "iq_transpose.h"),
        c_header="iq_transpose.h",
        to_onnx=to_onnx,
    ),
    FloatOpDef(
        name="transpose",
        summary="permutation of the non-batch dims; attr perm",
        run=run_float,
        lower=lower,
        lowers_to=("transpose",),
        same_format=True,
        keeps_grid=True,
        view=True,
    ),
)
