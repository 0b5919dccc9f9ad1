"""CMSIS-NN's portable C on the same layers, measured here with the same Cortex-M0 cycle model.

Nothing of CMSIS-NN is stored in this repository: point ``IQ_CMSIS_NN_DIR`` at a checkout of
https://github.com/ARM-software/CMSIS-NN and this module compiles its int8/int16 sources for
Cortex-M0 (``-mcpu=cortex-m0 -O2``, no DSP or MVE extension, so the portable C paths) into a
scratch folder at benchmark time. Each conv / fully_connected layer of a model is then run alone
through CMSIS-NN's wrapper (``arm_convolve_wrapper_s8``, ``arm_depthwise_conv_wrapper_s8``,
``arm_fully_connected_per_channel_s8``, and the s16 convolution wrappers for 16x8) on unicorn,
with the layer's own integer weights, bias, multipliers and shifts converted to CMSIS-NN's NHWC
layouts and a random input; the cycles of the call come from intquant.codegen.cycles and its
output is compared with the intquant interpreter's on the same input ("identical").

Without the variable, the benchmark prints the figures of the notes instead (measured the same
way on an earlier run): see ``NOTES_FIGURES``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intquant.codegen.cycles import FunctionMap, TraceCounter
from intquant.codegen.toolchain import ARM_CC
from intquant.interpreter import run
from intquant.intgraph import ACTIVATION_DTYPES, IntGraph, Op

# cycles/MAC ranges of CMSIS-NN's portable C on Cortex-M0 from ../shared/notes/m0-cycles.md
NOTES_FIGURES = {
    "conv 3x3": "9.2-11.6",
    "pointwise": "10-13",
    "fully connected": "8-15",
    "first conv (1 input channel)": "41-42",
    "depthwise 3x3": "56-63",
    "depthwise 1x3": "~150",
}
FLAGS = [
    "-mcpu=cortex-m0",
    "-mthumb",
    "-mfloat-abi=soft",
    "-std=c99",
    "-O2",
    "-ffreestanding",
    "-ffunction-sections",
    "-fdata-sections",
]
RAM, IO, RET = 0x20000000, 0x30000000, 0x3FFF0000


def cmsis_nn_dir() -> Path | None:
    d = os.environ.get("IQ_CMSIS_NN_DIR")
    return Path(d) if d and (Path(d) / "Include" / "arm_nnfunctions.h").is_file() else None


def build_library(src: Path, work: Path) -> list[Path]:
    """Compile CMSIS-NN's int8/int16/int32 C sources for Cortex-M0 into objects in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    objs = []
    for c in sorted(src.glob("Source/*/*.c")):
        if "f16" in c.name or "f32" in c.name or "_flt" in c.name:
            continue
        o = work / (c.stem + ".o")
        inc = ["-I", str(src / "Include"), "-I", str(src / "Include" / "Internal")]
        subprocess.run(
            [ARM_CC, *FLAGS, *inc, "-c", str(c), "-o", str(o)], check=True, capture_output=True
        )
        objs.append(o)
    return objs


def _carr(ctype: str, name: str, v: np.ndarray) -> str:
    vals = ", ".join(str(int(x)) for x in np.ravel(v)) or "0"
    return f"static const {ctype} {name}[{max(1, np.size(v))}] = {{{vals}}};\n"


def _nhwc(a: np.ndarray) -> np.ndarray:
    """(C, H, W) or (C, L) -> (H, W, C)."""
    a = a if a.ndim == 3 else a[:, None, :]
    return np.ascontiguousarray(a.transpose(1, 2, 0))


def supported(g: IntGraph, op: Op) -> bool:
    """The layers this harness runs through CMSIS-NN (not: 16-bit fully_connected, whose
    CMSIS-NN kernel takes one multiplier per tensor)."""
    if op.kind == "fully_connected":
        return g.tensors[op.inputs[0]].dtype == "int8"
    return op.kind == "conv" and g.tensors[op.inputs[0]].dtype in ("int8", "int16")


