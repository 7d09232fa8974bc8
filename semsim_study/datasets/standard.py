"""The standard on-disk form of a prepared dataset: the contract between `prepare` and later stages.

A prepared dataset folder holds

- ``train_images.npy`` / ``test_images.npy``: uint8 arrays (N, H, W, 3);
- ``train_labels.npy`` / ``test_labels.npy``: int64 arrays (N,), values in [0, num_classes);
- ``meta.json``: name, class names, annotation protocol, image size, per-channel mean/std of
  the training split (for normalisation), counts, where the images came from, and whether the
  domain is an offline stand-in for one of the paper's datasets;
- ``attack_subset.csv``: the seeded, class-stratified images the attack stage reconstructs
  (``image_id,split,index,label,class_name``), with a PNG of each in ``attack_subset/``.

``.npy`` files (not ``.npz``, whose zip headers carry timestamps) keep the folder byte-identical
across runs with the same seed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from .. import atomic
from ..errors import DataError
from .imaging import save_png

FORMAT_VERSION = 1
SPLITS = ("train", "test")
PROTOCOLS = ("A", "B")
SUBSET_COLUMNS = ("image_id", "split", "index", "label", "class_name")


@dataclass
class PreparedDataset:
    name: str
    class_names: list[str]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    protocol: str = "A"
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def images(self, split: str) -> np.ndarray:
        return {"train": self.train_images, "test": self.test_images}[split]

    def labels(self, split: str) -> np.ndarray:
        return {"train": self.train_labels, "test": self.test_labels}[split]

    def validate(self) -> None:
        """Fail loudly if a builder produced something later stages cannot rely on."""
        if self.protocol not in PROTOCOLS:
            raise DataError(f"{self.name}: protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if len(set(self.class_names)) != len(self.class_names):
            raise DataError(f"{self.name}: class names are not unique")
        for split in SPLITS:
            x, y = self.images(split), self.labels(split)
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3 or x.shape[1] != x.shape[2]:
                raise DataError(f"{self.name}/{split}: images must be uint8 (N, S, S, 3), got {x.dtype} {x.shape}")
            if x.shape[1:] != self.train_images.shape[1:]:
                raise DataError(f"{self.name}/{split}: image shape {x.shape[1:]} differs from train")
            if y.shape != (len(x),):
                raise DataError(f"{self.name}/{split}: {len(y)} labels for {len(x)} images")
            if len(y) == 0:
                raise DataError(f"{self.name}/{split}: split is empty")
            if y.min() < 0 or y.max() >= self.num_classes:
                raise DataError(f"{self.name}/{split}: labels outside [0, {self.num_classes})")
        missing = sorted(set(range(self.num_classes)) - set(np.unique(self.train_labels).tolist()))
        if missing:
            names = ", ".join(self.class_names[i] for i in missing[:5])
            raise DataError(f"{self.name}/train: {len(missing)} classes have no image (e.g. {names})")

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training split in [0, 1], accumulated in float64."""
        x = self.train_images.reshape(-1, 3)
        total = np.zeros(3)
        total_sq = np.zeros(3)
        for start in range(0, len(x), 1 << 20):
            chunk = x[start : start + (1 << 20)].astype(np.float64) / 255.0
            total += chunk.sum(0)
            total_sq += (chunk**2).sum(0)
        mean = total / len(x)
        std = np.sqrt(np.maximum(total_sq / len(x) - mean**2, 1e-12))
        return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


class Source(NamedTuple):
    """One ``prepare.<dataset>.source``: how to build it, the keys of its section it reads beyond
    ``COMMON_KEYS`` (any other key there is a typo, refused before the build), and what one class
    is (annotators are asked "which digit", "the same person": recorded in meta.json)."""

    build: Callable[[str, Mapping, np.random.Generator], PreparedDataset]
    keys: tuple[str, ...]
    subject: str = "class"


COMMON_KEYS = ("source", "protocol", "image_size", "attack_split", "attack_images")


