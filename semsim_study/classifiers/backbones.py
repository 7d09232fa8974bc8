"""Classifier backbones of the study, by name.

The paper's grid uses ResNet20-4 and ConvNet (32 px), and ResNet-50/152 and DenseNet for the
larger-image datasets; DLG's sigmoid LeNet is here for the attack tests and for users who
want the classic DLG setting. Small-width variants (``resnet20``, ``resnet8``,
``convnet16``, ``convnet8``, ``convnet4``) keep the embedded profile within minutes on a CPU.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (same layer names, so state dicts match), defined here
    because importing torchvision.models costs two seconds in every stage process."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """CIFAR-style ResNet (3x3 stride-1 stem, no max-pool, three stages, global average pool).

    ``resnet20-4`` of the paper's code: BasicBlocks [3, 3, 3], widths 64/128/256.
    """

    def __init__(self, num_classes: int, width: int = 16, blocks: tuple[int, ...] = (3, 3, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        layers, in_ch = [], width
        for i, n in enumerate(blocks):
            out_ch, stride = width * 2**i, 1 if i == 0 else 2
            stage = []
            for j in range(n):
                down = None
                if j == 0 and (stride != 1 or in_ch != out_ch):
                    down = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))
                stage.append(BasicBlock(in_ch, out_ch, stride if j == 0 else 1, down))
                in_ch = out_ch
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _conv_bn(i: int, cin: int, cout: int) -> list[tuple[str, nn.Module]]:
    return [(f"conv{i}", nn.Conv2d(cin, cout, 3, padding=1)), (f"bn{i}", nn.BatchNorm2d(cout)), (f"relu{i}", nn.ReLU())]


class ConvNet(nn.Sequential):
    """Inverting Gradients' ConvNetBN: eight conv-BN-ReLU, two MaxPool(3), Linear(36w).

    ``inversefed`` lists conv6 twice in an OrderedDict, which keeps one: eight convs, as here.
    The 36w head fits only 32x32 inputs (32 -> 10 -> 3 after the pools).
    """

    def __init__(self, num_classes: int, width: int = 64):
        w = width
        layers = (_conv_bn(0, 3, w) + _conv_bn(1, w, 2 * w) + _conv_bn(2, 2 * w, 2 * w) + _conv_bn(3, 2 * w, 4 * w)
                  + _conv_bn(4, 4 * w, 4 * w) + _conv_bn(5, 4 * w, 4 * w) + [("pool0", nn.MaxPool2d(3))]
                  + _conv_bn(6, 4 * w, 4 * w) + _conv_bn(7, 4 * w, 4 * w) + [("pool1", nn.MaxPool2d(3))]
                  + [("flatten", nn.Flatten()), ("linear", nn.Linear(36 * w, num_classes))])
        super().__init__(OrderedDict(layers))


class LeNetDLG(nn.Module):
    """The sigmoid LeNet of DLG (Zhu et al. 2019): three 5x5 convs, no BN, weights U(-0.5, 0.5)."""

    def __init__(self, num_classes: int, image_size: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 12, 5, padding=2, stride=2), nn.Sigmoid(),
            nn.Conv2d(12, 12, 5, padding=2, stride=2), nn.Sigmoid(),
            nn.Conv2d(12, 12, 5, padding=2, stride=1), nn.Sigmoid(),
        )
        side = (image_size + 3) // 4
        self.fc = nn.Linear(12 * side * side, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.uniform_(m.weight, -0.5, 0.5)
                nn.init.uniform_(m.bias, -0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.body(x), 1))


def _torchvision(name: str) -> Callable[[int, int], nn.Module]:
    def make(num_classes: int, image_size: int) -> nn.Module:
        import torchvision.models as tvm

        return getattr(tvm, name)(weights=None, num_classes=num_classes)

    return make


def _only_32(make: Callable[[int], nn.Module], name: str) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, image_size: int) -> nn.Module:
        if image_size != 32:
            raise ConfigError(f"backbone {name!r} has a head for 32x32 inputs only, got {image_size}x{image_size}; "
                              f"use a ResNet or DenseNet for larger images")
        return make(num_classes)

    return build


BACKBONES: dict[str, Callable[[int, int], nn.Module]] = {
    "resnet20-4": lambda c, s: CifarResNet(c, width=64),
    "resnet20-2": lambda c, s: CifarResNet(c, width=32),
    "resnet20": lambda c, s: CifarResNet(c, width=16),
    "resnet8": lambda c, s: CifarResNet(c, width=16, blocks=(1, 1, 1)),
    "convnet": _only_32(lambda c: ConvNet(c, 64), "convnet"),
    "convnet32": _only_32(lambda c: ConvNet(c, 32), "convnet32"),
    "convnet16": _only_32(lambda c: ConvNet(c, 16), "convnet16"),
    "convnet8": _only_32(lambda c: ConvNet(c, 8), "convnet8"),
    "convnet4": _only_32(lambda c: ConvNet(c, 4), "convnet4"),
    "lenet": lambda c, s: LeNetDLG(c, s),
    "resnet18": _torchvision("resnet18"),
    "resnet50": _torchvision("resnet50"),
    "resnet152": _torchvision("resnet152"),
    "densenet121": _torchvision("densenet121"),
}


def build(name: str, num_classes: int, image_size: int) -> nn.Module:
    """A freshly initialised backbone (initialisation follows the torch seed in force)."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; valid backbones: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](num_classes, image_size)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
