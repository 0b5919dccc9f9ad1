"""Range observers against independent references.

Every expected value here is computed in this file from the definition: NumPy reductions over the
concatenated calibration data, np.percentile / np.histogram, a fake quantizer written here, and a
plain per-candidate loop for TensorRT's KL divergence.
"""

from __future__ import annotations

import numpy as np
import pytest

from intquant.numerics import dequantize, quantize
from intquant.observers import METHODS, make_observer

# ----------------------------------------------------------------------------------------------
# Independent references
# ----------------------------------------------------------------------------------------------


def fake_quant_mse(x: np.ndarray, lo: float, hi: float, bits: int, symmetric: bool) -> float:
    """Mean (x - dequant(quant(x)))^2 for the range [lo, hi], written from the contract.

    Symmetric: narrow signed range, scale = max(|lo|, |hi|) / (2^(b-1) - 1), zero point 0.
    Affine: range widened to contain 0, scale = (hi - lo) / (2^b - 1), integer zero point.
    """
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        qmin = -qmax
        scale = max(abs(lo), abs(hi)) / qmax
        zp = 0
    else:
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = (hi - lo) / (qmax - qmin)
        zp = int(np.clip(qmin - np.round(lo / scale), qmin, qmax))
    q = np.clip(np.round(x / scale) + zp, qmin, qmax)
    return float(np.mean((x - scale * (q - zp)) ** 2))


def fake_quant_mse_symmetric_grid(x: np.ndarray, thresholds: np.ndarray, bits: int) -> np.ndarray:
    """fake_quant_mse(x, -t, t, bits, True) for every t, vectorized over chunks of thresholds."""
    qmax = 2 ** (bits - 1) - 1
    out = []
    for chunk in np.array_split(thresholds, max(1, thresholds.size * x.size // 2_000_000)):
        scale = (chunk / qmax)[:, None]
        q = np.clip(np.round(x[None, :] / scale), -qmax, qmax)
        out.append(np.mean((x[None, :] - scale * q) ** 2, axis=1))
    return np.concatenate(out)


def kl_reference(hist: np.ndarray, i: int, levels: int) -> float:
    """TensorRT's KL(P || Q) for a threshold of i bins, computed bin by bin.

    P: hist[:i] with hist[i:] added to the last bin. Q: bins merged into `levels` buckets
    (bin k -> bucket floor(k * levels / i)), each bucket's total spread evenly over its nonzero
    bins, zero on empty bins. Both normalised to sum 1.
    """
    p = hist[:i].astype(np.float64).copy()
    p[-1] += hist[i:].sum()
    bucket = (np.arange(i) * levels) // i
    nonzero = hist[:i] > 0
    bucket_total = np.bincount(bucket, weights=hist[:i])
    bucket_nonzero = np.bincount(bucket, weights=nonzero)
    q = np.zeros(i)
    q[nonzero] = bucket_total[bucket[nonzero]] / bucket_nonzero[bucket[nonzero]]
    p /= p.sum()
    if q.sum() == 0:
        return np.inf
    q /= q.sum()
    support = p > 0
    if np.any(q[support] == 0):
        return np.inf
    return float(np.sum(p[support] * np.log(p[support] / q[support])))


def batches(rng: np.random.Generator, n: int, shape_tail: tuple[int, ...], scales) -> list:
    """Calibration batches of varying batch size and scale (scales grow: forces re-binning)."""
    return [rng.laplace(size=(int(rng.integers(5, 40)),) + shape_tail) * s
            for s in scales[:n]]


# ----------------------------------------------------------------------------------------------
# maxabs / minmax
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [None, 1, -1])
def test_maxabs_minmax_equal_numpy_over_all_batches(axis):
    rng = np.random.default_rng(0)
    data = batches(rng, 5, (6, 7), [1.0, 0.3, 4.0, 2.0, 0.5])
    data = [d + 0.7 for d in data]  # asymmetric, so min != -max
    allx = np.concatenate(data)
    reduce_axes = None if axis is None else tuple(a for a in range(3) if a != axis % 3)
    ref_min = allx.min(axis=reduce_axes)
    ref_max = allx.max(axis=reduce_axes)
    ref_absmax = np.abs(allx).max(axis=reduce_axes)

    streamed = {m: make_observer(m, axis=axis) for m in ("maxabs", "minmax")}
    one_shot = {m: make_observer(m, axis=axis) for m in ("maxabs", "minmax")}
    for m in streamed:
        for d in data:
            streamed[m].update(d)
        one_shot[m].update(allx)

    lo, hi = streamed["maxabs"].range(8, symmetric=True)
    np.testing.assert_array_equal(hi, ref_absmax)
    np.testing.assert_array_equal(lo, -ref_absmax)
    lo, hi = streamed["minmax"].range(8, symmetric=False)
    np.testing.assert_array_equal(lo, ref_min)
    np.testing.assert_array_equal(hi, ref_max)
    lo, hi = streamed["minmax"].range(8, symmetric=True)
    np.testing.assert_array_equal(hi, np.maximum(-ref_min, ref_max))
    for m in streamed:
        for sym in (True, False):
            a, b = streamed[m].range(8, sym), one_shot[m].range(8, sym)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])


