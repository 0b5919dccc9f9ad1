"""Interpreter tests that span op kinds: errors at the edge, no float anywhere in a run, speed,
batching, random chains of every kind, and the naive TFLM reference itself.

Each op kind's own tests (against float PyTorch, TFLM's kernels, goldens) live in
tests/ops/test_<kind>.py.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

import tflm_reference as tflm
from intgraph_factory import (
    GraphBuilder,
    add_broadcast,
    add_const_op,
    binary_chain,
    conv_graph,
    gru_graph,
    layer_norm_op,
    lstm_graph,
    matmul_op,
    mul,
    prelu,
    random_chain,
    random_input,
    recurrent_op,
    slice_op,
    upsample_step,
)
from intquant import interpreter, numerics
from intquant.interpreter import InterpreterError, run
from intquant.intgraph import IntGraph
from intquant.ops import OPS

# The reference of every op kind (its module's ``run``) and the helpers they share.
REFERENCE_FILES = {sys.modules[d.run.__module__].__file__ for d in OPS.values()} | {
    sys.modules["intquant.ops._reference"].__file__,
    sys.modules["intquant.ops._weighted"].__file__,
}


def test_reference_rounding_primitives_match_known_values() -> None:
    """Spot values of gemmlowp's primitives, worked by hand, guard the reference itself."""
    # SRDHM(2^30, 2^30) = round(2·2^60 / 2^32) = 2^29
    assert tflm.saturating_rounding_doubling_high_mul(2**30, 2**30) == 2**29
    assert tflm.saturating_rounding_doubling_high_mul(-(2**31), -(2**31)) == 2**31 - 1
    # RoundingDivideByPOT rounds half away from zero: 5/2 → 3, −5/2 → −3, −3/2 → −2, 3/4 → 1
    assert [tflm.rounding_divide_by_pot(v, e) for v, e in [(5, 1), (-5, 1), (-3, 1), (3, 2)]] == [
        3,
        -3,
        -2,
        1,
    ]
    # M = 2^30, shift 0 is a real multiplier of 1/2; SRDHM rounds ties up: 3.5 → 4, −3.5 → −3
    assert tflm.multiply_by_quantized_multiplier(7, 2**30, 0) == 4
    assert tflm.multiply_by_quantized_multiplier(-7, 2**30, 0) == -3
    # shift −1 moves the rounding into RoundingDivideByPOT (half away): −7/4 = −1.75 → −2,
    # −6/4 = −1.5 → −2
    assert tflm.multiply_by_quantized_multiplier(-7, 2**30, -1) == -2
    assert tflm.multiply_by_quantized_multiplier(-6, 2**30, -1) == -2


# ==============================================================================================
# Run-path properties: errors at the edge, no float anywhere, speed
# ==============================================================================================


def test_run_rejects_wrong_dtype_and_shape() -> None:
    g = conv_graph(np.random.default_rng(20), dims=1, dtype="int8")
    x = random_input(np.random.default_rng(0), g, 2)
    with pytest.raises(InterpreterError, match="must have dtype int8, got float32; quantize"):
        run(g, x.astype(np.float32))
    with pytest.raises(InterpreterError, match="must have dtype int8, got int16"):
        run(g, x.astype(np.int16))
    with pytest.raises(InterpreterError, match="leading batch dimension"):
        run(g, x[0])


def test_run_outputs_are_stored_in_tensor_dtypes() -> None:
    g = random_chain(np.random.default_rng(21), 10, dims=2, dtype="int8")
    vals = run(g, random_input(np.random.default_rng(0), g, 2), return_all=True)
    for name, v in vals.items():
        assert v.dtype == np.dtype(g.tensors[name].dtype), name
        assert v.shape[1:] == g.tensors[name].shape, name


