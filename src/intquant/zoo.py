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

import numpy as np
import torch
import torch.nn.functional as F
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


# -- activations and squeeze-excitation: MobileNetV3-small, as torchvision writes it ----------


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: the nearest multiple of ``divisor``, never below 90 %."""
    n = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return n + divisor if n < 0.9 * v else n


class SqueezeExcitation(nn.Module):
    """torchvision's SqueezeExcitation: x · hardsigmoid(fc2(relu(fc1(avgpool(x))))), the gate
    (N, C, 1, 1) broadcast over H and W."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.relu(self.fc1(self.avgpool(x)))))
        return scale * x


def _conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.Hardswish) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV3's bneck: [1x1 expand] → depthwise k×k → [squeeze-excitation] → 1x1
    project, ReLU or Hardswish, the input added back when the shape allows."""

    def __init__(self, cin: int, k: int, expand: int, cout: int, se: bool,
                 act: type[nn.Module], stride: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expand != cin:
            layers.append(_conv_bn_act(cin, expand, 1, act=act))
        layers.append(_conv_bn_act(expand, expand, k, stride, groups=expand, act=act))
        if se:
            layers.append(SqueezeExcitation(expand, _make_divisible(expand // 4)))
        layers.append(_conv_bn_act(expand, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.use_res_connect else y


class MobileNetV3(nn.Module):
    """features (stem, bnecks, last 1x1 conv) → global average pool → Linear, Hardswish,
    Dropout, Linear: torchvision's MobileNetV3 layout and module names."""

    def __init__(self, bnecks: list[tuple], stem: int, last: int, hidden: int,
                 num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_act(1, stem, 3, stride=2)]
        cin = stem
        for k, expand, cout, se, act, stride in bnecks:
            layers.append(InvertedResidual(cin, k, expand, cout, se, act, stride))
            cin = cout
        layers.append(_conv_bn_act(cin, last, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(last, hidden), nn.Hardswish(),
                                        nn.Dropout(0.2), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _mobilenet_v3_small() -> nn.Module:
    # MobileNetV3-small scaled to 1x16x16 digits: the first five bnecks of the paper's table
    # (kernel, expansion, out, SE, activation, stride) with narrower expansions.
    # 16x16 -> stem s2 8x8 -> 8x8 (SE) -> 4x4 -> 4x4 (+) -> 2x2 (SE) -> 2x2 (SE, +) -> 10.
    relu, hs = nn.ReLU, nn.Hardswish
    bnecks = [(3, 16, 16, True, relu, 1), (3, 48, 24, False, relu, 2),
              (3, 56, 24, False, relu, 1), (5, 64, 32, True, hs, 2),
              (5, 96, 32, True, hs, 1)]
    return MobileNetV3(bnecks, stem=16, last=128, hidden=64, num_classes=10)


def _digits_prelu_cnn() -> nn.Module:
    # digits_cnn with learned slopes: 1x8x8 -> 16x8x8 -> 24x8x8 -> pool 24x4x4 -> 32x4x4 -> GAP
    # 32 -> 32 -> 10; PReLU per channel after each conv, one shared PReLU in the head.
    features = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.PReLU(16),
        nn.Conv2d(16, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24), nn.PReLU(24),
        nn.MaxPool2d(2),
        nn.Conv2d(24, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.PReLU(32),
        nn.AdaptiveAvgPool2d(1),
    )  # fmt: skip
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(32, 32), nn.PReLU(), nn.Linear(32, 10))
    return Classifier(features, classifier)
# -- transformer (reach-transformer): a tiny transformer encoder and a TCN, quantized as written --


class TinyTransformer(nn.Module):
    """MNIST-1D as 10 tokens: a strided conv patch embedding (32 channels), a learned positional
    embedding, one ``nn.TransformerEncoderLayer`` (4 heads, ReLU feed-forward 64, pre-norm), a
    final LayerNorm, the mean over tokens and a linear head."""

    def __init__(self, dim: int = 32, tokens: int = 10, heads: int = 4, ff: int = 64) -> None:
        super().__init__()
        self.embed = nn.Conv1d(1, dim, 8, stride=4, padding=2)
        self.pos = nn.Parameter(torch.randn(tokens, dim) * 0.1)
        self.encoder = nn.TransformerEncoderLayer(dim, heads, ff, dropout=0.0, batch_first=True,
                                                  norm_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).transpose(1, 2) + self.pos  # (N, tokens, dim)
        return self.head(self.norm(self.encoder(t)).mean(dim=1))


class TemporalBlock(nn.Module):
    """Two causal dilated convs (each padded both sides, the future chomped: the classic TCN
    ``Chomp1d``) with ReLUs, and a residual add."""

    def __init__(self, channels: int, dilation: int, kernel: int = 3) -> None:
        super().__init__()
        self.chomp = (kernel - 1) * dilation
        self.conv1 = nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=self.chomp)
        self.conv2 = nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=self.chomp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x)[:, :, : -self.chomp])
        return torch.relu(x + torch.relu(self.conv2(h)[:, :, : -self.chomp]))