def test_maxabs_unsigned_symmetric_is_zero_to_max():
    x = np.array([[0.0, 1.5, 3.0], [2.0, 0.25, 0.0]])
    lo, hi = make_observer_updated("maxabs", x).range(8, symmetric=True, signed=False)
    assert lo == 0.0 and hi == 3.0


def make_observer_updated(method: str, *xs, **kw):
    obs = make_observer(method, **kw)
    for x in xs:
        obs.update(x)
    return obs


def test_per_channel_qparams_give_textbook_scale():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(8, 3, 3, 3))
    qp = make_observer_updated("maxabs", w, axis=0).qparams(8, symmetric=True)
    ref = np.abs(w).reshape(8, -1).max(axis=1) / 127
    np.testing.assert_allclose(qp.scale, ref.astype(np.float32), rtol=0, atol=0)
    assert qp.axis == 0 and np.all(qp.zero_point == 0)


# ----------------------------------------------------------------------------------------------
# per block: each output channel flattened, blocks of n consecutive weights
# ----------------------------------------------------------------------------------------------


def block_reference(w: np.ndarray, n: int, reduce) -> np.ndarray:
    """reduce() over blocks of n consecutive elements of each flattened w[c] (NaN-padded)."""
    flat = w.reshape(w.shape[0], -1)
    nblocks = -(-flat.shape[1] // n)
    padded = np.full((flat.shape[0], nblocks * n), np.nan)
    padded[:, : flat.shape[1]] = flat
    return reduce(padded.reshape(flat.shape[0], nblocks, n), axis=2)


@pytest.mark.parametrize("n", [16, 45, 7])
def test_per_block_ranges(n):
    rng = np.random.default_rng(2)
    w = rng.standard_t(3, size=(6, 5, 3, 3))  # 45 weights per output channel
    lo, hi = make_observer_updated("maxabs", w, axis=0, block_size=n).range(8, True)
    ref = block_reference(np.abs(w), n, np.nanmax)
    assert hi.shape == ref.shape == (6, -(-45 // n))
    np.testing.assert_array_equal(hi, ref)
    lo, hi = make_observer_updated("minmax", w, axis=0, block_size=n).range(8, False)
    np.testing.assert_array_equal(lo, block_reference(w, n, np.nanmin))
    np.testing.assert_array_equal(hi, block_reference(w, n, np.nanmax))


@pytest.mark.parametrize("method", ["percentile", "mse", "entropy"])
def test_per_block_statistics_methods_stay_inside_block_range(method):
    rng = np.random.default_rng(3)
    w = rng.standard_t(3, size=(4, 50))
    lo, hi = make_observer_updated(method, w, axis=0, block_size=16).range(4, True)
    amax = block_reference(np.abs(w), 16, np.nanmax)
    assert hi.shape == (4, 4)
    assert np.all(hi > 0) and np.all(hi <= amax) and np.all(lo == -hi)


def test_per_block_qparams_quantize_like_reference():
    """observers' (C, nblocks) layout and numerics.QParams.broadcast agree."""
    rng = np.random.default_rng(4)
    w = rng.normal(size=(6, 5, 3, 3))
    n = 16
    qp = make_observer_updated("maxabs", w, axis=0, block_size=n).qparams(8, symmetric=True)
    scale = block_reference(np.abs(w), n, np.nanmax).astype(np.float32).astype(np.float64) / 127
    flat = w.reshape(6, -1)
    per_elem = np.repeat(scale, n, axis=1)[:, : flat.shape[1]]
    ref = np.clip(np.round(flat / per_elem), -127, 127).reshape(w.shape)
    np.testing.assert_array_equal(quantize(w, qp), ref)


# ----------------------------------------------------------------------------------------------
# percentile (streaming histogram)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [99.99, 99.0, 90.0])
def test_percentile_within_one_bin_of_numpy_streaming(p):
    rng = np.random.default_rng(5)
    data = batches(rng, 4, (50,), [1.0, 3.0, 0.5, 10.0])  # range grows twice: re-binning
    data[1] = data[1] + 2.0  # shift, so the low tail also grows on the x histogram
    allx = np.concatenate(data).ravel()
    obs = make_observer_updated("percentile", *data, percentile=p)

    _, hi = obs.range(8, symmetric=True)
    counts, edges = obs.histogram("abs")
    assert abs(hi - np.percentile(np.abs(allx), p)) <= edges[1] - edges[0]

    lo, hi = obs.range(8, symmetric=False)
    counts, edges = obs.histogram("x")
    width = edges[1] - edges[0]
    assert abs(lo - np.percentile(allx, 100 - p)) <= width
    assert abs(hi - np.percentile(allx, p)) <= width


def test_rebinned_histogram_equals_numpy_histogram_on_its_edges():
    """Re-binning merges whole bins: the final counts are exactly those of all data."""
    rng = np.random.default_rng(6)
    data = batches(rng, 4, (30,), [1.0, 5.0, 0.2, 40.0])
    data[2] -= 30.0
    allx = np.concatenate(data).ravel()
    obs = make_observer_updated("percentile", *data)
    for kind, values in (("x", allx), ("abs", np.abs(allx))):
        counts, edges = obs.histogram(kind)
        assert edges[0] <= values.min() and edges[-1] >= values.max()
        ref, _ = np.histogram(values, bins=edges)
        assert counts.sum() == values.size
        assert np.abs(counts - ref).sum() <= 2  # at most a value on an edge, by float rounding


def test_percentile_per_channel():
    rng = np.random.default_rng(7)
    data = [rng.normal(size=(20, 3, 40)) * np.array([1.0, 5.0, 0.1])[None, :, None]
            for _ in range(3)]
    allx = np.concatenate(data)
    obs = make_observer_updated("percentile", *data, axis=1, percentile=99.0)
    _, hi = obs.range(8, symmetric=True)
    for c in range(3):
        ref = np.percentile(np.abs(allx[:, c]), 99.0)
        _, edges = obs.histogram("abs", group=c)
        assert abs(hi[c] - ref) <= edges[1] - edges[0]


def test_point_mass_then_spread_streaming():
    """A first batch of one repeated value, then real data: the point mass lands in its bin."""
    rng = np.random.default_rng(8)
    data = [np.full((10, 10), 2.0), rng.normal(size=(40, 10)), np.full((5, 10), -3.0)]
    allx = np.concatenate(data).ravel()
    obs = make_observer_updated("percentile", *data, percentile=95.0)
    counts, edges = obs.histogram("x")
    ref, _ = np.histogram(allx, bins=edges)
    assert np.abs(counts - ref).sum() <= 2
    lo, hi = obs.range(8, symmetric=False)
    width = edges[1] - edges[0]
    assert abs(hi - np.percentile(allx, 95.0)) <= width
    assert abs(lo - np.percentile(allx, 5.0)) <= width


# ----------------------------------------------------------------------------------------------
# mse
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [4, 8])
def test_mse_per_channel_weights_beats_maxabs_and_matches_brute_force(bits):
    rng = np.random.default_rng(9)
    w = rng.standard_t(3, size=(12, 8, 3, 3))
    lo, hi = make_observer_updated("mse", w, axis=0).range(bits, symmetric=True)
    np.testing.assert_array_equal(lo, -hi)
    flat = w.reshape(12, -1)
    for c in range(12):
        x = flat[c]
        amax = np.abs(x).max()
        chosen = fake_quant_mse(x, -hi[c], hi[c], bits, True)
        at_max = fake_quant_mse(x, -amax, amax, bits, True)
        brute = fake_quant_mse_symmetric_grid(x, np.linspace(amax / 2000, amax, 2000), bits).min()
        assert chosen <= at_max * (1 + 1e-9)
        assert chosen <= brute * 1.01 + 1e-15


def test_mse_at_4_bits_clips_heavy_tail():
    rng = np.random.default_rng(10)
    w = rng.standard_t(2, size=(4, 5000))
    lo, hi = make_observer_updated("mse", w, axis=0).range(4, symmetric=True)
    assert np.all(hi < 0.7 * np.abs(w).max(axis=1))


def test_mse_affine_per_tensor():
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.exponential(size=3000), -0.2 * rng.exponential(size=1000)])
    lo, hi = make_observer_updated("mse", x).range(8, symmetric=False)
    mn, mx = x.min(), x.max()
    chosen = fake_quant_mse(x, lo, hi, 8, False)
    brute = min(fake_quant_mse(x, a * mn, a * mx, 8, False) for a in np.linspace(0.01, 1, 2000))
    assert chosen <= fake_quant_mse(x, mn, mx, 8, False) * (1 + 1e-9)
    assert chosen <= brute * 1.01


