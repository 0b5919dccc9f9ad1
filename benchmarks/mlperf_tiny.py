"""MLPerf-Tiny-like networks for the C back-end benchmark (layer shapes of the reference models).

The MLPerf Tiny v1.0 reference networks, written as PyTorch modules with their layer shapes:

- ``kws_dscnn``: keyword spotting DS-CNN (ARM ML-KWS "DS-CNN small"): 49x10 MFCC input,
  conv 10x4 stride 2 to 64 channels, four depthwise 3x3 + pointwise 64 blocks, average pool,
  12 classes. ~2.7 M MACs.
- ``vww_mobilenet``: visual wake words MobileNetV1 0.25 at 96x96x3, 2 classes. ~7.5 M MACs.
- ``ic_resnet8``: image classification ResNet-8 (CIFAR-10, 32x32x3), three residual stacks of
  16/32/64 channels with 1x1 shortcuts. ~12.5 M MACs.
- ``ad_autoencoder``: anomaly detection FC autoencoder 640-128-128-128-128-8-128-...-640.

Same-padding of TensorFlow is replaced by symmetric padding with the same output sizes. Weights
are PyTorch's default initialisation with BatchNorm statistics randomised (so folding is not a
no-op), calibrated on N(0, 1) inputs: this benchmark measures cost, not accuracy; the integer
arithmetic per MAC and per output does not depend on trained values.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _bn_relu(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.ReLU()]


def kws_dscnn() -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(1, 64, (10, 4), stride=2, padding=(5, 1)), *_bn_relu(64)]
    for _ in range(4):
        layers += [nn.Conv2d(64, 64, 3, padding=1, groups=64), *_bn_relu(64)]
        layers += [nn.Conv2d(64, 64, 1), *_bn_relu(64)]
    layers += [nn.AvgPool2d((25, 5)), nn.Flatten(), nn.Linear(64, 12)]
    return nn.Sequential(*layers)


def vww_mobilenet(alpha: float = 0.25) -> nn.Module:
    def ch(c: int) -> int:
        return int(c * alpha)

    layers: list[nn.Module] = [nn.Conv2d(3, ch(32), 3, stride=2, padding=1), *_bn_relu(ch(32))]
    cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    cfg += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    cin = ch(32)
    for cout, s in cfg:
        layers += [nn.Conv2d(cin, cin, 3, stride=s, padding=1, groups=cin), *_bn_relu(cin)]
        layers += [nn.Conv2d(cin, ch(cout), 1), *_bn_relu(ch(cout))]
        cin = ch(cout)
    layers += [nn.AvgPool2d(3), nn.Flatten(), nn.Linear(cin, 2)]
    return nn.Sequential(*layers)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = nn.Conv2d(cin, cout, 1, stride=stride) if stride != 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        s = x if self.short is None else self.short(x)
        return torch.relu(y + s)


class _ResNet8(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), *_bn_relu(16))
        blocks = [_ResBlock(16, 16, 1), _ResBlock(16, 32, 2), _ResBlock(32, 64, 2)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AvgPool2d(8), nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def ic_resnet8() -> nn.Module:
    return _ResNet8()


def ad_autoencoder() -> nn.Module:
    dims = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640]
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers += [nn.BatchNorm1d(dims[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers)


MODELS = {
    "kws_dscnn": (kws_dscnn, (1, 49, 10)),
    "vww_mobilenet": (vww_mobilenet, (3, 96, 96)),
    "ic_resnet8": (ic_resnet8, (3, 32, 32)),
    "ad_autoencoder": (ad_autoencoder, (640,)),
}


def build(name: str, seed: int = 0, calib: int = 64) -> tuple[nn.Module, np.ndarray]:
    """The model in eval mode (BatchNorm statistics randomised) and N(0, 1) calibration data."""
    make, shape = MODELS[name]
    torch.manual_seed(seed)
    model = make()
    gen = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=gen))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=gen))
    model.eval()
    x = np.random.default_rng(seed).standard_normal((calib, *shape)).astype(np.float32)
    return model, x
