"""The C emitter core: walks the IntGraph and collects constant data and the call sequence.

Each op kind's C binding lives in its op module (``intquant.ops.<kind>``, ``OpDef.emit_c``); it
calls back into this class for pointers into the arena, constant arrays and parameter structs,
so every op's generated code has the same shape. Which runtime files a project needs follows
from the op kinds it uses.
"""

from __future__ import annotations

import math

import numpy as np

from ..intgraph import IntGraph
from ..ops import op_def
from .c_syntax import C_TYPE, DTYPE_CODE, c_array, c_int, comment_text
from .planner import ARENA, INPUT, OUTPUT, MemoryPlan

# Runtime files every project gets: where constants live and how they are read (IQ_FLASH,
# IQ_LOAD_*), requantization primitives, element types and loads.
CORE_RUNTIME_FILES = ("iq_target.h", "iq_runtime.h", "iq_kernels.h")


# iq_rqw_t (iq_requant.h) as a NumPy record: the blob writer swaps each field for big-endian.
RQW_DTYPE = np.dtype([("a_lo", "<u4"), ("width", "<u4"), ("m", "<u4"), ("c_hi", "<u4"),
                      ("u0", "<u4"), ("c_lo", "<u2"), ("sh", "u1"), ("form", "u1")], align=True)