def stratified_split(labels: np.ndarray, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-class random split; every class with 2+ items keeps at least one on each side."""
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.extend(idx[:n_test].tolist())
        train.extend(idx[n_test:].tolist())
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(test, dtype=np.int64))


def stratified_subset(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Pick ``n`` indices spread as evenly over classes as possible (round-robin, seeded).

    Classes are visited in a random order and each contributes its next random image in turn,
    so with fewer images than classes every image has a different class. The indices come in
    selection order, so any prefix of the subset is itself stratified (the attack stage may
    use only the first few).
    """
    if n > len(labels):
        raise DataError(f"attack subset of {n} images asked from a split of {len(labels)}")
    classes = rng.permutation(np.unique(labels))
    pools = {int(c): list(rng.permutation(np.flatnonzero(labels == c))) for c in classes}
    chosen: list[int] = []
    while len(chosen) < n:
        for c in classes:
            pool = pools[int(c)]
            if pool and len(chosen) < n:
                chosen.append(int(pool.pop(0)))
    return np.array(chosen, dtype=np.int64)


def image_id(split: str, index: int) -> str:
    return f"{split}-{index:06d}"


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def save(ds: PreparedDataset, out_dir: str | Path, subset_split: str, subset_indices: np.ndarray, extra_meta: dict | None = None) -> None:
    """Write the dataset atomically: the folder appears complete or not at all."""
    ds.validate()
    mean, std = ds.channel_stats()
    meta = {
        "format_version": FORMAT_VERSION,
        "name": ds.name,
        "protocol": ds.protocol,
        "image_size": ds.image_size,
        "num_classes": ds.num_classes,
        "class_names": list(ds.class_names),
        "counts": {s: int(len(ds.labels(s))) for s in SPLITS},
        "mean": mean,
        "std": std,
        "source": ds.source,
        "attack_subset": {"split": subset_split, "size": int(len(subset_indices))},
        **(extra_meta or {}),
    }
    labels = ds.labels(subset_split)
    images = ds.images(subset_split)
    with atomic.build_dir(out_dir) as tmp:
        for split in SPLITS:
            (tmp / f"{split}_images.npy").write_bytes(_npy_bytes(ds.images(split)))
            (tmp / f"{split}_labels.npy").write_bytes(_npy_bytes(ds.labels(split).astype(np.int64)))
        (tmp / "meta.json").write_text(atomic.dumps_json(meta), encoding="utf-8")
        (tmp / "attack_subset").mkdir()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(SUBSET_COLUMNS)
        for i in subset_indices.tolist():
            iid = image_id(subset_split, i)
            label = int(labels[i])
            writer.writerow([iid, subset_split, i, label, ds.class_names[label]])
            save_png(images[i], tmp / "attack_subset" / f"{iid}.png")
        (tmp / "attack_subset.csv").write_text(buf.getvalue(), encoding="utf-8")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: missing; rerun the prepare stage (dvc repro)") from None
    except ValueError as exc:
        raise DataError(f"{path}: not a valid .npy array ({exc})") from None


def load(path: str | Path) -> PreparedDataset:
    path = Path(path)
    meta = atomic.read_json(path / "meta.json", f"missing; is {path} a prepared dataset?")
    ds = PreparedDataset(
        name=meta["name"],
        class_names=list(meta["class_names"]),
        train_images=_load_npy(path / "train_images.npy"),
        train_labels=_load_npy(path / "train_labels.npy"),
        test_images=_load_npy(path / "test_images.npy"),
        test_labels=_load_npy(path / "test_labels.npy"),
        protocol=meta["protocol"],
        source=meta.get("source", {}),
    )
    ds.validate()
    return ds


def load_attack_subset(path: str | Path) -> list[dict]:
    """Rows of attack_subset.csv with typed index and label."""
    csv_path = Path(path) / "attack_subset.csv"
    try:
        with open(csv_path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise DataError(f"{csv_path}: missing; rerun the prepare stage") from None
    for line, row in enumerate(rows, start=2):
        if tuple(row.keys())[: len(SUBSET_COLUMNS)] != SUBSET_COLUMNS:
            raise DataError(f"{csv_path}: header must start with {','.join(SUBSET_COLUMNS)}")
        try:
            row["index"] = int(row["index"])
            row["label"] = int(row["label"])
        except (TypeError, ValueError):
            raise DataError(f"{csv_path}, line {line}: index and label must be integers") from None
    return rows
