"""The reconstructions SemSim learns from and scores, joined with their human labels.

Inputs (files are the interface):
- ``data/attacks/<ds>/<attack>/index.csv``: one row per reconstruction, with the paths of the
  un-augmented original and of the reconstruction, relative to that attack folder;
- ``data/annotations/<ds>/items.csv``: per reconstruction, ``annotators``, ``recognised_rate``
  and ``majority`` (recognised | unrecognised | tie); unannotated items have 0 annotators.

The splits hold out one value of one key: the dataset (leave-one-dataset-out, the paper's
protocol), the attack, or the attacked classifier's backbone (the model id before its first
'_'). Training uses only annotated items outside the held-out value; every reconstruction
with the held-out value is scored, annotated or not.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .. import threat
from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("dataset", "attack", "backbone")
MAJORITIES = ("recognised", "unrecognised", "tie")
INDEX_COLUMNS = ("item_id", "dataset", "model", "attack", "image_id", "status", "original", "reconstruction")
ITEMS_COLUMNS = ("item_id", "dataset", "model", "attack", "image_id", "annotators", "recognised_rate", "majority",
                 "source")


@dataclass(frozen=True)
class Label:
    annotators: int
    recognised_rate: float | None
    majority: str | None  # None when nobody annotated the item
    source: str | None


@dataclass(frozen=True)
class Item:
    item_id: str
    dataset: str
    model: str
    attack: str
    image_id: str
    status: str
    original: Path
    reconstruction: Path
    label: Label

    @property
    def backbone(self) -> str:
        """The attacked classifier's backbone: the model id up to its first '_'."""
        return self.model.split("_", 1)[0]

    @property
    def original_key(self) -> tuple[str, str]:
        """Reconstructions of one original image (any model, any attack) share this key."""
        return (self.dataset, self.image_id)

    @property
    def annotated(self) -> bool:
        return self.label.annotators > 0 and self.label.majority is not None

    def key(self, split: str) -> str:
        if split == "dataset":
            return self.dataset
        if split == "attack":
            return threat.method(self.attack)  # every budget of a held-out attack is held out
        if split == "backbone":
            return self.backbone
        raise ConfigError(f"unknown SemSim split {split!r}; valid: {', '.join(SPLITS)}")


def csv_rows(path: Path, required: Sequence[str], missing: str) -> Iterable[tuple[int, dict]]:
    """(line number, row) of a CSV file with the ``required`` columns; a DataError names file and line."""
    try:
        fh = open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found ({missing})") from None
    with fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        absent = [c for c in required if c not in header]
        if absent:
            raise DataError(f"{path}: missing column(s) {', '.join(absent)} (header: {','.join(header) or 'empty'})")
        for n, row in enumerate(reader, start=2):
            if None in row or any(v is None for v in row.values()):
                raise DataError(f"{path}:{n}: wrong number of fields")
            yield n, row


def read_labels(path: str | Path, dataset: str) -> dict[str, Label]:
    """items.csv of one dataset -> {item_id: Label}, every value checked."""
    path = Path(path)
    labels: dict[str, Label] = {}
    for n, row in csv_rows(path, ITEMS_COLUMNS, "run the annotate stage"):
        where = f"{path}:{n}"
        item_id = row["item_id"]
        if row["dataset"] != dataset:
            raise DataError(f"{where}: dataset {row['dataset']!r} in the file of dataset {dataset!r}")
        expected = "/".join((row["dataset"], row["model"], row["attack"], row["image_id"]))
        if item_id != expected:
            raise DataError(f"{where}: item_id {item_id!r} does not match its columns ({expected!r})")
        if item_id in labels:
            raise DataError(f"{where}: item {item_id!r} listed twice")
        try:
            annotators = int(row["annotators"])
        except ValueError:
            raise DataError(f"{where}: annotators {row['annotators']!r} is not an integer") from None
        if annotators < 0:
            raise DataError(f"{where}: annotators must be >= 0, got {annotators}")
        rate, majority = None, None
        if annotators > 0:
            try:
                rate = float(row["recognised_rate"])
            except ValueError:
                raise DataError(f"{where}: recognised_rate {row['recognised_rate']!r} is not a number") from None
            if not 0.0 <= rate <= 1.0:
                raise DataError(f"{where}: recognised_rate {rate} outside [0, 1]")
            majority = row["majority"]
            if majority not in MAJORITIES:
                raise DataError(f"{where}: majority {majority!r} is not one of {', '.join(MAJORITIES)}")
        labels[item_id] = Label(annotators, rate, majority, row["source"] or None)
    return labels


def read_index(path: str | Path) -> list[dict]:
    """An attack's index.csv -> rows with absolute ``original`` and ``reconstruction`` paths."""
    path = Path(path)
    rows = []
    for n, row in csv_rows(path, INDEX_COLUMNS, "run the attack stage"):
        for col in ("original", "reconstruction"):
            if not row[col]:
                raise DataError(f"{path}:{n}: empty {col} path")
            row[col] = path.parent / row[col]
        row["_line"] = n
        rows.append(row)
    return rows


def collect(root: str | Path, datasets: Sequence[str], attacks: Sequence[str]) -> list[Item]:
    """Every reconstruction of the named datasets and attacks with its label, sorted by item_id.

    An index row without an items.csv row counts as unannotated (logged); an items.csv row of
    a listed attack that no index has is an error (the annotations belong to other images).
    """
    root = Path(root)
    items: list[Item] = []
    for ds in datasets:
        labels_path = root / "data" / "annotations" / ds / "items.csv"
        labels = read_labels(labels_path, ds)
        seen: set[str] = set()
        unlabelled = 0
        for attack in attacks:
            index_path = root / "data" / "attacks" / ds / attack / "index.csv"
            for row in read_index(index_path):
                item_id = row["item_id"]
                if row["dataset"] != ds or threat.method(row["attack"]) != attack:
                    raise DataError(f"{index_path}:{row['_line']}: row of {row['dataset']}/{row['attack']} "
                                    f"in the index of {ds}/{attack}")
                if item_id in seen:
                    raise DataError(f"{index_path}:{row['_line']}: item {item_id!r} listed twice")
                seen.add(item_id)
                label = labels.get(item_id)
                if label is None:
                    unlabelled += 1
                    label = Label(0, None, None, None)
                items.append(Item(item_id, ds, row["model"], row["attack"], row["image_id"], row["status"],
                                  row["original"], row["reconstruction"], label))
        stray = sorted(i for i in labels if i not in seen and threat.method(i.split("/")[2]) in attacks)
        if stray:
            raise DataError(f"{labels_path}: {len(stray)} item(s) not in any attack index of {ds}, "
                            f"e.g. {stray[0]!r} (annotations and attacks out of date?)")
        if unlabelled:
            log.warning("%s: %d reconstruction(s) have no row in %s; treated as unannotated", ds, unlabelled,
                        labels_path)
    items.sort(key=lambda i: i.item_id)
    return items


def split(items: Sequence[Item], split: str, held_out: str) -> tuple[list[Item], list[Item]]:
    """(training items: annotated, not held out; held-out items: all of the held-out value)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown SemSim split {split!r}; valid: {', '.join(SPLITS)}")
    values = sorted({i.key(split) for i in items})
    if held_out not in values:
        raise ConfigError(f"held-out {split} {held_out!r} has no reconstructions; present: {', '.join(values)}")
    train = [i for i in items if i.key(split) != held_out and i.annotated]
    test = [i for i in items if i.key(split) == held_out]
    if not train:
        raise DataError(f"no annotated reconstructions outside {split} {held_out!r} to train SemSim on")
    return train, test
