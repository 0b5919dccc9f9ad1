"""Offline datasets for the reference models, and checks of the data users pass in.

The datasets: scikit-learn digits (also repeated to 16x16) and locally generated MNIST-1D.

Nothing here downloads anything. Both datasets are small enough to live in memory and to train
MCU-sized networks on a CI machine in seconds. A :class:`Dataset` also states the *input
contract* of the device: which raw integer type the sensor delivers and how it maps to the
float input the network was trained on, so that lowering can fold that normalisation into the
first layer and the device never sees a float.

Cache files (generated MNIST-1D arrays, trained zoo weights) go to :func:`cache_dir`. Every cache
write is atomic (temporary file in the same directory, then ``os.replace``) so that two
pytest-xdist workers racing to fill the same cache entry can never leave a half-written file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import json
import os
import random
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DataWarning",
    "Dataset",
    "check_calibration",
    "check_labels",
    "shape_hint",
    "cache_dir",
    "load_digits",
    "load_digits16",
    "load_mnist1d",
    "load",
    "save_npz_atomic",
    "load_npz",
    "write_text_atomic",
    "preserve_global_rng",
]

# Bump when the arrays produced by a loader change, so stale cache entries are not reused.
_MNIST1D_CACHE_VERSION = "1"


@dataclass
class Dataset:
    """A classification dataset split into train and test, with its device input contract.

    ``x_*`` are float32 of shape ``(N, *input_shape)``, ``y_*`` int64 class indices. When the
    data come from integers (``raw_dtype`` not None), ``x_float = raw * raw_scale`` exactly, with
    ``raw`` of dtype ``raw_dtype``: this is what the device receives from its sensor.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    raw_dtype: str | None = None
    raw_scale: float | None = None

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(d) for d in self.input_shape)
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != np.float32 or y.dtype != np.int64:
                raise ValueError(
                    f"Dataset {self.name!r}: x_{split} must be float32 and y_{split} int64, "
                    f"got {x.dtype} and {y.dtype}; convert with .astype()"
                )
            if x.shape[1:] != self.input_shape or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"Dataset {self.name!r}: x_{split} has shape {x.shape} and y_{split} "
                    f"{y.shape}; expected (N, *{self.input_shape}) and (N,)"
                )
        if (self.raw_dtype is None) != (self.raw_scale is None):
            raise ValueError(
                f"Dataset {self.name!r}: raw_dtype and raw_scale must be given together"
            )

    def to_raw(self, x: np.ndarray) -> np.ndarray:
        """The raw integer device input for float inputs ``x`` (inverse of ``raw * raw_scale``)."""
        if self.raw_dtype is None or self.raw_scale is None:
            raise ValueError(
                f"Dataset {self.name!r} has no raw integer input contract (raw_dtype is None)"
            )
        raw = np.rint(np.asarray(x, dtype=np.float64) / self.raw_scale)
        info = np.iinfo(self.raw_dtype)
        if raw.min() < info.min or raw.max() > info.max:
            raise ValueError(f"Dataset {self.name!r}: inputs outside the {self.raw_dtype} range")
        return raw.astype(self.raw_dtype)


