"""What every target offers: build the project with its harness, run samples, measure cost.

A target is a cross compiler, a harness (startup, linker script, I/O, exit: the files in this
folder, never in the model library) and an emulator. ``run`` returns the outputs as the host
sees them (native NumPy dtype, whatever the target's byte order); ``cost`` returns what the
emulator can measure: flash and static RAM of the library (nm), the deepest stack of one
inference, and instructions or cycles per inference where the emulator counts them.
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..toolchain import HARNESS_SYMBOLS, ProjectInfo, elf_symbols, require

FLASH_TYPES = set("tTrRdD")  # text, read-only data, initialised data (its image is in flash)
RAM_TYPES = set("bBdD")


@dataclass
class TargetBuild:
    """An image built for a target: the ELF and the soft-float helpers nm found in it."""

    target: str
    elf: Path
    soft_float: list[str]
    machine: str  # what it runs on, e.g. "QEMU micro:bit (Cortex-M0, 16 KB RAM)"


@dataclass
class TargetCost:
    """What the emulator measured for a batch of samples (see Target.cost)."""

    machine: str
    flash_bytes: int  # library code + constants (+ .data image), harness excluded
    static_ram_bytes: int  # library .data + .bss (the arena is part of it)
    stack_bytes: int  # deepest stack of one <name>_run call over the samples
    counter: str | None  # "instructions", "cycles" or None (emulator counts nothing)
    per_inference: list[int]  # counter per sample
    per_op: dict[int, int] = field(default_factory=dict)  # op index -> counter (profile run)
    # Cortex-M0 cycle model (cycles.py): traces of the samples and of the profile run
    traces: list = field(default_factory=list)
    profile_trace: object | None = None


class Target(ABC):
    """One place per target for its toolchain, harness and emulator."""

    name: str
    summary: str
    byte_order: str = "<"  # "<" little-endian, ">" big-endian (raw I/O with the harness)
    nm: str | None = None
    tools: tuple[str, ...] = ()  # commands and files (absolute paths) the target needs

    def missing_tools(self) -> list[str]:
        """The tools of this target not installed here (empty when it can run)."""
        return [t for t in self.tools if not _installed(t)]

    def require_tools(self) -> None:
        """ToolchainError (one line with the install command) for the first missing tool."""
        for t in self.tools:
            require(t)

    @abstractmethod
    def build(self, out_dir: str | os.PathLike, inputs: np.ndarray, opt: str) -> TargetBuild:
        """Compile library + harness (``inputs`` only matter where samples are linked in)."""

    @abstractmethod
    def run(self, out_dir: str | os.PathLike, inputs: np.ndarray, opt: str) -> np.ndarray:
        """Outputs for a batch of raw inputs, shape (N, *output_shape), native dtype."""

    def cost(self, out_dir: str | os.PathLike, inputs: np.ndarray, opt: str) -> TargetCost:
        raise NotImplementedError(f"target {self.name!r} has no emulator to measure cost on")


def _installed(tool: str) -> bool:
    return os.path.exists(tool) if tool.startswith("/") else shutil.which(tool) is not None


def to_target_bytes(x: np.ndarray, byte_order: str) -> bytes:
    """Raw bytes of ``x`` in the target's byte order."""
    return x.astype(x.dtype.newbyteorder(byte_order), copy=False).tobytes()


def from_target_bytes(raw: bytes, info: ProjectInfo, n: int, byte_order: str) -> np.ndarray:
    """Outputs of ``n`` samples from raw target bytes, as a native-endian array."""
    dt = info.output_dtype.newbyteorder(byte_order)
    expected = n * int(np.prod(info.output_shape)) * dt.itemsize
    if len(raw) != expected:
        from ..toolchain import ToolchainError

        raise ToolchainError(f"the target wrote {len(raw)} output bytes, expected {expected}")
    out = np.frombuffer(raw, dtype=dt).astype(info.output_dtype)
    return out.reshape((n, *info.output_shape))


HARNESS_PREFIX = "iqh_"  # every global/static of the new harnesses carries it


def is_harness_symbol(name: str) -> bool:
    return name in HARNESS_SYMBOLS or name.startswith(HARNESS_PREFIX) or name == "_start"


def library_footprint(elf: Path, nm: str) -> tuple[int, int]:
    """(flash, static RAM) bytes of the model library in ``elf`` from nm's sized symbols.

    The harness (startup, main, samples, I/O) is excluded; what the library pulls from libc and
    libgcc (memcpy, 64-bit division helpers) is counted: the model needs it on the device too.
    """
    flash = ram = 0
    for name, typ, _addr, size in elf_symbols(elf, nm):
        if is_harness_symbol(name):
            continue
        if typ in FLASH_TYPES:
            flash += size
        if typ in RAM_TYPES:
            ram += size
    return flash, ram
