"""The pipeline's own feature network: an offline stand-in for ImageNet-pretrained backbones.

LPIPS needs a pretrained trunk (AlexNet, VGG or SqueezeNet) and FID needs Inception-v3;
their weights cannot be downloaded on the offline build machines. The embedded profile
therefore trains a small convolutional network, inside the pipeline (stage ``features``),
to classify the union of all prepared datasets' classes (half of every dataset's training
split, labels offset so that each dataset keeps its own classes; the other half is the
simulated annotators' own, ``halves.training_half``): supervised classification on a
broad label set, which is what ImageNet pretraining is, at the scale of the embedded domains.
It is not one of the attacked classifiers (own architecture, own seed, all datasets at once),
so no metric shares weights with the models whose reconstructions it scores, nor a single
training image with the observer that stands in for people.

Architecture: ``len(widths)`` stages of 3x3 conv-BN-ReLU (the first at stride 1, the others
at stride 2), then a global average pool and a linear head. Its uses:

- LPIPS, lpips-style: the output of every stage is unit-normalised along channels
  (``x / (||x||_2 + 1e-10)``, as ``lpips.normalize_tensor``), the two images' normalised
  features are subtracted and squared, summed over channels, averaged over space, and the
  layers are summed with uniform weight 1: the ``lpips`` package's ``lpips=False`` formula
  (no learned linear calibration, which would need human judgements of image pairs).
- FID: the global-average-pooled output of the last stage (``widths[-1]`` dimensions).

Inputs are RGB scaled to [-1, 1], as LPIPS feeds its trunks. Training is seeded and runs on
the CPU in about half a minute (cosine learning rate, crop+flip augmentation from
``augment``) with ``features.threads`` torch threads (default 1): float reductions depend on
the thread count, so a fixed count gives the same bytes on every machine, and on a shared
2-core CPU two OpenMP threads were measured 10x slower than one (they spin while the other
core is busy).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .. import atomic, augment, params as P
from .. import seeding
from ..datasets import halves
from ..datasets.standard import PreparedDataset
from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)

WEIGHTS = "feature_net.pt"
CARD = "feature_net.json"
KIND = "pipeline-feature-network"


class FeatureNet(nn.Module):
    """Conv stages whose outputs serve LPIPS and whose pooled last stage serves FID."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (16, 32, 64, 128)):
        super().__init__()
        stages, cin = [], 3
        for i, w in enumerate(widths):
            stages.append(nn.Sequential(nn.Conv2d(cin, w, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                                        nn.BatchNorm2d(w), nn.ReLU(inplace=True)))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(cin, num_classes)

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(pool(self.layers(x)[-1]))


def pool(features: torch.Tensor) -> torch.Tensor:
    return features.mean(dim=(2, 3))


def unit_normalise(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Scale each spatial position's channel vector to unit length (lpips.normalize_tensor)."""
    return x / (torch.sqrt((x * x).sum(dim=1, keepdim=True)) + eps)


def lpips_distance(layers0: Sequence[torch.Tensor], layers1: Sequence[torch.Tensor]) -> torch.Tensor:
    """lpips' ``lpips=False`` formula: per layer, mean over space of the summed squared
    difference of unit-normalised channel vectors; layers summed with weight 1."""
    total = 0
    for a, b in zip(layers0, layers1):
        total = total + (unit_normalise(a) - unit_normalise(b)).pow(2).sum(dim=1).mean(dim=(1, 2))
    return total


def to_input(images: np.ndarray, size: int | None = None) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, S, S) in [0, 1], resized (bilinear) if ``size`` differs."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


@dataclass
class FeatureNetConfig:
    widths: tuple[int, ...] = (16, 32, 64, 128)
    image_size: int = 32
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.05
    threads: int = 1
    momentum: float = 0.9
    weight_decay: float = 5e-4


def from_params(params: Mapping) -> FeatureNetConfig:
    """The ``features`` section of params.yaml."""
    f = P.Section(P.known(params, "features", ("widths", "image_size", "epochs", "batch_size", "lr", "threads")), "features")
    widths = P.get(f, "widths", list)
    if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ConfigError(f"params: 'features.widths' must be a non-empty list of positive integers, got {widths!r}")
    lr = float(P.get(f, "lr", (int, float)))
    if lr <= 0:
        raise ConfigError(f"params: 'features.lr' must be positive, got {lr!r}")
    return FeatureNetConfig(widths=tuple(widths), image_size=P.positive_int(f, "image_size"),
                            epochs=P.positive_int(f, "epochs"), batch_size=P.positive_int(f, "batch_size"), lr=lr,
                            threads=P.positive_int(f, "threads", 1))


def union(datasets: Sequence[PreparedDataset], split: str, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All datasets' images of one split at ``size`` px, labels offset per dataset, and
    class names prefixed by their dataset. Of the training split only the feature network's
    half (``halves.training_half``): the other half is the simulated observer's."""
    xs, ys, names, offset = [], [], [], 0
    for ds in datasets:
        x, y = ds.images(split), ds.labels(split)
        if split == "train":
            keep = halves.training_half(y, "feature_net")
            x, y = x[keep], y[keep]
        if x.shape[1] != size:
            x = (to_input(x, size).mul_(255.0).round_().clamp_(0, 255).byte().permute(0, 2, 3, 1).numpy())
        xs.append(x)
        ys.append(y.astype(np.int64) + offset)
        names += [f"{ds.name}/{c}" for c in ds.class_names]
        offset += ds.num_classes
    return np.concatenate(xs), np.concatenate(ys), names


@torch.no_grad()
def accuracy(model: FeatureNet, x: np.ndarray, y: np.ndarray, batch: int = 512) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((model(to_input(x[i : i + batch]) * 2 - 1).argmax(1).numpy() == y[i : i + batch]).sum())
    return correct / max(1, len(x))


def train(datasets: Sequence[PreparedDataset], cfg: FeatureNetConfig, seed: int) -> tuple[FeatureNet, dict]:
    """Train the feature network on every dataset's training split; returns it and its card."""
    if not datasets:
        raise DataError("feature network: no prepared datasets to train on")
    x, y, classes = union(datasets, "train", cfg.image_size)
    key = seeding.key(seed, b"features")
    torch.manual_seed(seeding.torch_seed(key))
    rng = np.random.default_rng(key)
    model = FeatureNet(len(classes), cfg.widths).to(memory_format=torch.channels_last)  # ~1.3x faster on a CPU
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    aug = augment.Augmentation(crop_flip=True)
    start = time.perf_counter()
    bar = tqdm(total=steps, unit="step", desc="feature network", leave=False, disable=None)
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(x))
        loss_sum = 0.0
        for i in range(0, len(x), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb = (to_input(aug.batch(x[idx], rng)) * 2 - 1).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(xb), torch.from_numpy(y[idx]))
            if not torch.isfinite(loss):
                raise DataError(f"feature network: loss became {loss.item()} in epoch {epoch + 1}; lower features.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            bar.update(1)
        log.info("feature network epoch %d/%d: loss %.3f", epoch + 1, cfg.epochs, loss_sum / len(x))
    bar.close()
    model = model.to(memory_format=torch.contiguous_format).eval()
    seconds = time.perf_counter() - start
    xt, yt, _ = union(datasets, "test", cfg.image_size)
    card = {
        "kind": KIND,
        "trained": True,
        "offline_stand_in": True,
        "stands_in_for": "ImageNet-pretrained LPIPS trunks (AlexNet/VGG/SqueezeNet) and pytorch-fid's Inception-v3",
        "attacked_classifier": False,
        "objective": "classification of the union of all prepared datasets' classes (the feature network's half of each training split)",
        "datasets": [ds.name for ds in datasets],
        "num_classes": len(classes),
        "classes": classes,
        "widths": list(cfg.widths),
        "image_size": cfg.image_size,
        "input_scale": "[-1, 1]",
        "lpips": {"layers": [f"stage{i + 1}" for i in range(len(cfg.widths))], "channels": list(cfg.widths),
                  "formula": "sum over layers (weight 1) of spatial mean of sum over channels of squared "
                             "difference of unit-normalised features (lpips' lpips=False formula)"},
        "fid": {"features": f"global average pool of stage{len(cfg.widths)}", "dims": cfg.widths[-1]},
        "epochs": cfg.epochs, "batch_size": cfg.batch_size,
        "optimizer": {"name": "SGD", "lr": cfg.lr, "momentum": cfg.momentum, "nesterov": True,
                      "weight_decay": cfg.weight_decay, "schedule": "cosine per step"},
        "augmentation": aug.describe(),
        "torch_threads": cfg.threads,
        "seed": seed,
        "train_images": int(len(x)),
        "train_accuracy": round(accuracy(model, x, y), 6),
        "test_accuracy": round(accuracy(model, xt, yt), 6),
        "chance_accuracy": round(1.0 / len(classes), 6),
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch_version": torch.__version__.split("+")[0],
    }
    log.info("feature network: %d classes from %d datasets, test accuracy %.3f, %.1f s", len(classes),
             len(datasets), card["test_accuracy"], seconds)
    return model, card


def load(folder: str | Path) -> tuple[FeatureNet, dict]:
    """The trained feature network from ``models/features`` (weights only) and its card."""
    folder = Path(folder)
    card = atomic.read_json(folder / CARD, "feature network card missing; run the features stage (dvc repro features)")
    if card.get("kind") != KIND or not card.get("trained", True):
        raise DataError(f"{folder / CARD}: holds no trained feature network (metrics.features was not 'pipeline' "
                        f"when the features stage ran); rerun it: dvc repro features")
    model = FeatureNet(int(card["num_classes"]), card["widths"])
    path = folder / WEIGHTS
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except FileNotFoundError:
        raise DataError(f"{path}: feature network weights missing; rerun the features stage") from None
    except Exception as exc:  # corrupt file, unsafe pickle, or shapes that do not fit the card
        raise DataError(f"{path}: not loadable as the feature network of {folder / CARD} ({exc})") from None
    return model.eval(), card
