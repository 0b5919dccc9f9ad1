"""Reference models: small (MCU-sized) networks trained deterministically and cached.

They exist to exercise every path of the quantizer on realistic weights: BatchNorm after conv
(folding), ReLU/ReLU6 (fused clamps), max/avg/global pooling, strided, padded, depthwise and
pointwise convolutions, a residual add, dropout and linear heads. Each stays under ~30k
parameters and ~8 KB for the largest pair of adjacent int8 activations, so that it fits a
Cortex-M0 with 16 KB of RAM.

Trained weights are cached in :func:`intquant.data.cache_dir` as an .npz of the state_dict plus
a JSON metadata file (never a pickle), keyed by the model name, :data:`ZOO_VERSION` and the
training recipe, so that changing an architecture or a hyperparameter retrains. Training takes
one lock per cache entry, so that two pytest-xdist workers do not train the same model twice.
Module names (``features.0``, ``blocks.1.conv2``, ...) are stable: per-layer overrides and
reports are keyed by them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import data as _data
from .data import Dataset
from .training import evaluate, train

__all__ = [
    "ZOO_VERSION",
    "Recipe",
    "names",
    "build",
    "get",
    "dataset_for",
    "recipe",
    "meta",
    "Classifier",
    "ResidualBlock1d",
]

# Bump when an architecture changes without a recipe change, to invalidate cached weights.
ZOO_VERSION = "1"


# ----------------------------------------------------------------------------------------------
# Architectures
# ----------------------------------------------------------------------------------------------


class Classifier(nn.Module):
    """``classifier(features(x))``: two Sequentials, so layer names read ``features.3``."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ResidualBlock1d(nn.Module):
    """Basic ResNet block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    The shortcut is the identity, or a strided 1x1 conv + BN when the shape changes.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(out_ch)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv1d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(out_ch)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv1d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm1d(out_ch)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(y + shortcut)


class ResNet1d(nn.Module):
    """stem conv → residual blocks → global average pool → linear."""

    def __init__(self, widths: tuple[int, ...], strides: tuple[int, ...], num_classes: int):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_act_1d(1, widths[0], 5))
        blocks, ch = [], widths[0]
        for w, s in zip(widths, strides, strict=True):
            blocks.append(ResidualBlock1d(ch, w, s))
            ch = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.blocks(self.stem(x)))))


def _conv_bn_act_1d(
    cin: int,
    cout: int,
    k: int,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] = nn.ReLU,
) -> list[nn.Module]:
    conv = nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm1d(cout), act()]


def _digits_cnn() -> nn.Module:
    # 1x8x8 -> 16x8x8 -> 32x8x8 -> pool 32x4x4 -> 32x4x4 -> GAP 32 -> 10. First conv keeps its
    # bias so that BN folding of an existing bias is exercised.
    features = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=True), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
    )  # fmt: skip
    classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(32, 10))
    return Classifier(features, classifier)


def _mnist1d_cnn() -> nn.Module:
    # 1x40 -> 32x40 -> 32x40 -> pool 32x20 -> 48x20 -> pool 48x10 -> 48x10 -> pool 48x5 -> 10.
    # Flatten keeps the position information that MNIST-1D's templates carry.
    features = nn.Sequential(
        *_conv_bn_act_1d(1, 32, 5), *_conv_bn_act_1d(32, 32, 3), nn.MaxPool1d(2),
        *_conv_bn_act_1d(32, 48, 3), nn.MaxPool1d(2),
        *_conv_bn_act_1d(48, 48, 3), nn.MaxPool1d(2),
    )  # fmt: skip
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(48 * 5, 10))
    return Classifier(features, classifier)


def _mnist1d_mlp() -> nn.Module:
    features = nn.Sequential(
        nn.Flatten(), nn.Linear(40, 128), nn.ReLU(), nn.Dropout(0.1),
        nn.Linear(128, 128), nn.ReLU(),
    )  # fmt: skip
    return Classifier(features, nn.Sequential(nn.Linear(128, 10)))


def _mnist1d_dscnn() -> nn.Module:
    # KWS-style depthwise-separable CNN: strided stem, then (depthwise 3 + pointwise 1) blocks
    # with ReLU6, average pooling, linear head.
    features = nn.Sequential(
        *_conv_bn_act_1d(1, 32, 5, stride=2, act=nn.ReLU6),              # 32x20
        *_conv_bn_act_1d(32, 32, 3, groups=32, act=nn.ReLU6),            # dw
        *_conv_bn_act_1d(32, 48, 1, act=nn.ReLU6),                       # pw 48x20
        *_conv_bn_act_1d(48, 48, 3, stride=2, groups=48, act=nn.ReLU6),  # dw 48x10
        *_conv_bn_act_1d(48, 64, 1, act=nn.ReLU6),                       # pw 64x10
        *_conv_bn_act_1d(64, 64, 3, groups=64, act=nn.ReLU6),            # dw
        *_conv_bn_act_1d(64, 64, 1, act=nn.ReLU6),                       # pw 64x10
        nn.AvgPool1d(2),                                                 # 64x5
    )  # fmt: skip
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 5, 10))
    return Classifier(features, classifier)


def _mnist1d_resnet() -> nn.Module:
    return ResNet1d(widths=(24, 32, 48), strides=(1, 2, 2), num_classes=10)


# ----------------------------------------------------------------------------------------------
# Recipes
# ----------------------------------------------------------------------------------------------


class RecurrentKWS(nn.Module):
    """A keyword spotter as people write it: ``nn.GRU`` / ``nn.LSTM`` over the MFCC frames
    (batch_first), the last step's output into a linear head. Streams frame by frame in C
    (``<name>_reset`` / ``<name>_step``)."""

    def __init__(self, rnn: type[nn.Module], features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.rnn = rnn(features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


def _gru_kws() -> nn.Module:
    """GRU(10 -> 32) + Linear(32 -> 12) over 49 MFCC frames: 4.6k parameters."""
    return RecurrentKWS(nn.GRU, 10, 32, 12)


def _lstm_kws() -> nn.Module:
    """LSTM(10 -> 32) + Linear(32 -> 12) over 49 MFCC frames: 6.0k parameters."""
    return RecurrentKWS(nn.LSTM, 10, 32, 12)


@dataclass(frozen=True)
class Recipe:
    """How a zoo model is trained; every field but the floor is part of the cache key.

    ``min_test_acc`` is the documented floor the tests assert on the float model.
    """

    dataset: str
    epochs: int
    lr: float
    batch_size: int = 64
    weight_decay: float = 0.0
    seed: int = 0
    optimizer: str = "adam"
    schedule: str = "cosine"
    num_threads: int = 1
    min_test_acc: float = 0.0


_MODELS: dict[str, tuple[Callable[[], nn.Module], Recipe]] = {
    # Measured float test accuracy (ZOO_VERSION 1, torch 2.13 CPU, 1 thread) in the comments;
    # the floors leave room for other CPUs/BLAS builds giving slightly different weights.
    "digits_cnn": (  # 14.5k params, 0.986
        _digits_cnn,
        Recipe("digits", epochs=30, lr=3e-3, min_test_acc=0.97),
    ),
    "mnist1d_cnn": (  # 17.5k params, 0.988
        _mnist1d_cnn,
        Recipe("mnist1d", epochs=30, lr=3e-3, min_test_acc=0.95),
    ),
    "mnist1d_mlp": (  # 23.1k params, 0.675 (MLPs are weak on MNIST-1D by design)
        _mnist1d_mlp,
        Recipe("mnist1d", epochs=60, lr=2e-3, min_test_acc=0.60),
    ),
    "mnist1d_dscnn": (  # 13.2k params, 0.965
        _mnist1d_dscnn,
        Recipe("mnist1d", epochs=30, lr=3e-3, min_test_acc=0.92),
    ),
    "mnist1d_resnet": (  # 23.9k params, 0.991
        _mnist1d_resnet,
        Recipe("mnist1d", epochs=30, lr=3e-3, min_test_acc=0.95),
    ),
}

# Architectures people deploy (MLPerf Tiny, MobileNetV3, recurrent and attention models): kept
# apart from the five core models above, which the broad test suites iterate over.
_ARCHITECTURES: dict[str, tuple[Callable[[], nn.Module], Recipe]] = {
    # -- activations and squeeze-excitation --

    # -- transformer --

    # -- recurrent --
    # Measured float test accuracy (torch 2.13 CPU, 1 thread) and training CPU time:
    "gru_kws": (  # 4.6k params, 0.964, 10 s
        _gru_kws,
        Recipe("speech_commands", epochs=14, lr=1e-2, min_test_acc=0.93),
    ),
    "lstm_kws": (  # 6.0k params, 0.901, 7 s
        _lstm_kws,
        Recipe("speech_commands", epochs=20, lr=2e-2, min_test_acc=0.86),
    ),

    # -- MLPerf Tiny and vision --
}


def names() -> list[str]:
    """Names of the five core reference models (what the broad test suites iterate over)."""
    return list(_MODELS)


def architectures() -> list[str]:
    """Names of the architecture zoo models (MLPerf Tiny, MobileNetV3, recurrent, attention)."""
    return list(_ARCHITECTURES)


def _entry(name: str) -> tuple[Callable[[], nn.Module], Recipe]:
    entry = _MODELS.get(name) or _ARCHITECTURES.get(name)
    if entry is None:
        raise ValueError(
            f"unknown zoo model {name!r}; choose one of {names() + architectures()}"
        )
    return entry


def _check_name(name: str) -> None:
    _entry(name)


def build(name: str) -> nn.Module:
    """The untrained architecture (deterministic init: seeded with the recipe's seed)."""
    builder, rec = _entry(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(rec.seed)
        return builder()


def recipe(name: str) -> Recipe:
    """The training recipe of a zoo model (its accuracy floor included)."""
    return _entry(name)[1]


def dataset_for(name: str) -> Dataset:
    """The dataset a zoo model is trained and evaluated on."""
    return _data.load(recipe(name).dataset)


# ----------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------


def _cache_key(name: str) -> str:
    training = dataclasses.asdict(recipe(name))
    del training["min_test_acc"]  # a test floor, not part of how the weights are made
    spec = {"name": name, "version": ZOO_VERSION, "recipe": training}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _cache_paths(name: str) -> tuple[Path, Path, Path]:
    stem = _data.cache_dir() / "zoo" / f"{name}-{_cache_key(name)}"
    return stem.with_suffix(".npz"), stem.with_suffix(".json"), stem.with_suffix(".lock")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock (POSIX flock); a no-op where fcntl does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _load_weights(model: nn.Module, path: Path) -> bool:
    """Load a cached state_dict into ``model``; False if missing, unreadable or mismatched."""
    arrays = _data.load_npz(path) if path.exists() else None
    if arrays is None or set(arrays) != set(model.state_dict()):
        return False
    state = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        return False
    return True


def _save_weights(model: nn.Module, path: Path) -> None:
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    _data.save_npz_atomic(path, arrays)


def meta(name: str) -> dict | None:
    """Metadata of the cached trained model (test accuracy, training time, ...), if cached."""
    _, meta_path, _ = _cache_paths(name)
    try:
        return json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None


def _train_and_cache(name: str, ds: Dataset, progress: bool) -> nn.Module:
    rec = recipe(name)
    model = build(name)
    if progress:
        print(f"intquant.zoo: training {name} (not cached yet) ...", file=sys.stderr, flush=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    history = train(
        model,
        ds,
        epochs=rec.epochs,
        lr=rec.lr,
        batch_size=rec.batch_size,
        seed=rec.seed,
        weight_decay=rec.weight_decay,
        optimizer=rec.optimizer,
        schedule=rec.schedule,
        num_threads=rec.num_threads,
        progress=progress,
        desc=name,
    )
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    weights_path, meta_path, _ = _cache_paths(name)
    _save_weights(model, weights_path)
    info = {
        "name": name,
        "version": ZOO_VERSION,
        "recipe": dataclasses.asdict(rec),
        "params": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(seconds, 2),
        "train_cpu_seconds": round(cpu_seconds, 2),  # wall time is noisy on a shared machine
        "train_acc": history["train_acc"],
        "final_loss": history["loss"][-1],
        "test_acc": evaluate(model, ds.x_test, ds.y_test),
        "torch": torch.__version__,
    }
    _data.write_text_atomic(meta_path, json.dumps(info, indent=2) + "\n")
    if progress:
        print(
            f"intquant.zoo: {name} trained in {seconds:.1f} s, test accuracy "
            f"{info['test_acc']:.4f}",
            file=sys.stderr,
            flush=True,
        )
    return model


def get(
    name: str, train_if_missing: bool = True, progress: bool = True
) -> tuple[nn.Module, Dataset]:
    """(trained model in eval mode, its dataset); trains and caches the model if needed."""
    _check_name(name)
    ds = dataset_for(name)
    weights_path, _, lock_path = _cache_paths(name)
    model = build(name)
    if not _load_weights(model, weights_path):
        if not train_if_missing:
            raise FileNotFoundError(
                f"zoo model {name!r} is not cached in {weights_path.parent}; call "
                "zoo.get(name, train_if_missing=True) to train it (takes under a minute)"
            )
        with _file_lock(lock_path):
            # Another process may have trained it while we waited for the lock.
            if not _load_weights(model, weights_path):
                model = _train_and_cache(name, ds, progress)
    return model.eval(), ds


def clear_cache(name: str) -> None:
    """Remove the cached weights and metadata of a model (forces retraining)."""
    weights_path, meta_path, _ = _cache_paths(name)
    for p in (weights_path, meta_path):
        if p.exists():
            os.unlink(p)
