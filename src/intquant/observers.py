"""Range observers: pick the clipping range [lo, hi] of a tensor from calibration data.

The textbook scheme ("maxabs": scale = max|x| / 127) lets one outlier stretch the scale so the bulk
of the values lands on a few levels. The other observers trade a little clipping error on the
tails for finer resolution where the mass is:

- ``maxabs``      symmetric [-max|x|, max|x|] (the baseline);
- ``minmax``      running [min x, max x];
- ``percentile``  the p-th percentile of |x| (symmetric) or the (100-p)/p percentiles of x (affine);
- ``mse``         the clip minimising E[(x - Q(x))^2] for the requested format;
- ``entropy``     TensorRT's KL-divergence threshold over a 2048-bin histogram of |x|.

Statistics are kept per *group*: the whole tensor (``axis=None``), one channel (``axis=c``: every
index along axis c is a group, the other axes are reduced), or one block (``axis=c`` and
``block_size=n``): the slice at each index along ``axis`` is flattened in C order over the
remaining axes and cut into blocks of ``n`` consecutive elements (the last block may be short).
For a conv weight ``[Cout, Cin, kh, kw]`` with ``axis=0`` that is one scale per ``n`` consecutive
weights of an output channel's ``Cin*kh*kw`` reduction; ranges come back with shape
``(Cout, nblocks)``.

Observers stream: ``update`` is called once per calibration batch. Histograms (percentile, mse on
large data, entropy) grow their range when a batch exceeds it by merging an integer number of old
bins into each new bin, so no count is ever split or interpolated. The ``mse`` observer keeps the
raw values while they are few (weights: one update, tens of thousands of values) and evaluates
the error exactly; beyond ``max_exact`` values it switches to the histogram, on which the expected
error is integrated in closed form assuming a uniform density inside each bin.

NumPy only (never torch).
"""

from __future__ import annotations

import math

import numpy as np

from intquant.numerics import QParams, choose_qparams, qrange, round_up_to_power_of_two

METHODS = ("maxabs", "minmax", "percentile", "mse", "entropy")

MSE_GRID = 100  # coarse candidates: clip = k/100 of the observed range, k = 1..100
MSE_REFINE = 20  # candidates each side of the coarse optimum, spanning one coarse step
POW2_SPAN = 12  # power-of-two mse: scales from the covering power of two down to 2^-12 of it
ENTROPY_START_BIN = 128  # TensorRT: the smallest candidate threshold is bin 128 of 2048
DEFAULT_MAX_EXACT = 1 << 17  # mse keeps raw values up to this many, then uses the histogram


def make_observer(
    method: str,
    *,
    axis: int | None = None,
    block_size: int | None = None,
    percentile: float = 99.99,
    bins: int = 2048,
    name: str = "tensor",
    max_exact: int = DEFAULT_MAX_EXACT,
) -> Observer:
    """An observer for ``method`` (one of ``METHODS``), per tensor, per channel or per block."""
    classes = {
        "maxabs": MaxAbsObserver,
        "minmax": MinMaxObserver,
        "percentile": PercentileObserver,
        "mse": MseObserver,
        "entropy": EntropyObserver,
    }
    if method not in classes:
        raise ValueError(f"{name}: unknown observer method {method!r}; choose one of {METHODS}")
    if axis is not None and not isinstance(axis, (int, np.integer)):
        raise ValueError(f"{name}: axis must be an int or None, got {axis!r}")
    if block_size is not None:
        if axis is None:
            raise ValueError(
                f"{name}: block_size={block_size} needs axis= (the channel axis whose slices "
                "are cut into blocks)"
            )
        if not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise ValueError(f"{name}: block_size must be a positive int, got {block_size!r}")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"{name}: percentile must be in (0, 100], got {percentile}")
    if not isinstance(bins, (int, np.integer)) or bins < 8:
        raise ValueError(f"{name}: bins must be an int >= 8, got {bins!r}")
    if max_exact < 0:
        raise ValueError(f"{name}: max_exact must be >= 0, got {max_exact}")
    obs = classes[method](axis=axis, block_size=block_size, bins=int(bins), name=name)
    obs.percentile = float(percentile)
    obs.max_exact = int(max_exact)
    return obs


