"""Triplet sampling as the paper describes it, and the held-out triplet accuracy.

anchor = an original image; positive = one of its reconstructions that annotators recognised
(majority == recognised); negative = one they did not (majority == unrecognised). A tie of
the annotators' votes is neither: such reconstructions are left out of both pools (they still
serve as "other" negatives, below). Unannotated reconstructions are never used.

An original with no recognised reconstruction has no positive and gives no triplet (its
reconstructions can still be another original's fallback negatives). An original with
positives but no unrecognised reconstruction draws its negatives from reconstructions of
*other* originals, as the official code's ``others/`` folder does; we take them from the same
dataset (a harder negative than another domain), else from any dataset.

Each epoch draws a fresh set (per-epoch resampling, from a seeded generator): per anchor,
max(#positives, #negatives) triplets, so that every positive and every negative of it is
used at least once per epoch; the shorter pool is cycled through fresh permutations.
The official code instead makes every image of every folder an anchor, lets a positive be the
anchor itself, and never uses the original as anchor; we follow the paper's wording.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import DataError
from .items import Item


@dataclass(frozen=True)
class SamplerStats:
    originals: int
    anchors: int
    positives: int
    negatives: int
    ties: int
    fallback_anchors: int  # anchors whose negatives come from other originals
    triplets_per_epoch: int


def _draw(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n entries of ``pool``: whole fresh permutations, the last one cut, so each is used evenly."""
    reps = -(-n // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]


class TripletSampler:
    """Triplets over ``items`` (annotated training reconstructions).

    ``epoch(rng)`` returns an int array (T, 3): anchor original index into ``originals``
    (a list of original keys), positive and negative item indexes into ``items``.
    """

    def __init__(self, items: Sequence[Item]):
        self.items = list(items)
        if any(not i.annotated for i in self.items):
            raise ValueError("TripletSampler takes annotated items only")
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for idx, item in enumerate(self.items):
            groups[item.original_key].append(idx)
        self.originals = sorted(groups)
        self._pos, self._neg = {}, {}
        for k in self.originals:
            self._pos[k] = np.array([i for i in groups[k] if self.items[i].label.majority == "recognised"], dtype=np.int64)
            self._neg[k] = np.array([i for i in groups[k] if self.items[i].label.majority == "unrecognised"], dtype=np.int64)
        self.anchors = [k for k in self.originals if len(self._pos[k])]
        if not self.anchors:
            raise DataError("no original has a reconstruction annotators recognised: SemSim has no positive to learn from")
        self._others: dict[tuple[str, str], np.ndarray] = {}
        key_id = {k: n for n, k in enumerate(self.originals)}
        item_key = np.array([key_id[it.original_key] for it in self.items], dtype=np.int64)
        item_ds = np.array([it.dataset for it in self.items])
        for k in self.anchors:
            if len(self._neg[k]):
                continue
            other = item_key != key_id[k]
            same = np.flatnonzero(other & (item_ds == k[0]))
            pool = same if len(same) else np.flatnonzero(other)
            if not len(pool):
                raise DataError(f"original {k[0]}/{k[1]} has no unrecognised reconstruction and there is no other "
                                f"original to take a negative from")
            self._others[k] = pool.astype(np.int64)
        self._anchor_index = {k: self.originals.index(k) for k in self.anchors}

    def negatives_of(self, key: tuple[str, str]) -> np.ndarray:
        """The negative pool of an anchor: its unrecognised reconstructions, else the fallback."""
        return self._neg[key] if len(self._neg[key]) else self._others[key]

    def positives_of(self, key: tuple[str, str]) -> np.ndarray:
        """The recognised reconstructions of an original (empty for a non-anchor)."""
        return self._pos[key]

    def unrecognised_of(self, key: tuple[str, str]) -> np.ndarray:
        """The unrecognised reconstructions of an original (without the fallback pool)."""
        return self._neg[key]

    @property
    def stats(self) -> SamplerStats:
        per_epoch = sum(max(len(self._pos[k]), len(self._neg[k])) for k in self.anchors)
        return SamplerStats(
            originals=len(self.originals), anchors=len(self.anchors),
            positives=sum(len(v) for v in self._pos.values()), negatives=sum(len(v) for v in self._neg.values()),
            ties=sum(1 for i in self.items if i.label.majority == "tie"),
            fallback_anchors=len(self._others), triplets_per_epoch=per_epoch)

    def epoch(self, rng: np.random.Generator) -> np.ndarray:
        parts = []
        for k in self.anchors:
            pos, neg = self._pos[k], self._neg[k]
            n = max(len(pos), len(neg))
            p = _draw(pos, n, rng)
            q = _draw(neg, n, rng) if len(neg) else rng.choice(self._others[k], size=n, replace=True)
            parts.append(np.stack([np.full(n, self._anchor_index[k]), p, q], axis=1))
        triplets = np.concatenate(parts)
        return triplets[rng.permutation(len(triplets))]


def ranking_accuracy(items: Sequence[Item], scores: Sequence[float], psnr: Sequence[float] | None = None,
                     within_db: float | None = None) -> tuple[float, int]:
    """Held-out triplet accuracy: over every (recognised, unrecognised) pair of reconstructions
    of the same original, the fraction where the recognised one has the smaller score (equal
    scores count one half). Deterministic: all pairs, no sampling. (nan, 0) without pairs.

    With ``psnr`` (one value per item, vs its original) and ``within_db``: only the *matched*
    pairs, whose two PSNRs differ by at most ``within_db`` dB (``matched.py``)."""
    wins, pairs = per_original(items, scores, psnr, within_db)
    total = int(pairs.sum())
    return (float(wins.sum()) / total if total else float("nan")), total


def per_original(items: Sequence[Item], scores: Sequence[float], psnr: Sequence[float] | None = None,
                  within_db: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Wins and pairs of each original that has both a recognised and an unrecognised reconstruction
    (and, with ``psnr`` and ``within_db``, at least one matched pair of them)."""
    if (psnr is None) != (within_db is None):
        raise ValueError("matched pairs need both psnr and within_db")
    psnr = [0.0] * len(items) if psnr is None else psnr
    groups: dict[tuple[str, str], tuple[list[tuple[float, float]], list[tuple[float, float]]]] = \
        defaultdict(lambda: ([], []))
    for item, score, db in zip(items, scores, psnr, strict=True):
        if item.annotated and item.label.majority in ("recognised", "unrecognised"):
            groups[item.original_key][item.label.majority == "unrecognised"].append((float(score), float(db)))
    wins, pairs = [], []
    for pos, neg in groups.values():
        if pos and neg:
            p, q = np.asarray(pos), np.asarray(neg)
            keep = np.ones((len(p), len(q)), dtype=bool)
            if within_db is not None:
                keep = np.abs(p[:, 1][:, None] - q[:, 1][None, :]) <= within_db
            if not keep.any():
                continue
            ps, qs = p[:, 0][:, None], q[:, 0][None, :]
            wins.append(float(((ps < qs) & keep).sum() + 0.5 * ((ps == qs) & keep).sum()))
            pairs.append(int(keep.sum()))
    return np.asarray(wins, dtype=float), np.asarray(pairs, dtype=np.int64)


def ranking_accuracy_interval(items: Sequence[Item], scores: Sequence[float], rng: np.random.Generator,
                              resamples: int = 1000, confidence: float = 0.95, psnr: Sequence[float] | None = None,
                              within_db: float | None = None) -> list[float] | None:
    """Percentile bootstrap interval of ``ranking_accuracy``, resampling originals (the pairs of
    one original share its reconstructions, so they are not independent). None without pairs."""
    wins, pairs = per_original(items, scores, psnr, within_db)
    return _bootstrap(pairs, rng, resamples, confidence, lambda idx: wins[idx].sum(1))


def _bootstrap(pairs: np.ndarray, rng: np.random.Generator, resamples: int, confidence: float,
               wins_of) -> list[float] | None:
    """Percentile interval of ``wins_of(idx).sum / pairs[idx].sum`` over ``resamples`` draws of
    originals with replacement (``idx``: draws x originals); the accuracy and the gain intervals
    share it, so the same rng state gives both the same draws. None without pairs."""
    if not len(pairs):
        return None
    idx = rng.integers(0, len(pairs), size=(resamples, len(pairs)))
    stat = wins_of(idx) / np.maximum(pairs[idx].sum(1), 1)
    tail = (1 - confidence) / 2
    return [float(np.quantile(stat, tail)), float(np.quantile(stat, 1 - tail))]


def ranking_gain_interval(items: Sequence[Item], scores: Sequence[float], baseline: Sequence[float],
                          rng: np.random.Generator, resamples: int = 1000, confidence: float = 0.95,
                          psnr: Sequence[float] | None = None, within_db: float | None = None) -> list[float] | None:
    """Paired percentile bootstrap interval of ``ranking_accuracy(scores) - ranking_accuracy(baseline)``.

    Both scorers are resampled with the same originals in each draw, so what the two share (which
    pairs are hard) cancels and the interval is that of the difference, much narrower than the two
    accuracies' own intervals side by side. Given the same ``rng`` state, the draws are those of
    ``ranking_accuracy_interval``. None without pairs."""
    wins, pairs = per_original(items, scores, psnr, within_db)
    base, base_pairs = per_original(items, baseline, psnr, within_db)
    assert np.array_equal(pairs, base_pairs)  # the pairs depend on the labels and PSNRs, not on the scores
    return _bootstrap(pairs, rng, resamples, confidence, lambda idx: wins[idx].sum(1) - base[idx].sum(1))
