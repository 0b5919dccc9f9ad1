"""Datasets: shapes, dtypes, split, input contract, determinism, RNG hygiene, atomic cache."""

from __future__ import annotations

import os
import random
import threading
from collections import Counter

import numpy as np
import pytest

from intquant import data


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INTQUANT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ---------------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------------


def test_digits_shapes_dtypes_and_range():
    ds = data.load_digits()
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    for x in (ds.x_train, ds.x_test):
        assert x.min() == 0.0 and x.max() == 1.0


def test_digits_is_a_partition_of_sklearn_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ds = data.load_digits()
    full = sorted(
        (tuple(img.ravel()), int(t)) for img, t in zip(bunch.images, bunch.target, strict=True)
    )
    ours = sorted(
        (tuple((x[0] * 16).ravel()), int(t))
        for split in ("train", "test")
        for x, t in zip(getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}"), strict=True)
    )
    assert ours == full


def test_digits_split_is_stratified_and_deterministic():
    ds = data.load_digits()
    total = Counter(ds.y_train.tolist()) + Counter(ds.y_test.tolist())
    test = Counter(ds.y_test.tolist())
    for c in range(10):
        assert abs(test[c] - total[c] * 360 / 1797) <= 1, (c, test[c], total[c])
    again = data.load_digits()
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    np.testing.assert_array_equal(ds.y_train, again.y_train)


def test_digits_raw_input_contract_is_exact():
    ds = data.load_digits()
    assert ds.raw_dtype == "uint8" and ds.raw_scale == 1 / 16
    raw = ds.to_raw(ds.x_test)
    assert raw.dtype == np.uint8 and raw.max() == 16
    # x_float = raw · raw_scale exactly, not approximately.
    np.testing.assert_array_equal(raw.astype(np.float64) * ds.raw_scale, ds.x_test)


# ---------------------------------------------------------------------------------------------
# MNIST-1D
# ---------------------------------------------------------------------------------------------


def test_mnist1d_default_split_and_shapes(tmp_cache):
    ds = data.load_mnist1d()
    assert ds.x_train.shape == (4000, 1, 40) and ds.x_test.shape == (1000, 1, 40)
    assert ds.x_train.dtype == np.float32 and ds.y_test.dtype == np.int64
    assert ds.input_shape == (1, 40) and ds.num_classes == 10
    assert ds.raw_dtype is None and ds.raw_scale is None
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert list((tmp_cache / "data").glob("mnist1d-*.npz")), "arrays were not cached"


def test_mnist1d_matches_the_upstream_generator(tmp_cache):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 200
    ref = make_dataset(args)
    ds = data.load_mnist1d(num_samples=200)
    np.testing.assert_array_equal(ds.x_train[:, 0, :], ref["x"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, ref["y_test"])


def test_mnist1d_restores_global_rng_state():
    np.random.seed(1234)
    random.seed(99)
    data.load_mnist1d(num_samples=100, cache=False)
    after_np, after_py = np.random.random(5), random.random()
    np.random.seed(1234)
    random.seed(99)
    np.testing.assert_array_equal(after_np, np.random.random(5))
    assert after_py == random.random()


def test_mnist1d_cache_is_used_and_identical(tmp_cache, monkeypatch):
    first = data.load_mnist1d(num_samples=100)

    def fail(args):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(data, "_generate_mnist1d", fail)
    second = data.load_mnist1d(num_samples=100)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)


def test_mnist1d_corrupt_cache_is_regenerated(tmp_cache):
    ref = data.load_mnist1d(num_samples=100, cache=False)
    data.load_mnist1d(num_samples=100)
    (path,) = (tmp_cache / "data").glob("mnist1d-*.npz")
    path.write_bytes(b"PK\x03\x04 truncated")
    again = data.load_mnist1d(num_samples=100)
    np.testing.assert_array_equal(again.x_test, ref.x_test)
    assert data.load_npz(path) is not None


def test_mnist1d_rejects_bad_arguments():
    with pytest.raises(ValueError, match="train_split"):
        data.load_mnist1d(num_samples=100, train_split=1.5, cache=False)


def test_load_by_name_and_unknown_name():
    assert data.load("digits").name == "digits"
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        data.load("cifar")


def test_dataset_validates_dtypes():
    x = np.zeros((4, 1, 3), np.float64)
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="float32"):
        data.Dataset(x, y, x, y, name="bad", input_shape=(1, 3), num_classes=2)


# ---------------------------------------------------------------------------------------------
# cache directory and atomic writes
# ---------------------------------------------------------------------------------------------


def test_cache_dir_from_environment_is_created(tmp_path, monkeypatch):
    target = tmp_path / "a" / "b"
    monkeypatch.setenv("INTQUANT_CACHE", str(target))
    assert data.cache_dir() == target and target.is_dir()


def test_concurrent_writers_never_expose_a_partial_file(tmp_path):
    """Writers race on one path while a reader polls it: every read is a complete version."""
    path = tmp_path / "race.npz"
    n = 1 << 20  # 8 MB per version, so a non-atomic write would be visible mid-way
    versions = {k: np.full(n, k, dtype=np.float64) for k in range(4)}
    data.save_npz_atomic(path, {"a": versions[0]})
    stop = threading.Event()
    bad: list[str] = []

    def writer(k: int) -> None:
        for _ in range(6):
            data.save_npz_atomic(path, {"a": versions[k]})

    def reader() -> None:
        while not stop.is_set():
            got = data.load_npz(path)
            if got is None or got["a"].shape != (n,) or got["a"].min() != got["a"].max():
                bad.append("partial or unreadable file seen")

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    r = threading.Thread(target=reader)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    r.join()
    assert not bad
    assert os.listdir(tmp_path) == ["race.npz"], "temporary files left behind"


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "x.npz"
    data.save_npz_atomic(path, {"a": np.arange(3)})

    class Unconvertible:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        data.save_npz_atomic(path, {"a": np.arange(5), "b": Unconvertible()})
    np.testing.assert_array_equal(data.load_npz(path)["a"], np.arange(3))
    assert os.listdir(tmp_path) == ["x.npz"]


def test_write_text_atomic_round_trip(tmp_path):
    path = tmp_path / "m.json"
    data.write_text_atomic(path, "héllo\n")
    assert path.read_text(encoding="utf-8") == "héllo\n"
