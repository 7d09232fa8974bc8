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

With ``semsim.training.selection_confidence`` c > 0, the best epoch must also beat the untrained
network by more than chance: a paired bootstrap over the held-back originals (their pairs share
reconstructions, so originals are the unit) of the best epoch's gain over epoch 0; unless its
lower one-sided c bound is above zero, the untrained network is kept. Why: the gains a few epochs
buy on the training domains are a few tenths of a point, the size of the resampling noise, and a
gain that small did not carry over to the inner held-out domains of the nested search
(``recipe_search.py``); declining it costs nothing where the untrained network is the better one.

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
from .triplets import per_original, ranking_accuracy

KEY = "semsim.training.selection_fraction"
CONFIDENCE_KEY = "semsim.training.selection_confidence"
TEST_RESAMPLES = 1000


def _share(params: Mapping, key: str, what: str, off: str) -> float:
    value = P.get(params, key, (int, float), 0.0)
    if not (np.isfinite(value) and 0.0 <= value < 1.0):
        raise ConfigError(f"params: '{key}' ({what}) must lie in [0, 1) (0 {off}), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SelectionConfig:
    fraction: float = 0.0    # share of each training dataset's originals held back; 0 = no selection
    confidence: float = 0.0  # > 0: the best epoch must beat epoch 0 at this one-sided confidence; 0 = no test


def from_params(params: Mapping) -> SelectionConfig:
    """``semsim.training.selection_fraction`` and ``selection_confidence``, each in [0, 1) (0 or absent: off)."""
    return SelectionConfig(
        fraction=_share(params, KEY, "the share of each training dataset's originals held back for model selection",
                        "disables selection"),
        confidence=_share(params, CONFIDENCE_KEY, "how sure model selection must be that the best epoch beats the "
                          "untrained network", "= no test"))


def gain_bound(wins: np.ndarray, wins_untrained: np.ndarray, pairs: np.ndarray, confidence: float,
               rng: np.random.Generator, resamples: int = TEST_RESAMPLES) -> tuple[float, float]:
    """(gain, lower bound): the accuracy gain of one scoring over another on the same pairs, and
    the lower one-sided ``confidence`` bound of its paired bootstrap over originals."""
    total = int(pairs.sum())
    if not total:
        return float("nan"), float("nan")
    diff = np.asarray(wins, float) - np.asarray(wins_untrained, float)
    idx = rng.integers(0, len(pairs), size=(resamples, len(pairs)))
    boot = diff[idx].sum(1) / np.maximum(pairs[idx].sum(1), 1)
    return float(diff.sum() / total), float(np.quantile(boot, 1.0 - confidence))


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
    confidence: float = 0.0  # > 0: the best epoch must beat epoch 0 at this one-sided bootstrap confidence
    rng: np.random.Generator | None = None  # the bootstrap's draws (seeded by the caller)

    def __post_init__(self):
        self.by_epoch: list[float | None] = []  # the criterion's accuracy (matched pairs, or all pairs)
        self.all_pairs_by_epoch: list[float | None] = []
        self.best_epoch: int | None = None
        self.best_accuracy = -np.inf
        self.best_state: dict | None = None
        self.untrained_state: dict | None = None
        self.wins_by_epoch: list[np.ndarray] = []  # the criterion's wins per original, for the test
        self.test_pairs = np.zeros(0, dtype=np.int64)  # ... and its pairs per original
        self.test: dict | None = None  # the outcome of the gain test (confidence > 0 only)
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
        return self._accuracies_of(self.distances(net))

    def _accuracies_of(self, scores: Sequence[float]) -> tuple[float, float]:
        every = ranking_accuracy(self.items, scores)[0]
        if self.criterion == "matched":
            return ranking_accuracy(self.items, scores, self.psnr, self.within_db)[0], every
        return every, every

    def _criterion_wins(self, scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        within = {"psnr": self.psnr, "within_db": self.within_db} if self.criterion == "matched" else {}
        return per_original(self.items, scores, **within)

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
        if self.confidence > 0:  # the test needs each epoch's wins per original, and the untrained weights
            scores = self.distances(net)
            acc, every = self._accuracies_of(scores)
            wins, self.test_pairs = self._criterion_wins(scores)  # the pairs are the same every epoch
            self.wins_by_epoch.append(wins)
            if epoch == 0:
                self.untrained_state = copy.deepcopy(net.state_dict())
        else:
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
        if self.confidence > 0 and self.best_epoch != 0 and self.untrained_state is not None:
            self._test_gain()
        if self.best_epoch != last_epoch:
            net.load_state_dict(self.best_state)
        return int(self.best_epoch)

    def _test_gain(self) -> None:
        """Keep the untrained network unless the best epoch's gain over it is beyond chance."""
        if self.rng is None:
            raise ValueError("a selection gain test needs a seeded rng")
        gain, lower = gain_bound(self.wins_by_epoch[self.best_epoch], self.wins_by_epoch[0], self.test_pairs,
                                 self.confidence, self.rng)
        passed = bool(lower > 0)
        self.test = {"confidence": self.confidence, "resamples": TEST_RESAMPLES, "best_epoch": self.best_epoch,
                     "gain": round(gain, 6), "lower_bound": round(lower, 6), "passed": passed}
        if not passed:
            self.best_epoch, self.best_accuracy, self.best_state = 0, self.by_epoch[0], self.untrained_state
