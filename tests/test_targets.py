"""The same generated C on every target: host, Cortex-M0/M0+, AVR, RV32IM, big-endian PowerPC.

Proofs: each target's build runs a small model bit-exactly against the interpreter (the
specification, independent NumPy code), int8 and int16 (the 16-bit case is where byte order and
a 16-bit ``int`` show); nm finds no soft-float helper in any image, and would find one if the
library used float; a missing toolchain is one line naming the install command; the emulators'
cost figures (stack, instructions, cycles) obey properties they must; the stack probe does not
land in the arena (issue 10, item 10); ``make demo`` without the ARM toolchain finishes the
host phases (issue 10, item 1); the generated host program and README.md explain themselves
(issue 10, item 11).
"""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import intgraph_factory as F
from intquant import cli
from intquant.codegen import export_c
from intquant.codegen.cost import cost_report
from intquant.codegen.m0 import STACK_RESERVE
from intquant.codegen.targets import TARGETS, get_target
from intquant.codegen.targets import base as targets_base
from intquant.codegen.toolchain import (
    ToolchainError,
    build_host,
    elf_symbols,
    emulate_unicorn,
    run_on,
)
from intquant.interpreter import run

REPO = Path(__file__).resolve().parents[1]
CROSS = ["cortex-m0", "cortex-m0plus", "avr", "riscv32", "powerpc"]
UNICORN = ["cortex-m0", "cortex-m0plus", "riscv32", "powerpc"]
N = 4


def _require_target(name: str) -> None:
    """Never skip: a missing toolchain fails with the install command."""
    missing = get_target(name).missing_tools()
    if missing:
        pytest.fail(f"{name}: {', '.join(missing)} missing: scripts/install_toolchain.sh")


def _graph(dtype: str) -> F.IntGraph:
    """Small but varied: strided/padded conv with ReLU, a residual add, 16-bit weights and an
    int64 accumulator on the int16 path, pooling, a fully connected layer and a LUT."""
    rng = np.random.default_rng(11)
    b = F.GraphBuilder(rng, (3, 8, 9), dtype)
    wide = {"w_dtype": "int16", "acc_bits": 64} if dtype == "int16" else {}
    x = b.conv(b.input, 6, (3, 3), (1, 1), (1, 1, 1, 1), relu=True)
    y = b.conv(x, 6, (1, 1), **wide)
    x = b.add(x, y, relu=True)
    x = b.max_pool(x)
    x = b.flatten(x)
    x = b.fully_connected(x, 7, **wide)
    return b.graph(b.lut(x))


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """dtype -> (out_dir, inputs, interpreter outputs); exported once per module."""
    out = {}
    for dtype in ("int8", "int16"):
        g = _graph(dtype)
        x = F.random_input(np.random.default_rng(5), g, N)
        res = export_c(g, tmp_path_factory.mktemp(dtype) / "c", name="net")
        out[dtype] = (res.out_dir, x, run(g, x))
    return out


# ----------------------------------------------------------------------------------------------
# Bit-exact on every target, no soft float
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_target_bit_exact_and_no_soft_float(projects, target, dtype):
    """run_on raises when nm finds a soft-float helper in a cross image (see the next test)."""
    _require_target(target)
    out_dir, x, ref = projects[dtype]
    y = run_on(out_dir, x, target=target)
    assert y.dtype == ref.dtype and y.shape == ref.shape
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("target", CROSS)
def test_nm_would_see_soft_float(projects, target, tmp_path):
    """The soft-float check is not vacuous on any target: float code links helpers nm sees
    (on powerpc the link itself fails)."""
    _require_target(target)
    out_dir, x, _ = projects["int8"]
    bad = tmp_path / "bad"
    shutil.copytree(out_dir, bad, ignore=shutil.ignore_patterns("build"))
    src = bad / "net.c"
    src.write_text(
        src.read_text().replace(
            "    return 0;\n}",
            "    output[0] = (net_output_t)(output[0] * 0.37f);\n    return 0;\n}",
        )
    )
    if target == "powerpc":  # Debian's libgcc is hard-float: soft-float code cannot even link
        with pytest.raises(ToolchainError, match=r"mulsf3\.o\) uses hard float"):
            get_target(target).build(bad, x[:1], "-O2")
        return
    assert get_target(target).build(bad, x[:1], "-O2").soft_float != []


# ----------------------------------------------------------------------------------------------
# Cost per target
# ----------------------------------------------------------------------------------------------


