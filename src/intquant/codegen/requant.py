"""Offline constants for the batched requantization of the C runtime (iq_requant.h).

The contract's requantization out = clamp(f(acc) + z, lo, hi) is, for every mode whose real
multiplier is at most 1, one floor of a linear function of the accumulator:

    f(acc) = floor((acc*M + C + [acc >= 0]*S) / 2^k)

- double rounding (TFLM), shift = -e <= 0: for e >= 1, SRDHM rounds half up and RDBP half away
  from zero; together f(acc) >= v  <=>  acc*M + 2^30 + 2^(30+e) >= v*2^(31+e) for v >= 1 and
  acc*M - 2^30 + 2^(30+e) >= v*2^(31+e) for v <= 0, and the first holds only for acc >= 0,
  so C = 2^(30+e) - 2^30, S = 2^31, k = 31 + e. For e = 0, f = SRDHM: C = 2^30, S = 0, k = 31.
- single rounding (CMSIS-NN): C = 2^(30-shift), S = 0, k = 31 - shift.
- int64 path of 16x8 (TFLM), its accumulator bounded below 2^31 by the weights: M is the
  16-bit reduced multiplier, C = 2^(14-shift), S = 0, k = 15 - shift.
- power of two: RDBP(acc, e) = floor((acc + 2^(e-1) - [acc < 0]) / 2^e): M = 1,
  C = 2^(e-1) - 1, S = 1, k = e (e = 0: the identity).

f steps by at most one per unit of acc (M + S <= 2^k), so the clamp can be moved from the
output to the accumulator: acc is clamped to [A_lo, A_lo + W], where A_lo is the last
accumulator whose output is lo and A_lo + W the first whose output is hi (or the bounds of
the accumulator proved by the weights), and then f(acc) + z lies in [lo, hi] by itself. With
u = acc - A_lo in [0, W]:

    out - lo = floor((u*M + C' + [u >= U0]*S) / 2^k),   C' = A_lo*M + C - (lo - z)*2^k >= 0

When W < 2^16 and k >= 16, splitting M = Mh*2^16 + Ml makes both products 16x16 bits:

    out - lo = (u*Mh + Ch + [u >= U0]*S/2^16 + ((u*Ml + Cl) >> 16)) >> (k - 16)

with C' = Ch*2^16 + Cl, every intermediate an unsigned 32-bit value (checked here). If
A_lo >= 0 or A_lo + W < 0 the sign term is constant and folded into C' ("no sign").

Everything here is exact integer arithmetic; the thresholds are found by binary search on the
interpreter's own function (numerics.requantize), so the constants reproduce it by
construction, and the C kernels are tested against the interpreter besides.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..intgraph import ACTIVATION_DTYPES, IntGraph, Op
from ..numerics import reduce_multiplier_16x8, requantize

U32 = 2**32


_MINIMAL = [0]  # > 0 while the planner measures the arena with every kernel's minimal scratch


@contextmanager
def minimal_scratch():
    """Within: scratch_budget is 0, so every kernel sizes its scratch to its minimum."""
    _MINIMAL[0] += 1
    try:
        yield
    finally:
        _MINIMAL[0] -= 1


def scratch_budget(graph: IntGraph, op: Op) -> int:
    """Bytes of scratch a kernel may take for speed (tiles of positions, bands of rows): the
    arena's room at this op when every kernel takes its minimum (planner.scratch_room), so the
    larger scratch never raises the arena's lower bound (the kernels still take the minimum they
    need when that is more)."""
    if _MINIMAL[0]:
        return 0
    from .planner import scratch_room  # the planner sizes scratch through these kernels

    return scratch_room(graph)[next(i for i, o in enumerate(graph.ops) if o is op)]


def accumulator_bound(graph: IntGraph, op: Op) -> np.ndarray:
    """Per output channel, max |accumulator| from the weights: sum|w| * max|x - z| + |bias|."""
    x = graph.tensors[op.inputs[0]]
    w2 = op.consts["weight"].astype(np.int64).reshape(op.consts["weight"].shape[0], -1)
    lo, hi = ACTIVATION_DTYPES[x.dtype]
    z = int(op.attrs["input_zero_point"])
    return np.abs(w2).sum(axis=1) * max(hi - z, z - lo) + np.abs(op.consts["bias"].astype(np.int64))


@dataclass
class LinearRequant:
    """Per channel: f(acc) = floor((acc*M + C + [acc >= 0]*S) / 2^k), valid when M + S <= 2^k."""

    m: np.ndarray
    c: np.ndarray
    s: np.ndarray
    k: np.ndarray


def linear_form(
    multiplier: np.ndarray, shift: np.ndarray, rounding: str, acc_bits: int
) -> LinearRequant | None:
    """The floor-of-linear form of the op's requantization, or None (a multiplier > 1)."""
    sh = np.asarray(shift, dtype=np.int64)
    n = len(sh)
    mi = [int(v) for v in np.asarray(multiplier, dtype=np.int64)]
    if rounding == "pow2":
        e = 1 - sh
        if np.any(e < 0):
            return None
        m = [1] * n
        c = [(1 << int(x - 1)) - 1 if x > 0 else 0 for x in e]
        s = [1 if x > 0 else 0 for x in e]
        k = [int(x) for x in e]
    elif acc_bits == 64:
        m16 = [int(v) for v in reduce_multiplier_16x8(np.asarray(multiplier, dtype=np.int64))]
        if np.any(sh > 0):
            return None
        m = m16
        c = [1 << int(14 - x) for x in sh]
        s = [0] * n
        k = [int(15 - x) for x in sh]
    elif rounding == "single":
        if np.any(sh > 0):
            return None
        m = mi
        c = [1 << int(30 - x) for x in sh]
        s = [0] * n
        k = [int(31 - x) for x in sh]
    else:
        if np.any(sh > 0):
            return None
        m = mi
        e = [int(-x) for x in sh]
        c = [(1 << (30 + x)) - (1 << 30) if x > 0 else 1 << 30 for x in e]
        s = [1 << 31 if x > 0 else 0 for x in e]
        k = [31 + x for x in e]
    if any(mm + ss > (1 << kk) for mm, ss, kk in zip(m, s, k, strict=True)):
        return None
    obj = lambda v: np.array(v, dtype=object)  # noqa: E731 - Python ints: exact beyond int64
    return LinearRequant(obj(m), obj(c), obj(s), obj(k))


