"""The MLPerf Tiny architectures and the U-Net of the zoo (issue 13, reach-vision).

Each model as written (the zoo module, no edits) quantizes to int8, its generated C equals the
interpreter on the host for 64 test inputs, and on the emulated Cortex-M0 (unicorn, the board
``build_m0`` picks: micro:bit 16 KB RAM when the arena fits, else MPS2 AN385) for one. Float
quality floors like tests/test_zoo.py's; benchmarks/architectures.py measures SQNR and cost.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import intquant
from intquant import zoo
from intquant.codegen.toolchain import compile_and_run_host, emulate_unicorn

VISION = ["kws_dscnn", "vww_mobilenet_v1", "ic_resnet8", "fc_autoencoder", "unet_denoise"]
# Reconstruction SNR floors (dB, float model vs clean target on the test split); measured
# 11.4 (autoencoder, 8-value bottleneck) and 11.1 (U-Net; its noisy inputs: 4.2 dB), with room
# for other CPUs.
MIN_SNR_DB = {"fc_autoencoder": 9.0, "unet_denoise": 9.0}
# Kinds each model must lower to (the ops this family added are exercised by a real model).
KINDS = {"unet_denoise": {"upsample", "conv", "conv_transpose", "concat"}, "kws_dscnn": {"conv"},
         "ic_resnet8": {"add"}}


def _inputs(name: str, ds) -> tuple[np.ndarray, np.ndarray]:
    if name in zoo._RECONSTRUCTION:
        return (zoo.reconstruction_pairs(name, ds.x_train[:256], seed=1)[0],
                zoo.reconstruction_pairs(name, ds.x_test[:64])[0])
    return ds.x_train[:256], ds.x_test[:64]


@pytest.fixture(scope="module")
def quantized(zoo_model, tmp_path_factory):
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            model, ds = zoo_model(name)
            calib, x = _inputs(name, ds)
            q = intquant.quantize(model, calib, intquant.Config(), progress=False)
            xq = q.quantize_input(x)
            res = q.export_c(tmp_path_factory.mktemp(name) / "c", name="model")
            cache[name] = (q, res, xq, q.run(xq))
        return cache[name]

    return get


def test_vision_zoo_names_are_architectures():
    assert set(VISION) <= set(zoo.architectures())
    assert not set(VISION) & set(zoo.names())  # the core suites do not iterate over them


@pytest.mark.parametrize("name", VISION)
def test_vision_zoo_float_quality_floor(zoo_model, name):
    model, ds = zoo_model(name)
    if name in zoo._RECONSTRUCTION:
        x, target = zoo.reconstruction_pairs(name, ds.x_test)
        with torch.no_grad():
            y = model(torch.as_tensor(x)).numpy()
        assert zoo.snr_db(y, target) >= MIN_SNR_DB[name]
        assert zoo.meta(name)["test_snr_db"] == pytest.approx(zoo.snr_db(y, target), abs=1e-6)
    else:
        from intquant.training import evaluate

        assert evaluate(model, ds.x_test, ds.y_test) >= zoo.recipe(name).min_test_acc


def test_vision_zoo_denoiser_inputs_are_deterministic_and_noisy():
    x = np.zeros((3, 1, 8, 8), np.float32)
    a, t = zoo.reconstruction_pairs("unet_denoise", x, seed=5)
    b, _ = zoo.reconstruction_pairs("unet_denoise", x, seed=5)
    np.testing.assert_array_equal(a, b)
    assert 0.25 < float(a.std()) < 0.35 and (t == 0).all()
    ae_in, ae_t = zoo.reconstruction_pairs("fc_autoencoder", x + 1)
    assert ae_in.shape == (3, 1, 8, 8) and ae_t.shape == (3, 64) and (ae_t == 1).all()


@pytest.mark.parametrize("name", VISION)
def test_vision_zoo_int8_c_host_equals_interpreter(quantized, name):
    q, res, xq, ref = quantized(name)
    assert KINDS.get(name, set()) <= {op.kind for op in q.graph.ops}
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, xq, opt="-O2"), ref)


@pytest.mark.parametrize("name", VISION)
def test_vision_zoo_int8_c_m0_equals_interpreter_on_one_sample(quantized, name):
    q, res, xq, ref = quantized(name)
    u = emulate_unicorn(res.out_dir, xq[:1])
    assert u.build.soft_float == []
    assert u.build.board in ("microbit", "an385")
    np.testing.assert_array_equal(u.outputs.reshape(ref[:1].shape), ref[:1])


def test_vision_zoo_unet_onnx_integer_export_equals_interpreter(quantized, tmp_path):
    """The whole U-Net (zero insertion, nearest upsample, concat rescales, convs) exported as
    exact integer ONNX: ONNX Runtime == interpreter on the 64 inputs."""
    import onnxruntime as ort

    q, _, xq, ref = quantized("unet_denoise")
    path = q.to_onnx(tmp_path / "unet.onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: xq})[0]
    np.testing.assert_array_equal(got, ref)