# ----------------------------------------------------------------------------------------------
# Cache directory and atomic writes
# ----------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$INTQUANT_CACHE`` or ``~/.cache/intquant``, created on demand."""
    env = os.environ.get("INTQUANT_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "intquant"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _atomic_file(path: Path) -> Iterator[object]:
    """Yield a binary file object; on success it atomically replaces ``path``.

    The temporary file lives in the target directory so that ``os.replace`` is a rename within
    one file system (atomic on POSIX): readers see either the old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a cache entry is ordinary data
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed .npz, atomically (see module docstring)."""
    with _atomic_file(Path(path)) as f:
        np.savez(f, **arrays)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` atomically."""
    with _atomic_file(Path(path)) as f:
        f.write(text.encode("utf-8"))


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """Arrays of an .npz file (never unpickling), or None if missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


# ----------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------


def load_digits(test_size: int = 360, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits, x in [0, 1] as (N, 1, 8, 8), stratified 1437/360 split.

    The pixels are integers 0..16, so the device input is uint8 with ``raw_scale = 1/16``.
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = _sk_load_digits()
    pixels = bunch.images.astype(np.int64)  # (1797, 8, 8), values 0..16
    labels = bunch.target.astype(np.int64)
    p_train, p_test, y_train, y_test = train_test_split(
        pixels, labels, test_size=test_size, stratify=labels, random_state=seed
    )
    raw_scale = 1.0 / 16.0

    def to_float(p: np.ndarray) -> np.ndarray:
        return (p[:, None, :, :] * raw_scale).astype(np.float32)

    return Dataset(
        x_train=to_float(p_train),
        y_train=y_train,
        x_test=to_float(p_test),
        y_test=y_test,
        name="digits",
        input_shape=(1, 8, 8),
        num_classes=10,
        raw_dtype="uint8",
        raw_scale=raw_scale,
    )


def load_digits16() -> Dataset:
    """The digits at 16x16 (each pixel repeated 2x2): room for a stride-2 stem and three
    resolutions (MobileNetV3-small). Pixel repetition keeps the raw uint8 0..16 device input
    of ``load_digits`` and its split."""
    ds = load_digits()

    def up(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.repeat(2, axis=2).repeat(2, axis=3))

    return Dataset(x_train=up(ds.x_train), y_train=ds.y_train, x_test=up(ds.x_test),
                   y_test=ds.y_test, name="digits16", input_shape=(1, 16, 16), num_classes=10,
                   raw_dtype=ds.raw_dtype, raw_scale=ds.raw_scale)


@contextmanager
def preserve_global_rng() -> Iterator[None]:
    """Restore NumPy's and Python's global RNG states on exit.

    mnist1d seeds both global generators (``np.random.seed``, ``random.seed``); without this,
    loading the data would silently change the random stream of the caller.
    """
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _mnist1d_args(num_samples: int, train_split: float, seed: int) -> dict:
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # never used: we only generate
    args.update(num_samples=int(num_samples), train_split=float(train_split), seed=int(seed))
    return args


def _generate_mnist1d(args: dict) -> dict[str, np.ndarray]:
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    with preserve_global_rng():
        d = make_dataset(ObjectView(dict(args)))
    return {
        "x_train": d["x"].astype(np.float32),
        "y_train": d["y"].astype(np.int64),
        "x_test": d["x_test"].astype(np.float32),
        "y_test": d["y_test"].astype(np.int64),
    }


def load_mnist1d(
    num_samples: int = 5000, train_split: float = 0.8, seed: int = 42, cache: bool = True
) -> Dataset:
    """MNIST-1D generated locally (default 4000 train / 1000 test), x of shape (N, 1, 40).

    Generation takes ~2 s (plus ~2 s to import mnist1d, which imports matplotlib), so the
    arrays are cached as .npz keyed by the generator arguments and version; a hit takes ~3 ms.
    The global NumPy/Python RNG states are the same after the call as before.
    """
    if num_samples < 20 or not 0.0 < train_split < 1.0:
        raise ValueError(
            f"load_mnist1d: need num_samples >= 20 and 0 < train_split < 1, "
            f"got {num_samples} and {train_split}"
        )
    # Key from our arguments and the generator's version, so a cache hit needs no mnist1d import
    # (it pulls in matplotlib: ~2 s).
    version = importlib.metadata.version("mnist1d")
    spec = [_MNIST1D_CACHE_VERSION, version, int(num_samples), float(train_split), int(seed)]
    key = hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]
    path = cache_dir() / "data" / f"mnist1d-{key}.npz" if cache else None

    arrays = load_npz(path) if path is not None and path.exists() else None
    if arrays is None or set(arrays) != {"x_train", "y_train", "x_test", "y_test"}:
        arrays = _generate_mnist1d(_mnist1d_args(num_samples, train_split, seed))
        if path is not None:
            save_npz_atomic(path, arrays)
    return Dataset(
        x_train=arrays["x_train"][:, None, :],
        y_train=arrays["y_train"],
        x_test=arrays["x_test"][:, None, :],
        y_test=arrays["y_test"],
        name="mnist1d",
        input_shape=(1, arrays["x_train"].shape[-1]),
        num_classes=10,
    )


def load_speech_commands() -> Dataset:
    """Synthetic spoken command words (espeak-ng), 49x10 MFCCs, 12 classes: see ``speech``."""
    from .speech import load_speech_commands as load_speech

    return load_speech()


_LOADERS = {"digits": load_digits, "mnist1d": load_mnist1d,
            "speech_commands": load_speech_commands, "digits16": load_digits16}


def load(name: str) -> Dataset:
    """Dataset by name: ``"digits"``, ``"digits16"``, ``"mnist1d"`` or ``"speech_commands"``."""
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(_LOADERS)}")
    return _LOADERS[name]()


# ----------------------------------------------------------------------------------------------
# Checks of user data: warnings for data that run but are almost certainly not what was meant
# ----------------------------------------------------------------------------------------------

MIN_CALIB_SAMPLES = 32


class DataWarning(UserWarning):
    """Data that intquant accepts but that almost certainly give a poor model; says what to do."""


def warn_data(message: str, stacklevel: int = 4) -> None:
    warnings.warn(message, DataWarning, stacklevel=stacklevel)


def check_calibration(batches: list[np.ndarray]) -> None:
    """Warn about calibration data too few or too uniform to choose activation ranges from."""
    n = sum(len(b) for b in batches)
    if n < MIN_CALIB_SAMPLES:
        warn_data(f"only {n} calibration sample(s): activation ranges chosen from so few are "
                  f"unreliable; pass at least {MIN_CALIB_SAMPLES} representative inputs "
                  f"(100-2000 is typical)")
    first = batches[0]
    value = first.flat[0]
    if all(np.all(b == value) for b in batches):
        what = "zero" if value == 0 else f"the same value ({value:.6g})"
        warn_data(f"every calibration value is {what}: the activation ranges will not fit real "
                  f"inputs; pass representative inputs (e.g. samples of the training data)")
    elif n > 1 and all(np.all(b == first[0]) for b in batches):
        warn_data(f"all {n} calibration samples are identical: the activation ranges will not "
                  f"fit other inputs; pass varied, representative inputs")


def check_labels(y: np.ndarray, classes: int, where: str = "labels") -> None:
    """Warn when labels fall outside [0, classes): they can never be predicted (0 % on them)."""
    y = np.asarray(y)
    bad = int(np.count_nonzero((y < 0) | (y >= classes)))
    if bad == 0:
        return
    hint = " (1-based? subtract 1)" if y.min() >= 1 and y.max() == classes else ""
    warn_data(f"{where}: {bad} of {len(y)} labels are outside [0, {classes}) (range "
              f"{int(y.min())}..{int(y.max())}) and always count as wrong; labels must be class "
              f"indices 0..{classes - 1}{hint}")


def shape_hint(shape: tuple[int, ...], expected: tuple[int, ...]) -> str:
    """How to turn per-sample ``shape`` into ``expected``: a transpose, a reshape, or x[None].

    Same axes in another order (e.g. channels-last images for a channels-first model) need a
    transpose: a reshape would keep the sizes right and scramble the values.
    """
    shape, expected = tuple(shape), tuple(expected)
    if shape == expected:
        return ""
    if len(shape) == len(expected) <= 6 and sorted(shape) == sorted(expected):
        perms = [p for p in itertools.permutations(range(len(shape)))
                 if tuple(shape[i] for i in p) == expected]
        channels_last = tuple(range(len(shape) - 1, len(shape))) + tuple(range(len(shape) - 1))
        p = channels_last if channels_last in perms else perms[0]
        axes = ", ".join(str(i + 1) for i in p)
        return (f" (the same axes in another order, channels last vs first? use "
                f"x.transpose(0, {axes}); a reshape would scramble the values)")
    if int(np.prod(shape)) == int(np.prod(expected)):
        return f" (same size per sample: use x.reshape(len(x), {', '.join(map(str, expected))}))"
    return ""