def _output(acc: np.ndarray, op_consts: dict, attrs: dict) -> np.ndarray:
    """The interpreter's out(acc), one accumulator per channel."""
    return requantize(
        acc,
        op_consts["multiplier"],
        op_consts["shift"],
        attrs["output_zero_point"],
        attrs["act_min"],
        attrs["act_max"],
        rounding=attrs.get("rounding", "double"),
        acc_bits=int(attrs.get("acc_bits", 32)),
    )


def _last_at_most(lo_acc, hi_acc, pred) -> np.ndarray:
    """Per channel the largest a in [lo_acc, hi_acc] with pred(a) (pred monotone: true up to a
    point), or lo_acc - 1 where pred(lo_acc) is false. Binary search on int64 vectors."""
    lo = np.asarray(lo_acc, dtype=np.int64) - 1  # invariant: pred(lo) or lo = start - 1
    hi = np.asarray(hi_acc, dtype=np.int64) + 1  # invariant: not pred(hi) or hi = end + 1
    while np.any(hi - lo > 1):
        mid = lo + (hi - lo) // 2
        ok = pred(mid)
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    return lo


@dataclass
class WindowRequant:
    """Per channel constants of iq_requant.h (see the module docstring), for accumulators that
    the kernel computes as ``true accumulator - offset``."""

    a_lo: np.ndarray  # int32: A_lo - offset
    width: np.ndarray  # W
    u0: np.ndarray  # the sign threshold in u (unused without sign)
    m: np.ndarray  # M
    c: np.ndarray  # C' (the sign term folded in where it is constant)
    s: np.ndarray  # S where the sign matters, else 0
    k: np.ndarray
    lo: int
    needs_sign: bool


