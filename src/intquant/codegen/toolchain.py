"""Compile and run a generated C project: host gcc, arm-none-eabi-gcc, QEMU and unicorn.

Everything a proof needs is here so that tests, the demo and the benchmark call the same code:

- ``compile_and_run_host``: build the host driver (any -O level, optionally with ASan+UBSan)
  and pipe a batch of raw input samples through it in one process run.
- ``check_no_float``: compile with ``-O0 -mgeneral-regs-only`` (gcc rejects any float code
  that survives to code generation) and lexically scan the preprocessed library for ``float``,
  ``double`` and floating literals (which constant folding could otherwise hide).
- ``build_m0`` / ``run_on_m0``: cross-compile for Cortex-M0 (soft-float ABI, no libc but
  string.h), check with nm that no soft-float helper is linked, and run under QEMU
  (``-M microbit``, 16 KB RAM; ``mps2-an385`` if the model needs more) or unicorn with the
  Cortex-M0 CPU model, which also counts instructions and measures the stack.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cycles import FunctionMap, Trace, TraceCounter
from .m0 import AN385_RAM, MICROBIT_RAM, samples_source

HOST_CC = os.environ.get("IQ_HOST_CC", "gcc")
ARM_CC = "arm-none-eabi-gcc"
ARM_NM = "arm-none-eabi-nm"
QEMU = "qemu-system-arm"
WARN = ["-Wall", "-Wextra", "-Wconversion", "-Wsign-conversion", "-Werror"]
ARMV6M_CPUS = ("cortex-m0", "cortex-m0plus")
CPU_TAG = {"cortex-m0": "m0", "cortex-m0plus": "m0plus"}
# -mcpu here is the default; build_m0 appends the chosen ARMv6-M cpu, which overrides it.
ARM_FLAGS = [
    "-mcpu=cortex-m0",
    "-mthumb",
    "-mfloat-abi=soft",
    "-std=c99",
    "-ffreestanding",
    "-ffunction-sections",
    "-fdata-sections",
    *WARN,
]
# Symbols of libgcc's / newlib's soft-float support: none may be linked into the M0 image.
SOFT_FLOAT_RE = re.compile(
    r"^(__aeabi_[fd]\w*|__aeabi_\w*2[fd]\w*|__(add|sub|mul|div|neg|cmp|eq|ne|lt|le|gt|ge|unord)"
    r"[sdt]f[23]|__float\w+|__fix\w*[sdt]f\w*|__extend\w+|__trunc\w+|_dtoa_r|_printf_float|"
    r"__ieee754\w*|__fp_\w+)$"
)
HARNESS_SYMBOLS = {
    "iq_samples",
    "iq_num_samples",
    "main",
    "Reset_Handler",
    "Default_Handler",
    "vectors",
    "print_output",
    "iq_semihost",
    "iq_semihost_write0",
    "iq_semihost_exit",
    "iq_profile_mark",
    "line",
    "out_buf",
    "hex",
    "iq_profile_op",
    "block",
}


class ToolchainError(RuntimeError):
    """A compiler or emulator is missing or failed; the message says what to run."""


# Which install_toolchain.sh group provides a tool or library file (for the one-line error).
TOOL_GROUP = {
    "arm-none-eabi-gcc": "arm",
    "arm-none-eabi-nm": "arm",
    "qemu-system-arm": "arm",
    "/usr/lib/arm-none-eabi/include/string.h": "arm",
    "avr-gcc": "avr",
    "avr-nm": "avr",
    "simavr": "avr",
    "/usr/lib/avr/include/avr/pgmspace.h": "avr",
    "riscv64-unknown-elf-gcc": "riscv32",
    "riscv64-unknown-elf-nm": "riscv32",
    "qemu-riscv32": "riscv32",
    "/usr/lib/picolibc/riscv64-unknown-elf/include/string.h": "riscv32",
    "powerpc-linux-gnu-gcc": "powerpc",
    "powerpc-linux-gnu-nm": "powerpc",
    "qemu-ppc": "powerpc",
    "/usr/powerpc-linux-gnu/include/string.h": "powerpc",
}


def require(tool: str) -> str:
    """Path of ``tool`` (a command, or an absolute path to a file a toolchain installs).

    Raises ToolchainError with one line naming the install command when it is missing.
    """
    path = tool if tool.startswith("/") and os.path.exists(tool) else shutil.which(tool)
    if path is None:
        group = TOOL_GROUP.get(tool, "all")
        raise ToolchainError(
            f"'{tool}' not found: install the {group} toolchain with "
            f"`scripts/install_toolchain.sh {group}` (Debian packages; `make toolchain` "
            "installs every target's)"
        )
    return path


def _run(cmd: list[str], cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, **kw)
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace") if isinstance(res.stderr, bytes) else res.stderr
        raise ToolchainError(f"command failed ({res.returncode}): {' '.join(cmd)}\n{err[-4000:]}")
    return res


@dataclass
class ProjectInfo:
    """What the runners need to know about an exported project (from <name>_info.json)."""

    out_dir: Path
    name: str
    library_sources: list[str]
    input_dtype: np.dtype
    input_shape: tuple[int, ...]
    output_dtype: np.dtype
    output_shape: tuple[int, ...]
    raw: dict = field(default_factory=dict)


def project_info(out_dir: str | os.PathLike) -> ProjectInfo:
    d = Path(out_dir)
    found = sorted(d.glob("*_info.json"))
    if len(found) != 1:
        raise ToolchainError(f"{d}: expected one *_info.json (an export_c folder), found {found}")
    raw = json.loads(found[0].read_text())
    return ProjectInfo(
        d,
        raw["name"],
        raw["library_sources"],
        np.dtype(raw["input"]["dtype"]),
        tuple(raw["input"]["shape"]),
        np.dtype(raw["output"]["dtype"]),
        tuple(raw["output"]["shape"]),
        raw,
    )


def _check_inputs(info: ProjectInfo, inputs: np.ndarray) -> np.ndarray:
    inputs = np.asarray(inputs)
    if inputs.dtype != info.input_dtype or tuple(inputs.shape[1:]) != info.input_shape:
        raise ValueError(
            f"inputs must be {info.input_dtype} of shape (N, *{info.input_shape}), got"
            f" {inputs.dtype} {inputs.shape}; quantize first (QuantizedModel.quantize_input)"
        )
    return np.ascontiguousarray(inputs)


# ----------------------------------------------------------------------------------------------
# Host
# ----------------------------------------------------------------------------------------------

SANITIZE_FLAGS = [
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
]


def build_host(
    out_dir: str | os.PathLike,
    opt: str = "-O2",
    sanitize: bool = False,
    extra_flags: tuple[str, ...] = (),
) -> Path:
    """Compile library + host driver with the strict flags; returns the executable."""
    info = project_info(out_dir)
    tag = opt.lstrip("-") + ("-san" if sanitize else "") + "".join(extra_flags).replace("-", "_")
    build = info.out_dir / "build" / f"host{tag}"
    build.mkdir(parents=True, exist_ok=True)
    exe = build / f"{info.name}_host"
    srcs = [str(info.out_dir / s) for s in info.library_sources]
    srcs.append(str(info.out_dir / f"{info.name}_host_main.c"))
    flags = ["-std=c99", opt, *WARN, *extra_flags, *(SANITIZE_FLAGS if sanitize else [])]
    _run([require(HOST_CC), *flags, "-I", str(info.out_dir), "-o", str(exe), *srcs])
    return exe


def compile_and_run_host(
    out_dir: str | os.PathLike, inputs: np.ndarray, opt: str = "-O2", sanitize: bool = False
) -> np.ndarray:
    """Outputs of the compiled C for a batch of raw inputs (one process run for the batch).

    With ``sanitize`` any AddressSanitizer/UBSan report fails the run (ToolchainError).
    """
    info = project_info(out_dir)
    x = _check_inputs(info, inputs)
    exe = build_host(out_dir, opt, sanitize)
    env = dict(
        os.environ,
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
    )
    res = subprocess.run([str(exe)], input=x.tobytes(), capture_output=True, env=env)
    err = res.stderr.decode(errors="replace")
    if res.returncode != 0 or err.strip():
        raise ToolchainError(f"{exe} exited with {res.returncode}; stderr:\n{err[-4000:]}")
    out = np.frombuffer(res.stdout, dtype=info.output_dtype)
    return out.reshape((x.shape[0], *info.output_shape)).copy()


def time_host(
    out_dir: str | os.PathLike, sample: np.ndarray, runs: int = 2000, opt: str = "-O2"
) -> float:
    """Seconds per inference of the compiled C (batch 1, one thread), best of 3 timings."""
    info = project_info(out_dir)
    x = _check_inputs(info, sample[None] if sample.ndim == len(info.input_shape) else sample)
    exe = build_host(out_dir, opt)
    best = float("inf")
    for _ in range(3):
        res = _run([str(exe), "--bench", str(runs)], input=x[:1].tobytes())
        best = min(best, int(res.stdout.decode().strip()) / 1e9 / runs)
    return best


# ----------------------------------------------------------------------------------------------
# No float: compile check + lexical check
# ----------------------------------------------------------------------------------------------

_FLOAT_LITERAL = re.compile(
    r"(?<![\w.])("
    r"0[xX][0-9a-fA-F]*\.?[0-9a-fA-F]*[pP][+-]?\d+[fFlL]?"  # hex float
    r"|\d+\.\d*(?:[eE][+-]?\d+)?[fFlL]?"  # 1.  1.5  1.5e3
    r"|\.\d+(?:[eE][+-]?\d+)?[fFlL]?"  # .5
    r"|\d+[eE][+-]?\d+[fFlL]?"  # 1e3
    r")(?![\w.])"
)
_FLOAT_WORDS = re.compile(r"\b(float|double|_Float\d+x?|_Complex|__fp16|__bf16)\b")


def strip_strings_and_comments(src: str) -> str:
    """Blank out string/char literals and comments so only code tokens are scanned."""
    pattern = re.compile(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'|/\*.*?\*/|//[^\n]*', re.S)
    return pattern.sub(" ", src)


def float_tokens(src: str) -> list[str]:
    """Every float/double keyword and floating literal in C source (strings excluded)."""
    code = strip_strings_and_comments(src)
    return [m.group(0) for m in _FLOAT_WORDS.finditer(code)] + [
        m.group(0) for m in _FLOAT_LITERAL.finditer(code)
    ]


def check_no_float(out_dir: str | os.PathLike) -> dict[str, list[str]]:
    """Prove the library is integer-only on the host; returns {file: offending tokens}.

    1. ``gcc -std=c99 -O0 <WARN> -mgeneral-regs-only`` compiles the library and
       the driver (a ToolchainError if it does not: any float use fails there);
    2. ``gcc -E -P`` of each library source, strings and comments removed, must contain no
       ``float``/``double`` token and no floating literal (what constant folding could hide).
    """
    info = project_info(out_dir)
    build_host(out_dir, "-O0", extra_flags=("-mgeneral-regs-only",))
    found: dict[str, list[str]] = {}
    for s in info.library_sources:
        res = _run(
            [
                require(HOST_CC),
                "-std=c99",
                "-E",
                "-P",
                "-I",
                str(info.out_dir),
                str(info.out_dir / s),
            ],
            text=True,
        )
        tokens = float_tokens(res.stdout)
        if tokens:
            found[s] = tokens
    return found


# ----------------------------------------------------------------------------------------------
# Cortex-M0
# ----------------------------------------------------------------------------------------------


@dataclass
class M0Build:
    elf: Path
    board: str  # "microbit" (Cortex-M0, 16 KB) or "an385" (Cortex-M3 board, 4 MB; M0 code)
    ram_size: int
    soft_float: list[str]  # soft-float helper symbols found in the ELF (must be empty)
    cpu: str = "cortex-m0"


def build_m0(
    out_dir: str | os.PathLike,
    inputs: np.ndarray,
    *,
    profile: bool = False,
    opt: str = "-O2",
    board: str = "auto",
    cpu: str = "cortex-m0",
) -> M0Build:
    """Cross-compile library + M0 harness with ``inputs`` as const samples in flash.

    ``board="auto"`` links for the micro:bit (16 KB RAM) and falls back to MPS2 AN385 only if
    the arena, buffers and the reserved stack do not fit. ``cpu`` is ``cortex-m0`` or
    ``cortex-m0plus`` (the same ARMv6-M instruction set, which both boards run).
    """
    if cpu not in ARMV6M_CPUS:
        raise ValueError(f"cpu must be one of {ARMV6M_CPUS}, got {cpu!r}")
    info = project_info(out_dir)
    x = _check_inputs(info, inputs)
    cc = require(ARM_CC)
    tag = f"{CPU_TAG[cpu]}{opt.lstrip('-')}{'-prof' if profile else ''}"
    build = info.out_dir / "build" / tag
    build.mkdir(parents=True, exist_ok=True)
    ctype = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t"}[info.input_dtype.name]
    (build / "samples.c").write_text(samples_source(info.name, ctype, x))
    srcs = [str(info.out_dir / s) for s in info.library_sources]
    srcs += [str(info.out_dir / "m0" / f) for f in ("startup.c", "main.c")]
    srcs.append(str(build / "samples.c"))
    elf = build / f"{info.name}.elf"
    boards = ["microbit", "an385"] if board == "auto" else [board]
    last_err: ToolchainError | None = None
    for b in boards:
        cmd = [
            cc,
            *ARM_FLAGS,
            f"-mcpu={cpu}",
            opt,
            "-I",
            str(info.out_dir),
            *(["-DIQ_PROFILE"] if profile else []),
            "-nostdlib",
            "-T",
            str(info.out_dir / "m0" / f"{b}.ld"),
            "-Wl,--gc-sections",
            "-o",
            str(elf),
            *srcs,
            "-Wl,--start-group",
            "-lc",
            "-lgcc",
            "-Wl,--end-group",
        ]
        try:
            _run(cmd)
        except ToolchainError as e:
            last_err = e
            if "no room for the stack" in str(e) or "overflowed" in str(e):
                continue
            raise
        ram = MICROBIT_RAM if b == "microbit" else AN385_RAM
        return M0Build(elf, b, ram, soft_float_symbols(elf), cpu)
    raise ToolchainError(f"model does not fit any emulated board: {last_err}")


def elf_symbols(elf: Path, nm: str = ARM_NM) -> list[tuple[str, str, int, int]]:
    """(name, type, address, size) of every defined symbol (``nm -S``).

    Symbols without a size (the linker script's ``__bss_end__``, ``__stack_top__``) are kept
    with size 0: the stack probe needs their addresses.
    """
    res = _run([require(nm), "-S", "--defined-only", str(elf)], text=True)
    out = []
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.append((parts[3], parts[2], int(parts[0], 16), int(parts[1], 16)))
        elif len(parts) == 3:
            out.append((parts[2], parts[1], int(parts[0], 16), 0))
    return out


def function_symbols(elf: Path) -> list[tuple[str, int, int]]:
    """(name, address, size) of every function (nm types t/T/w/W), for hot-spot attribution."""
    return [(n, a, s) for n, typ, a, s in elf_symbols(elf) if typ in "tTwW"]


def soft_float_symbols(elf: Path, nm: str = ARM_NM) -> list[str]:
    res = _run([require(nm), str(elf)], text=True)
    names = [ln.split()[-1] for ln in res.stdout.splitlines() if ln.strip()]
    return sorted(n for n in names if SOFT_FLOAT_RE.match(n))


def run_qemu(build: M0Build, n_outputs: int, timeout: float = 60.0) -> list[bytes]:
    """Run the image under QEMU with semihosting; returns each printed output line's bytes."""
    qemu = require(QEMU)
    machine = "microbit" if build.board == "microbit" else "mps2-an385"
    cmd = [
        qemu,
        "-M",
        machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        "-kernel",
        str(build.elf),
    ]
    res = subprocess.run(cmd, capture_output=True, timeout=timeout)
    text = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
    lines = [ln.strip() for ln in text.splitlines()]
    if res.returncode != 0 or "END" not in lines:
        raise ToolchainError(
            f"QEMU run of {build.elf} failed (exit {res.returncode}):\n{text[-3000:]}"
        )
    outs = [bytes.fromhex(ln[1:]) for ln in lines if re.fullmatch(r"O[0-9a-f]*", ln)]
    if len(outs) != n_outputs:
        raise ToolchainError(f"QEMU printed {len(outs)} outputs, expected {n_outputs}")
    return outs


def run_on_m0(
    out_dir: str | os.PathLike,
    inputs: np.ndarray,
    emulator: str = "qemu",
    opt: str = "-O2",
    cpu: str = "cortex-m0",
) -> np.ndarray:
    """Outputs of the model on an emulated Cortex-M0 (or M0+) for a batch of raw inputs."""
    info = project_info(out_dir)
    x = _check_inputs(info, inputs)
    if emulator == "qemu":
        build = build_m0(out_dir, x, opt=opt, cpu=cpu)
        _assert_no_soft_float(build)
        raw = run_qemu(build, x.shape[0])
        out = np.frombuffer(b"".join(raw), dtype=info.output_dtype)
    elif emulator == "unicorn":
        res = emulate_unicorn(out_dir, x, opt=opt, cpu=cpu)
        out = res.outputs
    else:
        raise ValueError(f"emulator must be 'qemu' or 'unicorn', got {emulator!r}")
    return out.reshape((x.shape[0], *info.output_shape)).copy()


def _assert_no_soft_float(build: M0Build) -> None:
    if build.soft_float:
        raise ToolchainError(f"{build.elf} links soft-float helpers: {build.soft_float}")


# -- unicorn ------------------------------------------------------------------------------------

IO_BASE = 0x30000000
RETURN_ADDR = 0x3FFF0000
STACK_PATTERN = 0xA5


def stack_bytes_used(region: bytes) -> int:
    """Bytes of a pattern-filled stack region (lowest address first) written by the run: from
    the first byte that is no longer the pattern up to the top."""
    changed = np.flatnonzero(np.frombuffer(region, dtype=np.uint8) != STACK_PATTERN)
    return len(region) - int(changed[0]) if changed.size else 0


@dataclass(frozen=True)
class UnicornCall:
    """How ``<name>_run(input, output)`` is called on a unicorn CPU, and where it measures.

    Registers are unicorn register ids; addresses are in the emulated memory. ``probe`` is the
    RAM painted before each call: the stack is what the call overwrote of it, below ``sp``.
    """

    entry: int  # first instruction (| 1 for Thumb)
    args: tuple[int, int]  # registers of the input and output pointers
    sp: int  # stack-pointer register, set to sp_value
    ret: int  # link register, set to return_addr (the call ends there, bit 0 ignored)
    in_addr: int
    out_addr: int
    out_bytes: int
    probe: tuple[int, int]  # [lo, hi)
    sp_value: int
    return_addr: int
    extra: tuple[tuple[int, int], ...] = ()  # (register, value) also set before each call


def call_each_sample(
    uc: Any,
    call: UnicornCall,
    samples: list[bytes],
    block_instructions: Callable[[Any, int, int], int],
    profile_mark: int | None = None,
) -> tuple[list[bytes], list[int], list[dict[int, int]], int]:
    """Call the model once per raw sample on a loaded unicorn ``uc``: (outputs, instructions per
    sample, op index -> instructions per sample, deepest stack in bytes).

    ``block_instructions(uc, address, size)`` counts the instructions of a translated block;
    with ``profile_mark`` (the address of ``iq_profile_mark``) each instruction is attributed
    to the op whose index was passed last (-1 before the first). The counting hook is added
    before the first ``emu_start``: blocks translated earlier would not be counted.
    """
    from unicorn import UC_HOOK_BLOCK, UC_HOOK_CODE

    state = {"n": 0, "op": -1}
    per_op: dict[int, int] = {}

    def on_block(uc_, address, size, _user):
        n = block_instructions(uc_, address, size)
        state["n"] += n
        per_op[state["op"]] = per_op.get(state["op"], 0) + n

    uc.hook_add(UC_HOOK_BLOCK, on_block)
    if profile_mark is not None:

        def on_mark(uc_, _address, _size, _user):
            state["op"] = int(np.int32(np.uint32(uc_.reg_read(call.args[0]))))

        uc.hook_add(UC_HOOK_CODE, on_mark, begin=profile_mark, end=profile_mark)
    lo, hi = call.probe
    pattern = bytes([STACK_PATTERN]) * (hi - lo)
    outs, counts, per_ops, stack = [], [], [], 0
    for s in samples:
        uc.mem_write(call.in_addr, s)
        uc.mem_write(lo, pattern)
        uc.reg_write(call.args[0], call.in_addr)
        uc.reg_write(call.args[1], call.out_addr)
        uc.reg_write(call.sp, call.sp_value)
        uc.reg_write(call.ret, call.return_addr)
        for reg, value in call.extra:
            uc.reg_write(reg, value)
        state["n"], state["op"] = 0, -1
        per_op.clear()
        uc.emu_start(call.entry, call.return_addr & ~1, timeout=600 * 1000 * 1000)
        outs.append(bytes(uc.mem_read(call.out_addr, call.out_bytes)))
        counts.append(state["n"])
        per_ops.append(dict(per_op))
        used = stack_bytes_used(bytes(uc.mem_read(lo, hi - lo))) - (hi - call.sp_value)
        stack = max(stack, used)
    return outs, counts, per_ops, stack


@dataclass
class UnicornResult:
    outputs: np.ndarray  # flat outputs of all samples
    traces: list[Trace]  # per sample, whole <name>_run call: instructions, cycles, per op/fn
    stack_bytes: int  # deepest stack use over the samples
    build: M0Build

    @property
    def instructions(self) -> list[int]:
        """Per sample, instructions of the whole <name>_run call."""
        return [t.total.instructions for t in self.traces]

    def cycles(self, multiplier: str = "fast") -> list[int]:
        """Per sample, Cortex-M0 cycles of the whole call (see cycles.py for the model)."""
        return [t.total.cycles(multiplier) for t in self.traces]

    @property
    def per_op(self) -> list[dict[int, int]]:
        """Per sample: op index -> instructions (profile build; -1 is outside any op)."""
        return [{k: v.instructions for k, v in t.per_key.items()} for t in self.traces]


def emulate_unicorn(
    out_dir: str | os.PathLike,
    inputs: np.ndarray,
    *,
    profile: bool = False,
    opt: str = "-O2",
    allow_soft_float: bool = False,
    cpu: str = "cortex-m0",
    board: str = "auto",
) -> UnicornResult:
    """Call ``<name>_run`` once per sample on unicorn's Cortex-M0, counting instructions.

    The ELF's loadable segments are written at their load and run addresses (so .data starts
    initialised and .bss zero); input and output arrays live in a separate mapped region;
    the stack is pre-filled with a pattern to measure its deepest use: all of the RAM between
    the end of ``.bss`` (``__bss_end__``) and the top of the stack, so the probe never lands
    inside the arena or another static buffer. Cortex-M0+ builds run on the same M0 model
    (same instruction set); the cycles of the traces use the Cortex-M0's timings (cycles.py).
    """
    from elftools.elf.elffile import ELFFile
    from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_HOOK_CODE, UC_MODE_THUMB, Uc
    from unicorn.arm_const import (
        UC_ARM_REG_LR,
        UC_ARM_REG_R0,
        UC_ARM_REG_R1,
        UC_ARM_REG_SP,
        UC_CPU_ARM_CORTEX_M0,
    )

    info = project_info(out_dir)
    x = _check_inputs(info, inputs)
    build = build_m0(out_dir, x[:1], profile=profile, opt=opt, cpu=cpu, board=board)
    if not allow_soft_float:  # only the benchmark's float32 comparison build links them
        _assert_no_soft_float(build)
    syms = {name: addr for name, _, addr, _ in elf_symbols(build.elf)}
    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB)
    uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M0)
    uc.mem_map(0, 4 * 1024 * 1024)
    uc.mem_map(0x20000000, build.ram_size)
    in_bytes = int(np.prod(info.input_shape)) * info.input_dtype.itemsize
    out_bytes = int(np.prod(info.output_shape)) * info.output_dtype.itemsize
    io_size = (in_bytes + out_bytes + 0xFFFF) & ~0xFFF
    uc.mem_map(IO_BASE, io_size)
    uc.mem_map(RETURN_ADDR, 0x1000)
    with open(build.elf, "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_filesz"]:
                data = seg.data()
                uc.mem_write(seg["p_paddr"], data)
                uc.mem_write(seg["p_vaddr"], data)
    counter = TraceCounter(FunctionMap.from_symbols(function_symbols(build.elf)))
    uc.hook_add(UC_HOOK_BLOCK, lambda uc_, address, size, _u: counter.on_block(address, size, uc_))
    if profile:
        mark = syms["iq_profile_mark"] & ~1

        def on_mark(uc_, _address, _size, _user):
            counter.key = int(np.int32(np.uint32(uc_.reg_read(UC_ARM_REG_R0))))

        uc.hook_add(UC_HOOK_CODE, on_mark, begin=mark, end=mark)
    fn = syms[f"{info.name}_run"]
    stack_top = 0x20000000 + build.ram_size
    probe_lo = syms["__bss_end__"]
    pattern = bytes([STACK_PATTERN]) * (stack_top - probe_lo)
    outputs, traces, stack = [], [], 0
    for s in x:
        uc.mem_write(IO_BASE, s.tobytes())
        uc.mem_write(probe_lo, pattern)
        uc.reg_write(UC_ARM_REG_R0, IO_BASE)
        uc.reg_write(UC_ARM_REG_R1, IO_BASE + ((in_bytes + 7) & ~7))
        uc.reg_write(UC_ARM_REG_SP, stack_top)
        uc.reg_write(UC_ARM_REG_LR, RETURN_ADDR | 1)
        counter.start()
        uc.emu_start(fn | 1, RETURN_ADDR, timeout=600 * 1000 * 1000)
        outputs.append(bytes(uc.mem_read(IO_BASE + ((in_bytes + 7) & ~7), out_bytes)))
        traces.append(counter.finish(RETURN_ADDR))
        stack = max(stack, stack_bytes_used(bytes(uc.mem_read(probe_lo, len(pattern)))))
    out = np.frombuffer(b"".join(outputs), dtype=info.output_dtype)
    return UnicornResult(out, traces, stack, build)


# ----------------------------------------------------------------------------------------------
# Any target
# ----------------------------------------------------------------------------------------------


def run_on(
    out_dir: str | os.PathLike, inputs: np.ndarray, target: str = "host", opt: str = "-O2"
) -> np.ndarray:
    """Outputs of the exported C on ``target`` for a batch of raw inputs, shape
    (N, *output_shape), as a native NumPy array (whatever the target's byte order).

    Targets (``intquant.codegen.targets``): host, cortex-m0, cortex-m0plus, avr, riscv32,
    powerpc. A missing compiler or emulator raises ToolchainError with one line saying how to
    install it; a soft-float helper linked into a target image is an error too.
    """
    from .targets import get_target

    t = get_target(target)
    return t.run(out_dir, _check_inputs(project_info(out_dir), inputs), opt)
