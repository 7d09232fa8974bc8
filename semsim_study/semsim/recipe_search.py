"""Choosing SemSim's training recipe without looking at the held-out dataset (nested
leave-one-dataset-out).

Why: the study scores SemSim on a dataset it never trained on, so a recipe must carry what
it learns to a new domain. Selecting the epoch on held-back originals of the training domains
measures fit within those domains, not transfer; tuning the recipe on the held-out dataset
would report a number the recipe was fitted to. Here, for every outer held-out dataset D, the
pipeline's own procedure (``study.run_split``: the same selection, seeds and scoring) trains
on all but one of the remaining datasets and is scored on the one left out (E != D); D's
annotations are never read. A recipe's transfer is the trained-minus-untrained triplet
accuracy on E, overall and on PSNR-matched pairs, over every (D, E).

Candidate recipes are params overrides (``semsim.training.lr=0.01``, as ``dvc exp run -S``
writes them); ``scripts/semsim_recipe_search.py`` runs them and writes a table.
"""

from __future__ import annotations

import copy
import logging
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import yaml

from .. import params as P
from ..errors import ConfigError
from . import runs, study

log = logging.getLogger(__name__)

KEYS = ("heldout_triplet_accuracy", "heldout_triplet_accuracy_random_init",
        "heldout_triplet_accuracy_matched", "heldout_triplet_accuracy_random_init_matched")


def apply_overrides(params: Mapping, overrides: Iterable[str]) -> dict:
    """A copy of ``params`` with each ``dotted.key=value`` set (the value read as YAML)."""
    out = copy.deepcopy(dict(params))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"recipe override {item!r}: expected dotted.key=value")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"recipe override {item!r}: params has no section {part!r}")
            node = node[part]
        node[parts[-1]] = yaml.safe_load(raw)
    study.from_params(out)  # a bad recipe (a misspelt or invalid key) fails here, before any training
    return out


def inner_splits(datasets: Sequence[str]) -> list[tuple[str, str]]:
    """(outer held-out D, inner held-out E) for every ordered pair of distinct datasets."""
    return [(d, e) for d in datasets for e in datasets if e != d]


def _one(params: Mapping, outer: str, inner: str, root: str, threads: int) -> dict:
    torch.set_num_threads(threads)
    inner_params = copy.deepcopy(dict(params))
    inner_params["datasets"] = [d for d in params["datasets"] if d != outer]
    m = study.run_split(inner_params, "dataset", inner, root).metrics
    return {"outer": outer, "inner": inner, **{k: m.get(k) for k in KEYS}}


def run(params: Mapping, root: str = ".", workers: int = 1) -> list[dict]:
    """Every (D, E) inner split of the recipe in ``params``, in ``workers`` processes."""
    datasets = study.string_list(params, "datasets")
    if len(datasets) < 3:
        raise ConfigError("recipe search needs at least 3 datasets (an outer one, an inner one and one to train on)")
    threads = P.positive_int(params, "semsim.threads", 1)
    pairs = inner_splits(datasets)
    rows = {(r["outer"], r["inner"]): r
            for r in runs.in_processes(_one, [(params, d, e, root, threads) for d, e in pairs], workers)}
    return [rows[pair] for pair in pairs]


def summarise(rows: Sequence[Mapping], by_held_out: bool = True) -> dict:
    """Mean trained-minus-untrained gain (overall, matched) and how many inner splits gain; with
    ``by_held_out``, the same per inner held-out dataset (``by_held_out``): a recipe's mean can hide
    that it gains on some kinds of data and loses on others every time (docs/semsim.md found
    exactly that along the two annotation protocols)."""
    def gains(trained: str, untrained: str) -> np.ndarray:
        return np.array([r[trained] - r[untrained] for r in rows
                         if r.get(trained) is not None and r.get(untrained) is not None])

    overall = gains(KEYS[0], KEYS[1])
    matched = gains(KEYS[2], KEYS[3])
    out = {"splits": len(rows),
           "gain": round(float(overall.mean()), 4) if overall.size else None,
           "gain_matched": round(float(matched.mean()), 4) if matched.size else None,
           "splits_not_worse": int((overall >= 0).sum()),
           "splits_above_matched": int((matched > 0).sum())}
    if by_held_out:
        inner = sorted({r["inner"] for r in rows})
        out["by_held_out"] = {e: summarise([r for r in rows if r["inner"] == e], by_held_out=False) for e in inner}
    return out
