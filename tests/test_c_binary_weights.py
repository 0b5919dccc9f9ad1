"""Large models keep their constants out of the C source: <name>_weights.bin + .incbin.

The reference is the NumPy interpreter (the specification), never the C back end itself.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import intgraph_factory as F
from intquant.codegen import emit, export_c
from intquant.codegen.toolchain import check_no_float, compile_and_run_host, run_on_m0
from intquant.interpreter import run


@pytest.fixture(scope="module")
def graph_and_data():
    g = F.random_chain(np.random.default_rng(1), n_ops=8, dims=2, dtype="int8")
    x = F.random_input(np.random.default_rng(0), g, 6)
    return g, x, run(g, x)


def test_binary_weights_bit_exact_host_and_m0(tmp_path, graph_and_data):
    g, x, ref = graph_and_data
    res = export_c(g, tmp_path / "c", name="net", binary_weights=True)
    names = {p.name for p in res.paths}
    assert {"net_weights.bin", "net_weights.S"} <= names
    assert "net_weights.S" in res.info["library_sources"]
    model_c = (res.out_dir / "net.c").read_text()
    assert "extern const int8_t net_op" in model_c
    # Every constant byte is in the .bin (alignment may add nothing else: slices are exact).
    assert (res.out_dir / "net_weights.bin").stat().st_size == res.weight_bytes
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, x), ref)
    assert check_no_float(res.out_dir) == {}
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        pytest.fail("arm-none-eabi-gcc / qemu-system-arm missing: run scripts/install_toolchain.sh")
    np.testing.assert_array_equal(run_on_m0(res.out_dir, x), ref)


def test_threshold_selects_the_binary_form(tmp_path, graph_and_data, monkeypatch):
    g, x, ref = graph_and_data
    small = export_c(g, tmp_path / "small", name="net")
    assert not (small.out_dir / "net_weights.bin").exists()
    assert "extern const" not in (small.out_dir / "net.c").read_text()
    monkeypatch.setattr(emit, "BINARY_WEIGHTS_THRESHOLD", 16)
    big = export_c(g, tmp_path / "big", name="net")
    assert (big.out_dir / "net_weights.bin").exists()
    np.testing.assert_array_equal(compile_and_run_host(big.out_dir, x), ref)


def test_generated_makefile_builds_the_binary_weights_project(tmp_path, graph_and_data):
    """`make` in the exported folder (the user's path) assembles the .S and runs bit-exactly."""
    g, x, ref = graph_and_data
    res = export_c(g, tmp_path / "c", name="net", binary_weights=True)
    subprocess.run(["make", "-s"], cwd=res.out_dir, check=True, capture_output=True)
    out = subprocess.run(
        [str(res.out_dir / "net_host")], input=x.tobytes(), capture_output=True, check=True
    ).stdout
    y = np.frombuffer(out, dtype=ref.dtype).reshape(ref.shape)
    np.testing.assert_array_equal(y, ref)
