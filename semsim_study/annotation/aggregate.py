"""Aggregation of raw answers: per reconstruction (items.csv) and per model x attack (sets.csv).

Tables follow contract 4 exactly:

- items: item_id, dataset, model, attack, image_id, protocol, truth, annotators, recognised,
  recognised_rate, majority, source. Every task is a row, annotated or not: an item nobody
  annotated has annotators 0, recognised 0, an empty (NaN) rate and an empty majority, so
  missing coverage shows instead of vanishing. majority is ``recognised`` when more than half
  of its annotators recognised it, ``unrecognised`` when fewer than half, ``tie`` otherwise.
- sets: dataset, model, attack, images, annotated, recognised_rate, unrecognised_rate,
  source. ``images`` counts every task of the set, ``annotated`` those with at least one
  answer. The set's recognised rate is over annotated images, each image counting by its
  majority verdict: (recognised + tie/2) / annotated, and unrecognised_rate is 1 minus it,
  the paper's human score ("1 - recognised / images") restricted to images people saw. A tie
  counts half for each side, so that neither verdict is favoured when an even number of
  annotators split; with an odd number per image there are no ties. A set with no annotated
  image has empty rates.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ..errors import DataError
from .longformat import COLUMNS, Expected, TaskLike, default_expected, recognised_flags

ITEM_COLUMNS = ("item_id", "dataset", "model", "attack", "image_id", "protocol", "truth",
                "annotators", "recognised", "recognised_rate", "majority", "source")
SET_COLUMNS = ("dataset", "model", "attack", "images", "annotated", "recognised_rate",
               "unrecognised_rate", "source")
SOURCES = ("human", "simulated")


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")


def majority_verdict(recognised: int, annotators: int) -> str:
    """``recognised`` / ``unrecognised`` / ``tie``; empty for an item nobody annotated."""
    if annotators == 0:
        return ""
    if 2 * recognised > annotators:
        return "recognised"
    if 2 * recognised < annotators:
        return "unrecognised"
    return "tie"


def aggregate_items(answers: pd.DataFrame, tasks: Mapping[str, TaskLike], *, source: str,
                    expected: Expected = default_expected) -> pd.DataFrame:
    """One row per task (sorted by item_id) with its annotators, recognised count and rate."""
    _check_source(source)
    flags = recognised_flags(answers, tasks, expected)
    counts: dict[str, list[int]] = {}
    for item_id, flag in zip(answers["item_id"], flags):
        c = counts.setdefault(item_id, [0, 0])
        c[0] += 1
        c[1] += int(flag)
    rows = []
    for item_id in sorted(tasks):
        t = tasks[item_id]
        n, r = counts.get(item_id, (0, 0))
        rows.append((item_id, t.dataset, t.model, t.attack, t.image_id, t.protocol, t.truth,
                     n, r, (r / n) if n else np.nan, majority_verdict(r, n), source))
    out = pd.DataFrame(rows, columns=list(ITEM_COLUMNS))
    return out.astype({"annotators": "int64", "recognised": "int64", "recognised_rate": "float64"})


def aggregate_sets(items: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """One row per (dataset, model, attack) from an items table (``aggregate_items``)."""
    _check_source(source)
    missing = [c for c in ("dataset", "model", "attack", "annotators", "majority") if c not in items.columns]
    if missing:
        raise DataError(f"items table lacks column(s) {', '.join(missing)}")
    rows = []
    for (dataset, model, attack), g in items.groupby(["dataset", "model", "attack"], sort=True):
        seen = g[g["annotators"] > 0]
        n = len(seen)
        if n:
            score = float((seen["majority"] == "recognised").sum() + 0.5 * (seen["majority"] == "tie").sum())
            rate = score / n
            rows.append((dataset, model, attack, len(g), n, rate, 1.0 - rate, source))
        else:
            rows.append((dataset, model, attack, len(g), 0, np.nan, np.nan, source))
    out = pd.DataFrame(rows, columns=list(SET_COLUMNS))
    return out.astype({"images": "int64", "annotated": "int64", "recognised_rate": "float64",
                       "unrecognised_rate": "float64"})


def answers_with_recognised(answers: pd.DataFrame, tasks: Mapping[str, TaskLike], *, source: str,
                            expected: Expected = default_expected) -> pd.DataFrame:
    """Contract 4's answers.csv: the five long-format columns, source, recognised, then any
    extra columns of the import (``verdict``), so the contract's columns keep their places."""
    _check_source(source)
    out = answers[list(COLUMNS)].copy()
    out["source"] = source
    out["recognised"] = recognised_flags(answers, tasks, expected).to_numpy()
    for extra in answers.columns:
        if extra not in out.columns:
            out[extra] = answers[extra].to_numpy()
    return out


def spread(items: pd.DataFrame, sets: pd.DataFrame) -> dict:
    """Whether the study has a middle ground to judge metrics on: the share of annotated items
    the majority recognised, overall and per attacked backbone (the model id before '_'), and
    how many sets there are and how many annotated items the smallest holds."""
    seen = items[items["annotators"] > 0]
    recognised = seen["majority"] == "recognised"
    backbones = seen["model"].astype(str).str.split("_").str[0]
    return {
        "majority_recognised_share": round(float(recognised.mean()), 6) if len(seen) else None,
        "majority_recognised_share_by_backbone": {b: round(float(v), 6)
                                                  for b, v in recognised.groupby(backbones).mean().items()},
        "sets": int(len(sets)),
        "min_annotated_per_set": int(sets["annotated"].min()) if len(sets) else 0,
    }


def coverage(items: pd.DataFrame) -> dict:
    """How many items are annotated, and by how many people (for the stage's metrics)."""
    n = items["annotators"]
    annotated = n[n > 0]
    return {
        "items": int(len(items)),
        "annotated": int(len(annotated)),
        "unannotated": int((n == 0).sum()),
        "answers": int(n.sum()),
        "annotators_per_item_min": int(annotated.min()) if len(annotated) else 0,
        "annotators_per_item_max": int(annotated.max()) if len(annotated) else 0,
        "ties": int((items["majority"] == "tie").sum()),
    }