class TCN(nn.Module):
    """A temporal convolutional network: 1x1 stem, causal blocks of two convs with dilations 1..8
    (receptive field 61 >= 40 steps), the last time step ``x[:, :, -1]`` and a linear head."""

    def __init__(self, channels: int = 20) -> None:
        super().__init__()
        self.stem = nn.Conv1d(1, channels, 1)
        self.blocks = nn.Sequential(*(TemporalBlock(channels, d) for d in (1, 2, 4, 8)))
        self.head = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(torch.relu(self.stem(x)))[:, :, -1])


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

# -- reach-vision: the MLPerf Tiny architectures and a U-Net --------------------------------------
# Written the way their reference implementations are (MLPerf Tiny v1.x, Keras), at input sizes
# the offline datasets have: 49x10 MFCCs for the DS-CNN, 8x8 digits for the image models. The
# two reconstruction models (FC autoencoder, U-Net denoiser) train with MSE: see
# ``_RECONSTRUCTION`` and ``reconstruction_pairs``.


def _conv_bn_relu_2d(cin: int, cout: int, k, stride=1, padding=None, groups: int = 1):
    padding = (k // 2 if isinstance(k, int) else tuple(v // 2 for v in k)) if padding is None \
        else padding
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU()]


class DSCNN(nn.Module):
    """MLPerf Tiny keyword spotting DS-CNN: conv (10, 4)/2 → 4 × (depthwise 3x3 + pointwise)
    → average pool → linear; input (N, 49, 10) MFCC frames, reshaped to one channel as the
    reference's Keras ``Reshape`` does."""

    def __init__(self, channels: int = 64, classes: int = 12):
        super().__init__()
        layers = _conv_bn_relu_2d(1, channels, (10, 4), stride=2, padding=(5, 1))
        layers.append(nn.Dropout(0.2))
        for _ in range(4):
            layers += _conv_bn_relu_2d(channels, channels, 3, groups=channels)
            layers += _conv_bn_relu_2d(channels, channels, 1)
        layers += [nn.Dropout(0.4), nn.AdaptiveAvgPool2d(1)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels, classes))

    def forward(self, x):
        return self.classifier(self.features(x.unsqueeze(1)))


def _mobilenet_v1(alpha: float = 0.25, classes: int = 10, stem_stride: int = 1) -> nn.Module:
    """MobileNetV1 (13 depthwise-separable blocks, width multiplier ``alpha``) as in MLPerf
    Tiny visual wake words; the stem keeps stride 1 on 8x8 inputs (96x96 in the benchmark)."""
    def c(n: int) -> int:
        return max(8, int(n * alpha))

    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5,
            (1024, 2), (1024, 1)]
    layers = _conv_bn_relu_2d(1, c(32), 3, stride=stem_stride)
    cin = c(32)
    for cout, stride in plan:
        layers += _conv_bn_relu_2d(cin, cin, 3, stride=stride, groups=cin)
        layers += _conv_bn_relu_2d(cin, c(cout), 1)
        cin = c(cout)
    layers.append(nn.AdaptiveAvgPool2d(1))
    return Classifier(nn.Sequential(*layers), nn.Sequential(nn.Flatten(), nn.Linear(cin, classes)))