class CEmitter:
    """Collects ``data`` (const arrays, parameter structs) and ``calls`` (``<name>_run``)."""

    def __init__(
        self, graph: IntGraph, name: str, plan: MemoryPlan, binary_weights: bool = False
    ) -> None:
        self.g = graph
        self.name = name
        self.plan = plan
        self.data: list[str] = []  # const arrays and parameter structs
        self.calls: list[str] = []  # body of <name>_run
        self.resets: list[str] = []  # body of <name>_reset: recurrent ops' initial states
        self.declarations: dict[str, str] = {}  # kernel instance -> its prototype
        self.instance_sources: dict[str, str] = {}  # kernel instance -> its template instance
        self.extra_runtime: list[str] = []  # runtime files kernels chose beyond their kind's
        self.extra_headers: list[str] = []
        self.weight_bytes = 0
        self.op_const_bytes: dict[int, int] = {}  # op index -> bytes of its const arrays
        self.weight_array_bytes: dict[str, int] = {}  # op name -> bytes of its weight array
        # (symbol, typed values) of the arrays kept out of the C source (<name>_weights.S)
        self.blobs: list[tuple[str, np.ndarray]] | None = [] if binary_weights else None

    # -- pointers ------------------------------------------------------------------------------
    def ptr(self, tensor: str, const: bool) -> str:
        where, off = self.plan.locations[tensor]
        if where == INPUT:
            return "(const void*)input"
        if where == OUTPUT:
            return "(const void*)output" if const else "(void*)output"
        assert where == ARENA
        return f"({'const ' if const else ''}void*)(IQ_ARENA + {off})"

    def state_ptr(self, i: int) -> str:
        """The persistent state of op ``i`` in the arena (``OpDef.state_bytes``)."""
        return f"(void*)(IQ_ARENA + {self.plan.state[i][0]})"

    def scratch_ptr(self, i: int) -> str:
        """The scratch buffer of op ``i`` in the arena (``OpDef.scratch_bytes``), or NULL."""
        return f"(void*)(IQ_ARENA + {self.plan.scratch[i][0]})" if i in self.plan.scratch \
            else "NULL"

    def typed(self, tensor: str, const: bool) -> str:
        ct = C_TYPE[self.g.tensors[tensor].dtype]
        return f"({'const ' if const else ''}{ct}*){self.ptr(tensor, const)}"

    def code(self, tensor: str) -> str:
        return DTYPE_CODE[self.g.tensors[tensor].dtype]

    def size(self, tensor: str) -> int:
        return math.prod(self.g.tensors[tensor].shape)

    # -- data ----------------------------------------------------------------------------------
    def const_array(self, ident: str, ctype: str, values: np.ndarray) -> str:
        self.weight_bytes += int(np.asarray(values).size) * np.dtype(ctype[:-2]).itemsize
        if self.blobs is None:
            self.data.append(c_array(ctype, ident, values))
            return ident
        return self.binary_array(ident, ctype, values)

    def binary_array(self, ident: str, ctype: str, values: np.ndarray) -> str:
        """An ``extern const`` array whose bytes live in <name>_weights.bin (see
        project.weights_asm_source for the byte orders).

        The symbol is global, so it carries the model name to stay unique in a firmware.
        """
        assert self.blobs is not None
        symbol = f"{self.name}_{ident}"
        dt = np.dtype(ctype[:-2])
        flat = np.asarray(values).ravel().astype(dt)
        if flat.size == 0:
            flat = np.zeros(1, dtype=dt)
        self.blobs.append((symbol, flat))
        self.data.append(f"extern const {ctype} {symbol}[{flat.size}] IQ_FLASH;\n")
        return symbol

    def params(self, ctype: str, ident: str, fields: dict[str, int | str],
               flash: bool = False) -> str:
        """A ``static const`` parameter struct with designated initializers; ``flash``: an
        IQ_FLASH one, for kernels that read it through IQ_LOAD_OBJ (iq_target.h: AVR keeps it
        in program memory, not in its 8 KB of RAM)."""
        body = ", ".join(
            f".{k} = {v if isinstance(v, str) else c_int(v)}" for k, v in fields.items()
        )
        where = " IQ_FLASH" if flash else ""
        self.data.append(f"static const {ctype} {ident}{where} = {{{body}}};\n")
        return ident

    def shape4(self, ident: str, values: list[int]) -> str:
        self.data.append(f"static const int32_t {ident}[4] = {{{', '.join(map(str, values))}}};\n")
        return ident

    def rqw_array(self, ident: str, rows: list[tuple[int, ...]]) -> str:
        """An iq_rqw_t array (iq_requant.h): a_lo, width, m, c_hi, u0, c_lo, sh, form, in
        flash (IQ_FLASH: kernels read it through IQ_LOAD_*). With ``binary_weights`` it is a
        record array in the blob, each field byte-swapped in the big-endian copy."""
        self.weight_bytes += 24 * len(rows)
        if self.blobs is None:
            body = ",\n    ".join(
                "{" + ", ".join(c_int(v) if k == 0 else f"{v}u" for k, v in enumerate(r)) + "}"
                for r in rows
            )
            self.data.append(
                f"static const iq_rqw_t {ident}[{len(rows)}] IQ_FLASH = {{\n    {body}\n}};\n"
            )
            return ident
        symbol = f"{self.name}_{ident}"
        values = np.zeros(len(rows), dtype=RQW_DTYPE)
        for i, r in enumerate(rows):
            values[i] = tuple(int(v) & 0xFFFFFFFF if k < 5 else int(v) for k, v in enumerate(r))
        self.blobs.append((symbol, values))
        self.data.append(f"extern const iq_rqw_t {symbol}[{len(rows)}] IQ_FLASH;\n")
        return symbol

    def require_runtime(self, files: tuple[str, ...], header: str | None = None) -> None:
        """Runtime files (and a header for the model source) a kernel needs beyond those of
        its op kind: the batched-requantization kernels are compiled only when used."""
        self.extra_runtime.extend(f for f in files if f not in self.extra_runtime)
        if header is not None and header not in self.extra_headers:
            self.extra_headers.append(header)

    def add_kernel_instance(self, instance: str, declaration: str, source: str) -> None:
        """A template instance the model needs (compiled once in <name>_kernels.c)."""
        self.declarations[instance] = declaration
        self.instance_sources[instance] = source

    # -- the walk ------------------------------------------------------------------------------
    def emit(self) -> None:
        for i, op in enumerate(self.g.ops):
            emit_c = op_def(op.kind).emit_c
            if emit_c is None:
                raise ValueError(f"op {i} {op.name!r}: kind {op.kind!r} has no C kernel")
            self.calls.append(
                f"    /* op {i}: {op.kind} '{comment_text(op.name)}' -> "
                f"{comment_text(op.output)} */"
            )
            self.calls.append(f"    IQ_PROFILE_MARK({i});")
            before = self.weight_bytes
            emit_c(self, i, op, f"op{i}")
            self.op_const_bytes[i] = self.weight_bytes - before
        self.calls.append("    IQ_PROFILE_MARK(-1);")

    # -- what the project needs ----------------------------------------------------------------
    def kinds(self) -> list[str]:
        """The op kinds of the graph, in order of first use."""
        return list(dict.fromkeys(op.kind for op in self.g.ops))

    def headers(self) -> list[str]:
        """The runtime headers the model source includes (one per op kind that has one)."""
        found = [op_def(k).c_header for k in self.kinds()] + self.extra_headers
        return list(dict.fromkeys(h for h in found if h))

    def runtime_files(self) -> list[str]:
        """Core runtime files, then every file of the op kinds used (each once)."""
        files = list(CORE_RUNTIME_FILES)
        for k in self.kinds():
            files.extend(f for f in op_def(k).c_files if f not in files)
        files.extend(f for f in self.extra_runtime if f not in files)
        return files
