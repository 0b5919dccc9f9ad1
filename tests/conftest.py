"""Shared fixtures.

The zoo models are trained once per machine (cached on disk by :mod:`intquant.zoo`, with a file
lock so that pytest-xdist workers never train the same model twice) and loaded once per test
session here. Tests get a *fresh deep copy* of the model, so mutating it (fusing, fake-quant,
training) cannot leak into other tests; the Dataset is shared and must be treated as read-only.

Usage::

    def test_something(zoo_model):
        model, ds = zoo_model("mnist1d_cnn")

    def test_other(digits_cnn):
        model, ds = digits_cnn

The float rounding rule. No test may depend on how a CPU rounds floats: PyTorch, oneDNN and
ONNX Runtime pick different kernels on AVX2, AVX-512/VNNI and plain ATen ("default"), and
their float results differ in the last bits, which flips a rounding step here and there. So
- compare integers with integers (interpreter, C, ONNX integer mode, QAT/simulate eval mode —
  which *are* the integer model): exact equality;
- where a float result meets an integer one, make the float side exact (exact rationals,
  float64 on exactly representable values) or assert a bound that holds element by element on
  every IEEE machine with margin (e.g. one requantization: within 1 LSB);
- never assert a fraction of float-vs-integer agreements ("99 % within 1 LSB", "exact on
  99.5 % of logits"): such figures belong in benchmarks/RESULTS.md.
How it is checked: the whole suite passes unchanged three times, with the machine's defaults,
with ``ATEN_CPU_CAPABILITY=default`` and with ``ONEDNN_MAX_CPU_ISA=AVX2`` (the last two also
with an empty ``INTQUANT_CACHE``, so the zoo is retrained under the other kernels), e.g.
``ONEDNN_MAX_CPU_ISA=AVX2 INTQUANT_CACHE=$(mktemp -d) .venv/bin/python -m pytest -n 2 -q``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import torch

# One intra-op thread per test process. The suite runs with `pytest -n 2` on 2 cores: with torch's
# default (one thread per core) each worker oversubscribes the CPU, and for our MCU-sized models
# the OpenMP barriers then dominate — measured 20-80x slower training of a tiny MLP on a loaded
# machine (7 s vs 0.09 s). Override with INTQUANT_TEST_THREADS.
torch.set_num_threads(int(os.environ.get("INTQUANT_TEST_THREADS", "1")))

ZOO_NAMES = ["digits_cnn", "mnist1d_cnn", "mnist1d_mlp", "mnist1d_dscnn", "mnist1d_resnet"]


@pytest.fixture(scope="session")
def _zoo_session_cache() -> dict:
    return {}


@pytest.fixture(scope="session")
def zoo_model(_zoo_session_cache: dict) -> Callable:
    """Factory ``zoo_model(name) -> (trained model copy in eval mode, Dataset)``."""
    from intquant import zoo

    def get(name: str):
        if name not in _zoo_session_cache:
            _zoo_session_cache[name] = zoo.get(name, progress=False)
        model, ds = _zoo_session_cache[name]
        return copy.deepcopy(model).eval(), ds

    return get


class ZooProject(NamedTuple):
    """A zoo model quantized on its first 256 training inputs, its C project and its test
    inputs quantized and run by the interpreter (``y``: the integer outputs C must equal)."""

    q: Any
    res: Any
    x: Any
    y: Any
    model: torch.nn.Module
    ds: Any


@pytest.fixture(scope="module")
def zoo_project(zoo_model, tmp_path_factory) -> Callable[..., ZooProject]:
    """Factory ``zoo_project(name, **config) -> ZooProject``, cached per module and
    (name, config): the suites of the architecture families check one quantization of each
    model and mode from several angles (accuracy floor, host C, M0)."""
    import intquant

    cache: dict[tuple, ZooProject] = {}

    def get(name: str, **config) -> ZooProject:
        key = (name, tuple(sorted(config.items())))
        if key not in cache:
            model, ds = zoo_model(name)
            q = intquant.quantize(model, ds.x_train[:256], intquant.Config(**config),
                                  progress=False)
            x = q.quantize_input(ds.x_test)
            tag = "_".join(f"{k}{v}" for k, v in key[1])
            res = q.export_c(tmp_path_factory.mktemp(f"{name}_{tag}") / "c", name="model")
            cache[key] = ZooProject(q, res, x, q.run(x), model, ds)
        return cache[key]

    return get


@pytest.fixture
def digits_cnn(zoo_model):
    return zoo_model("digits_cnn")


@pytest.fixture
def mnist1d_cnn(zoo_model):
    return zoo_model("mnist1d_cnn")


@pytest.fixture
def mnist1d_mlp(zoo_model):
    return zoo_model("mnist1d_mlp")


@pytest.fixture
def mnist1d_dscnn(zoo_model):
    return zoo_model("mnist1d_dscnn")


@pytest.fixture
def mnist1d_resnet(zoo_model):
    return zoo_model("mnist1d_resnet")


@pytest.fixture(params=ZOO_NAMES)
def any_zoo_model(request, zoo_model):
    """Parametrized over every zoo model: ``(name, model, dataset)``."""
    model, ds = zoo_model(request.param)
    return request.param, model, ds