def test_cost_report_avr(projects):
    """simavr's cycles (Timer1), the painted stack and the RAM budget of the ATmega2560."""
    _require_target("avr")
    out_dir, x, _ = projects["int16"]
    r = cost_report(out_dir, x[:2], target="avr", write=False)
    assert r["counter"] == "cycles" and len(r["per_inference_min_max"]) == 2
    # an 8-bit core needs several cycles for every multiply-accumulate
    assert r["per_inference"] > 4 * r["macs"]
    assert 0 < r["stack_bytes"] < 8192 and r["ram_bytes"] == r["arena_bytes"] + r["stack_bytes"]
    assert r["flash_bytes"] > r["weight_bytes"]


@pytest.mark.parametrize("target", UNICORN)
def test_cost_report_per_target(projects, target):
    _require_target(target)
    out_dir, x, _ = projects["int8"]
    r = cost_report(out_dir, x[:2], target=target, write=False)
    assert r["target"] == target and r["counter"] == "instructions"
    # no SIMD on any of these cores: at least one instruction per multiply-accumulate
    assert r["per_inference"] > r["macs"] > 0
    assert r["per_mac_conv_linear"] is not None and r["per_mac_conv_linear"] > 1
    assert 0 < r["stack_bytes"] < 4096 and r["ram_bytes"] == r["arena_bytes"] + r["stack_bytes"]
    assert r["flash_bytes"] > r["weight_bytes"]
    ops = {o["index"]: o["count"] for o in r["per_op"]}
    assert all(ops[o["index"]] > 0 for o in r["per_op"])  # every op executed code