def every_op_graph(dtype: str) -> IntGraph:
    """One graph holding every op kind (and every rounding mode)."""
    rng = np.random.default_rng(22)
    b = GraphBuilder(rng, (3, 8, 8), dtype)
    acc = {"acc_bits": 64} if dtype == "int16" else {}
    t = b.conv(b.input, 4, (3, 3), (1, 1), (1, 1, 1, 1), relu=True, **acc)
    t = b.conv(
        t,
        4,
        (3, 3),
        (1, 1),
        (1, 1, 1, 1),
        groups=4,
        rounding="single" if dtype != "int16" else "double",
        **acc,
    )
    r = b.conv(t, 4, (1, 1), rounding="pow2", **acc)
    t = b.add(t, r)
    t = prelu(b, t)  # reach-elem: per-channel PReLU, an SE product, a broadcast difference
    t = mul(b, t, b.lut(b.global_avg_pool(t)))
    t = add_broadcast(b, t, b.global_avg_pool(t), subtract=True)
    t = b.max_pool(t, (2, 2), (2, 2))
    t = b.avg_pool(t, (3, 3), (1, 1), (1, 1, 1, 1), count_include_pad=True)
    t = b.concat([t, b.clamp(t)], axis=0)
    t = b.pad(t, [0, 0, 1, 1, 0, 1])
    t = b.transpose(t, [0, 2, 1])
    t = b.lut(t)
    t = b.rescale(t)
    t = b.lrn(t, size=3)
    t = upsample_step(b, upsample_step(b, t, "nearest"), "bilinear")
    t = b.conv_transpose(t, b.info(t).shape[0], (2, 3), (1, 2), (1, 1, 0, 1), (0, 1), **acc)
    t = layer_norm_op(b, t)
    t = add_const_op(b, t)
    t = matmul_op(b, t, b.rescale(t), transpose_b=True)
    t = slice_op(b, t, 1, 1, 2, 2)
    t = b.flatten(t)
    t = b.fully_connected(t, 6, **acc)
    t = b.softmax(t)
    # recurrent layers over the 6 values as 2 frames of 3 (a stacked GRU's sequence, an LSTM)
    t = recurrent_op(b, b.reshape(t, (2, 3)), "gru", 4, layers=2, sequence=True)
    t = b.flatten(recurrent_op(b, t, "lstm", 5, rounding="single"))
    # binary (packed ±1) ops on the flattened features: sign, the W1A1 layers, unpack
    s = b.sign_conv(t, 40)
    s = b.binary_fully_connected(s, 33)
    s = b.binary_fully_connected(s, 8, out_dtype=dtype)
    m = b.sign(b.reshape(s, (2, 4)))
    m = b.binary_max_pool(b.binary_conv(m, 3, (1, 3), padding=(0, 1, 0, 1)), (1, 2), (1, 2))
    t = b.unpack_bits(m)
    g = b.graph(t)
    assert {op.kind for op in g.ops} == set(OPS)
    return g


class FloatArrayTracer:
    """sys.settrace hook: inspects every ndarray local (and return value) in watched files."""

    def __init__(self, files: set[str]) -> None:
        self.files = files
        self.found: list[str] = []
        self.frames_seen = 0

    def _inspect(self, frame, values) -> None:
        for name, v in values:
            arrays = v if isinstance(v, list | tuple) else [v]
            for a in arrays:
                if isinstance(a, np.ndarray | np.generic) and a.dtype.kind not in "iub":
                    self.found.append(f"{frame.f_code.co_name}:{frame.f_lineno} {name} {a.dtype}")

    def __call__(self, frame, event, arg):
        if frame.f_code.co_filename not in self.files:
            return None
        self.frames_seen += 1
        return self._local

    def _local(self, frame, event, arg):
        self._inspect(frame, frame.f_locals.items())
        if event == "return":
            self._inspect(frame, [("<return>", arg)])
        return self._local

    def trace(self, fn, *args, **kwargs):
        old = sys.gettrace()
        sys.settrace(self)
        try:
            return fn(*args, **kwargs)
        finally:
            sys.settrace(old)


def _make_float_on_purpose(x: np.ndarray) -> np.ndarray:
    y = x / 2  # true division: float64
    return (y > 0).astype(np.int8)


