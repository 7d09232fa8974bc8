"""Reading the attack stage's (original, reconstruction) pairs, in batches, with clear errors.

Each ``data/attacks/<dataset>/<attack>/index.csv`` names one reconstruction per row, its
un-augmented original and its status; image paths are relative to that attack folder. The
metrics compare every reconstruction with its original (the paper's metrics do the same),
diverged ones included: their row keeps ``status: diverged`` and they stay in their set.

Images are decoded one batch at a time, so memory does not grow with the number of pairs.
A missing or unreadable PNG, or an original and reconstruction of different sizes, stops the
stage with a message that names the file (and the index line that points to it).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..datasets.imaging import decode
from ..errors import DataError

INDEX_COLUMNS = ("item_id", "dataset", "model", "attack", "image_id", "label", "status", "original", "reconstruction")
STATUSES = ("ok", "diverged")


@dataclass(frozen=True)
class Pair:
    item_id: str
    dataset: str
    model: str
    attack: str
    image_id: str
    label: int
    status: str
    original: Path
    reconstruction: Path
    where: str  # "<index.csv>:<line>", for error messages

    @property
    def set_key(self) -> tuple[str, str]:
        return self.model, self.attack


def read_index(attack_dir: str | Path) -> list[Pair]:
    """The pairs one attack folder's ``index.csv`` lists, image paths resolved against it."""
    attack_dir = Path(attack_dir)
    path = attack_dir / "index.csv"
    try:
        fh = open(path, newline="", encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: attack index missing; run the attack stage for this dataset and attack") from None
    pairs = []
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in INDEX_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: header lacks column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            if any(row.get(c) in (None, "") for c in INDEX_COLUMNS):
                empty = [c for c in INDEX_COLUMNS if row.get(c) in (None, "")]
                raise DataError(f"{where}: empty value(s) in {', '.join(empty)}")
            if row["status"] not in STATUSES:
                raise DataError(f"{where}: status {row['status']!r} is not one of {', '.join(STATUSES)}")
            try:
                label = int(row["label"])
            except ValueError:
                raise DataError(f"{where}: label {row['label']!r} is not an integer") from None
            pairs.append(Pair(row["item_id"], row["dataset"], row["model"], row["attack"], row["image_id"], label,
                              row["status"], attack_dir / row["original"], attack_dir / row["reconstruction"], where))
    return pairs


def read_pairs(attacks_root: str | Path, attacks: Sequence[str]) -> list[Pair]:
    """Every pair of one dataset (``data/attacks/<dataset>``), attack by attack, grouped by set.

    The order is stable (attacks in the given order, then models and images in index order),
    so the output tables come out in the same order on every run.
    """
    pairs: list[Pair] = []
    for attack in attacks:
        pairs += read_index(Path(attacks_root) / attack)
    seen: dict[str, str] = {}
    for p in pairs:
        if p.item_id in seen:
            raise DataError(f"{p.where}: item_id {p.item_id!r} already listed at {seen[p.item_id]}")
        seen[p.item_id] = p.where
    order = {key: i for i, key in enumerate(dict.fromkeys(p.set_key for p in pairs))}
    return sorted(pairs, key=lambda p: order[p.set_key])  # stable: index order within a set


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """(original, reconstruction) as uint8 (H, W, 3); DataError naming the file on any problem."""
    ori = np.asarray(decode(pair.original, f"{pair.original} (listed at {pair.where})"))
    rec = np.asarray(decode(pair.reconstruction, f"{pair.reconstruction} (listed at {pair.where})"))
    if ori.shape != rec.shape:
        raise DataError(f"{pair.reconstruction}: size {rec.shape[1]}x{rec.shape[0]} differs from its original "
                        f"{pair.original} ({ori.shape[1]}x{ori.shape[0]}); listed at {pair.where}")
    return ori, rec


def check_images(pairs: Sequence[Pair]) -> None:
    """Decode every listed image once before any metric runs, so a missing or corrupt file
    fails the stage in seconds, naming the file and its index line, not after most sets."""
    for p in pairs:
        load_pair(p)


def load_batch(pairs: Sequence[Pair]) -> tuple[np.ndarray, np.ndarray]:
    """Stacked uint8 (N, H, W, 3) originals and reconstructions; all pairs must share one size."""
    oris, recs = [], []
    for p in pairs:
        ori, rec = load_pair(p)
        if oris and ori.shape != oris[0].shape:
            raise DataError(f"{p.original}: size {ori.shape[1]}x{ori.shape[0]} differs from the other images of "
                            f"this dataset ({oris[0].shape[1]}x{oris[0].shape[0]}, e.g. {pairs[0].original}); "
                            f"listed at {p.where}")
        oris.append(ori)
        recs.append(rec)
    return np.stack(oris), np.stack(recs)


def batches(pairs: Sequence[Pair], size: int) -> Iterator[tuple[Sequence[Pair], np.ndarray, np.ndarray]]:
    for i in range(0, len(pairs), size):
        chunk = pairs[i : i + size]
        yield (chunk, *load_batch(chunk))
