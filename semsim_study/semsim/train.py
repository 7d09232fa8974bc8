"""Training SemSim (triplet loss) and its cross-entropy baseline on the same images.

Optimisation as the official code's "bi-conservative" strategy: SGD lr 0.05, momentum 0.9,
Nesterov, weight decay 5e-4, batch 64, learning rate x0.1 at epochs 37, 62 and 87 of 100.
The embedded profile keeps the recipe with fewer epochs and its own milestones (params
``semsim.training``).

Geometry (``semsim.training.geometry``): a random crop (padding 4) and a horizontal flip.
``per_image`` is the official code: every image gets its own, so the anchor, the positive and
the negative of one triplet are shifted against each other by up to 8 px and flipped
independently; the net is then taught that a misaligned copy is "the same", and loses the
pixel-aligned similarity that tells a recognisable reconstruction from one that is not.
``per_triplet`` (the embedded profile) draws one crop offset and one flip per triplet and
applies it to all three images, so they stay aligned; ``none`` turns it off. The CE baseline
sees each image on its own (its loss compares no two images), so it keeps a crop and flip per
image under both ``per_image`` and ``per_triplet``.

Our additions, off when their params are 0 or absent: colour jitter on every image drawn
(``colour``: saturation, hue, greyscale; see ``colour.py``) and model selection on held-back
originals of the training domains (``selection_fraction``; see ``selection.py``); batch norm
with frozen statistics (``batch_norm: frozen``): a net trained with batch statistics scores a
new domain with the running averages of the training domains (colour photos and glyphs, say,
when it scores grey faces), which moves every embedding of that domain; frozen statistics
keep BN a learned scale and shift, as in fine-tuning detectors.

The cross-entropy baseline is the official code's ``--semsim False``: the same backbone,
with a linear classifier on its features, trained over the classes of the official
annotation tree read as an ImageFolder: per original, ``<id>`` (the original and its
recognised reconstructions) and ``-<id>`` (its unrecognised ones; absent when empty). Ties
of the annotators' vote are left out, as in triplet sampling. Only the feature extractor is
kept; its feature distance is scored exactly like SemSim's.

Determinism: the initial weights, the triplets, the batch order and every crop/flip come
from generators seeded by (seed, split, held-out value, which model), so the same params give
the same weights on a CPU. Colour jitter draws from the same generator as the crops/flips.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import augment, seeding
from .. import params as P
from ..errors import ConfigError, DataError
from ..torch_helpers import normalize, resolve_device
from . import colour, embedding_nets, matched, preprocess, selection
from .loss import distance, triplet_loss
from .triplets import TripletSampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SemSimTrainConfig:
    backbone: str
    input_size: int
    normalization: str
    alpha: float
    epochs: int
    batch_size: int
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (37, 62, 87)
    gamma: float = 0.1
    geometry: str = "per_image"
    device: str = "cpu"
    colour: colour.ColourJitter = colour.ColourJitter()
    selection_fraction: float = 0.0
    selection_confidence: float = 0.0
    matched_db: float = 2.0
    batch_norm: str = "batch"
    trainable: str = "all"
    standardise: bool = False

    @property
    def mean_std(self) -> tuple[list[float], list[float]]:
        norm = preprocess.normalization(self.normalization)
        return norm["mean"], norm["std"]

    def optimizer_card(self) -> dict:
        return {"name": "SGD", "lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, "milestones": list(self.milestones), "gamma": self.gamma}


def from_params(params: Mapping) -> SemSimTrainConfig:
    """params.yaml -> SemSimTrainConfig: top-level ``alpha``, ``semsim.model``, ``semsim.training``."""
    alpha = float(P.get(params, "alpha", (int, float)))
    if not alpha > 0:
        raise ConfigError(f"params: 'alpha' (the SemSim triplet margin) must be positive, got {alpha}")
    P.known(params, "semsim", ("device", "threads", "workers", "held_out_attacks", "held_out_backbones", "model", "training",
                               matched.KEY.rsplit(".", 1)[1]))
    P.known(params, "semsim.model", ("backbone", "input_size", "normalization", "standardise"))
    P.known(params, "semsim.training", ("epochs", "milestones", "gamma", "batch_size", "lr", "momentum", "nesterov",
                                        "weight_decay", colour.KEY.rsplit(".", 1)[1], selection.KEY.rsplit(".", 1)[1],
                                        selection.CONFIDENCE_KEY.rsplit(".", 1)[1],
                                        "geometry", "crop_flip", "batch_norm", "trainable"))
    backbone = P.choice(params, "semsim.model.backbone", embedding_nets.BACKBONES)
    norm = P.choice(params, "semsim.model.normalization", preprocess.NORMALIZATIONS)
    epochs = P.positive_int(params, "semsim.training.epochs")
    milestones = P.get(params, "semsim.training.milestones", list, [])
    if any(not isinstance(m, int) or isinstance(m, bool) or m <= 0 for m in milestones) or milestones != sorted(milestones):
        raise ConfigError(f"params: 'semsim.training.milestones' must be increasing positive epochs, got {milestones!r}")
    select = selection.from_params(params)
    cfg = SemSimTrainConfig(
        backbone=backbone,
        input_size=P.positive_int(params, "semsim.model.input_size"),
        normalization=norm,
        alpha=alpha,
        epochs=epochs,
        batch_size=P.positive_int(params, "semsim.training.batch_size"),
        lr=P.number(params, "semsim.training.lr", above=0),
        momentum=P.number(params, "semsim.training.momentum", at_least=0, below=1),
        nesterov=bool(P.get(params, "semsim.training.nesterov", bool)),
        weight_decay=P.number(params, "semsim.training.weight_decay", at_least=0),
        milestones=tuple(milestones),
        gamma=P.number(params, "semsim.training.gamma", above=0, at_most=1, default=0.1),
        geometry=_geometry(params),
        device=resolve_device(P.choice(params, "semsim.device", ("auto", "cpu", "cuda"), "cpu"), "semsim.device"),
        colour=colour.from_params(params),
        selection_fraction=select.fraction,
        selection_confidence=select.confidence,
        matched_db=matched.from_params(params),
        batch_norm=P.choice(params, "semsim.training.batch_norm", BATCH_NORM, "batch"),
        trainable=P.choice(params, "semsim.training.trainable", TRAINABLE, "all"),
        standardise=bool(P.get(params, "semsim.model.standardise", bool, False)),
    )
    return cfg


BATCH_NORM = {
    "batch": "batch statistics while training, their running averages when scoring (the official code)",
    "frozen": "running statistics kept at their initial values (mean 0, variance 1), so batch norm is a learned "
              "per-channel scale and shift: the embedding carries no statistics of the training domains to a new one",
}


TRAINABLE = {
    "all": "every weight of the network (the official code)",
    "channel_weights": "one positive weight per embedding feature; the body keeps its initial weights and batch-norm "
                       "statistics, so training starts from the untrained network and can only re-weight its features",
}


GEOMETRIES = {
    "per_triplet": "random crop (padding 4) + horizontal flip, one draw per triplet applied to its anchor, positive "
                   "and negative alike (they stay pixel-aligned); the CE baseline: one per image",
    "per_image": "random crop (padding 4) + horizontal flip, drawn for every image on its own (the official code)",
    "none": "none",
}


def _geometry(params: Mapping) -> str:
    """``semsim.training.geometry``; the old boolean ``crop_flip`` is refused with what replaces it."""
    if "crop_flip" in (P.get(params, "semsim.training", None, None) or {}):
        old = P.get(params, "semsim.training.crop_flip", None)
        hint = {True: "geometry: per_image (the official code's per-image draw)", False: "geometry: none"}.get(old)
        raise ConfigError("params: 'semsim.training.crop_flip' was replaced by 'semsim.training.geometry' "
                          f"(per_triplet | per_image | none); write {hint or 'one of those'} instead of "
                          f"crop_flip: {old!r}, or per_triplet to keep each triplet's images aligned")
    return P.choice(params, "semsim.training.geometry", GEOMETRIES)


def seeds(seed: int, split: str, held_out: str, kind: str) -> tuple[int, np.random.Generator]:
    """Torch seed (initial weights) and a NumPy generator (triplets, order, crops) for one model."""
    key = seeding.key(seed, split, held_out, kind)
    return seeding.torch_seed(key), np.random.default_rng(key)


def lr_at(cfg: SemSimTrainConfig, epoch: int) -> float:
    """The step schedule (torch's MultiStepLR stepped once per epoch): x gamma at each milestone."""
    return cfg.lr * cfg.gamma ** sum(1 for m in cfg.milestones if m <= epoch)


class NesterovSGD:
    """The update of ``torch.optim.SGD`` (momentum without dampening, optional Nesterov, L2 weight
    decay), bit for bit (tests/test_semsim.py steps both and compares the parameters).

    Written out, although torch has it, because building any ``torch.optim`` optimiser imports
    ``torch._dynamo``: 2-3 s in every SemSim stage process on the 2-core build machine, about a
    sixth of an embedded split, paid 11 times by each alpha experiment
    (benchmarks/semsim_optimiser.py measures both; docs/benchmarks.md has the figures).
    """

    def __init__(self, params, lr: float, momentum: float, nesterov: bool, weight_decay: float):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.momentum, self.nesterov, self.weight_decay = lr, momentum, nesterov, weight_decay
        self.velocity: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad.add(p, alpha=self.weight_decay) if self.weight_decay else p.grad
            if self.momentum:
                v = self.velocity[i]
                if v is None:
                    v = self.velocity[i] = g.detach().clone()  # torch starts the buffer at the first gradient
                else:
                    v.mul_(self.momentum).add_(g)
                g = g.add(v, alpha=self.momentum) if self.nesterov else v
            p.add_(g, alpha=-self.lr)


class _Trainer:
    """Shared parts: the net, SGD with the step schedule, the augmented batch tensor."""

    def __init__(self, cfg: SemSimTrainConfig, torch_seed: int, rng: np.random.Generator, head: int = 0):
        self.cfg, self.rng = cfg, rng
        torch.manual_seed(torch_seed)
        self.net = embedding_nets.build(cfg.backbone, cfg.trainable == "channel_weights",
                                        cfg.standardise).to(cfg.device)
        if cfg.trainable == "channel_weights":
            self.net.body.requires_grad_(False)
        self.head = nn.Linear(self.net.out_dim, head).to(cfg.device) if head else None
        params = list(self.net.parameters()) + (list(self.head.parameters()) if self.head else [])
        self.opt = NesterovSGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
        self.mean, self.std = cfg.mean_std

    def start_epoch(self, epoch: int) -> float:
        self.opt.lr = lr_at(self.cfg, epoch)
        self.net.train()
        if self.cfg.trainable == "channel_weights":
            self.net.body.eval()
        elif self.cfg.batch_norm == "frozen":
            for m in self.net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        if self.head is not None:
            self.head.train()
        return self.opt.lr

    def batch(self, images: np.ndarray, groups: int | None = None) -> torch.Tensor:
        """Augmented, normalised input; ``groups``: images sharing one crop/flip (``augment.crop_flip_batch``)."""
        if self.cfg.geometry != "none":
            images = augment.crop_flip_batch(images, self.rng, padding=4, groups=groups)
        x = self.cfg.colour(preprocess.uint8_to_float(images), self.rng)
        return normalize(x, self.mean, self.std).to(self.cfg.device)

    def step(self, loss: torch.Tensor, what: str, epoch: int) -> None:
        if not torch.isfinite(loss):
            raise DataError(f"SemSim {what}: training loss became {loss.item()} in epoch {epoch + 1}; "
                            f"lower semsim.training.lr")
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


class TripletTrainer(_Trainer):
    """SemSim proper: triplets (original, recognised, unrecognised), margin ``alpha``."""

    def __init__(self, cfg: SemSimTrainConfig, sampler: TripletSampler, originals: np.ndarray,
                 reconstructions: np.ndarray, torch_seed: int, rng: np.random.Generator):
        super().__init__(cfg, torch_seed, rng)
        self.sampler, self.originals, self.reconstructions = sampler, originals, reconstructions

    def run_epoch(self, epoch: int) -> dict:
        lr = self.start_epoch(epoch)
        triplets = self.sampler.epoch(self.rng)
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(0, len(triplets), self.cfg.batch_size):
            t = triplets[i : i + self.cfg.batch_size]
            n = len(t)
            x = self.batch(np.concatenate([self.originals[t[:, 0]], self.reconstructions[t[:, 1]],
                                           self.reconstructions[t[:, 2]]]),
                           groups=n if self.cfg.geometry == "per_triplet" else None)
            emb = self.net(x)
            a, p, q = emb[:n], emb[n : 2 * n], emb[2 * n :]
            loss = triplet_loss(a, p, q, self.cfg.alpha)
            self.step(loss, "triplet", epoch)
            with torch.no_grad():
                correct += int((distance(a, p) < distance(a, q)).sum())
            loss_sum += loss.item() * n
            seen += n
        return {"triplet_loss": loss_sum / seen, "triplet_accuracy": correct / seen, "lr": lr}


@dataclass
class CEData:
    images: np.ndarray  # uint8 NHWC at the input size
    labels: np.ndarray
    classes: int
    class_names: list[str] = field(default_factory=list)


def ce_data(sampler: TripletSampler, originals: np.ndarray, reconstructions: np.ndarray) -> CEData:
    """The official ImageFolder classes: ``<id>`` = original + recognised, ``-<id>`` = unrecognised."""
    images, labels, names = [], [], []
    for k_idx, key in enumerate(sampler.originals):
        label = len(names)
        names.append(f"{key[0]}/{key[1]}")
        images.append(originals[k_idx])
        labels.append(label)
        for i in sampler.positives_of(key):
            images.append(reconstructions[i])
            labels.append(label)
        neg = sampler.unrecognised_of(key)
        if len(neg):
            names.append(f"-{key[0]}/{key[1]}")
            for i in neg:
                images.append(reconstructions[i])
                labels.append(len(names) - 1)
    return CEData(np.stack(images), np.array(labels, dtype=np.int64), len(names), names)


class CETrainer(_Trainer):
    """The baseline: cross-entropy over the annotation tree's classes, then feature distance."""

    def __init__(self, cfg: SemSimTrainConfig, data: CEData, torch_seed: int, rng: np.random.Generator):
        super().__init__(cfg, torch_seed, rng, head=data.classes)
        self.data = data

    def run_epoch(self, epoch: int) -> dict:
        self.start_epoch(epoch)
        order = self.rng.permutation(len(self.data.labels))
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(0, len(order), self.cfg.batch_size):
            idx = order[i : i + self.cfg.batch_size]
            x = self.batch(self.data.images[idx])
            y = torch.from_numpy(self.data.labels[idx]).to(self.cfg.device)
            out = self.head(self.net(x))
            loss = F.cross_entropy(out, y)
            self.step(loss, "cross-entropy baseline", epoch)
            correct += int((out.argmax(1) == y).sum())
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
        return {"ce_loss": loss_sum / seen, "ce_accuracy": correct / seen}


def pixels(path, decoded: Mapping | None = None) -> np.ndarray:
    """An image file as ``preprocess.load_rgb`` gives it, from ``decoded`` (path -> those pixels,
    files a stage has already read) when it is there."""
    return decoded[path] if decoded and path in decoded else preprocess.load_rgb(path)


def image_table(paths: Sequence, size: int, cache: dict | None = None,
                decoded: Mapping | None = None) -> np.ndarray:
    """Load image files once each (``cache`` by path) into uint8 NHWC at ``size``; ``decoded``
    as in ``pixels``."""
    cache = {} if cache is None else cache
    out = []
    for path in paths:
        if path not in cache:
            cache[path] = preprocess.resize_uint8(pixels(path, decoded), size)
        out.append(cache[path])
    if not out:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.stack(out)
