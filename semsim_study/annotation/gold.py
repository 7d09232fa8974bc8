"""Gold items: questions whose right answer is known, to tell attentive annotators from others.

Two kinds per original of the study (``GOLD_KINDS``):

- ``clean``: the original itself, which must be recognised: protocol A shows it as the
  picture to name (right answer: its class), protocol B pairs it with itself ("same");
- ``noise``: what an inversion starts from, which must not be recognised: Gaussian noise with
  the dataset's per-channel mean and spread (estimated from the catalog's originals, so the
  app needs nothing but the tasks), clipped to pixels, seeded per item
  (``crowd_checks.random_starts``, the start the crowd's "nothing visible" null is drawn from): protocol A asks for its class among an original's candidates (any class but the
  original's counts as right, so a person guessing at random is right (n-1)/n of the time, as
  the study scores a guess on an unreadable inversion), protocol B pairs the original with it
  ("different"). Noise images are made here, in memory, and served from there: no file is
  written and no path is involved.

A gold item reaches the page exactly as a study item does (an opaque ref, the protocol, the
question, the candidates, image URLs by ref): nothing in the API says "gold". Its id
(``gold:<kind>:<dataset>/<image_id>``) stays on the server, and its answers go to their own
table (store.py), never to ``answers``.

Each gold item belongs to its original's exposure group (``exposure_key``): allocation offers
one that shows an original only once none of that original's reconstructions can be offered
to the annotator again, so the original never primes a study answer.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Sequence

import numpy as np
from PIL import Image

from .catalog import Catalog, Entry
from .crowd_checks import random_starts
from .tasks import DIFFERENT, SAME, Task

GOLD_KINDS = ("clean", "noise")


def exposure_key(task) -> Hashable:
    """The original a task (or gold item) shows or reconstructs, per protocol: the unit of the
    exposure rule. Tasks carry the original's id (``image_id``); its file path would not do, as
    every attack folder keeps its own copy."""
    return (task.protocol, task.dataset, task.image_id)


@dataclass(frozen=True)
class GoldItem:
    """What the app needs of an item (the attributes it reads of a Task) and the right answer."""

    item_id: str
    kind: str
    dataset: str
    protocol: str
    image_id: str
    truth: str
    candidates: tuple[str, ...]

    @property
    def shows_original(self) -> bool:
        """Protocol A noise shows only noise: it cannot prime anyone about an original."""
        return self.kind == "clean" or self.protocol == "B"

    def correct(self, answer: str) -> bool:
        if self.protocol == "B":
            return answer == (SAME if self.kind == "clean" else DIFFERENT)
        return (answer == self.truth) == (self.kind == "clean")


def noise_png(width: int, height: int, seed: int, salt: str, mean: Sequence[float], std: Sequence[float]) -> bytes:
    """An inversion's random start as an RGB PNG (per-channel ``mean`` + ``std`` x Gaussian, in
    [0, 1], clipped), deterministic for (seed, salt)."""
    rng = np.random.default_rng([seed, *salt.encode("utf-8")])
    pixels = random_starts(np.zeros((1, height, width, 3), np.uint8), mean, std, rng, draws=1)[0]
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _channel_stats(images: Sequence[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] of these (H, W, 3) uint8 images together."""
    x = np.concatenate([im.reshape(-1, 3) for im in images]).astype(np.float64) / 255.0
    return x.mean(0).tolist(), np.maximum(x.std(0), 1e-3).tolist()


def build(catalog: Catalog, ref: Callable[[str], str], seed: int = 0) -> list[Entry]:
    """Both gold kinds for every original of the catalog, as entries the app serves like items."""
    firsts: dict[Hashable, Entry] = {}
    for entry in catalog.entries:
        firsts.setdefault(exposure_key(entry.task), entry)
    originals = {key: catalog.original_path(e.task) for key, e in firsts.items()}
    pixels = {key: _read(path) for key, path in originals.items()}  # each original read once
    by_dataset: dict[str, list[np.ndarray]] = {}
    for key, entry in firsts.items():
        by_dataset.setdefault(entry.task.dataset, []).append(pixels[key])
    stats = {ds: _channel_stats(images) for ds, images in by_dataset.items()}
    out = []
    for key, entry in firsts.items():
        task: Task = entry.task
        original = originals[key]
        height, width = pixels[key].shape[:2]
        for kind in GOLD_KINDS:
            gold_id = f"gold:{kind}:{task.dataset}/{task.image_id}"
            order = np.random.default_rng([seed, *gold_id.encode("utf-8")]).permutation(len(task.candidates))
            candidates = tuple(task.candidates[i] for i in order) if task.protocol == "A" else task.candidates
            shown = original if kind == "clean" else noise_png(width, height, seed, gold_id, *stats[task.dataset])
            images = {"reconstruction": shown} if task.protocol == "A" else {"original": original,
                                                                              "reconstruction": shown}
            item = GoldItem(gold_id, kind, task.dataset, task.protocol, task.image_id, task.truth, candidates)
            out.append(Entry(item, ref(gold_id), images))
    return out