def _large_arena_project(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """11.5 KB of arena: fits the micro:bit's 16 KB with the stack, fills more than half."""
    rng = np.random.default_rng(3)
    b = F.GraphBuilder(rng, (8, 32, 36), "int8")
    x = b.conv(b.input, 8, (3, 3), (1, 1), (1, 1, 1, 1), relu=True)
    x = b.fully_connected(b.flatten(b.max_pool(x)), 4)
    g = b.graph(x)
    res = export_c(g, tmp_path / "c", name="net")
    assert res.arena_bytes > 8192
    return res.out_dir, F.random_input(rng, g, 1)


def test_stack_probe_outside_the_arena_on_microbit(tmp_path):
    """Issue 10 item 10: the micro:bit build of a large-arena model reported 8192 B of stack
    (the probe started 8 KB below the top, inside the arena). The same code linked for the
    4 MB AN385 board, where nothing static is near the stack, is the independent reference."""
    _require_target("cortex-m0")
    out_dir, x = _large_arena_project(tmp_path)
    big = emulate_unicorn(out_dir, x, board="an385")
    r = cost_report(out_dir, x, write=False)
    assert r["board"] == "microbit" and big.build.board == "an385"
    assert r["stack_bytes"] == big.stack_bytes
    assert 0 < r["stack_bytes"] < STACK_RESERVE


def test_elf_symbols_keep_linker_symbols_without_size(projects):
    _require_target("cortex-m0")
    out_dir, x, _ = projects["int8"]
    elf = get_target("cortex-m0").build(out_dir, x[:1], "-O2").elf
    names = {name: size for name, _, _, size in elf_symbols(elf)}
    assert names["__bss_end__"] == 0 and names["__stack_top__"] == 0
    assert names["net_run"] > 0


# ----------------------------------------------------------------------------------------------
# Missing toolchains: one line with the install command
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", CROSS)
def test_missing_toolchain_is_one_line(projects, target, monkeypatch, tmp_path):
    out_dir, x, _ = projects["int8"]
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler, no emulator
    with pytest.raises(ToolchainError) as e:
        run_on(out_dir, x, target=target)
    msg = str(e.value)
    assert "\n" not in msg and "not found" in msg and "scripts/install_toolchain.sh" in msg


def test_run_c_cli_missing_toolchain_exit_2(projects, monkeypatch, tmp_path, capsys):
    out_dir, x, _ = projects["int8"]
    np.save(tmp_path / "x.npy", x)
    monkeypatch.setenv("PATH", str(tmp_path))
    rc = cli.main(
        ["run-c", str(out_dir), "--target", "riscv32", "--input", str(tmp_path / "x.npy")]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "riscv64-unknown-elf-gcc" in err and "install_toolchain.sh riscv32" in err


def test_install_script_fails_loudly_in_one_line(tmp_path):
    """apt-get unavailable (a stub that fails): exit 1 and one line naming the packages."""
    stub = tmp_path / "apt-get"
    stub.write_text("#!/bin/sh\nexit 100\n")
    stub.chmod(0o755)
    script = str(REPO / "scripts" / "install_toolchain.sh")
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    res = subprocess.run(["/bin/bash", script, "avr"], env=env, capture_output=True, text=True)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "gcc-avr" in lines[0] and "simavr" in lines[0]
    bad = subprocess.run(["/bin/bash", script, "vax"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------------------
# run-c, the host program's usage line, the project README
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["host", "powerpc"])
def test_run_c_cli_writes_outputs(projects, target, tmp_path, capsys):
    _require_target(target)
    out_dir, x, ref = projects["int16"]
    np.save(tmp_path / "x.npy", x)
    y_path = tmp_path / "y.npy"
    args = ["run-c", str(out_dir), "--target", target, "--input", str(tmp_path / "x.npy")]
    assert cli.main([*args, "--output", str(y_path)]) == 0
    np.testing.assert_array_equal(np.load(y_path), ref)
    assert cli.main(["run-c", str(out_dir), "--input", str(tmp_path / "x.npy")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [list(map(int, ln.split())) for ln in lines] == ref.reshape(N, -1).tolist()


def test_run_c_cli_rejects_float_inputs(projects, tmp_path, capsys):
    out_dir, x, _ = projects["int8"]
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    rc = cli.main(["run-c", str(out_dir), "--input", str(tmp_path / "x.npy")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "int8" in err


def test_host_program_prints_usage_on_a_terminal(projects):
    """Issue 10 item 11: in a terminal it used to wait silently for binary input."""
    out_dir, _, _ = projects["int8"]
    exe = build_host(out_dir)
    leader, follower = pty.openpty()
    try:
        res = subprocess.run([str(exe)], stdin=follower, capture_output=True, timeout=10)
    finally:
        os.close(leader)
        os.close(follower)
    assert res.returncode == 2 and res.stdout == b""
    assert res.stderr.decode().startswith("usage: ")
    help_ = subprocess.run([str(exe), "--help"], capture_output=True, input=b"", timeout=10)
    assert help_.returncode == 2 and b"usage: " in help_.stderr


def test_project_readme_commands_work(projects):
    """The generated README.md's host snippet, run as written, gives the interpreter's outputs;
    it names the QEMU command and every target."""
    out_dir, x, ref = projects["int16"]
    readme = (out_dir / "README.md").read_text()
    subprocess.run(["make", "-s", "net_host"], cwd=out_dir, check=True, capture_output=True)
    start = readme.index("    import numpy as np, subprocess")
    snippet = "\n".join(ln[4:] for ln in readme[start:].split("\n\n")[0].splitlines()).replace(
        "x = ...", "x = X"
    )
    scope = {"X": x}
    cwd = os.getcwd()
    try:
        os.chdir(out_dir)
        exec(snippet, scope)
    finally:
        os.chdir(cwd)
    np.testing.assert_array_equal(scope["y"], ref)
    assert "qemu-system-arm -M microbit" in readme and "make m0" in readme
    for t in TARGETS:
        assert f"`{t}`" in readme


# ----------------------------------------------------------------------------------------------
# make demo without the ARM toolchain (issue 10, item 1)
# ----------------------------------------------------------------------------------------------


def test_demo_without_arm_toolchain_finishes_host_phase(digits_cnn, tmp_path, monkeypatch, capsys):
    """It ended in a traceback (ToolchainError) after the host-C phase; now the host part runs
    and one line says what was skipped and how to get it."""
    import intquant
    from intquant import demo

    hidden = ("arm-none-eabi-", "qemu-system-arm", "/usr/lib/arm-none-eabi")
    real = targets_base._installed
    monkeypatch.setattr(targets_base, "_installed", lambda t: not t.startswith(hidden) and real(t))
    model, ds = digits_cnn
    q = intquant.quantize(model, ds.x_train[:64], progress=False)
    demo.phase3(q, ds, tmp_path)
    out = capsys.readouterr().out
    assert "bit-exact with the interpreter: True" in out
    skipped = [ln for ln in out.splitlines() if ln.startswith("skipped")]
    assert len(skipped) == 1 and "arm-none-eabi-gcc" in skipped[0]
    assert "make toolchain" in skipped[0]
    assert "Cortex-M0 (QEMU" not in out


def test_makefile_demo_bootstraps_the_arm_toolchain():
    """`make demo` runs the installer like `make test` (and goes on if it cannot install)."""
    text = (REPO / "Makefile").read_text()
    demo = text[text.index("\ndemo:") :].split("\n\n")[0]
    assert "./scripts/install_toolchain.sh arm || true" in demo
    test_rule = next(ln for ln in text.splitlines() if ln.startswith("test:"))
    assert "toolchain" in test_rule.split()
    assert "./scripts/install_toolchain.sh all" in text
