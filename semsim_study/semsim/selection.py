"""Model selection on held-back originals of the training domains (our addition to the paper).

A seeded share of the training split's *originals* is held back, per training dataset, with
every annotated reconstruction of them: neither SemSim nor the CE baseline trains on them.
After each epoch (and once before the first, epoch 0 = the untrained network) the triplet
accuracy on that selection set is measured on its *PSNR-matched* pairs: (recognised,
unrecognised) pairs of reconstructions of one held-back original whose PSNRs differ by at most
``semsim.matched_db`` dB (``matched.py``), the share where the recognised one is closer to the
original. Matched pairs are where a metric must see more than pixel distance, which is what
SemSim is for; on all pairs an epoch that merely follows PSNR would win. A selection set
without a matched pair falls back to all its pairs (the card and the record say which). The
weights of the best epoch are kept (ties: the earliest), so training never returns a network
worse than its initialisation on the training domains' held-back originals. The all-pairs
accuracy is recorded next to it.

Only training items are ever held back: the held-out dataset / attack / backbone is split off
before (``items.split``) and never takes part in any choice. Which originals are held back
depends only on the seed and the dataset, so the same originals are held back in every split.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from .. import seeding
from .. import params as P
from ..errors import ConfigError
from ..torch_helpers import normalize
from . import preprocess
from .items import Item
from .loss import distance
from .triplets import ranking_accuracy

KEY = "semsim.training.selection_fraction"


def from_params(params: Mapping) -> float:
    """``semsim.training.selection_fraction`` in [0, 1); 0 (or absent) = no selection, keep the last epoch."""
    value = P.get(params, KEY, (int, float), 0.0)
    if not (np.isfinite(value) and 0.0 <= value < 1.0):
        raise ConfigError(f"params: '{KEY}' (the share of each training dataset's originals held back for model "
                          f"selection) must lie in [0, 1) (0 disables selection), got {value!r}")
    return float(value)


def hold_back(items: Sequence[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """(fit items, selection items): per dataset, round(fraction x originals) originals, at least one
    when fraction > 0 and never all of them, drawn by a generator seeded by (seed, dataset)."""
    if fraction <= 0:
        return list(items), []
    keys: dict[str, set[str]] = defaultdict(set)
    for it in items:
        keys[it.dataset].add(it.image_id)
    chosen: set[tuple[str, str]] = set()
    for ds in sorted(keys):
        ids = sorted(keys[ds])
        n = min(len(ids) - 1, max(1, int(round(fraction * len(ids)))))
        if n <= 0:
            continue
        rng = seeding.rng(seed, b"selection", ds)
        chosen.update((ds, ids[i]) for i in sorted(rng.choice(len(ids), size=n, replace=False)))
    fit = [it for it in items if it.original_key not in chosen]
    held = [it for it in items if it.original_key in chosen]
    return fit, held


@dataclass
class Selector:
    """Scores the selection set with a net and keeps the best epoch's weights (ties: the earliest)."""

    items: list[Item]
    originals: np.ndarray        # uint8 NHWC, one per selection item (its original)
    reconstructions: np.ndarray  # uint8 NHWC, one per selection item
    mean: Sequence[float]
    std: Sequence[float]
    device: str = "cpu"
    chunk: int = 256
    psnr: Sequence[float] | None = None  # one per selection item (vs its original); None: no matching
    within_db: float = 2.0

    def __post_init__(self):
        self.by_epoch: list[float | None] = []  # the criterion's accuracy (matched pairs, or all pairs)
        self.all_pairs_by_epoch: list[float | None] = []
        self.best_epoch: int | None = None
        self.best_accuracy = -np.inf
        self.best_state: dict | None = None
        zeros = [0.0] * len(self.items)
        _, self.pairs = ranking_accuracy(self.items, zeros)
        self.matched_pairs = (ranking_accuracy(self.items, zeros, self.psnr, self.within_db)[1]
                              if self.psnr is not None else 0)

    @property
    def active(self) -> bool:
        return self.pairs > 0

    @property
    def criterion(self) -> str:
        """``matched`` (PSNR-matched pairs), ``all_pairs`` (the fallback) or ``none`` (no pair: last epoch)."""
        return "matched" if self.matched_pairs else ("all_pairs" if self.active else "none")

    @torch.no_grad()
    def distances(self, net: torch.nn.Module) -> list[float]:
        was_training = net.training
        net.eval()
        scores = []
        for i in range(0, len(self.items), self.chunk):
            x = self._input(self.originals[i : i + self.chunk])
            y = self._input(self.reconstructions[i : i + self.chunk])
            scores += distance(net(x), net(y)).tolist()
        net.train(was_training)
        return scores

    def accuracies(self, net: torch.nn.Module) -> tuple[float, float]:
        """(criterion accuracy, all-pairs accuracy) of ``net`` on the selection set."""
        scores = self.distances(net)
        every = ranking_accuracy(self.items, scores)[0]
        if self.criterion == "matched":
            return ranking_accuracy(self.items, scores, self.psnr, self.within_db)[0], every
        return every, every

    def accuracy(self, net: torch.nn.Module) -> float:
        """The selection criterion's accuracy of ``net``."""
        return self.accuracies(net)[0]

    def _input(self, images: np.ndarray) -> torch.Tensor:
        return normalize(preprocess.uint8_to_float(images), self.mean, self.std).to(self.device)

    def observe(self, epoch: int, net: torch.nn.Module) -> float | None:
        """Score ``net`` after ``epoch`` epochs (0 = untrained); remember its weights if strictly best."""
        if not self.active:
            self.by_epoch.append(None)
            self.all_pairs_by_epoch.append(None)
            return None
        acc, every = self.accuracies(net)
        self.by_epoch.append(acc)
        self.all_pairs_by_epoch.append(every)
        if acc > self.best_accuracy:
            self.best_accuracy, self.best_epoch = acc, epoch
            self.best_state = copy.deepcopy(net.state_dict())
        return acc

    def restore(self, net: torch.nn.Module, last_epoch: int) -> int:
        """Load the best weights into ``net``; returns the selected epoch (``last_epoch`` when inactive)."""
        if not self.active or self.best_state is None:
            return last_epoch
        if self.best_epoch != last_epoch:
            net.load_state_dict(self.best_state)
        return int(self.best_epoch)