def layer_source(g: IntGraph, op: Op, x: np.ndarray, scratch: int) -> tuple[str, tuple]:
    """C source calling CMSIS-NN's wrapper for ``op`` on input ``x`` (intquant layout, one
    sample), and the output shape in NHWC."""
    xi, yi = g.tensors[op.inputs[0]], g.tensors[op.output]
    a = op.attrs
    wide = xi.dtype == "int16"
    t_in = "int16_t" if wide else "int8_t"
    mult, shift = op.consts["multiplier"], op.consts["shift"]
    bias = op.consts["bias"]
    src = '#include "arm_nnfunctions.h"\n'
    src += _carr(t_in, "in", _nhwc(x) if op.kind == "conv" else x)
    src += _carr("int32_t", "mult", mult) + _carr("int32_t", "shift", shift)
    src += _carr("int64_t" if wide else "int32_t", "bias", bias)
    body = [f"static int8_t buf[{scratch}];"]
    act = f"{{{a['act_min']}, {a['act_max']}}}"
    if op.kind == "fully_connected":
        w = op.consts["weight"]
        cout, cin = w.shape
        out_shape = (cout,)
        src += _carr("int8_t", "w", w)
        body += [
            f"static int8_t out[{cout}];",
            "int run(void) {",
            f"  cmsis_nn_context ctx = {{buf, {scratch}}};",
            f"  cmsis_nn_fc_params fp = {{{-a['input_zero_point']}, 0, {a['output_zero_point']},"
            f" {act}}};",
            "  cmsis_nn_per_channel_quant_params qp = {(int32_t*)mult, (int32_t*)shift};",
            f"  cmsis_nn_dims id = {{1, 1, 1, {cin}}}, fd = {{{cin}, 1, 1, {cout}}},"
            f" bd = {{1, 1, 1, {cout}}}, od = {{1, 1, 1, {cout}}};",
            "  return arm_fully_connected_per_channel_s8(&ctx, &fp, &qp, &id, in, &fd, w, &bd,"
            " bias, &od, out);",
            "}",
        ]
    else:
        cin = xi.shape[0]
        h, wd = (1, xi.shape[1]) if len(xi.shape) == 2 else xi.shape[1:]
        cout = yi.shape[0]
        ho, wo = (1, yi.shape[1]) if len(yi.shape) == 2 else yi.shape[1:]
        weight = op.consts["weight"]
        kh, kw = weight.shape[2:]
        dw = int(a["groups"]) == cin and cin > 1
        out_shape = (ho, wo, cout)
        tout = "int16_t" if yi.dtype == "int16" else "int8_t"
        if dw:  # [1, kh, kw, cout]
            src += _carr("int8_t", "w", weight[:, 0].transpose(1, 2, 0))
        else:  # [cout, kh, kw, cin]
            src += _carr("int8_t", "w", weight.transpose(0, 2, 3, 1))
        stride = f"{{{a['stride'][1]}, {a['stride'][0]}}}"
        pad = f"{{{a['padding'][1]}, {a['padding'][0]}}}"
        dil = f"{{{a['dilation'][1]}, {a['dilation'][0]}}}"
        dims = (
            f"  cmsis_nn_dims id = {{1, {h}, {wd}, {cin}}}, od = {{1, {ho}, {wo}, {cout}}},"
            f" bd = {{1, 1, 1, {cout}}}, fd = "
            + (f"{{1, {kh}, {kw}, {cout}}};" if dw else f"{{{cout}, {kh}, {kw}, {cin}}};")
        )
        body += [
            f"static {tout} out[{ho * wo * cout}];",
            "int run(void) {",
            f"  cmsis_nn_context ctx = {{buf, {scratch}}};",
            "  cmsis_nn_per_channel_quant_params qp = {(int32_t*)mult, (int32_t*)shift};",
            dims,
        ]
        offs = f"{-a['input_zero_point']}, {a['output_zero_point']}"
        suffix = "s16" if wide else "s8"
        if dw:
            body += [
                f"  cmsis_nn_dw_conv_params cp = {{{offs}, {cout // cin}, {stride}, {pad},"
                f" {dil}, {act}}};",
                f"  return arm_depthwise_conv_wrapper_{suffix}(&ctx, &cp, &qp, &id, in, &fd,"
                " w, &bd, bias, &od, out);",
            ]
        else:
            bias_arg = "&bdata" if wide else "bias"
            if wide:
                body.append("  cmsis_nn_bias_data bdata = {bias, false};")
            body += [
                f"  cmsis_nn_conv_params cp = {{{offs}, {stride}, {pad}, {dil}, {act}}};",
                f"  return arm_convolve_wrapper_{suffix}(&ctx, &cp, &qp, &id, in, &fd, w,"
                f" &bd, {bias_arg}, &od, out);",
            ]
        body.append("}")
    return src + "\n".join(body) + "\n", out_shape