class ResNet8Block(nn.Module):
    """MLPerf Tiny ResNet-8 stack: conv-BN-ReLU, conv-BN, + shortcut (1x1 conv when strided),
    ReLU after the add."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride) if stride != 1 or cin != cout \
            else nn.Identity()

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + self.shortcut(x))


def _resnet8(classes: int = 10) -> nn.Module:
    features = nn.Sequential(*_conv_bn_relu_2d(1, 16, 3), ResNet8Block(16, 16, 1),
                             ResNet8Block(16, 32, 2), ResNet8Block(32, 64, 2),
                             nn.AdaptiveAvgPool2d(1))
    return Classifier(features, nn.Sequential(nn.Flatten(), nn.Linear(64, classes)))


def _fc_autoencoder(features: int = 64, hidden: int = 128, bottleneck: int = 8) -> nn.Module:
    """MLPerf Tiny anomaly detection autoencoder: 4 × (Dense 128, BN, ReLU), Dense 8 (BN, ReLU),
    4 × (Dense 128, BN, ReLU), Dense back to the input (640 log-mel features there; 64 pixels
    here)."""
    def dense(i: int, o: int) -> list[nn.Module]:
        return [nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU()]

    layers: list[nn.Module] = [nn.Flatten()]
    dims = [features] + [hidden] * 4 + [bottleneck] + [hidden] * 4
    for i, o in zip(dims, dims[1:], strict=False):
        layers += dense(i, o)
    layers.append(nn.Linear(hidden, features))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """A two-level U-Net as people write it: conv blocks, max-pool down, one transposed-conv and
    one nearest-upsample path up, skip connections by channel concat; 1x8x8 in and out."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.enc1 = nn.Sequential(*_conv_bn_relu_2d(1, c, 3), *_conv_bn_relu_2d(c, c, 3))
        self.enc2 = nn.Sequential(*_conv_bn_relu_2d(c, 2 * c, 3))
        self.bottom = nn.Sequential(*_conv_bn_relu_2d(2 * c, 4 * c, 3))
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2)
        self.dec2 = nn.Sequential(*_conv_bn_relu_2d(4 * c, 2 * c, 3))
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec1 = nn.Sequential(*_conv_bn_relu_2d(3 * c, c, 3))
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottom(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.head(d1)


# Reconstruction models: trained with MSE towards ``reconstruction_pairs``' targets.
_RECONSTRUCTION = {"fc_autoencoder": "autoencode", "unet_denoise": "denoise"}
DENOISE_SIGMA = 0.3


def reconstruction_pairs(name: str, x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(model input, target) of a reconstruction zoo model for images ``x`` (N, 1, 8, 8):
    the autoencoder reproduces its input (flattened); the U-Net removes Gaussian noise of std
    DENOISE_SIGMA drawn from ``seed`` (deterministic)."""
    x = np.asarray(x, np.float32)
    if _RECONSTRUCTION[name] == "autoencode":
        return x, x.reshape(len(x), -1)
    noise = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    return (x + DENOISE_SIGMA * noise).astype(np.float32), x


def snr_db(y: np.ndarray, target: np.ndarray) -> float:
    """10·log10(Σ target² / Σ (y − target)²): reconstruction quality of one batch."""
    t = np.asarray(target, np.float64)
    err = np.asarray(y, np.float64).reshape(t.shape) - t
    return float(10 * np.log10(np.sum(t * t) / max(np.sum(err * err), 1e-30)))


def _train_reconstruction(name: str, model: nn.Module, ds: Dataset, rec: Recipe) -> dict:
    """MSE training, deterministic like ``training.train`` (seeded, fixed thread count, cosine
    learning rate); fresh noise each epoch for the denoiser. Returns the metadata fields."""
    from .training import _cosine_lr, _deterministic, _make_optimizer, _torch_threads

    n = len(ds.x_train)
    total_steps = rec.epochs * -(-n // rec.batch_size)
    step = 0
    with torch.random.fork_rng(devices=[]), _deterministic(), _torch_threads(rec.num_threads):
        torch.manual_seed(rec.seed)
        shuffle = torch.Generator().manual_seed(rec.seed)
        opt = _make_optimizer(model, rec.optimizer, rec.lr, rec.weight_decay)
        for epoch in range(rec.epochs):
            xi, yt = (torch.as_tensor(a) for a in reconstruction_pairs(
                name, ds.x_train, seed=rec.seed + 1 + epoch))
            model.train()
            order = torch.randperm(n, generator=shuffle)
            for start in range(0, n, rec.batch_size):
                idx = order[start:start + rec.batch_size]
                for group in opt.param_groups:
                    group["lr"] = _cosine_lr(rec.lr, step, total_steps)
                loss = F.mse_loss(model(xi[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
    model.eval()
    xt, tt = reconstruction_pairs(name, ds.x_test)
    with torch.no_grad():
        y = model(torch.as_tensor(xt)).numpy()
    return {"final_loss": float(loss.detach()), "test_snr_db": snr_db(y, tt)}


# Architectures people deploy (MLPerf Tiny, MobileNetV3, recurrent and attention models): kept
# apart from the five core models above, which the broad test suites iterate over.
_ARCHITECTURES: dict[str, tuple[Callable[[], nn.Module], Recipe]] = {
    # -- activations and squeeze-excitation --
    "mobilenet_v3_small": (  # 41.6k params, 0.981 on digits16; ~20 s CPU (1 thread)
        _mobilenet_v3_small,
        Recipe("digits16", epochs=30, lr=3e-3, min_test_acc=0.95),
    ),
    "digits_prelu_cnn": (  # 12.1k params, 0.978; ~8 s CPU (1 thread)
        _digits_prelu_cnn,
        Recipe("digits", epochs=30, lr=3e-3, min_test_acc=0.95),
    ),

    # -- transformer --
    "mnist1d_transformer": (  # 9.5k params, 0.903 (10.6 s CPU to train)
        TinyTransformer,
        Recipe("mnist1d", epochs=25, lr=3e-3, min_test_acc=0.85),
    ),
    "mnist1d_tcn": (  # 10.0k params, 0.742 (22.8 s CPU; last-step readout, no pooling)
        TCN,
        Recipe("mnist1d", epochs=25, lr=3e-3, min_test_acc=0.68),
    ),

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
    # Measured (torch 2.13 CPU, 1 thread): params, float test accuracy or reconstruction SNR,
    # training CPU seconds.
    "kws_dscnn": (  # 23.2k, 0.941, 26 s
        DSCNN, Recipe("speech_commands", epochs=6, lr=3e-3, min_test_acc=0.85)),
    "vww_mobilenet_v1": (  # 215.5k, 0.878 (overfits 1437 8x8 digits: train 0.999), 24 s
        _mobilenet_v1, Recipe("digits", epochs=30, lr=3e-3, min_test_acc=0.82)),
    "ic_resnet8": (  # 77.7k, 0.986, 7 s
        _resnet8, Recipe("digits", epochs=20, lr=3e-3, min_test_acc=0.95)),
    "fc_autoencoder": (  # 119.9k, SNR 11.4 dB, 4 s
        _fc_autoencoder, Recipe("digits", epochs=40, lr=3e-3)),
    "unet_denoise": (  # 59.4k, SNR 11.1 dB from noisy inputs at 4.2 dB, 9 s
        UNet, Recipe("digits", epochs=30, lr=3e-3)),
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
    if name in _RECONSTRUCTION:
        return _cache_reconstruction(name, model, ds, rec, start, cpu_start)
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


def _cache_reconstruction(name: str, model: nn.Module, ds: Dataset, rec: Recipe, start: float,
                          cpu_start: float) -> nn.Module:
    """Train a reconstruction model (MSE) and cache it with its test SNR instead of accuracy."""
    info = {"name": name, "version": ZOO_VERSION, "recipe": dataclasses.asdict(rec),
            "params": sum(p.numel() for p in model.parameters()),
            **_train_reconstruction(name, model, ds, rec)}
    info["train_seconds"] = round(time.perf_counter() - start, 2)
    info["train_cpu_seconds"] = round(time.process_time() - cpu_start, 2)
    info["torch"] = torch.__version__
    weights_path, meta_path, _ = _cache_paths(name)
    _save_weights(model, weights_path)
    _data.write_text_atomic(meta_path, json.dumps(info, indent=2) + "\n")
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