@pytest.mark.parametrize("bits", [8, 4, 16])
def test_mse_on_histogram_for_large_activations(bits):
    rng = np.random.default_rng(12)
    data = [rng.laplace(size=(100, 64)) for _ in range(5)]
    data[3][0, :4] = [60.0, -80.0, 45.0, 70.0]  # outliers
    allx = np.concatenate(data).ravel()
    obs = make_observer_updated("mse", *data, max_exact=1000)  # forces the histogram path
    assert obs.hist_abs is not None
    _, hi = obs.range(bits, symmetric=True)
    amax = np.abs(allx).max()
    chosen = fake_quant_mse(allx, -hi, hi, bits, True)
    brute = fake_quant_mse_symmetric_grid(allx, np.linspace(amax / 1000, amax, 1000), bits).min()
    assert chosen <= fake_quant_mse(allx, -amax, amax, bits, True) * 1.001
    assert chosen <= brute * 1.03


def test_mse_exact_and_histogram_paths_agree():
    rng = np.random.default_rng(13)
    x = rng.laplace(size=20000)
    exact = make_observer_updated("mse", x).range(6, symmetric=True)[1]
    hist = make_observer_updated("mse", x, max_exact=0).range(6, symmetric=True)[1]
    e_exact = fake_quant_mse(x, -exact, exact, 6, True)
    e_hist = fake_quant_mse(x, -hist, hist, 6, True)
    assert e_hist <= e_exact * 1.02


