"""The C back end on random valid IntGraphs: bit-exact with the interpreter (the specification)
on the host at -O0/-O2 and under ASan+UBSan, integer-only (compiler + lexical proof), and on an
emulated Cortex-M0 (QEMU micro:bit and unicorn) with no soft-float helper linked.

Each project is exported and compiled once per module (fixtures); samples are batched into one
process run. The reference is always ``interpreter.run`` — independent code (NumPy,
vectorised, written from docs/intgraph.md), never the C back end's own output.
"""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest

import intgraph_factory as F
from intquant.codegen import export_c, plan_memory
from intquant.codegen.planner import ALIGN, lower_bound
from intquant.codegen.toolchain import (
    ToolchainError,
    build_m0,
    check_no_float,
    compile_and_run_host,
    emulate_unicorn,
    float_tokens,
    run_on_m0,
)
from intquant.interpreter import run
from intquant.ops import OPS

DTYPES = ("int8", "int16", "uint8")
N_SAMPLES = 24


def _require(tool: str) -> None:
    """Never skip silently: a missing cross toolchain is a failure with the fix in the message."""
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} missing: run scripts/install_toolchain.sh (make toolchain)")


def special_graph(dtype: str) -> F.IntGraph:
    """Features random chains rarely hit: single/pow2 rounding, int16 weights (W16A16),
    dilation, groups, an odd channel count, an int64 accumulator, a residual add, an LRN, a
    transpose."""
    rng = np.random.default_rng(7)
    b = F.GraphBuilder(rng, (5, 9, 10), dtype)
    w16 = "int16" if dtype == "int16" else "int8"
    acc = {"acc_bits": 64} if dtype == "int16" else {}
    x = b.conv(b.input, 7, (3, 3), (1, 2), (1, 2, 0, 1), (2, 1), rounding="single", relu=True)
    x = b.conv(x, 7, (3, 3), (1, 1), (1, 1, 1, 1), groups=7, rounding="pow2")
    y = b.conv(x, 7, (1, 1), w_dtype=w16, **acc)
    x = b.add(x, y, relu=True)
    x = b.conv(x, 6, (2, 2), (2, 2), (0, 0, 1, 1), acc_bits=64)
    x = b.lrn(x, size=4)
    x = b.transpose(x, [0, 2, 1])  # (random chains with the transformer steps may miss it)
    x = b.flatten(x)
    x = b.fully_connected(x, 9, w_dtype=w16, rounding="single" if dtype != "int16" else "double")
    x = b.lut(x)
    return b.graph(x)


def chain_graph(seed: int, dtype: str) -> F.IntGraph:
    return F.random_chain(np.random.default_rng(seed), n_ops=8, dims=1 + seed % 2, dtype=dtype)


