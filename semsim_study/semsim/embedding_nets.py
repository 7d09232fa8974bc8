"""Embedding networks for SemSim, by name: a body that maps an image to a flat feature vector.

The official SemSim code uses a CIFAR-style ResNet-18 (3x3 stride-1 stem, no max-pool, widths
64-512) with its classifier replaced by the identity, so the 512-d pooled feature is the
embedding; the supplementary names ResNet-50. Both are here for the paper profile, randomly
initialised as in the official code. The embedded profile needs something that trains in
about a second per split on a CPU core, hence ``tinyconv16`` (three conv-BN-ReLU layers, a
stride-2 stem, global average pooling; 24k parameters); the classifier-grid ResNets of
``semsim_study.classifiers.backbones`` (``resnet20``, ``resnet8``) are available in between.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..classifiers import backbones
from ..errors import ConfigError


class CifarResNet18(nn.Module):
    """ResNet-18 for 32 px images: BasicBlocks [2, 2, 2, 2], widths 64/128/256/512."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages, in_ch = [], width
        for i in range(4):
            out_ch, stride = width * 2**i, 1 if i == 0 else 2
            down = None
            if stride != 1 or in_ch != out_ch:
                down = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))
            block = backbones.BasicBlock
            stages.append(nn.Sequential(block(in_ch, out_ch, stride, down), block(out_ch, out_ch)))
            in_ch = out_ch
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class TinyConv(nn.Module):
    """Three conv-BN-ReLU layers (stride-2 stem, two max-pools), global average pool: 4w dims."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.out_dim = 4 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _GridResNet(nn.Module):
    """A CIFAR ResNet of the classifier grid, used up to its pooled features (no fc)."""

    def __init__(self, name: str):
        super().__init__()
        net = backbones.build(name, 1, 32)
        net.fc = nn.Identity()
        self.net = net
        self.out_dim = net.layer3[-1].conv2.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


class _TorchvisionResNet50(nn.Module):
    """torchvision's ResNet-50 (random initialisation) with ``fc`` the identity: 2048 dims."""

    def __init__(self):
        super().__init__()
        import torchvision.models as tvm

        net = tvm.resnet50(weights=None)
        net.fc = nn.Identity()
        self.net = net
        self.out_dim = 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


BACKBONES: dict[str, Callable[[], nn.Module]] = {
    "resnet18-cifar": CifarResNet18,
    "resnet50": _TorchvisionResNet50,
    "resnet20": lambda: _GridResNet("resnet20"),
    "resnet8": lambda: _GridResNet("resnet8"),
    "tinyconv16": lambda: TinyConv(16),
    "tinyconv8": lambda: TinyConv(8),
}


STANDARDISE_EPS = 0.05  # keeps a flat image's spread from dividing by zero


class EmbeddingNet(nn.Module):
    """A backbone body; ``forward`` gives raw features, ``embed`` the L2-normalised embedding.

    SemSim compares normalised embeddings in training and in scoring alike (the official code
    normalises only inside its training loss and scores raw features).

    ``channel_weights=True`` adds one positive weight per feature (stored as its logarithm, 0 at
    initialisation, so the net starts as the plain body): the recipe ``trainable:
    channel_weights`` learns only these, over a body kept at its initialisation, as LPIPS learns
    channel weights over fixed features.

    ``standardise=True`` gives every (normalised) input image zero mean and unit spread over all
    its pixels before the body, as the simulated crowd's eyes do: a reconstruction that is
    darker or washed out (Inverting Gradients' cosine loss often gives one) is not for that
    reason further from its original, and a new domain's overall brightness and contrast do not
    move its embeddings.
    """

    def __init__(self, backbone: str, channel_weights: bool = False, standardise: bool = False):
        super().__init__()
        if backbone not in BACKBONES:
            raise ConfigError(f"unknown SemSim backbone {backbone!r}; valid: {', '.join(sorted(BACKBONES))}")
        self.backbone = backbone
        self.standardise = bool(standardise)
        self.body = BACKBONES[backbone]()
        self.out_dim = int(self.body.out_dim)
        self.log_channel_weights = nn.Parameter(torch.zeros(self.out_dim)) if channel_weights else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardise:
            flat = x.reshape(len(x), -1)
            x = (x - flat.mean(1).view(-1, 1, 1, 1)) / (flat.std(1).view(-1, 1, 1, 1) + STANDARDISE_EPS)
        features = self.body(x)
        if self.log_channel_weights is None:
            return features
        return features * self.log_channel_weights.exp()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self(x), p=2, dim=1)


def build(backbone: str, channel_weights: bool = False, standardise: bool = False) -> EmbeddingNet:
    """A freshly initialised embedding net (initialisation follows the torch seed in force)."""
    return EmbeddingNet(backbone, channel_weights, standardise)