@dataclass
class CmsisResult:
    cycles: int
    instructions: int
    identical: bool


def measure_layer(g: IntGraph, op: Op, objs: list[Path], work: Path, seed: int = 0) -> CmsisResult:
    """One layer through CMSIS-NN on unicorn's Cortex-M0: cycles of the call and whether its
    output equals the interpreter's on the same random input."""
    from elftools.elf.elffile import ELFFile
    from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_MODE_THUMB, Uc
    from unicorn.arm_const import UC_ARM_REG_LR, UC_ARM_REG_R0, UC_ARM_REG_SP, UC_CPU_ARM_CORTEX_M0

    xi = g.tensors[op.inputs[0]]
    lo, hi = ACTIVATION_DTYPES[xi.dtype]
    x = np.random.default_rng(seed).integers(lo, hi + 1, size=xi.shape).astype(xi.dtype)
    one = IntGraph(
        {op.inputs[0]: xi, op.output: g.tensors[op.output]}, [op], op.inputs[0], op.output
    )
    ref = run(one, x[None])[0]
    scratch = 1 << 17
    src, out_shape = layer_source(g, op, x, scratch)
    work.mkdir(parents=True, exist_ok=True)
    (work / "layer.c").write_text(src)
    elf = work / "layer.elf"
    cmsis = Path(os.environ["IQ_CMSIS_NN_DIR"])
    inc = ["-I", str(cmsis / "Include"), "-I", str(cmsis / "Include" / "Internal")]
    cmd = [
        ARM_CC,
        *FLAGS,
        *inc,
        "-nostdlib",
        "-Wl,--gc-sections",
        "-Wl,-e,run",
        "-Wl,-Ttext=0x0",
        f"-Wl,-Tdata={RAM:#x}",
        "-o",
        str(elf),
        str(work / "layer.c"),
        *map(str, objs),
        "-Wl,--start-group",
        "-lc",
        "-lgcc",
        "-Wl,--end-group",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"CMSIS-NN layer build failed: {res.stderr[-2000:]}")
    with open(elf, "rb") as f:
        ef = ELFFile(f)
        segs = [
            (s["p_paddr"], s["p_vaddr"], s.data(), s["p_memsz"])
            for s in ef.iter_segments()
            if s["p_type"] == "PT_LOAD"
        ]
        syms = {
            s.name: (s["st_value"], s["st_size"])
            for s in ef.get_section_by_name(".symtab").iter_symbols()
        }
        funcs = [
            (s.name, s["st_value"], s["st_size"])
            for s in ef.get_section_by_name(".symtab").iter_symbols()
            if s["st_info"]["type"] == "STT_FUNC"
        ]
    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB)
    uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M0)
    uc.mem_map(0, 8 << 20)
    uc.mem_map(RAM, 4 << 20)
    uc.mem_map(RET, 0x1000)
    for _paddr, vaddr, data, memsz in segs:
        uc.mem_write(vaddr, data + b"\0" * (memsz - len(data)))
    counter = TraceCounter(FunctionMap.from_symbols(funcs))
    uc.hook_add(UC_HOOK_BLOCK, lambda u, addr, size, _: counter.on_block(addr, size, u))
    uc.reg_write(UC_ARM_REG_SP, RAM + (4 << 20))
    uc.reg_write(UC_ARM_REG_LR, RET | 1)
    counter.start()
    uc.emu_start(syms["run"][0] | 1, RET, timeout=600 * 10**6)
    trace = counter.finish(RET)
    status = int(np.int32(np.uint32(uc.reg_read(UC_ARM_REG_R0))))
    addr, size = syms["out"]
    dt = np.int16 if g.tensors[op.output].dtype == "int16" else np.int8
    out = np.frombuffer(bytes(uc.mem_read(addr, size)), dtype=dt).reshape(out_shape)
    got = out if op.kind == "fully_connected" else out.transpose(2, 0, 1).reshape(ref.shape)
    same = status == 0 and np.array_equal(got, ref)
    return CmsisResult(trace.total.cycles("fast"), trace.total.instructions, bool(same))