def window_requant(
    op_consts: dict, attrs: dict, acc_bound: np.ndarray, offset: np.ndarray | int = 0
) -> WindowRequant | None:
    """Constants for iq_requant.h, or None when the op's requantization has no window form.

    ``acc_bound``: per channel bound on |accumulator| proved from the weights;
    ``offset``: per channel value the kernel leaves out of its accumulator (e.g. the bias).
    """
    form = linear_form(
        op_consts["multiplier"],
        op_consts["shift"],
        attrs.get("rounding", "double"),
        int(attrs.get("acc_bits", 32)),
    )
    if form is None:
        return None
    lo, hi, z = int(attrs["act_min"]), int(attrs["act_max"]), int(attrs["output_zero_point"])
    bound = np.minimum(np.asarray(acc_bound, dtype=np.int64), 2**31 - 1)
    d_lo, d_hi = -bound, bound
    n = len(bound)

    def out(a: np.ndarray) -> np.ndarray:
        return _output(a.reshape(1, n), op_consts, attrs).reshape(n)

    # A_lo: the last accumulator of the lo plateau (or the lowest possible accumulator)
    a_lo = _last_at_most(d_lo, d_hi, lambda a: out(a) <= lo)
    a_lo = np.maximum(a_lo, d_lo)
    # A_hi: the first accumulator of the hi plateau (or the highest possible one)
    a_hi = _last_at_most(d_lo, d_hi, lambda a: out(a) < hi) + 1
    a_hi = np.minimum(np.maximum(a_hi, a_lo), d_hi)
    width = a_hi - a_lo
    starts, widths, zeros, m, c, sgn = [], [], [], [], [], []
    for j in range(n):
        al, w = int(a_lo[j]), int(width[j])
        mm, cc, ss, kk = (int(v[j]) for v in (form.m, form.c, form.s, form.k))
        u0 = -al
        first = ((al * mm + cc + (ss if al >= 0 else 0)) >> kk) + z
        if not lo <= first <= hi:  # every possible accumulator saturates: a constant output
            mm, ss, cc = 0, 0, (min(max(first, lo), hi) - lo) << kk
        else:
            cc = al * mm + cc - ((lo - z) << kk)
            if al >= 0 or al + w < 0:  # the sign of acc is the same over the whole window
                cc += ss if al >= 0 else 0
                ss = 0
            if al == int(d_lo[j]) and mm > 0 and cc >= mm:
                # The weights bound acc from below before its output reaches lo: then C
                # holds (output - lo) levels at the window start. Start the window t units
                # earlier instead (no accumulator lies there) so that C < M stays small.
                t = cc // mm
                al, w, u0, cc = al - t, w + t, u0 + t, cc - t * mm
        starts.append(al)
        widths.append(w)
        zeros.append(u0)
        m.append(mm)
        c.append(cc)
        sgn.append(ss)
    off = np.asarray(offset, dtype=np.int64) + np.zeros(n, dtype=np.int64)
    wr = WindowRequant(
        a_lo=np.array(starts, dtype=np.int64) - off,
        width=np.array(widths, dtype=np.int64),
        u0=np.array(zeros, dtype=np.int64),
        m=np.array(m, dtype=object),
        c=np.array(c, dtype=object),
        s=np.array(sgn, dtype=object),
        k=form.k,
        lo=lo,
        needs_sign=any(sgn),
    )
    _check_window(wr, off, a_lo, a_hi, d_lo, d_hi, out)
    return wr


def window_output(wr: WindowRequant, acc: np.ndarray) -> np.ndarray:
    """What the C kernels compute, in Python integers: outputs for per-channel accumulators
    ``acc`` of shape (channels, any), each already minus the kernel's offset."""
    res = np.empty(acc.shape, dtype=np.int64)
    for j in range(acc.shape[0]):
        al, w, u0 = int(wr.a_lo[j]), int(wr.width[j]), int(wr.u0[j])
        mm, cc, ss, kk = int(wr.m[j]), int(wr.c[j]), int(wr.s[j]), int(wr.k[j])
        for i, a in enumerate(acc[j].tolist()):
            u = min(max(int(a) - al, 0), w)
            res[j, i] = ((u * mm + cc + (ss if u >= u0 else 0)) >> kk) + wr.lo
    return res


def _check_window(wr: WindowRequant, off, a_lo, a_hi, d_lo, d_hi, out) -> None:
    """The window form equals the interpreter at the plateau edges and around zero (the tests
    check whole ranges; this guards every export)."""
    edges = [a_lo + d for d in (-1, 0, 1)] + [a_hi + d for d in (-1, 0, 1)]
    edges += [np.zeros_like(a_lo) + d for d in (-2, -1, 0, 1)]
    for p in edges:
        p = np.clip(p, d_lo, d_hi)
        got = window_output(wr, (p - off)[:, None])[:, 0]
        if not np.array_equal(got, out(p)):
            raise AssertionError("window requantization differs from the interpreter")


