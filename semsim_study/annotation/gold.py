"""Gold items: questions whose right answer is known, to tell attentive annotators from others.

Two kinds per original of the study (``GOLD_KINDS``):

- ``clean``: the original itself, which must be recognised: protocol A shows it as the
  picture to name (right answer: its class), protocol B pairs it with itself ("same");
- ``noise``: uniform noise the size of the original, seeded per item, which must not be
  recognised: protocol A asks for its class among an original's candidates (any class but the
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
from typing import Callable, Hashable

import numpy as np
from PIL import Image

from .catalog import Catalog, Entry
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


def noise_png(width: int, height: int, seed: int, salt: str) -> bytes:
    """A seeded uniform-noise RGB PNG, deterministic for (seed, salt)."""
    rng = np.random.default_rng([seed, *salt.encode("utf-8")])
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def build(catalog: Catalog, ref: Callable[[str], str], seed: int = 0) -> list[Entry]:
    """Both gold kinds for every original of the catalog, as entries the app serves like items."""
    firsts: dict[Hashable, Entry] = {}
    for entry in catalog.entries:
        firsts.setdefault(exposure_key(entry.task), entry)
    out = []
    for entry in firsts.values():
        task: Task = entry.task
        original = catalog.original_path(task)
        with Image.open(original) as img:
            size = img.size
        for kind in GOLD_KINDS:
            gold_id = f"gold:{kind}:{task.dataset}/{task.image_id}"
            order = np.random.default_rng([seed, *gold_id.encode("utf-8")]).permutation(len(task.candidates))
            candidates = tuple(task.candidates[i] for i in order) if task.protocol == "A" else task.candidates
            shown = original if kind == "clean" else noise_png(*size, seed, gold_id)
            images = {"reconstruction": shown} if task.protocol == "A" else {"original": original,
                                                                              "reconstruction": shown}
            item = GoldItem(gold_id, kind, task.dataset, task.protocol, task.image_id, task.truth, candidates)
            out.append(Entry(item, ref(gold_id), images))
    return out
