"""Streaming C API for models with recurrent ops: ``<name>_reset`` and ``<name>_step``.

A keyword spotter on a microphone does not wait for a whole second of audio: it feeds each
new MFCC frame to the network as it arrives and reads the scores after every frame. The
recurrent ops (``OpDef.state_bytes``) keep their state in the arena between calls, so:

    void <name>_reset(void);                             state := initial state (h0, c0)
    int  <name>_step(const <name>_input_t* frame,        one frame in, the output after it
                     <name>_output_t* output);

After ``<name>_reset()`` and T calls of ``<name>_step`` on the frames of a sequence, the output
equals ``<name>_run`` on the whole sequence (``<name>_run`` itself starts with
``<name>_reset()`` and leaves the state after its last frame; ``<name>_step`` may continue).
Each intermediate output equals ``<name>_run`` of a model whose sequence is that prefix
(``with_steps``): the exact integer reference of a stream.

Which models stream: the input is a sequence (T, F) and every op that reads a tensor with
the time axis is per frame — an elementwise op (``OpDef.in_place``: rescale, clamp, lut, ...)
or a recurrent op — so that running them on one frame computes that frame's slice. A
recurrent op with ``sequence`` = 0 ends the time axis; the ops after it (the head: linear,
softmax, ...) run after every frame. ``<name>_step`` is then the same call sequence as
``<name>_run`` on the graph with T = 1 (same arena offsets: every tensor is smaller), except
that nothing resets the state.

This module also holds the stream test drivers (host and Cortex-M0) and the runners the tests
and the benchmark use: ``run_stream_host``, ``run_stream_m0`` (QEMU), ``emulate_stream``
(unicorn, instructions per frame).
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
from dataclasses import dataclass

import numpy as np

from ..intgraph import IntGraph
from ..ops import op_def
from .emitter import CEmitter
from .m0 import MAIN_PRELUDE
from .planner import MemoryPlan


class NotStreamable(ValueError):
    """The graph has no streaming form (the message says why)."""


def stateful(graph: IntGraph) -> bool:
    """Whether any op keeps state between frames (a recurrent op)."""
    return any(op_def(op.kind).state_bytes(graph, op) > 0 for op in graph.ops)


def time_tensors(graph: IntGraph) -> set[str]:
    """The tensors with the time axis (first axis, length T of the input (T, F)); raises
    NotStreamable naming the op that mixes frames."""
    if not stateful(graph):
        raise NotStreamable("the model has no recurrent op (nothing to stream)")
    x = graph.tensors[graph.input]
    if len(x.shape) != 2:
        raise NotStreamable(f"the input has shape {x.shape}; streaming needs a sequence (T, F)")
    steps = x.shape[0]
    time = {graph.input}
    for op in graph.ops:
        d = op_def(op.kind)
        on_time = [t in time for t in op.inputs]
        recurrent = d.state_bytes(graph, op) > 0
        if recurrent and not all(on_time):
            raise NotStreamable(f"op {op.name!r} ({op.kind}) reads a sequence computed from the "
                                "whole input, not frame by frame")
        if not any(on_time):
            continue
        out = graph.tensors[op.output]
        if recurrent:
            if graph.tensors[op.inputs[0]].shape[0] != steps:
                raise NotStreamable(f"op {op.name!r} ({op.kind}) runs over another time axis")
            if op.attrs.get("sequence"):
                time.add(op.output)
            continue
        same = all(graph.tensors[t].shape == out.shape for t in op.inputs)
        if d.in_place and all(on_time) and same:
            time.add(op.output)
            continue
        raise NotStreamable(f"op {op.name!r} ({op.kind}) combines several frames; only "
                            "elementwise and recurrent ops may read the sequence")
    return time


def with_steps(graph: IntGraph, steps: int) -> IntGraph:
    """The graph on a sequence of ``steps`` frames (the time-axis tensors shortened or
    lengthened): the reference of ``<name>_step`` after ``steps`` frames."""
    time = time_tensors(graph)
    g = copy.deepcopy(graph)
    for name in time:
        t = g.tensors[name]
        t.shape = (steps, *t.shape[1:])
    return g.validate()


@dataclass
class StreamAPI:
    """The generated streaming functions of one model."""

    emitter: CEmitter  # the step call sequence (graph with T = 1)
    frame_size: int
    step_output_size: int

    def header_lines(self, name: str, up: str) -> list[str]:
        return [
            "/* Streaming: the recurrent state lives in the arena. <name>_reset() sets it to the",
            " * initial state; <name>_step(frame, output) consumes one frame of",
            f" * {up}_STEP_INPUT_SIZE values and writes {up}_STEP_OUTPUT_SIZE values: after a",
            " * reset and T steps, output equals <name>_run on those T frames (which itself",
            " * starts with a reset and leaves the state after its last frame). */",
            f"#define {up}_STREAMING 1",
            f"#define {up}_STEP_INPUT_SIZE {self.frame_size}",
            f"#define {up}_STEP_OUTPUT_SIZE {self.step_output_size}",
            f"void {name}_reset(void);",
            f"int {name}_step(const {name}_input_t* input, {name}_output_t* output);",
        ]

    def source(self, name: str, resets: list[str]) -> str:
        return "\n".join([
            f"void {name}_reset(void)",
            "{",
            *resets,
            "}",
            "",
            f"int {name}_step(const {name}_input_t* input, {name}_output_t* output)",
            "{",
            "    if (input == NULL || output == NULL) {",
            "        return IQ_ERR_NULL_ARGUMENT;",
            "    }",
            *self.emitter.calls,
            "    return 0;",
            "}",
            "",
        ])


def stream_api(graph: IntGraph, name: str, plan: MemoryPlan, em: CEmitter) -> StreamAPI | None:
    """The streaming functions of ``graph`` (None when it has no recurrent op or does not
    stream). The step emitter must need no constant or parameter the run does not define:
    ops whose C data depends on the sequence length make the model non-streamable."""
    try:
        step_graph = with_steps(graph, 1)
    except NotStreamable:
        return None
    step = CEmitter(step_graph, name, plan, binary_weights=em.blobs is not None)
    step.emit()
    if not set(step.data) <= set(em.data):
        return None
    for k, v in step.instance_sources.items():
        em.add_kernel_instance(k, step.declarations[k], v)
    frame = math.prod(graph.tensors[graph.input].shape[1:])
    out = math.prod(step_graph.tensors[step_graph.output].shape)
    return StreamAPI(step, frame, out)


# ----------------------------------------------------------------------------------------------
# Test drivers (not part of the model library)
# ----------------------------------------------------------------------------------------------

HOST_STREAM_MAIN = r"""/* Host streaming driver for {name} (not part of the model library):
 * for every raw input sample ({up}_INPUT_SIZE values) on stdin, reset, then step through its
 * frames and write the output after each frame ({up}_STEP_OUTPUT_SIZE values) to stdout. */