def test_float_tracer_detects_a_float_array() -> None:
    """The tracer itself can fail: a function in a watched file that makes a float is caught."""
    tracer = FloatArrayTracer({__file__})
    tracer.trace(_make_float_on_purpose, np.arange(4))
    assert any("float64" in f for f in tracer.found)


@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_no_float_array_is_created_in_the_run(dtype: str) -> None:
    g = every_op_graph(dtype)
    x = random_input(np.random.default_rng(0), g, 3)
    tracer = FloatArrayTracer({interpreter.__file__, numerics.__file__, *REFERENCE_FILES})
    out = tracer.trace(run, g, x, return_all=True)
    assert tracer.frames_seen > 50  # the tracer really watched the run
    assert tracer.found == [], tracer.found[:10]
    assert all(v.dtype.kind in "iu" for v in out.values())


def small_cnn_1d() -> IntGraph:
    """conv 1→32 k5 s2 p2 on L40, conv 32→32 k3 s2 p1, conv 32→32 k3 p1, global pool, linear."""
    b = GraphBuilder(np.random.default_rng(23), (1, 40), "int8")
    t = b.conv(b.input, 32, (1, 5), (1, 2), (0, 2, 0, 2), relu=True)
    t = b.conv(t, 32, (1, 3), (1, 2), (0, 1, 0, 1), relu=True)
    t = b.conv(t, 32, (1, 3), (1, 1), (0, 1, 0, 1), relu=True)
    t = b.flatten(b.global_avg_pool(t))
    b.fully_connected(t, 10)
    return b.graph()


def test_interpreter_speed_small_1d_cnn() -> None:
    """1000 samples through a small 1-D CNN in well under 1 s.

    Measured as process CPU time (~0.1 s here), which a busy CI machine does not inflate the
    way it inflates wall-clock time; NumPy's integer kernels are single-threaded.
    """
    g = small_cnn_1d()
    x = random_input(np.random.default_rng(0), g, 1000)
    run(g, x)
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        y = run(g, x)
        best = min(best, time.process_time() - t0)
    assert y.shape == (1000, 10)
    assert best < 1.0, f"interpreter took {best:.2f} s CPU for 1000 samples"


def test_batch_chunking_does_not_change_results(monkeypatch) -> None:
    """Every op is per sample: running in chunks equals running sample by sample."""
    g = every_op_graph("int8")
    x = random_input(np.random.default_rng(1), g, 7)
    monkeypatch.setattr(interpreter, "_CHUNK_ELEMENTS", 1)  # one sample per chunk
    chunked = run(g, x, return_all=True)
    monkeypatch.setattr(interpreter, "_CHUNK_ELEMENTS", 2**30)  # whole batch at once
    whole = run(g, x, return_all=True)
    one_by_one = [run(g, x[i : i + 1]) for i in range(7)]
    assert chunked.keys() == whole.keys()
    for k in whole:
        np.testing.assert_array_equal(chunked[k], whole[k])
    np.testing.assert_array_equal(whole[g.output], np.concatenate(one_by_one))


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_random_chains_cover_every_op_kind_and_run(dtype: str) -> None:
    """The factory's chains (reused by the C back-end tests) exercise every op kind."""
    kinds: set[str] = set()
    for seed in range(16):
        g = random_chain(np.random.default_rng(seed), 10, dims=1 + seed % 2, dtype=dtype)
        y = run(g, random_input(np.random.default_rng(seed), g, 2))
        assert y.dtype == np.dtype(g.tensors[g.output].dtype)
        kinds |= {op.kind for op in g.ops}
    for dims in (1, 2):  # the packed-bit (BNN) kinds
        g = binary_chain(np.random.default_rng(dims), dims=dims, dtype=dtype)
        run(g, random_input(np.random.default_rng(dims), g, 2))
        kinds |= {op.kind for op in g.ops}
    for seed, build in enumerate((gru_graph, lstm_graph)):  # the recurrent kinds
        g = build(np.random.default_rng(seed), dtype=dtype)
        run(g, random_input(np.random.default_rng(seed), g, 2))
        kinds |= {op.kind for op in g.ops}
    assert kinds == set(OPS)