@pytest.mark.parametrize("exact", [True, False])
def test_mse_power_of_two_scale_is_best_power_of_two(exact):
    rng = np.random.default_rng(19)
    w = rng.standard_t(3, size=(6, 300)) * np.array([0.01, 0.1, 1.0, 3.0, 7.0, 0.5])[:, None]
    obs = make_observer_updated("mse", w, axis=0, max_exact=10**6 if exact else 0)
    qp = obs.qparams(4, symmetric=True, power_of_two=True)
    for c in range(6):
        exponent = np.log2(qp.scale[c])
        assert exponent == np.round(exponent)
        errors = {k: fake_quant_mse(w[c], -7 * 2.0**k, 7 * 2.0**k, 4, True)
                  for k in range(-20, 10)}
        best = min(errors.values())
        tol = 1e-12 if exact else 0.05  # the histogram estimate ranks near-ties approximately
        assert errors[int(exponent)] <= best * (1 + tol)


# ----------------------------------------------------------------------------------------------
# entropy
# ----------------------------------------------------------------------------------------------


def entropy_reference_check(values: np.ndarray, threshold: float, levels: int) -> None:
    """The observer's threshold sits at a candidate whose KL is the minimum over candidates."""
    nonzero = np.abs(values[values != 0])
    hist, edges = np.histogram(nonzero, bins=2048, range=(0.0, np.abs(values).max()))
    width = edges[1] - edges[0]
    chosen = int(round(threshold / width))
    assert abs(chosen * width - threshold) <= 1e-9 * threshold
    kls = np.array([kl_reference(hist, i, levels) for i in range(128, 2049)])
    best = kls.min()
    assert np.isfinite(best)
    assert kl_reference(hist, chosen, levels) <= best + 1e-6 * max(best, 1e-3)


def test_entropy_heavy_tail_threshold_is_kl_minimum():
    rng = np.random.default_rng(14)
    x = rng.laplace(size=(100, 1000))
    x[0, :5] = [150.0, -120.0, 200.0, 90.0, -170.0]
    obs = make_observer_updated("entropy", x[:50], x[50:])
    lo, hi = obs.range(8, symmetric=True)
    assert hi < 0.25 * np.abs(x).max()
    assert lo == -hi
    entropy_reference_check(x.ravel(), float(hi), levels=128)