def _fits_u32(v: int) -> bool:
    return 0 <= v < U32


def rqw_fields(wr: WindowRequant, j: int, fold: int) -> tuple[int, ...] | None:
    """Channel ``j`` as the C struct iq_rqw_t (a_lo, width, m, c_hi, u0, c_lo, sh, form), or
    None if no 32-bit form of iq_requant.h is exact for it.

    ``fold`` = 2^bits of the output (256 for 8-bit) folds lo mod 2^bits into the rounding
    constant so the kernel adds nothing after its shift (the store keeps the low bits), or
    form 2 (form 1, lo added after the shift) when that would overflow; 0: never folded.
    """
    al, w, u0 = int(wr.a_lo[j]), int(wr.width[j]), int(wr.u0[j])
    m, c, s, k = int(wr.m[j]), int(wr.c[j]), int(wr.s[j]), int(wr.k[j])
    if not (-(2**31) <= al < 2**31 and w < 2**31 and 0 <= m < U32 and c >= 0):
        return None
    if m <= 1 and s in (0, 1) and 0 <= k <= 31:  # power-of-two scales: form 3, a shift
        cc = c + ((wr.lo % fold) << k if fold else 0) + s
        ok = _fits_u32(w * m + cc)
        return (al, w, m, cc, u0 if s else 0, 0, k, 3) if ok else None
    if s not in (0, 2**31):
        return None  # only the double-rounding sign term exists at this scale
    mh, ml = m >> 16, m & 0xFFFF
    uh_max, ul_max = w >> 16, min(w, 0xFFFF)
    # form 2 is form 1 with lo added after the shift (when folding it would overflow)
    for form, sh in ((0, k - 16), (1, k - 32), (2, k - 32)):
        if sh < 0 or sh > 31 or (form == 2 and not fold):
            continue
        cc = c + ((wr.lo % fold) << k if fold and form != 2 else 0) + (2**31 if s else 0)
        c_hi, c_lo = cc >> 16, cc & 0xFFFF
        low = (ul_max * ml + c_lo) >> 16
        if form == 0:
            ok = _fits_u32(w * mh + uh_max * ml + low + c_hi)
        else:
            inner = ul_max * mh + uh_max * ml + low + c_hi
            ok = _fits_u32(inner) and _fits_u32(uh_max * mh + (inner >> 16))
        if ok:
            return (al, w, m, c_hi, u0 if s else 0, c_lo, sh, form)
    return None


def rqw_rows(wr: WindowRequant, fold: int = 0) -> list[tuple[int, ...]] | None:
    """Every channel as iq_rqw_t fields, or None if one channel has no exact 32-bit form."""
    rows = [rqw_fields(wr, j, fold) for j in range(len(wr.width))]
    return None if any(r is None for r in rows) else rows  # type: ignore[return-value]


def rqw_value(fields: tuple[int, ...], acc: int, sign_layer: bool, lo: int, fold: int) -> int:
    """iq_rqw_value of iq_requant.h step by step in 32-bit wrap-around arithmetic, then the
    output (the low bits of a folded value, sign-extended), for the tests."""
    al, w, m, c_hi, u0, c_lo, sh, form = fields
    u = (acc - al) % U32
    if u > w:
        u = 0 if acc < al else w
    if form == 3:
        v = (u * m + c_hi - (1 if sign_layer and u < u0 else 0)) % U32
        r = (v >> sh) % fold if fold else lo + (v >> sh)
        return r - fold if fold and r >= fold // 2 and lo < 0 else r
    mh, ml, uh, ul = m >> 16, m & 0xFFFF, u >> 16, u & 0xFFFF
    v = (((ul * ml + c_lo) % U32 >> 16) + uh * ml + c_hi) % U32
    if sign_layer and u < u0:
        v = (v - 2**15) % U32
    if form == 0:
        v = (v + u * mh) % U32
    else:
        v = (uh * mh + ((v + ul * mh) % U32 >> 16)) % U32
    if not fold or form == 2:
        return lo + (v >> sh)
    r = (v >> sh) % fold
    return r - fold if r >= fold // 2 and lo < 0 else r