#include <stdio.h>
#include "{name}.h"

static {name}_input_t in_buf[{up}_INPUT_SIZE];
static {name}_output_t out_buf[{up}_STEP_OUTPUT_SIZE];

int main(void)
{{
    while (fread(in_buf, sizeof(in_buf[0]), {up}_INPUT_SIZE, stdin) == {up}_INPUT_SIZE) {{
        int32_t t;
        {name}_reset();
        for (t = 0; t < {up}_INPUT_SIZE / {up}_STEP_INPUT_SIZE; ++t) {{
            if ({name}_step(in_buf + t * {up}_STEP_INPUT_SIZE, out_buf) != 0) {{
                return 2;
            }}
            if (fwrite(out_buf, sizeof(out_buf[0]), {up}_STEP_OUTPUT_SIZE, stdout) !=
                {up}_STEP_OUTPUT_SIZE) {{
                return 4;
            }}
        }}
    }}
    return 0;
}}
"""

M0_STREAM_MAIN = (
    "/* Cortex-M0 streaming test main for {name}: every sample of samples.c\n"
    " * frame by frame, the output after each frame as one hex line (as m0/main.c prints). */\n"
    + MAIN_PRELUDE.replace("{out_size}", "{up}_STEP_OUTPUT_SIZE")
    + r"""int main(void)
{{
    int32_t s, t;
    for (s = 0; s < iq_num_samples; ++s) {{
        {name}_reset();
        for (t = 0; t < {up}_INPUT_SIZE / {up}_STEP_INPUT_SIZE; ++t) {{
            if ({name}_step(iq_samples[s] + t * {up}_STEP_INPUT_SIZE, out_buf) != 0) {{
                iq_semihost_write0("ERROR\n");
                return 2;
            }}
            print_output();
        }}
    }}
    iq_semihost_write0("END\n");
    return 0;
}}
"""
)


def driver_files(name: str) -> dict[str, str]:
    """The stream test drivers a streaming project gets."""
    up = name.upper()
    return {f"{name}_stream_main.c": HOST_STREAM_MAIN.format(name=name, up=up),
            "m0/stream_main.c": M0_STREAM_MAIN.format(name=name, up=up)}


# ----------------------------------------------------------------------------------------------
# Runners
# ----------------------------------------------------------------------------------------------


def _stream_info(out_dir: str | os.PathLike):
    from .toolchain import ToolchainError, project_info

    info = project_info(out_dir)
    s = info.raw.get("streaming")
    if not s:
        raise ToolchainError(f"{out_dir}: the project has no streaming API")
    return info, s


def _frames_out(raw: bytes, info, s: dict, n: int) -> np.ndarray:
    steps = math.prod(info.input_shape) // s["step_input_size"]
    out = np.frombuffer(raw, dtype=info.output_dtype)
    return out.reshape(n, steps, *s["step_output_shape"]).copy()


def run_stream_host(out_dir: str | os.PathLike, inputs: np.ndarray, opt: str = "-O2",
                    sanitize: bool = False) -> np.ndarray:
    """Outputs after every frame, (N, T, *step output shape), from the host build of
    ``<name>_stream_main.c`` (reset, then ``<name>_step`` on each frame of each sample)."""
    from .toolchain import (
        HOST_CC,
        SANITIZE_FLAGS,
        WARN,
        ToolchainError,
        _check_inputs,
        _run,
        require,
    )

    info, s = _stream_info(out_dir)
    x = _check_inputs(info, inputs)
    build = info.out_dir / "build" / ("stream" + opt.lstrip("-") + ("-san" if sanitize else ""))
    build.mkdir(parents=True, exist_ok=True)
    exe = build / f"{info.name}_stream"
    srcs = [str(info.out_dir / f) for f in info.library_sources]
    srcs.append(str(info.out_dir / f"{info.name}_stream_main.c"))
    flags = ["-std=c99", opt, *WARN, *(SANITIZE_FLAGS if sanitize else [])]
    _run([require(HOST_CC), *flags, "-I", str(info.out_dir), "-o", str(exe), *srcs])
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="halt_on_error=1")
    res = subprocess.run([str(exe)], input=x.tobytes(), capture_output=True, env=env)
    err = res.stderr.decode(errors="replace")
    if res.returncode != 0 or err.strip():
        raise ToolchainError(f"{exe} exited with {res.returncode}; stderr:\n{err[-4000:]}")
    return _frames_out(res.stdout, info, s, x.shape[0])


def run_stream_m0(out_dir: str | os.PathLike, inputs: np.ndarray, opt: str = "-O2"
                  ) -> np.ndarray:
    """The same on QEMU's Cortex-M0 (micro:bit, or MPS2 AN385 when 16 KB of RAM is too
    little), through ``m0/stream_main.c``; no soft-float helper may be linked."""
    from .toolchain import ToolchainError, _check_inputs, build_m0, run_qemu

    info, s = _stream_info(out_dir)
    x = _check_inputs(info, inputs)
    steps = math.prod(info.input_shape) // s["step_input_size"]
    build = build_m0(out_dir, x, opt=opt, main="stream_main.c")
    if build.soft_float:
        raise ToolchainError(f"{build.elf} links soft-float helpers: {build.soft_float}")
    raw = run_qemu(build, x.shape[0] * steps)
    return _frames_out(b"".join(raw), info, s, x.shape[0])


@dataclass
class StreamCost:
    """Cost on unicorn's Cortex-M0 of one ``<name>_reset`` and of each ``<name>_step``:
    instructions, and cycles from the Cortex-M0 timings of ``cycles.py`` (single-cycle
    multiplier, no flash wait states)."""

    outputs: np.ndarray  # (N, T, *step output shape)
    reset: int
    per_frame: list[int]  # instructions of every step of every sample, in order
    board: str
    per_frame_cycles: list[int]  # the same steps in M0 cycles


def emulate_stream(out_dir: str | os.PathLike, inputs: np.ndarray, opt: str = "-O2"
                   ) -> StreamCost:
    """Call ``<name>_reset`` and ``<name>_step`` frame by frame on unicorn's Cortex-M0,
    counting the instructions and cycles of each call (the image of ``m0/stream_main.c``)."""
    from elftools.elf.elffile import ELFFile
    from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_MODE_THUMB, Uc
    from unicorn.arm_const import (
        UC_ARM_REG_LR,
        UC_ARM_REG_R0,
        UC_ARM_REG_R1,
        UC_ARM_REG_SP,
        UC_CPU_ARM_CORTEX_M0,
    )

    from .cycles import TraceCounter
    from .toolchain import (
        IO_BASE,
        RETURN_ADDR,
        ToolchainError,
        _check_inputs,
        build_m0,
        elf_symbols,
    )

    info, s = _stream_info(out_dir)
    x = _check_inputs(info, inputs)
    build = build_m0(out_dir, x[:1], opt=opt, main="stream_main.c")
    if build.soft_float:
        raise ToolchainError(f"{build.elf} links soft-float helpers: {build.soft_float}")
    syms = {n: a for n, _, a, _ in elf_symbols(build.elf)}
    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB)
    uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M0)
    uc.mem_map(0, 4 * 1024 * 1024)
    uc.mem_map(0x20000000, build.ram_size)
    uc.mem_map(IO_BASE, 0x10000)
    uc.mem_map(RETURN_ADDR, 0x1000)
    with open(build.elf, "rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_filesz"]:
                uc.mem_write(seg["p_paddr"], seg.data())
                uc.mem_write(seg["p_vaddr"], seg.data())
    counter = TraceCounter()
    uc.hook_add(UC_HOOK_BLOCK, lambda uc_, address, size, _u: counter.on_block(address, size, uc_))
    stack_top = 0x20000000 + build.ram_size
    item = info.input_dtype.itemsize
    frame_bytes = s["step_input_size"] * item
    out_bytes = math.prod(s["step_output_shape"]) * info.output_dtype.itemsize
    out_addr = IO_BASE + 0x8000

    def call(fn: str, *args: int) -> tuple[int, int]:
        """(instructions, cycles) of one call."""
        for reg, v in zip((UC_ARM_REG_R0, UC_ARM_REG_R1), args, strict=False):
            uc.reg_write(reg, v)
        uc.reg_write(UC_ARM_REG_SP, stack_top)
        uc.reg_write(UC_ARM_REG_LR, RETURN_ADDR | 1)
        counter.start()
        uc.emu_start(syms[fn] | 1, RETURN_ADDR, timeout=120 * 1000 * 1000)
        total = counter.finish(RETURN_ADDR).total
        return total.instructions, total.cycles()

    steps = math.prod(info.input_shape) // s["step_input_size"]
    outs, per_frame, per_frame_cycles, reset = [], [], [], 0
    for sample in x:
        raw = sample.tobytes()
        reset = call(f"{info.name}_reset")[0]
        for t in range(steps):
            uc.mem_write(IO_BASE, raw[t * frame_bytes:(t + 1) * frame_bytes])
            n, cycles = call(f"{info.name}_step", IO_BASE, out_addr)
            per_frame.append(n)
            per_frame_cycles.append(cycles)
            outs.append(bytes(uc.mem_read(out_addr, out_bytes)))
    return StreamCost(_frames_out(b"".join(outs), info, s, x.shape[0]), reset, per_frame,
                      build.board, per_frame_cycles)


def reference_frames(graph: IntGraph, x: np.ndarray) -> np.ndarray:
    """The integer reference of every step output: the interpreter on each prefix of the
    sequence (``with_steps``), (N, T, *step output shape)."""
    from ..interpreter import run

    steps = graph.tensors[graph.input].shape[0]
    per_frame = graph.output in time_tensors(graph)
    outs = []
    for t in range(1, steps + 1):
        y = run(with_steps(graph, t), np.ascontiguousarray(x[:, :t]))
        outs.append(y[:, t - 1:t] if per_frame else y)
    return np.stack(outs, axis=1)


__all__ = ["NotStreamable", "StreamAPI", "StreamCost", "driver_files", "emulate_stream",
           "reference_frames", "run_stream_host", "run_stream_m0", "stream_api", "stateful",
           "time_tensors", "with_steps"]