def test_entropy_relu_data_ignores_the_zero_spike_unsigned():
    rng = np.random.default_rng(15)
    x = np.maximum(rng.laplace(size=60000), 0.0)
    x[:3] = [80.0, 95.0, 60.0]
    lo, hi = make_observer_updated("entropy", x).range(8, symmetric=True, signed=False)
    assert lo == 0.0 and hi < 0.3 * x.max()
    entropy_reference_check(x, float(hi), levels=256)


def test_entropy_affine_clips_both_sides_to_data():
    rng = np.random.default_rng(16)
    x = rng.laplace(size=50000) + 1.0
    x[:2] = [90.0, 70.0]
    lo, hi = make_observer_updated("entropy", x).range(8, symmetric=False)
    _, t = make_observer_updated("entropy", x).range(8, symmetric=True)
    assert lo == max(x.min(), -t) and hi == min(x.max(), t)


def test_entropy_16_bits_keeps_everything():
    """With more levels than bins, Q equals P and the widest threshold has KL 0."""
    rng = np.random.default_rng(17)
    x = rng.laplace(size=20000)
    _, hi = make_observer_updated("entropy", x).range(16, symmetric=True)
    assert hi == np.abs(x).max()


# ----------------------------------------------------------------------------------------------
# degenerate data and errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("value", [0.0, 3.5, -2.0])
@pytest.mark.parametrize("symmetric", [True, False])
def test_constant_tensors_give_finite_exact_qparams(method, value, symmetric):
    x = np.full((4, 10), value)
    obs = make_observer_updated(method, x, x)
    lo, hi = obs.range(8, symmetric)
    assert np.isfinite(lo) and np.isfinite(hi)
    qp = obs.qparams(8, symmetric=symmetric)
    assert np.all(np.isfinite(qp.scale)) and np.all(qp.scale > 0)
    back = dequantize(quantize(x, qp), qp)
    np.testing.assert_allclose(back, x, atol=qp.scale.max() / 2 * (1 + 1e-9))
    if value == 0.0:
        np.testing.assert_array_equal(back, 0.0)


@pytest.mark.parametrize("method", METHODS)
def test_per_channel_with_an_all_zero_channel(method):
    rng = np.random.default_rng(18)
    w = rng.normal(size=(3, 40))
    w[1] = 0.0
    qp = make_observer_updated(method, w, axis=0).qparams(4, symmetric=True)
    assert np.all(np.isfinite(qp.scale)) and np.all(qp.scale > 0)
    q = quantize(w, qp)
    assert np.all(q[1] == 0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_rejected_naming_tensor(method, bad):
    x = np.ones((2, 3))
    x[1, 2] = bad
    obs = make_observer(method, name="conv1.out")
    with pytest.raises(ValueError, match=r"conv1\.out.*NaN/inf"):
        obs.update(x)


@pytest.mark.parametrize("method", METHODS)
def test_no_data_errors(method):
    obs = make_observer(method, name="fc2")
    with pytest.raises(ValueError, match="observer fc2 got no data; calibration set empty?"):
        obs.range(8, symmetric=True)
    with pytest.raises(ValueError, match="observer fc2 got no data"):
        obs.qparams(8, symmetric=True)
    with pytest.raises(ValueError, match="observer fc2 got no data.*calibration set empty"):
        obs.update(np.zeros((0, 4)))


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match="unknown observer method 'kl'"):
        make_observer("kl")
    with pytest.raises(ValueError, match="block_size=8 needs axis"):
        make_observer("maxabs", block_size=8)
    with pytest.raises(ValueError, match="percentile must be in"):
        make_observer("percentile", percentile=0.0)
    obs = make_observer_updated("minmax", np.ones((2, 3, 4)), axis=1, name="act3")
    with pytest.raises(ValueError, match=r"act3.*\(5,\).*earlier batches had \(3,\)"):
        obs.update(np.ones((2, 5, 4)))
    with pytest.raises(ValueError, match="act3: axis 1 out of range"):
        obs.update(np.ones(3))


def test_int_input_accepted():
    lo, hi = make_observer_updated("minmax", np.array([-3, 7], dtype=np.int8)).range(8, False)
    assert (lo, hi) == (-3.0, 7.0)
