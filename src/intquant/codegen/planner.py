"""Static memory planner: every activation gets a fixed offset in one arena at generation time.

Users of TFLite-Micro size their arena by trial and error; here the generator states the exact
size and a lower bound next to it. Steps:

1. *Buffers.* Each tensor needs one buffer, except:
   - the graph input and output live in the caller's arrays (``input`` / ``output`` of
     ``<name>_run``), not in the arena;
   - an aliasing op's output (``reshape``) shares its input's bytes (nothing to compute);
   - an elementwise op (``OpDef.in_place``: clamp, lut, rescale, add) whose input buffer dies
     at that op writes its output in place, when the output element is not wider than the
     input element (then writing element i never overwrites an unread input element).
   Tensors sharing bytes are merged into one buffer whose lifetime is the union of theirs.
2. *Lifetimes.* A buffer is live from the op that produces it to the last op that reads it;
   scratch (``OpDef.scratch_bytes``: conv im2col) is live during its op only.
3. *Lower bound.* At each op, every buffer live at that op must be held at once: the largest such
   total (sizes rounded up to the 4-byte alignment) is a lower bound for any placement.
4. *Placement.* Several first-fit orders are tried, TFLM's greedy largest-first among them, plus
   a two-ended placement (alternating buffers at the bottom and the top of an arena of exactly
   the lower bound) that is optimal on chains; the smallest arena wins. So the arena equals the
   bound for sequential models and is never larger than TFLM's greedy planner would give.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..intgraph import IntGraph, TensorInfo, tensor_nbytes
from ..ops import op_def
from .requant import minimal_scratch

ALIGN = 4
INPUT = "input"  # location of tensors held in the caller's input array
OUTPUT = "output"  # location of the graph output, written to the caller's output array
ARENA = "arena"


def align_up(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


def tensor_bytes(info: TensorInfo) -> int:
    """True storage size: packed "bit" tensors count their words, not one byte per value."""
    return tensor_nbytes(info)


@dataclass
class Buffer:
    """A region of the arena holding one or more tensors (aliases / in-place chains) or scratch."""

    name: str
    size: int  # bytes, aligned
    first: int  # index of the op that writes it first
    last: int  # index of the last op that reads it
    tensors: list[str] = field(default_factory=list)
    offset: int = -1

    def overlaps_in_time(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last

    def overlaps_in_space(self, other: Buffer) -> bool:
        return self.offset < other.offset + other.size and other.offset < self.offset + self.size


@dataclass
class MemoryPlan:
    """Where each tensor lives: (location, byte offset); arena size and its lower bound."""

    arena_bytes: int
    lower_bound: int
    greedy_bytes: int  # TFLM's greedy largest-first placement, for comparison
    strategy: str
    buffers: list[Buffer]
    locations: dict[str, tuple[str, int]]  # tensor -> (INPUT | OUTPUT | ARENA, offset)
    scratch: dict[int, tuple[int, int]]  # op index -> (offset, bytes)
    in_place: list[str]  # names of ops that run in place
    copies: list[int]  # op indices of reshapes that must copy (their output is the graph output)

    def summary(self) -> str:
        return (
            f"arena {self.arena_bytes} B (lower bound {self.lower_bound} B, TFLM-greedy "
            f"{self.greedy_bytes} B, strategy {self.strategy}); "
            f"{len(self.in_place)} op(s) in place"
        )


def scratch_bytes(graph: IntGraph, op_index: int) -> int:
    """Scratch bytes an op needs during its run only (its op module says how many)."""
    op = graph.ops[op_index]
    return op_def(op.kind).scratch_bytes(graph, op)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, keep: str, other: str) -> None:
        self.parent[self.find(other)] = self.find(keep)


def _last_uses(graph: IntGraph) -> dict[str, int]:
    last = {name: -1 for name in graph.tensors}
    for i, op in enumerate(graph.ops):
        for t in op.inputs:
            last[t] = max(last[t], i)
    last[graph.output] = len(graph.ops)
    return last


def _producers(graph: IntGraph) -> dict[str, int]:
    prod = {graph.input: -1}
    for i, op in enumerate(graph.ops):
        prod[op.output] = i
    return prod


def _merge_tensors(graph: IntGraph) -> tuple[_UnionFind, list[str], list[int]]:
    """Alias reshapes, choose in-place ops: (groups, in-place op names, copying reshapes)."""
    uf = _UnionFind()
    last = _last_uses(graph)
    members: dict[str, list[str]] = {t: [t] for t in graph.tensors}
    in_place: list[str] = []
    copies: list[int] = []

    def external(t: str) -> bool:
        root = uf.find(t)
        return any(m in (graph.input, graph.output) for m in members[root])

    def group_last(t: str) -> int:
        return max(last[m] for m in members[uf.find(t)])

    def merge(keep: str, other: str) -> None:
        rk, ro = uf.find(keep), uf.find(other)
        if rk != ro:
            uf.union(rk, ro)
            members[rk] = members[rk] + members.pop(ro)

    for i, op in enumerate(graph.ops):
        out = op.output
        if op_def(op.kind).alias:
            if out == graph.output:
                copies.append(i)  # written into the caller's output array
            else:
                merge(op.inputs[0], out)
            continue
        if not op_def(op.kind).in_place or out == graph.output:
            continue
        out_size = np.dtype(graph.tensors[out].dtype).itemsize
        for t in op.inputs:
            if external(t) or group_last(t) != i:
                continue
            if np.dtype(graph.tensors[t].dtype).itemsize < out_size:
                continue
            if op.inputs.count(t) > 1:
                continue  # add(x, x): fine to overwrite, but keep it simple
            merge(t, out)
            in_place.append(op.name)
            break
    return uf, in_place, copies


def _build_buffers(graph: IntGraph, uf: _UnionFind) -> tuple[list[Buffer], dict[str, Buffer]]:
    last = _last_uses(graph)
    prod = _producers(graph)
    groups: dict[str, list[str]] = {}
    for t in graph.tensors:
        if t not in prod:
            continue  # not produced by any op and not the input: unused tensor entry
        groups.setdefault(uf.find(t), []).append(t)
    buffers: list[Buffer] = []
    by_tensor: dict[str, Buffer] = {}
    for root, ts in groups.items():
        if graph.input in ts or graph.output in ts:
            continue
        size = align_up(max(tensor_bytes(graph.tensors[t]) for t in ts))
        first = min(prod[t] for t in ts)
        lastu = max(max(last[t] for t in ts), first)
        b = Buffer(name=root, size=size, first=first, last=lastu, tensors=sorted(ts))
        buffers.append(b)
        for t in ts:
            by_tensor[t] = b
    for i in range(len(graph.ops)):
        s = scratch_bytes(graph, i)
        if s:
            buffers.append(Buffer(name=f"scratch:{i}", size=align_up(s), first=i, last=i))
    return buffers, by_tensor


SCRATCH_GROWTH = 16  # scratch may exceed the room by 1/16 of the op's input and output bytes


def _op_bytes(graph: IntGraph, i: int) -> int:
    op = graph.ops[i]
    return sum(tensor_bytes(graph.tensors[t]) for t in (*op.inputs, op.output))


def scratch_room(graph: IntGraph) -> list[int]:
    """Per op: the bytes its scratch may take, measured with every kernel's minimal scratch: the
    room under the arena's lower bound at that op, plus the op's own minimal scratch, plus
    1/SCRATCH_GROWTH of the op's input and output bytes (a tile of a few positions batches the
    requantization: a little RAM for much speed at the layer that sets the arena). Scratch lives
    during its op only, so every op may use its room at once."""
    with minimal_scratch():
        uf, _, _ = _merge_tensors(graph)
        buffers, _ = _build_buffers(graph, uf)
    n = len(graph.ops)
    live = [sum(b.size for b in buffers if b.first <= i <= b.last) for i in range(n)]
    own = {b.first: b.size for b in buffers if b.name.startswith("scratch")}
    bound = max(live, default=0)
    grow = [_op_bytes(graph, i) // SCRATCH_GROWTH for i in range(n)]
    return [bound - live[i] + own.get(i, 0) + grow[i] for i in range(n)]


def lower_bound(buffers: list[Buffer], n_ops: int) -> int:
    """max over ops of the total size of the buffers live at that op."""
    best = 0
    for i in range(n_ops):
        best = max(best, sum(b.size for b in buffers if b.first <= i <= b.last))
    return best


def _first_fit(buffers: list[Buffer], order: list[int]) -> list[int]:
    """Place buffers in ``order`` at the lowest offset free over their lifetime."""
    offsets = [-1] * len(buffers)
    placed: list[int] = []
    for i in order:
        b = buffers[i]
        busy = sorted(
            (offsets[j], offsets[j] + buffers[j].size)
            for j in placed
            if b.overlaps_in_time(buffers[j])
        )
        offset = 0
        for lo, hi in busy:
            if offset + b.size <= lo:
                break
            offset = max(offset, hi)
        offsets[i] = offset
        placed.append(i)
    return offsets


def _two_ended(buffers: list[Buffer], limit: int) -> list[int] | None:
    """Place buffers by first use, each at the bottom or the top of [0, limit), on the side
    away from the buffer it overlaps that was placed last. None if something does not fit."""
    order = sorted(range(len(buffers)), key=lambda i: (buffers[i].first, -buffers[i].size))
    offsets = [-1] * len(buffers)
    side: list[int] = [0] * len(buffers)
    placed: list[int] = []
    for i in order:
        b = buffers[i]
        live = [j for j in placed if b.overlaps_in_time(buffers[j])]
        busy = sorted((offsets[j], offsets[j] + buffers[j].size) for j in live)
        prefer_top = bool(live) and side[live[-1]] == 0
        candidates = [_lowest_gap(busy, b.size), _highest_gap(busy, b.size, limit)]
        if prefer_top:
            candidates.reverse()
        for k, off in enumerate(candidates):
            if off is not None and off + b.size <= limit:
                offsets[i] = off
                side[i] = 1 if (k == 0) == prefer_top else 0
                break
        else:
            return None
        placed.append(i)
    return offsets


def _lowest_gap(busy: list[tuple[int, int]], size: int) -> int | None:
    offset = 0
    for lo, hi in busy:
        if offset + size <= lo:
            break
        offset = max(offset, hi)
    return offset


def _highest_gap(busy: list[tuple[int, int]], size: int, limit: int) -> int | None:
    top = limit
    for lo, hi in sorted(busy, key=lambda r: -r[1]):
        if hi <= top - size:
            break
        top = min(top, lo)
    return top - size if top - size >= 0 else None


def _arena_of(buffers: list[Buffer], offsets: list[int]) -> int:
    return max((o + b.size for o, b in zip(offsets, buffers, strict=True)), default=0)


_ORDERS: dict[str, Callable[[Buffer], tuple]] = {
    "greedy-largest-first": lambda b: (-b.size, b.first),
    "first-use": lambda b: (b.first, -b.size),
    "longest-lifetime": lambda b: (-(b.last - b.first), -b.size),
    "size-x-lifetime": lambda b: (-(b.size * (b.last - b.first + 1)), b.first),
}


def plan_memory(graph: IntGraph) -> MemoryPlan:
    """Fixed arena offsets for every tensor of ``graph`` (see the module docstring)."""
    uf, in_place, copies = _merge_tensors(graph)
    buffers, by_tensor = _build_buffers(graph, uf)
    bound = lower_bound(buffers, len(graph.ops))
    results: dict[str, list[int]] = {}
    for name, key in _ORDERS.items():
        order = sorted(range(len(buffers)), key=lambda i, k=key: k(buffers[i]))
        results[name] = _first_fit(buffers, order)
    two = _two_ended(buffers, bound)
    if two is not None:
        results["two-ended"] = two
    greedy = _arena_of(buffers, results["greedy-largest-first"])
    strategy = min(results, key=lambda k: (_arena_of(buffers, results[k]), k != "two-ended"))
    offsets = results[strategy]
    for b, o in zip(buffers, offsets, strict=True):
        b.offset = o
    _check_no_conflict(buffers)
    locations: dict[str, tuple[str, int]] = {}
    for t in graph.tensors:
        root_members = [m for m in graph.tensors if uf.find(m) == uf.find(t)]
        if graph.input in root_members:
            locations[t] = (INPUT, 0)
        elif graph.output in root_members:
            locations[t] = (OUTPUT, 0)
        elif t in by_tensor:
            locations[t] = (ARENA, by_tensor[t].offset)
    scratch = {
        int(b.name.split(":")[1]): (b.offset, b.size)
        for b in buffers
        if b.name.startswith("scratch")
    }
    return MemoryPlan(
        arena_bytes=_arena_of(buffers, offsets),
        lower_bound=bound,
        greedy_bytes=greedy,
        strategy=strategy,
        buffers=buffers,
        locations=locations,
        scratch=scratch,
        in_place=in_place,
        copies=copies,
    )


def _check_no_conflict(buffers: list[Buffer]) -> None:
    """Two buffers live at the same op never share a byte (a planner bug would be silent)."""
    for i, a in enumerate(buffers):
        for b in buffers[i + 1 :]:
            if a.overlaps_in_time(b) and a.overlaps_in_space(b):
                raise AssertionError(f"memory plan conflict between {a.name} and {b.name}")
