"""The same C on every FPU-less core (issue 16): the runtime audit, proven on every target.

Proofs: one graph with every op kind and every kernel path that reads constants
(``intgraph_factory.every_op_graph``) runs bit-exactly against the interpreter on the host, the
Cortex-M0/M0+, AVR (16-bit ``int``, constants in program memory), RV32IM and big-endian PowerPC,
with its constants as C initializers and as ``<name>_weights.bin`` (the big-endian copy on
PowerPC, program memory on AVR); on AVR the constants are in flash (nm), a model with more
constants than ``pgm_read_*`` reach stops with one clear error; no multi-byte access is
unaligned (the Cortex-M0 faults on one, and is shown to); every build uses
``-Wconversion -Wsign-conversion -Werror`` (a narrowing or a sign change in the library fails
it on every target); the library and the generated C name no type whose width depends on the
compiler (the one exception: ``int <name>_run``, a status code of 0 or -1); iq_transpose
copies elements of any size. A slow sweep (``make test-all``) replaces each IQ_LOAD_* read of
the runtime with a plain dereference in turn and shows that the AVR run of the every-op graph
then fails: every call site is exercised.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import intgraph_factory as F
from intquant.codegen import export_c
from intquant.codegen.targets import TARGETS, get_target
from intquant.codegen.targets import avr as avr_target
from intquant.codegen.toolchain import (
    HOST_CC,
    WARN,
    ToolchainError,
    build_host,
    elf_symbols,
    run_on,
    strip_strings_and_comments,
)
from intquant.interpreter import run

RUNTIME = Path(__file__).resolve().parents[1] / "src" / "intquant" / "codegen" / "runtime"
CROSS = [t for t in TARGETS if t != "host"]
N = 6


def _require_target(name: str) -> None:
    """Never skip: a missing toolchain fails with the install command."""
    missing = get_target(name).missing_tools()
    if missing:
        pytest.fail(f"{name}: {', '.join(missing)} missing: scripts/install_toolchain.sh")


@pytest.fixture(scope="module")
def every_op(tmp_path_factory):
    """(graph, inputs, interpreter outputs, {"c": out_dir, "bin": out_dir})."""
    g = F.every_op_graph(np.random.default_rng(16))
    x = F.random_input(np.random.default_rng(3), g, N)
    ref = run(g, x)
    assert len({r.tobytes() for r in ref}) == N  # the outputs depend on the input
    dirs = {}
    for form, binary in (("c", False), ("bin", True)):
        res = export_c(g, tmp_path_factory.mktemp(form) / "c", name="net", binary_weights=binary)
        dirs[form] = res.out_dir
    return g, x, ref, dirs


def test_every_op_graph_has_every_op_kind(every_op):
    """Every op kind with a kernel runs here, but the W1A1 kinds (bit tensors between them):
    binary_chain has those, and tests/test_targets.py runs it on every target."""
    from intquant.ops import registry

    g = every_op[0]
    with_kernel = {k for k in registry.OPS if registry.op_def(k).c_files}
    binary = F.binary_chain(np.random.default_rng(1), dims=2, dtype="int16")
    assert {op.kind for op in g.ops} | {op.kind for op in binary.ops} >= with_kernel


@pytest.mark.parametrize("form", ["c", "bin"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_every_op_bit_exact_on_every_target(every_op, target, form):
    """run_on raises when nm finds a soft-float helper in a cross image."""
    _require_target(target)
    _, x, ref, dirs = every_op
    np.testing.assert_array_equal(run_on(dirs[form], x, target=target), ref)


@pytest.mark.parametrize("form", ["c", "bin"])
def test_avr_constants_stay_in_program_memory(every_op, form):
    """Every constant array of the model is in flash (AVR data addresses start at 0x800000):
    nothing of the weights is copied to RAM at start-up. Which arrays an op gets depends on its
    kernel (weights, bias, multipliers and shifts; or weights, bias and the iq_rqw_t records of
    the batched requantization; or tables), so the check is by what stays in RAM: only the
    parameter structs and shape arrays, and every op with constants has arrays in flash."""
    _require_target("avr")
    g, x, _, dirs = every_op
    elf = get_target("avr").build(dirs[form], x[:1], "-O2").elf
    op_data = re.compile(r"^(?:net_)?op(\d+)_(\w+)$")
    # parameter structs (em.params: the broadcast walk; a recurrent op's per-layer table of
    # pointers into flash) and shape arrays stay in RAM, read by plain dereference
    in_ram = {"params", "perm", "in_shape", "out_shape", "before", "walk", "layers"}
    flash_ops, ram_names = set(), set()
    for name, _, addr, _ in elf_symbols(elf, "avr-nm"):
        m = op_data.match(name)
        if m is None:
            continue
        if addr < avr_target.DATA_SPACE:
            flash_ops.add(int(m.group(1)))
        else:
            ram_names.add(m.group(2))
    assert ram_names <= in_ram
    assert flash_ops == {i for i, op in enumerate(g.ops) if op.consts}


def test_avr_rejects_more_constants_than_program_memory_reads_reach(tmp_path):
    """72 KB of int8 weights: pgm_read_* reach 64 KB. One clear compile error on AVR (the host
    builds the same project)."""
    _require_target("avr")
    rng = np.random.default_rng(0)
    b = F.GraphBuilder(rng, (200,), "int8")
    x = b.input
    for _ in range(3):
        x = b.fully_connected(x, 120)
        x = b.fully_connected(x, 200)
    g = b.graph(x)
    res = export_c(g, tmp_path / "c", name="big")
    assert res.weight_bytes > 65536
    build_host(res.out_dir)
    with pytest.raises(ToolchainError, match="more constants than program memory reads"):
        get_target("avr").build(res.out_dir, F.random_input(rng, g, 1), "-O2")


def test_avr_checks_where_the_linker_put_program_memory_data(every_op, monkeypatch):
    """The build also checks the linked image: program-memory data ending beyond what
    pgm_read_* reach is one error line (here with the reach lowered to 256 B)."""
    _require_target("avr")
    _, x, _, dirs = every_op
    monkeypatch.setattr(avr_target, "PGM_READ_REACH", 256)
    with pytest.raises(ToolchainError) as e:
        get_target("avr").build(dirs["c"], x[:1], "-O2")
    assert "\n" not in str(e.value) and "program-memory data ends at" in str(e.value)


def test_cortex_m0_run_would_catch_an_unaligned_access(every_op, tmp_path):
    """No multi-byte load or store of the library is unaligned: ARMv6-M faults on one (QEMU
    enforces it; the other emulators and the host tolerate it), so the Cortex-M0 runs of the
    every-op graph and of the zoo prove it. Shown here: the arena moved by one byte fails."""
    _require_target("cortex-m0")
    _, x, ref, dirs = every_op
    shifted = tmp_path / "shifted"
    shutil.copytree(dirs["c"], shifted, ignore=shutil.ignore_patterns("build"))
    src = shifted / "net.c"
    text = src.read_text()
    arena = "#define IQ_ARENA ((uint8_t*)iq_arena_words)"
    assert arena in text and "static int32_t iq_arena_words[" in text
    text = text.replace(arena, "#define IQ_ARENA ((uint8_t*)iq_arena_words + 1)")
    words = "static int32_t iq_arena_words["
    src.write_text(text.replace(words, words + "1 + "))
    np.testing.assert_array_equal(run_on(shifted, x, target="host"), ref)
    with pytest.raises(ToolchainError, match="QEMU run .* failed"):
        run_on(shifted, x, target="cortex-m0")


# ----------------------------------------------------------------------------------------------
# The audit: warnings, fixed-width types, element sizes
# ----------------------------------------------------------------------------------------------

# One implicit narrowing (-Wconversion) and one implicit sign change (-Wsign-conversion).
NARROWING_AND_SIGN_CHANGE = """
int8_t iqt_narrow(int32_t v);
int8_t iqt_narrow(int32_t v) { return v; }
uint32_t iqt_sign(int32_t v);
uint32_t iqt_sign(int32_t v) { return v; }
"""


@pytest.mark.parametrize("target", list(TARGETS))
def test_conversion_warnings_fail_every_build(every_op, target, tmp_path):
    """The library compiles clean with -Wconversion -Wsign-conversion -Werror on every target
    (the bit-exact tests build it so); an implicit narrowing or sign change fails the build."""
    _require_target(target)
    _, x, _, dirs = every_op
    bad = tmp_path / "bad"
    shutil.copytree(dirs["c"], bad, ignore=shutil.ignore_patterns("build"))
    (bad / "net.c").write_text((bad / "net.c").read_text() + NARROWING_AND_SIGN_CHANGE)
    with pytest.raises(ToolchainError) as e:
        get_target(target).build(bad, x[:1], "-O2")
    assert "-Werror=conversion" in str(e.value) and "-Werror=sign-conversion" in str(e.value)


def _width_dependent_types(c_source: str) -> list[str]:
    code = strip_strings_and_comments(c_source)
    return re.findall(r"\b(?:int|long|short|unsigned|signed|char)\b[^;{]{0,30}", code)


def test_library_and_generated_c_use_fixed_width_types(every_op):
    """`int` is 16 bits on AVR: no runtime file and no generated file names a type whose width
    depends on the compiler, except the status code `int net_run(...)` (0 or -1)."""
    _, _, _, dirs = every_op
    found = {}
    for path in sorted(RUNTIME.glob("iq_*.[ch]")):
        hits = _width_dependent_types(path.read_text())
        if hits:
            found[path.name] = hits
    for name in ("net.c", "net_kernels.c", "net.h"):
        hits = _width_dependent_types((dirs["c"] / name).read_text())
        hits = [h for h in hits if not h.startswith("int net_run(")]
        if hits:
            found[name] = hits
    assert found == {}


TRANSPOSE_MAIN = r"""
#include <stdio.h>
#include "iq_transpose.h"
static uint8_t x[%(n)d], y[%(n)d];
int main(void)
{
    static const int32_t shape[4] = {%(shape)s}, perm[4] = {%(perm)s};
    if (fread(x, 1, sizeof x, stdin) != sizeof x) {
        return 1;
    }
    iq_transpose(x, y, shape, perm, %(es)d);
    return fwrite(y, 1, sizeof y, stdout) == sizeof y ? 0 : 2;
}
"""


@pytest.mark.parametrize("elem_size", [1, 2, 3, 4, 8])
def test_transpose_copies_elements_of_any_size(elem_size, tmp_path):
    """It used to copy 4-byte elements as bytes. Reference: NumPy's transpose of the same
    bytes viewed as opaque elements."""
    shape, perm = (2, 3, 4, 5), (2, 0, 3, 1)
    rng = np.random.default_rng(elem_size)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * elem_size, dtype=np.uint8)
    for f in ("iq_transpose.c", "iq_transpose.h", "iq_kernels.h", "iq_runtime.h", "iq_target.h"):
        shutil.copy(RUNTIME / f, tmp_path / f)
    (tmp_path / "main.c").write_text(
        TRANSPOSE_MAIN
        % {
            "n": raw.size,
            "shape": ", ".join(map(str, shape)),
            "perm": ", ".join(map(str, perm)),
            "es": elem_size,
        }
    )
    exe = tmp_path / "t"
    srcs = [str(tmp_path / "main.c"), str(tmp_path / "iq_transpose.c")]
    cmd = [HOST_CC, "-std=c99", "-O2", *WARN, "-o", str(exe), *srcs]
    subprocess.run(cmd, check=True, capture_output=True)
    out = subprocess.run([str(exe)], input=raw.tobytes(), capture_output=True, check=True).stdout
    elems = raw.view(f"V{elem_size}").reshape(shape)
    assert out == np.ascontiguousarray(elems.transpose(perm)).tobytes()


# ----------------------------------------------------------------------------------------------
# Every IQ_LOAD_* call site is exercised on AVR (slow: one AVR build and run per call site)
# ----------------------------------------------------------------------------------------------

LOAD_CALL = re.compile(r"IQ_LOAD_(?:U8|S8|S16|S32|U32|S64)\(|IQ_LOAD_T\(\s*\w+\s*,")


def load_sites(text: str) -> list[tuple[int, int, str]]:
    """(start, end, pointer expression) of every IQ_LOAD_* call in C source."""
    sites = []
    for m in LOAD_CALL.finditer(text):
        i, depth = m.end(), 1
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        sites.append((m.start(), i, text[m.end() : i - 1].strip()))
    return sites


# the files whose IQ_LOAD_* calls are compiled on AVR (iq_dot.h's portable loops are not:
# iq_dot_avr.h reads the weights with LPM itself)
AVR_LOAD_FILES = ["iq_conv_impl.h", "iq_kernels.h", "iq_lut.c", "iq_softmax.c", "iq_lrn.c"]


@pytest.mark.slow
@pytest.mark.parametrize("name", AVR_LOAD_FILES)
def test_every_flash_read_is_exercised_on_avr(every_op, name, tmp_path, monkeypatch):
    """Each IQ_LOAD_* of the file replaced by a plain dereference (reading RAM where the data
    is in flash): the every-op graph's AVR run no longer matches, or never finishes."""
    _require_target("avr")
    _, x, ref, dirs = every_op
    monkeypatch.setattr(avr_target, "SIMAVR_TIMEOUT", 60)
    text = (dirs["c"] / name).read_text()
    sites = load_sites(text)
    assert sites
    missed = []
    for start, end, pointer in sites:
        mutant = tmp_path / f"m{start}"
        shutil.copytree(dirs["c"], mutant, ignore=shutil.ignore_patterns("build"))
        (mutant / name).write_text(text[:start] + f"(*({pointer}))" + text[end:])
        try:
            same = np.array_equal(run_on(mutant, x, target="avr"), ref)
        except ToolchainError as e:  # the run failed or hung: caught; a build error: a bug
            if "command failed" in str(e):
                raise
            same = False
        if same:
            missed.append(text[start:end])
        shutil.rmtree(mutant)
    assert missed == []