# ----------------------------------------------------------------------------------------------
# Grouping: tensor / channel / block -> rows of a (G, M) matrix
# ----------------------------------------------------------------------------------------------


def group_rows(
    x: np.ndarray, axis: int | None, block_size: int | None
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, ...]]:
    """Rows of values, one row per group, plus a validity mask and the shape of the groups.

    The last block of a slice may be short; it is padded with copies of its own first element (so
    min/max are unchanged) and the mask marks the padding, which histograms and errors ignore.
    """
    if axis is None:
        return x.reshape(1, -1), None, ()
    channels = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    if block_size is None:
        return channels, None, (x.shape[axis],)
    n_ch, per_slice = channels.shape
    n_blocks = -(-per_slice // block_size)
    pad = n_blocks * block_size - per_slice
    valid = None
    if pad:
        first_of_last = channels[:, (n_blocks - 1) * block_size][:, None]
        channels = np.concatenate([channels, np.repeat(first_of_last, pad, axis=1)], axis=1)
        valid = np.ones(channels.shape, dtype=bool)
        valid[:, per_slice:] = False
        valid = valid.reshape(n_ch * n_blocks, block_size)
    return channels.reshape(n_ch * n_blocks, block_size), valid, (n_ch, n_blocks)


# ----------------------------------------------------------------------------------------------
# Streaming histogram with exact re-binning
# ----------------------------------------------------------------------------------------------


class StreamingHistogram:
    """Per-group histograms over [lo, lo + bins*width] that grow without splitting counts.

    A group whose data so far are one value c has width 0 and all its count in bin 0 (a point
    mass at lo = c); the first batch with spread gives it a real range and the point mass moves
    to the bin holding c.
    """

    def __init__(self, groups: int, bins: int) -> None:
        self.bins = bins
        self.counts = np.zeros((groups, bins), dtype=np.float64)
        self.lo: np.ndarray | None = None
        self.width: np.ndarray | None = None

    def edges(self, group: int) -> np.ndarray:
        """Bin edges of one group (bins + 1 values)."""
        assert self.lo is not None and self.width is not None
        return self.lo[group] + self.width[group] * np.arange(self.bins + 1)

    def add(self, rows: np.ndarray, valid: np.ndarray | None, rmin: np.ndarray,
            rmax: np.ndarray) -> None:
        """Count the rows (G, M) whose per-row extremes are rmin/rmax."""
        if self.lo is None:
            self.lo = rmin.astype(np.float64).copy()
            self.width = (rmax - rmin) / self.bins
        else:
            self._grow(rmin, rmax)
        assert self.width is not None
        inv = np.divide(1.0, self.width, out=np.zeros_like(self.width), where=self.width > 0)
        idx = np.floor((rows - self.lo[:, None]) * inv[:, None])
        idx = np.clip(idx, 0, self.bins - 1).astype(np.int64)
        idx += (np.arange(rows.shape[0], dtype=np.int64) * self.bins)[:, None]
        total = self.counts.size
        if valid is not None:
            idx = np.where(valid, idx, total)  # padding goes to a dropped overflow bin
        counted = np.bincount(idx.ravel(), minlength=total + 1)[:total]
        self.counts += counted.reshape(self.counts.shape)

    def _grow(self, rmin: np.ndarray, rmax: np.ndarray) -> None:
        assert self.lo is not None and self.width is not None
        for g in range(self.counts.shape[0]):
            lo, w = self.lo[g], self.width[g]
            if w == 0.0:
                self._grow_point_mass(g, rmin[g], rmax[g])
                continue
            # Float noise of lo + bins*w must not trigger a merge: allow 1e-9 of a bin.
            left = max(0, math.ceil((lo - rmin[g]) / w - 1e-9))
            right = max(self.bins, math.ceil((rmax[g] - lo) / w - 1e-9))
            if left == 0 and right == self.bins:
                continue
            merge = math.ceil((left + right) / self.bins)  # old bins per new bin
            new_index = np.floor((np.arange(self.bins) + left) / merge).astype(np.int64)
            new_index = np.minimum(new_index, self.bins - 1)
            self.counts[g] = np.bincount(new_index, weights=self.counts[g], minlength=self.bins)
            self.lo[g] = lo - left * w
            self.width[g] = merge * w

    def _grow_point_mass(self, g: int, rmin: float, rmax: float) -> None:
        assert self.lo is not None and self.width is not None
        c = self.lo[g]
        lo, hi = min(c, rmin), max(c, rmax)
        if hi == lo:
            return
        mass = self.counts[g].sum()
        self.counts[g] = 0.0
        self.lo[g] = lo
        self.width[g] = (hi - lo) / self.bins
        self.counts[g, min(int((c - lo) / self.width[g]), self.bins - 1)] = mass


# ----------------------------------------------------------------------------------------------
# The quantization grid that choose_qparams will produce for a candidate range
# ----------------------------------------------------------------------------------------------


def quantization_grid(
    lo: np.ndarray, hi: np.ndarray, bits: int, symmetric: bool, signed: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(step, lowest level, highest level, zero point) as ``choose_qparams`` maps [lo, hi].

    Mirrors choose_qparams (narrow range for symmetric signed, range widened to contain 0, zero
    point rounded half to even) without the float32 cast of the scale, which moves the grid by
    less than one part in 2^24.
    """
    qmin, qmax = qrange(bits, signed, narrow=symmetric and signed)
    lo = np.minimum(lo, 0.0)
    hi = np.maximum(hi, 0.0)
    if symmetric:
        step = np.maximum(np.abs(lo), np.abs(hi)) / qmax
        step = np.where(step > 0, step, 1.0)
        zero = np.zeros_like(step)
    else:
        step = (hi - lo) / (qmax - qmin)
        step = np.where(step > 0, step, 1.0)
        zero = np.clip(qmin - np.round(lo / step), qmin, qmax)
    return step, step * (qmin - zero), step * (qmax - zero), zero


def squared_error_exact(
    rows: np.ndarray, valid: np.ndarray | None, step: np.ndarray, zero: np.ndarray,
    qmin: int, qmax: int,
) -> np.ndarray:
    """Sum over each row of (x - Q(x))^2, Q = quantize-dequantize with per-row step and zero.

    In place on one scratch array: this runs ~140 times per weight tensor in the mse search.
    """
    step_col, zero_col = step[:, None], zero[:, None]
    err = rows * (1.0 / step_col)
    np.rint(err, out=err)
    err += zero_col
    np.clip(err, qmin, qmax, out=err)
    err -= zero_col
    err *= step_col
    np.subtract(rows, err, out=err)
    err *= err
    if valid is not None:
        err *= valid
    return err.sum(axis=1)


def _rounding_error_integral(x: np.ndarray, step: np.ndarray) -> np.ndarray:
    """F(x) = ∫_{-step/2}^{x} (t - step·round(t/step))^2 dt, an antiderivative of the error.

    The rounding error is periodic with period ``step`` and integrates to step^3/12 per period;
    inside a period, with f the position in [0, 1), the partial integral is step^3((f-1/2)^3+1/8)/3.
    """
    u = x / step + 0.5
    periods = np.floor(u)
    f = u - periods
    f -= 0.5
    return step**3 * (periods / 12.0 + (f * f * f + 0.125) / 3.0)


def _clipped_error_integral(x: np.ndarray, step, lo_q, hi_q) -> np.ndarray:
    """Antiderivative of (x - Q(x))^2, Q rounding to multiples of step clamped to [lo_q, hi_q].

    Below lo_q the error is x - lo_q, above hi_q it is x - hi_q (lo_q, hi_q are grid points, so
    the pieces join continuously); inside, the periodic rounding error.
    """
    inside = _rounding_error_integral(np.clip(x, lo_q, hi_q), step)
    below = np.minimum(x - lo_q, 0.0)
    above = np.maximum(x - hi_q, 0.0)
    return inside + (below * below * below + above * above * above) / 3.0


def squared_error_histogram(
    counts: np.ndarray, lo: float, width: float, step: np.ndarray, lo_q: np.ndarray,
    hi_q: np.ndarray,
) -> np.ndarray:
    """Expected Σ(x - Q(x))^2 of histogrammed data, for each candidate grid (step, lo_q, hi_q).

    Each bin holds ``count`` values spread uniformly over it, so its error is count/width times
    the integral of the squared error over the bin: a difference of the closed-form antiderivative
    at the bin edges. That stays right even when a bin is wider than a quantization step (16-bit
    formats), where evaluating at bin centres would alias.
    """
    nonzero = np.flatnonzero(counts)
    first, last = nonzero[0], nonzero[-1] + 1  # only bins holding data matter
    edges = lo + width * np.arange(first, last + 1)
    prim = _clipped_error_integral(edges[None, :], step[:, None], lo_q[:, None], hi_q[:, None])
    return np.diff(prim, axis=1) @ (counts[first:last] / width)


# ----------------------------------------------------------------------------------------------
# TensorRT entropy calibration
# ----------------------------------------------------------------------------------------------


def kl_divergence_per_threshold(counts: np.ndarray, levels: int, start: int) -> np.ndarray:
    """KL(P || Q) for each candidate threshold i = start..bins (in bins), TensorRT style.

    P: the first i bins, with every count beyond (the outliers) folded into bin i-1, normalised by
    the total. Q: the i bins merged into ``levels`` buckets (bin k goes to bucket
    floor(k·levels/i)), each bucket's count spread evenly over its nonzero bins, normalised by its
    own sum. KL = Σ P log P − Σ P log Q; both sums reduce to prefix sums and per-bucket totals, so
    every candidate costs O(levels) instead of O(i). A candidate whose last bin is empty while
    outliers exist puts mass where Q has none: KL = inf.
    """
    counts = np.asarray(counts, dtype=np.float64)
    bins = counts.size
    levels = min(levels, bins)  # more levels than bins: every bin its own bucket, same result
    total = counts.sum()
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    cum_nonzero = np.concatenate([[0], np.cumsum(counts > 0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        clogc = np.where(counts > 0, counts * np.log(np.where(counts > 0, counts, 1.0)), 0.0)
    cum_clogc = np.concatenate([[0.0], np.cumsum(clogc)])
    out = []
    for chunk_start in range(start, bins + 1, 256):
        i = np.arange(chunk_start, min(chunk_start + 256, bins + 1))
        out.append(_kl_chunk(i, counts, cum, cum_nonzero, cum_clogc, total, levels))
    return np.concatenate(out)


def _kl_chunk(i, counts, cum, cum_nonzero, cum_clogc, total, levels) -> np.ndarray:
    j = np.arange(levels + 1)
    bounds = -(-(i[:, None] * j[None, :]) // levels)  # ceil(j·i/levels): first bin of bucket j
    bucket_sum = cum[bounds[:, 1:]] - cum[bounds[:, :-1]]
    bucket_nz = cum_nonzero[bounds[:, 1:]] - cum_nonzero[bounds[:, :-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        density = np.where(bucket_nz > 0, bucket_sum / np.maximum(bucket_nz, 1), 1.0)
        log_density = np.log(density)
    rows = np.arange(i.size)
    last_bucket = ((i - 1) * levels) // i
    outliers = total - cum[i]
    last = counts[i - 1] + outliers  # unnormalised P of bin i-1
    with np.errstate(divide="ignore", invalid="ignore"):
        p_log_p = (cum_clogc[i - 1] + np.where(last > 0, last * np.log(last), 0.0)) / total
        p_log_p -= np.log(total)
        p_log_q = (np.where(bucket_nz > 0, bucket_sum * log_density, 0.0).sum(axis=1)
                   + outliers * log_density[rows, last_bucket]) / total - np.log(cum[i])
    kl = p_log_p - p_log_q
    impossible = ((counts[i - 1] == 0) & (outliers > 0)) | (cum[i] == 0)
    return np.where(impossible, np.inf, np.maximum(kl, 0.0))


# ----------------------------------------------------------------------------------------------
# Observers
# ----------------------------------------------------------------------------------------------


class Observer:
    """Streaming range statistics of one tensor; subclasses choose the clip from them."""

    uses_histograms = False

    def __init__(self, *, axis: int | None = None, block_size: int | None = None,
                 bins: int = 2048, name: str = "tensor") -> None:
        self.axis = axis
        self.block_size = block_size
        self.bins = bins
        self.name = name
        self.percentile = 99.99
        self.max_exact = DEFAULT_MAX_EXACT
        self.count = 0
        self.group_shape: tuple[int, ...] | None = None
        self._slice_shape: tuple[int, ...] | None = None
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None
        self.zeros: np.ndarray | None = None
        self.hist_abs: StreamingHistogram | None = None  # |x| over [0, R]
        self.hist_x: StreamingHistogram | None = None  # x over [lo, hi]

    # -- streaming ---------------------------------------------------------------------------

    def update(self, x: np.ndarray) -> None:
        """Add one calibration batch (any float array; per-channel layouts must stay the same)."""
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            raise ValueError(
                f"observer {self.name} got no data (an empty batch of shape {x.shape}); "
                "calibration set empty?"
            )
        if not np.isfinite(x).all():
            bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
            raise ValueError(
                f"observer {self.name}: the data contain NaN/inf ({bad} of {x.size} values); "
                "check the calibration inputs and the float model"
            )
        self._check_layout(x.shape)
        rows, valid, group_shape = group_rows(x, self._axis(x.ndim), self.block_size)
        rmin, rmax = rows.min(axis=1), rows.max(axis=1)
        if self.min is None:
            self.group_shape = group_shape
            self.min, self.max = rmin, rmax
        else:
            self.min = np.minimum(self.min, rmin)
            self.max = np.maximum(self.max, rmax)
        self.count += x.size
        self._observe_rows(rows, valid, rmin, rmax)

    def _observe_rows(self, rows, valid, rmin, rmax) -> None:
        if self.uses_histograms:
            self._add_to_histograms(rows, valid, rmin, rmax)

    def _add_to_histograms(self, rows, valid, rmin, rmax) -> None:
        groups = rows.shape[0]
        if self.hist_abs is None:
            self.hist_abs = StreamingHistogram(groups, self.bins)
            self.hist_x = StreamingHistogram(groups, self.bins)
            self.zeros = np.zeros(groups)
        assert self.hist_x is not None and self.zeros is not None
        absolute = np.abs(rows)
        self.hist_abs.add(absolute, valid, np.zeros(groups), np.maximum(-rmin, rmax))
        self.hist_x.add(rows, valid, rmin, rmax)
        is_zero = absolute == 0
        if valid is not None:
            is_zero &= valid
        self.zeros += is_zero.sum(axis=1)

    def _axis(self, ndim: int) -> int | None:
        if self.axis is None:
            return None
        if not -ndim <= self.axis < ndim:
            raise ValueError(
                f"observer {self.name}: axis {self.axis} out of range for a {ndim}-d tensor"
            )
        return self.axis % ndim

    def _check_layout(self, shape: tuple[int, ...]) -> None:
        """Per-channel updates keep their channel count; per-block ones their whole slice."""
        axis = self._axis(len(shape))
        if axis is None:
            return
        if self.block_size is None:
            key: tuple[int, ...] = (shape[axis],)
        else:
            key = (shape[axis], math.prod(s for i, s in enumerate(shape) if i != axis))
        if self._slice_shape is None:
            self._slice_shape = key
        elif key != self._slice_shape:
            what = "channels" if self.block_size is None else "(channels, values per channel)"
            raise ValueError(
                f"observer {self.name}: batch of shape {shape} has {what} {key} along axis "
                f"{self.axis}, earlier batches had {self._slice_shape}"
            )

    # -- results -----------------------------------------------------------------------------

    def range(
        self, bits: int, symmetric: bool, signed: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """The clipping range (lo, hi) for a ``bits``-wide format, per tensor / channel / block.

        Symmetric signed ranges are (-T, T); symmetric unsigned ones (0, T) (for data >= 0, e.g.
        after ReLU). Shapes: () per tensor, (C,) per channel, (C, nblocks) per block.
        """
        self._require_data(bits, signed)
        lo, hi = self._range(bits, symmetric, signed)
        lo = np.minimum(lo, 0.0) if symmetric else lo
        shape = self.group_shape if self.group_shape is not None else ()
        return np.asarray(lo, dtype=np.float64).reshape(shape), np.asarray(
            hi, dtype=np.float64
        ).reshape(shape)

    def _require_data(self, bits: int, signed: bool) -> None:
        if self.min is None or self.max is None:
            raise ValueError(f"observer {self.name} got no data; calibration set empty?")
        qrange(bits, signed)  # validates bits

    def qparams(self, bits: int, *, symmetric: bool, signed: bool = True,
                power_of_two: bool = False) -> QParams:
        """Quantization parameters covering ``range`` (see numerics.choose_qparams)."""
        lo, hi = self.range(bits, symmetric, signed)
        return choose_qparams(
            lo, hi, bits=bits, symmetric=symmetric, signed=signed, axis=self.axis,
            block_size=self.block_size, power_of_two=power_of_two, name=self.name,
        )

    def _range(self, bits: int, symmetric: bool, signed: bool) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @property
    def absmax(self) -> np.ndarray:
        assert self.min is not None and self.max is not None
        return np.maximum(-self.min, self.max)

    def _symmetric_pair(self, threshold: np.ndarray, signed: bool):
        """(-T, T), or (0, T) for an unsigned format."""
        return (np.zeros_like(threshold) if not signed else -threshold), threshold

    def histogram(self, kind: str = "x", group: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) of one group's histogram of x or of |x| (histogram-based methods)."""
        hist = {"x": self.hist_x, "abs": self.hist_abs}.get(kind, "bad")
        if hist == "bad":
            raise ValueError(f"histogram kind must be 'x' or 'abs', got {kind!r}")
        if hist is None:
            raise ValueError(f"observer {self.name} keeps no histogram (method or no data yet)")
        return hist.counts[group].copy(), hist.edges(group)


class MaxAbsObserver(Observer):
    """The textbook scheme: symmetric [-max|x|, max|x|] whatever format is asked for."""

    def _range(self, bits, symmetric, signed):
        if not signed and symmetric:
            return np.zeros_like(self.absmax), self.absmax
        return -self.absmax, self.absmax


class MinMaxObserver(Observer):
    """Running [min, max]; symmetric formats take the larger magnitude."""

    def _range(self, bits, symmetric, signed):
        if symmetric:
            return self._symmetric_pair(self.absmax, signed)
        return self.min, self.max


class PercentileObserver(Observer):
    """Clip at the p-th percentile of |x| (symmetric) or at x's (100-p)/p percentiles (affine)."""

    uses_histograms = True

    def _range(self, bits, symmetric, signed):
        p = self.percentile / 100.0
        if symmetric:
            threshold = histogram_quantile(self.hist_abs, p)
            return self._symmetric_pair(np.clip(threshold, 0.0, self.absmax), signed)
        lo = histogram_quantile(self.hist_x, 1.0 - p)
        hi = histogram_quantile(self.hist_x, p)
        return np.clip(lo, self.min, self.max), np.clip(hi, self.min, self.max)


def histogram_quantile(hist: StreamingHistogram | None, q: float) -> np.ndarray:
    """Per-group q-quantile with np.percentile's definition, from the histogram alone.

    np.percentile interpolates linearly between the order statistics at ranks floor(q(N-1)) and
    the next one. Each order statistic is placed inside the bin that holds it (the values of a bin
    taken as evenly spread over it), so each is off by less than one bin width, and so is their
    interpolation: the estimate is within one bin of the exact percentile, even in sparse tails.
    """
    assert hist is not None and hist.lo is not None and hist.width is not None
    cum = np.cumsum(hist.counts, axis=1)
    n = cum[:, -1]
    pos = q * (n - 1)
    rank = np.floor(pos)
    first = _order_statistic(hist, cum, rank)
    second = _order_statistic(hist, cum, np.minimum(rank + 1, n - 1))
    return first + (pos - rank) * (second - first)


def _order_statistic(hist: StreamingHistogram, cum: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Estimated value of the rank-th smallest value (0-based) of each group."""
    assert hist.lo is not None and hist.width is not None
    k = np.minimum((cum <= rank[:, None]).sum(axis=1), hist.bins - 1)  # first bin with cum > rank
    rows = np.arange(cum.shape[0])
    before = np.where(k > 0, cum[rows, np.maximum(k - 1, 0)], 0.0)
    inside = hist.counts[rows, k]
    offset = np.divide(rank - before + 0.5, inside, out=np.full_like(rank, 0.5), where=inside > 0)
    return hist.lo + (k + np.clip(offset, 0.0, 1.0)) * hist.width


class MseObserver(Observer):
    """Clip minimising the squared quantization error, per group, for the requested format.

    Candidates are k/100 of the observed range (k = 1..100) then a finer grid around the best.
    Symmetric formats scale [-max|x|, max|x|]; affine ones scale [min, max] by the same fraction.
    Among equal errors the widest clip wins (less clipping is the safer choice).

    With ``power_of_two=True`` (symmetric formats) the search runs over power-of-two scales
    directly: rounding the MSE-optimal scale up to a power of two can double it, while the best
    power of two is often the one below.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._raw: list[np.ndarray] = []
        self._raw_valid: list[np.ndarray | None] = []

    def qparams(self, bits: int, *, symmetric: bool, signed: bool = True,
                power_of_two: bool = False) -> QParams:
        if not (power_of_two and symmetric):
            return super().qparams(bits, symmetric=symmetric, signed=signed,
                                   power_of_two=power_of_two)
        self._require_data(bits, signed)
        shape = self.group_shape if self.group_shape is not None else ()
        threshold = self._best_power_of_two_threshold(bits, signed).reshape(shape)
        lo = np.zeros_like(threshold) if not signed else -threshold
        return choose_qparams(
            lo, threshold, bits=bits, symmetric=True, signed=signed, axis=self.axis,
            block_size=self.block_size, power_of_two=True, name=self.name,
        )

    def _best_power_of_two_threshold(self, bits: int, signed: bool) -> np.ndarray:
        """qmax · 2^k with the least error, k from the covering power of two down POW2_SPAN."""
        qmax = qrange(bits, signed, narrow=signed)[1]
        top = round_up_to_power_of_two(self.absmax / qmax)
        thresholds = qmax * top[:, None] * 2.0 ** -np.arange(POW2_SPAN + 1)[None, :]
        lo = np.zeros_like(thresholds) if not signed else -thresholds
        errors = self._errors(lo, thresholds, bits, True, signed)
        least = errors.min(axis=1, keepdims=True)
        is_min = errors <= least + 1e-12 * np.maximum(least, 1e-300)
        return thresholds[np.arange(thresholds.shape[0]), np.argmax(is_min, axis=1)]

    def _observe_rows(self, rows, valid, rmin, rmax) -> None:
        if self.hist_abs is not None:
            self._add_to_histograms(rows, valid, rmin, rmax)
            return
        self._raw.append(rows)
        self._raw_valid.append(valid)
        if self.count > self.max_exact:  # too many to keep: replay the raw data into histograms
            for r, v in zip(self._raw, self._raw_valid, strict=True):
                self._add_to_histograms(r, v, r.min(axis=1), r.max(axis=1))
            self._raw, self._raw_valid = [], []

    def _range(self, bits, symmetric, signed):
        assert self.min is not None and self.max is not None
        if symmetric:
            base_lo = np.zeros_like(self.absmax) if not signed else -self.absmax
            base_hi = self.absmax
        else:
            base_lo, base_hi = np.minimum(self.min, 0.0), np.maximum(self.max, 0.0)
        alpha = self._best_fraction(base_lo, base_hi, bits, symmetric, signed)
        return alpha * base_lo, alpha * base_hi

    def _best_fraction(self, base_lo, base_hi, bits, symmetric, signed) -> np.ndarray:
        coarse = np.arange(1, MSE_GRID + 1) / MSE_GRID
        coarse = np.broadcast_to(coarse, (base_lo.size, coarse.size))
        best = self._argmin_fraction(coarse, base_lo, base_hi, bits, symmetric, signed)
        offsets = np.arange(-MSE_REFINE, MSE_REFINE + 1) / (MSE_REFINE * MSE_GRID)
        fine = np.clip(best[:, None] + offsets[None, :], 1.0 / (MSE_GRID * MSE_REFINE), 1.0)
        return self._argmin_fraction(fine, base_lo, base_hi, bits, symmetric, signed)

    def _argmin_fraction(self, fractions, base_lo, base_hi, bits, symmetric, signed):
        """Per group, the fraction (row of ``fractions``, shape (G, K)) with the least error."""
        errors = self._errors(fractions * base_lo[:, None], fractions * base_hi[:, None], bits,
                              symmetric, signed)
        # Widest clip among (relative) ties: take the last minimum.
        least = errors.min(axis=1, keepdims=True)
        is_min = errors <= least + 1e-12 * np.maximum(least, 1e-300)
        last = fractions.shape[1] - 1 - np.argmax(is_min[:, ::-1], axis=1)
        return fractions[np.arange(fractions.shape[0]), last]

    def _errors(self, lo, hi, bits, symmetric, signed) -> np.ndarray:
        """Squared quantization error for candidate ranges (lo, hi), both (G, K): (G, K)."""
        step, lo_q, hi_q, zero = quantization_grid(lo, hi, bits, symmetric, signed)
        out = np.zeros(lo.shape)
        if self.hist_abs is None:  # exact, on the kept raw values
            qmin, qmax = qrange(bits, signed, narrow=symmetric and signed)
            for rows, valid in zip(self._raw, self._raw_valid, strict=True):
                for k in range(lo.shape[1]):
                    out[:, k] += squared_error_exact(rows, valid, step[:, k], zero[:, k],
                                                     qmin, qmax)
            return out
        hist = self.hist_abs if symmetric else self.hist_x
        assert hist is not None and hist.lo is not None and hist.width is not None
        for g in range(lo.shape[0]):
            if hist.width[g] == 0:  # one value c: its error under each candidate, times its count
                c = hist.lo[g]
                q = np.clip(np.rint(c / step[g]) * step[g], lo_q[g], hi_q[g])
                out[g] = hist.counts[g].sum() * (c - q) ** 2
            else:
                out[g] = squared_error_histogram(hist.counts[g], hist.lo[g], hist.width[g],
                                                 step[g], lo_q[g], hi_q[g])
        return out


class EntropyObserver(Observer):
    """TensorRT's entropy calibration: the |x| threshold minimising KL(P || Q) over a histogram.

    Exact zeros are left out of the histogram first: zero is exact under every clip, and a ReLU
    spike in bin 0 would otherwise dominate the divergence and drag the threshold down. Affine
    formats get [max(min, -T), min(max, T)].
    """

    uses_histograms = True

    def _range(self, bits, symmetric, signed):
        assert self.hist_abs is not None and self.zeros is not None
        levels = 2 ** (bits - 1) if signed else 2**bits
        hist = self.hist_abs
        threshold = np.array(self.absmax, dtype=np.float64)
        for g in range(hist.counts.shape[0]):
            counts = hist.counts[g].copy()
            counts[0] -= self.zeros[g]
            if hist.width[g] == 0 or counts.sum() == 0:
                continue  # one value (or only zeros): keep max|x|
            kl = kl_divergence_per_threshold(counts, levels, min(ENTROPY_START_BIN, self.bins))
            start = min(ENTROPY_START_BIN, self.bins)
            best = start + (kl.size - 1 - np.argmin(kl[::-1]))  # largest among equal minima
            threshold[g] = min(best * hist.width[g], self.absmax[g])
        if symmetric:
            return self._symmetric_pair(threshold, signed)
        return np.maximum(self.min, -threshold), np.minimum(self.max, threshold)
