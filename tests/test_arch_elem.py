"""The reach-elem architectures as written (issue 13): MobileNetV3-small (hardswish,
squeeze-excitation ``x * hardsigmoid(fc2(relu(fc1(avgpool(x)))))``, residual adds) and a CNN
with per-channel and shared PReLU, both zoo models trained on digits.

Each quantizes without edits in int8 and 16x8; the generated C equals the interpreter on every
test sample on the host (-O2), on a slice under ASan+UBSan, is integer-only, and gives the same
outputs on an emulated Cortex-M0 (QEMU micro:bit: 256 KB flash, 16 KB RAM) for one sample. QAT
(prepare → train → eval) of both runs the deployed integer model, SE products, hardswish and
PReLU included. Accuracy and SQNR numbers live in benchmarks/arch_elem.py, not here.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from intquant.codegen.toolchain import build_m0, check_no_float, compile_and_run_host, run_on_m0
from intquant.config import Config
from intquant.qat import convert, prepare
from intquant.training import train

ARCH = {  # zoo name -> op kinds the model must lower to (what "as written" exercises)
    "mobilenet_v3_small": {"mul", "lut", "add", "conv", "avg_pool", "fully_connected"},
    "digits_prelu_cnn": {"prelu", "conv", "max_pool", "avg_pool", "fully_connected"},
}
MODES = {"int8": {"weight_bits": 8, "act_bits": 8}, "16x8": {"weight_bits": 8, "act_bits": 16}}
CASES = [(name, mode) for name in ARCH for mode in MODES]


@pytest.fixture(scope="module")
def project(zoo_project):
    return lambda name, mode: zoo_project(name, **MODES[mode])


@pytest.mark.parametrize("name,mode", CASES)
def test_arch_elem_quantizes_as_written(project, name, mode):
    """No edits to the model: the layers lower to the new kinds, and the integer model agrees
    with the float one on nearly every test digit (a gross-error check, not a benchmark)."""
    q, _, _, _, model, ds = project(name, mode)
    assert {op.kind for op in q.graph.ops} >= ARCH[name]
    with torch.no_grad():
        ref = model(torch.as_tensor(ds.x_test)).argmax(1).numpy()
    assert np.mean(q.predict(ds.x_test).argmax(1) == ref) >= 0.95


@pytest.mark.parametrize("name,mode", CASES)
def test_arch_elem_host_bit_exact_every_test_sample(project, name, mode):
    _, res, x, ref, *_ = project(name, mode)
    assert len(x) >= 300
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, x, opt="-O2"), ref)


@pytest.mark.parametrize("name,mode", CASES)
def test_arch_elem_sanitizers_no_float_and_m0(project, name, mode):
    _, res, x, ref, *_ = project(name, mode)
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, x[:40], opt="-O1",
                                                       sanitize=True), ref[:40])
    assert check_no_float(res.out_dir) == {}
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        pytest.fail("Cortex-M0 toolchain missing: run scripts/install_toolchain.sh")
    assert build_m0(res.out_dir, x[:1]).soft_float == []
    np.testing.assert_array_equal(run_on_m0(res.out_dir, x[:1], "qemu"), ref[:1])


def _codes(out: np.ndarray, qmodel) -> np.ndarray:
    """The integer logits behind the eval-mode QAT output (exactly fl32(s·(code − z)))."""
    info = qmodel.output_info
    codes = np.rint(out.astype(np.float64) / info.scale) + info.zero_point
    np.testing.assert_array_equal(out, np.float32(qmodel.dequantize_output(codes)))
    return codes.astype(np.int64)


@pytest.mark.parametrize("act_bits", [8, 16])
@pytest.mark.parametrize("name", list(ARCH))
def test_arch_elem_qat_eval_is_the_deployed_integer_model(zoo_model, name, act_bits):
    """prepare, two training steps (weights, slopes and the trained output formats of the
    activations and products move), eval: the output is the integer model's, code for code."""
    model, ds = zoo_model(name)
    cfg = Config(act_bits=act_bits)
    q = prepare(model, cfg, example_input=ds.x_train[:128])
    train(q, (ds.x_train[:128], ds.y_train[:128]), epochs=1, lr=1e-3, batch_size=64,
          progress=False)
    q.eval()
    x = ds.x_test[:64]
    with torch.no_grad():
        out = q(torch.from_numpy(x)).numpy()
    qmodel = convert(q)  # an independent conversion, not the eval-mode cache
    assert {op.kind for op in qmodel.graph.ops} >= ARCH[name] - {"max_pool"}
    np.testing.assert_array_equal(_codes(out, qmodel),
                                  qmodel.run(qmodel.quantize_input(x)).astype(np.int64))
