"""Broadcasting of the two operands of an elementwise op (``add``/sub, ``mul``).

The rule is NumPy's without rank extension: both operands have the output's rank and each of
their dims equals the output's or is 1. Since every activation carries the batch axis, that
covers what models do — same shape, a per-channel tensor (C, 1, 1) against (C, H, W)
(squeeze-excitation), a per-sample scalar (1,) / (1, 1, 1) against the tensor — and never
broadcasts across the batch. The NumPy references broadcast the batched arrays directly.

The C kernels walk the output in row-major order with one element stride per operand and
axis (0 where it broadcasts). Adjacent axes that broadcast the same way are merged first, so
any such pair of shapes needs at most ``MAX_DIMS`` loop levels — validation refuses more — and
the same-shape case is one contiguous run.
"""

from __future__ import annotations

import math

from ..intgraph.check import OpCheck
from ..intgraph.types import TensorInfo

MAX_DIMS = 4  # IQ_BCAST_MAX_DIMS in iq_broadcast.h


def merged_walk(
    a_shape: tuple[int, ...], b_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> tuple[list[int], list[int], list[int]]:
    """(dims, a_strides, b_strides) of the output walk with like-broadcast axes merged.

    Axes of output size 1 are dropped; consecutive axes where the same operands are full are
    multiplied together. Strides are in elements of each operand (0 where it broadcasts).
    """
    dims: list[int] = []
    full: list[tuple[bool, bool]] = []
    for da, db, do in zip(a_shape, b_shape, out_shape, strict=True):
        if do == 1:
            continue
        pattern = (da == do, db == do)
        if full and full[-1] == pattern:
            dims[-1] *= do
        else:
            dims.append(do)
            full.append(pattern)
    if not dims:
        return [1], [0], [0]
    strides = []
    for k in range(2):
        sizes = [d if f[k] else 1 for d, f in zip(dims, full, strict=True)]
        st = [math.prod(sizes[i + 1:]) if f[k] else 0 for i, f in enumerate(full)]
        strides.append(st)
    return dims, strides[0], strides[1]


def check_broadcast(chk: OpCheck, a: TensorInfo, b: TensorInfo) -> None:
    """Both operands broadcast to the output (same rank, dims equal or 1), in <= MAX_DIMS
    merged loop levels."""
    out = chk.out.shape
    for name, t in (("a", a), ("b", b)):
        if len(t.shape) != len(out) or any(d not in (1, o) for d, o in zip(t.shape, out,
                                                                           strict=True)):
            raise chk.fail(
                f"input {name} '{t.name}' of shape {t.shape} does not broadcast to the output "
                f"shape {out} (same rank, each dim equal or 1)")
    for d, (da, db) in enumerate(zip(a.shape, b.shape, strict=True)):
        if out[d] != max(da, db):
            raise chk.fail(f"output dim {d} is {out[d]}, expected {max(da, db)} from the inputs "
                           f"{a.shape} and {b.shape}")
    dims, _, _ = merged_walk(a.shape, b.shape, out)
    if len(dims) > MAX_DIMS:
        raise chk.fail(f"broadcasting {a.shape} against {b.shape} needs {len(dims)} loop "
                       f"levels; at most {MAX_DIMS} are supported")


def same_shape(a: TensorInfo, b: TensorInfo, out: TensorInfo) -> bool:
    return tuple(a.shape) == tuple(b.shape) == tuple(out.shape)


def emit_walk(em, ident: str, a: TensorInfo, b: TensorInfo, out: TensorInfo) -> str:
    """The ``iq_bcast_t`` of the walk as a const struct; returns its identifier."""
    dims, sa, sb = merged_walk(a.shape, b.shape, out.shape)
    pad = MAX_DIMS - len(dims)
    arr = lambda v, fill: "{" + ", ".join(str(int(x)) for x in list(v) + [fill] * pad) + "}"  # noqa: E731
    return em.params("iq_bcast_t", ident, {"ndim": len(dims), "shape": arr(dims, 1),
                                           "a_stride": arr(sa, 0), "b_stride": arr(sb, 0)})
