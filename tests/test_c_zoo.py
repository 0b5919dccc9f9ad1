"""The C back end on every zoo model in the three integer modes (int8, 16x8, W16A16).

Proofs (issue 4): the generated C equals the interpreter (the specification) on every test
sample on the host at -O2 and, on a slice, under ASan+UBSan; it is integer-only (compile with
-mgeneral-regs-only + lexical scan); on an emulated Cortex-M0 (QEMU micro:bit) it gives the same
outputs bit for bit with no soft-float helper linked. Each model/mode is quantized, exported and
compiled once (module fixture); all samples go through one process run.

Issue 16: in int8 and 16x8 the same C is bit-exact on every other FPU-less core too — AVR
(16-bit ``int``, weights in program memory), RV32IM, Cortex-M0+ and big-endian PowerPC — on a
few samples, one build and one emulator run per model and target; ``run_on`` fails when nm finds
a soft-float helper in the image (tests/test_targets.py shows the check is not vacuous).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import intquant
from intquant.codegen.targets import get_target
from intquant.codegen.toolchain import (
    build_m0,
    check_no_float,
    compile_and_run_host,
    run_on,
    run_on_m0,
)

ZOO = ["digits_cnn", "mnist1d_cnn", "mnist1d_mlp", "mnist1d_dscnn", "mnist1d_resnet"]
MODES = {
    "int8": {"weight_bits": 8, "act_bits": 8},
    "16x8": {"weight_bits": 8, "act_bits": 16},
    "w16a16": {"weight_bits": 16, "act_bits": 16},
}
CASES = [(m, mode) for m in ZOO for mode in MODES]
CORES = ["avr", "riscv32", "cortex-m0plus", "powerpc"]
CORE_CASES = [(m, mode) for m in ZOO for mode in ("int8", "16x8")]
CORE_SAMPLES = 3


@pytest.fixture(scope="module")
def project(zoo_model, tmp_path_factory):
    cache: dict[tuple[str, str], tuple] = {}

    def get(name: str, mode: str):
        key = (name, mode)
        if key not in cache:
            model, ds = zoo_model(name)
            q = intquant.quantize(model, ds.x_train[:256], intquant.Config(**MODES[mode]))
            x = q.quantize_input(ds.x_test)
            ref = q.run(x)
            out = tmp_path_factory.mktemp(f"{name}_{mode}") / "c"
            res = q.export_c(out, name="model")
            cache[key] = (q, res, x, ref)
        return cache[key]

    return get


@pytest.mark.parametrize("name,mode", CASES)
def test_zoo_host_bit_exact_every_test_sample(project, name, mode):
    q, res, x, ref = project(name, mode)
    assert len(x) >= 300
    y = compile_and_run_host(res.out_dir, x, opt="-O2")
    np.testing.assert_array_equal(y, ref)
    assert res.arena_bytes == res.arena_lower_bound  # zoo models: the planner is optimal
    assert res.arena_bytes <= res.plan.greedy_bytes


@pytest.mark.parametrize("name,mode", CASES)
def test_zoo_sanitizers_no_float_and_m0(project, name, mode):
    q, res, x, ref = project(name, mode)
    y = compile_and_run_host(res.out_dir, x[:40], opt="-O1", sanitize=True)
    np.testing.assert_array_equal(y, ref[:40])
    assert check_no_float(res.out_dir) == {}
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        pytest.fail("Cortex-M0 toolchain missing: run scripts/install_toolchain.sh")
    build = build_m0(res.out_dir, x[:3])
    assert build.soft_float == []
    np.testing.assert_array_equal(run_on_m0(res.out_dir, x[:3], "qemu"), ref[:3])


@pytest.mark.parametrize("target", CORES)
@pytest.mark.parametrize("name,mode", CORE_CASES)
def test_zoo_bit_exact_on_every_core(project, name, mode, target):
    missing = get_target(target).missing_tools()
    if missing:
        pytest.fail(f"{target}: {', '.join(missing)} missing: run scripts/install_toolchain.sh")
    q, res, x, ref = project(name, mode)
    y = run_on(res.out_dir, x[:CORE_SAMPLES], target=target)
    np.testing.assert_array_equal(y, ref[:CORE_SAMPLES])