GRAPHS = {f"chain{s}_{d}": (lambda s=s, d=d: chain_graph(s, d)) for s in range(3) for d in DTYPES}
GRAPHS.update({f"special_{d}": (lambda d=d: special_graph(d)) for d in DTYPES})
GRAPHS.update({  # the packed-bit (BNN) kinds
    f"binary{dims}d_{d}": (lambda dims=dims, d=d: F.binary_chain(
        np.random.default_rng(dims), dims=dims, dtype=d))
    for dims, d in ((1, "uint8"), (2, "int16"))
})
GRAPHS.update({  # kinds random chains rarely or never build: recurrent, matmul, conv_transpose
    f"{kind}_{d}": (lambda kind=kind, d=d: F.ONE_OP_BUILDERS[kind](np.random.default_rng(3),
                                                                   dtype=d))
    for kind in ("gru", "lstm", "matmul", "conv_transpose") for d in ("int8", "int16")
})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (graph, out_dir, inputs, reference outputs); exported lazily, once."""
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            g = GRAPHS[name]()
            rng = np.random.default_rng(hash(name) % 2**32)
            x = F.random_input(rng, g, N_SAMPLES)
            out = tmp_path_factory.mktemp(name)
            res = export_c(g, out / "c", name="net")
            cache[name] = (g, res, x, run(g, x))
        return cache[name]

    return get


def test_chains_cover_every_op_kind():
    kinds = {op.kind for make in GRAPHS.values() for op in make().ops}
    assert kinds == set(OPS), f"untested kinds: {set(OPS) - kinds}"


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_host_bit_exact_O2(exported, name):
    g, res, x, ref = exported(name)
    y = compile_and_run_host(res.out_dir, x, opt="-O2")
    assert y.dtype == ref.dtype and y.shape == ref.shape
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize(
    "name",
    ["chain1_int8", "special_int16", "special_uint8", "chain2_int16", "binary1d_uint8",
     "binary2d_int16"],
)
def test_host_bit_exact_O0_and_sanitizers(exported, name):
    g, res, x, ref = exported(name)
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, x[:6], opt="-O0"), ref[:6])
    y = compile_and_run_host(res.out_dir, x[:6], opt="-O1", sanitize=True)
    np.testing.assert_array_equal(y, ref[:6])


@pytest.mark.parametrize(
    "name", ["special_int8", "special_int16", "chain2_uint8", "binary2d_int16"]
)
def test_no_float_in_library(exported, name):
    _, res, _, _ = exported(name)
    assert check_no_float(res.out_dir) == {}


def test_float_scan_finds_what_it_must():
    src = 'int a = 3; /* double 1.5 */ const char* s = "float 2.0"; '
    assert float_tokens(src) == []
    for bad, tok in [
        ("double y;", "double"),
        ("int x = (int)(1.5 * 3);", "1.5"),
        ("int x = 1e3;", "1e3"),
        ("int x = .5f;", ".5f"),
        ("int x = 0x1p3;", "0x1p3"),
        ("int x = 2.;", "2."),
    ]:
        assert tok in float_tokens(bad), bad
    assert float_tokens("int x = 0x1e3; int y = 10; a.b = 3;") == []


def test_no_float_check_fails_on_float_code(exported, tmp_path):
    _, res, _, _ = exported("chain0_int8")
    bad = tmp_path / "bad"
    shutil.copytree(res.out_dir, bad)
    src = bad / "net.c"
    src.write_text(src.read_text() + "\nint iq_bad(int v) { return (int)(v * 0.5); }\n")
    with pytest.raises(ToolchainError, match="general-regs-only|SSE"):
        check_no_float(bad)
    src.write_text(src.read_text().replace("(int)(v * 0.5)", "v + (int)(2 * 0.5)"))
    assert "0.5" in check_no_float(bad).get("net.c", [])


@pytest.mark.parametrize("name", ["chain0_int8", "special_int16", "special_uint8"])
def test_cortex_m0_qemu_and_unicorn_bit_exact(exported, name):
    _require("arm-none-eabi-gcc")
    _require("qemu-system-arm")
    g, res, x, ref = exported(name)
    build = build_m0(res.out_dir, x[:4])
    assert build.soft_float == []
    assert build.board == "microbit"
    np.testing.assert_array_equal(run_on_m0(res.out_dir, x[:4], "qemu"), ref[:4])
    u = emulate_unicorn(res.out_dir, x[:4])
    np.testing.assert_array_equal(u.outputs.reshape(ref[:4].shape), ref[:4])
    assert min(u.instructions) > 0 and u.stack_bytes > 0


def test_m0_links_no_soft_float_and_nm_would_see_it(exported, tmp_path):
    """The soft-float check is not vacuous: float code in the library links __aeabi_* helpers."""
    _require("arm-none-eabi-gcc")
    _, res, x, _ = exported("chain0_int8")
    bad = tmp_path / "bad"
    shutil.copytree(res.out_dir, bad)
    src = bad / "net.c"
    text = src.read_text().replace(
        "    return 0;\n}", "    output[0] = (net_output_t)(output[0] * 0.37f);\n    return 0;\n}"
    )
    src.write_text(text)
    build = build_m0(bad, x[:1])
    assert any(s.startswith("__aeabi_f") or "sf" in s for s in build.soft_float)


# ----------------------------------------------------------------------------------------------
# Memory planner
# ----------------------------------------------------------------------------------------------


def _sequential_graph(dtype: str) -> F.IntGraph:
    rng = np.random.default_rng(3)
    b = F.GraphBuilder(rng, (3, 12, 12), dtype)
    x = b.conv(b.input, 8, (3, 3), (1, 1), (1, 1, 1, 1))
    x = b.clamp(x)
    x = b.conv(x, 16, (3, 3), (2, 2), (1, 1, 1, 1), relu=True)
    x = b.max_pool(x, (2, 2), (2, 2))
    x = b.conv(x, 4, (1, 1))
    x = b.flatten(x)
    x = b.fully_connected(x, 10)
    return b.graph(x)


def _live_sets(graph, plan):
    """Independent liveness from the graph: tensor -> (first op writing, last op reading)."""
    first = {op.output: i for i, op in enumerate(graph.ops)}
    last = {t: first.get(t, -1) for t in graph.tensors}
    for i, op in enumerate(graph.ops):
        for t in op.inputs:
            last[t] = max(last[t], i)
    return first, last


@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_plan_sequential_arena_equals_lower_bound(dtype):
    g = _sequential_graph(dtype)
    plan = plan_memory(g)
    assert plan.arena_bytes == plan.lower_bound
    assert "clamp_1" in plan.in_place  # ReLU after conv runs in place
    # The bound is what it says: at the second conv, its input, output and im2col are live.
    conv = g.ops[2]
    need = sum(
        math.ceil(math.prod(g.tensors[t].shape) * np.dtype(g.tensors[t].dtype).itemsize / ALIGN)
        * ALIGN
        for t in (conv.inputs[0], conv.output)
    )
    assert plan.lower_bound >= need


@pytest.mark.parametrize("seed", range(10))
def test_plan_never_overlaps_live_tensors_and_beats_greedy(seed):
    g = F.random_chain(np.random.default_rng(100 + seed), n_ops=10, dims=2)
    plan = plan_memory(g)
    assert plan.arena_bytes <= plan.greedy_bytes
    assert plan.lower_bound <= plan.arena_bytes
    assert lower_bound(plan.buffers, len(g.ops)) == plan.lower_bound
    first, last = _live_sets(g, plan)
    # Any two arena tensors both live at some op and not sharing bytes by design (alias / in
    # place) must occupy disjoint byte ranges.
    arena = {t: off for t, (where, off) in plan.locations.items() if where == "arena"}
    size = {t: math.prod(g.tensors[t].shape) * np.dtype(g.tensors[t].dtype).itemsize for t in arena}
    shared = {t: next(b for b in plan.buffers if t in b.tensors).name for t in arena}
    names = sorted(arena)
    for i, a in enumerate(names):
        for b_ in names[i + 1 :]:
            if shared[a] == shared[b_]:
                continue
            live_together = first.get(a, -1) <= last[b_] and first.get(b_, -1) <= last[a]
            disjoint = arena[a] + size[a] <= arena[b_] or arena[b_] + size[b_] <= arena[a]
            assert not live_together or disjoint, (a, b_)


def test_plan_residual_not_worse_than_greedy():
    rng = np.random.default_rng(5)
    b = F.GraphBuilder(rng, (8, 10, 10), "int8")
    x = b.conv(b.input, 8, (3, 3), (1, 1), (1, 1, 1, 1), relu=True)
    for _ in range(3):
        y = b.conv(x, 8, (3, 3), (1, 1), (1, 1, 1, 1), relu=True)
        y = b.conv(y, 8, (3, 3), (1, 1), (1, 1, 1, 1))
        x = b.add(x, y, relu=True)
    x = b.global_avg_pool(x)
    x = b.flatten(x)
    g = b.graph(b.fully_connected(x, 4))
    plan = plan_memory(g)
    assert plan.arena_bytes <= plan.greedy_bytes
    assert any(n.startswith("add") for n in plan.in_place)  # the add writes onto a dying input


# ----------------------------------------------------------------------------------------------
# Export API
# ----------------------------------------------------------------------------------------------


def test_header_api_compiles_and_reports_errors(exported, tmp_path):
    g, res, x, ref = exported("chain0_int8")
    header = (res.out_dir / "net.h").read_text()
    for define in (
        "NET_INPUT_SIZE",
        "NET_OUTPUT_SIZE",
        "NET_ARENA_BYTES",
        "NET_WEIGHT_BYTES",
        "NET_INPUT_SCALE_NUM",
        "NET_OUTPUT_ZERO_POINT",
        "net_input_t",
        "net_output_t",
    ):
        assert define in header
    t_out = g.tensors[g.output]
    prog = tmp_path / "api.c"
    prog.write_text(
        '#include <stdio.h>\n#include "net.h"\n'
        "int main(void) { static net_input_t in[NET_INPUT_SIZE]; "
        "static net_output_t out[NET_OUTPUT_SIZE]; "
        'printf("%d %d %d %d %d %lld %d\\n", (int)NET_INPUT_SIZE, (int)NET_OUTPUT_SIZE, '
        "(int)NET_ARENA_BYTES, net_run(NULL, out), net_run(in, NULL), "
        "(long long)NET_OUTPUT_SCALE_NUM, (int)NET_OUTPUT_SCALE_LOG2_DEN); return 0; }\n"
    )
    exe = tmp_path / "api"
    srcs = [str(res.out_dir / s) for s in res.info["library_sources"]]
    subprocess.run(
        [
            "gcc",
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
            str(res.out_dir),
            "-o",
            str(exe),
            str(prog),
            *srcs,
        ],
        check=True,
    )
    vals = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    n_in = math.prod(g.tensors[g.input].shape)
    assert [int(v) for v in vals[:5]] == [n_in, math.prod(t_out.shape), res.arena_bytes, -1, -1]
    num, log2_den = int(vals[5]), int(vals[6])
    assert num / 2.0**log2_den == float(np.float32(t_out.scale))  # exact rational


def test_export_is_atomic(exported, tmp_path):
    g, res, _, _ = exported("chain0_int8")
    out = tmp_path / "proj"
    export_c(g, out, name="net")
    before = sorted(p.name for p in out.iterdir())
    broken = F.random_chain(np.random.default_rng(0), n_ops=2)
    broken.ops[0].kind = "gelu"  # no such kernel: validation or the emitter must refuse
    with pytest.raises(ValueError):
        export_c(broken, out, name="net")
    assert sorted(p.name for p in out.iterdir()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".proj")]


def test_export_rejects_bad_name(exported, tmp_path):
    g, _, _, _ = exported("chain0_int8")
    with pytest.raises(ValueError, match="C identifier"):
        export_c(g, tmp_path / "x", name="my-model")


def test_inputs_validated(exported):
    _, res, x, _ = exported("chain0_int8")
    with pytest.raises(ValueError, match="quantize"):
        compile_and_run_host(res.out_dir, x.astype(np.int16))
