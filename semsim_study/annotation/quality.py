"""Annotator quality from gold items: per-annotator gold accuracy, and who falls below a threshold.

Read from the app's database(s) (table ``gold_answers``, opened read-only like the importer
opens ``answers``), because gold answers live there only: the CSV export carries study
answers alone. ``annotate.quality.min_gold_accuracy`` (default null: keep everyone) leaves out,
before aggregation, every annotator whose share of right gold answers is below it; an
annotator who answered no gold item cannot be judged and is kept. The annotate report names
each one left out with the numbers that decided it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from .. import params as P
from ..errors import ConfigError, DataError
from .importers import connect_readonly
from .tasks import QUALITY_KEYS


def min_gold_accuracy(params: Mapping, source: str) -> float | None:
    """``annotate.quality.min_gold_accuracy``: None, or a share in [0, 1], refused (before any
    file is read) for a source that holds no gold answers."""
    P.known(params, "annotate.quality", QUALITY_KEYS)
    if P.get(params, "annotate.quality.min_gold_accuracy", None, None) is None:
        return None
    threshold = P.number(params, "annotate.quality.min_gold_accuracy", at_least=0.0, at_most=1.0)
    if source != "app":
        raise ConfigError(f"params: 'annotate.quality.min_gold_accuracy' is set but the source is {source!r}: "
                          "gold answers are kept only in the app's database (source app); set it to null otherwise")
    return threshold


def gold_stats(paths: Iterable[str | Path]) -> dict[str, dict]:
    """annotator -> {gold_answers, gold_correct, gold_accuracy} over the databases' gold answers
    (a database from before gold items has none)."""
    counts: dict[str, list[int]] = {}
    for path in map(Path, paths):
        con = connect_readonly(path)
        try:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='gold_answers'").fetchone():
                continue
            rows = con.execute("SELECT annotator_id, COUNT(*), SUM(correct) FROM gold_answers GROUP BY annotator_id")
            for who, n, right in rows:
                c = counts.setdefault(who, [0, 0])
                c[0] += n
                c[1] += right
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{path}: cannot read table gold_answers ({exc})") from None
        finally:
            con.close()
    return {who: {"gold_answers": n, "gold_correct": right, "gold_accuracy": round(right / n, 6)}
            for who, (n, right) in sorted(counts.items())}


def below(stats: Mapping[str, Mapping], threshold: float) -> list[dict]:
    """Annotators with gold answers whose accuracy is under ``threshold``, as the report lists them."""
    return [{"annotator": who, "gold_accuracy": s["gold_accuracy"], "gold_answers": s["gold_answers"]}
            for who, s in sorted(stats.items()) if s["gold_answers"] and s["gold_accuracy"] < threshold]


def exclude(answers: pd.DataFrame, paths: Iterable[str | Path], threshold: float) -> tuple[pd.DataFrame, list[dict]]:
    """The answers without annotators below the gold threshold, and who was left out."""
    paths = list(paths)
    out = below(gold_stats(paths), threshold)
    names = {row["annotator"] for row in out}
    kept = answers[~answers["annotator_id"].isin(names)].reset_index(drop=True)
    if kept.empty:
        raise DataError(f"{', '.join(map(str, paths))}: every annotator with answers here is below "
                        f"'annotate.quality.min_gold_accuracy' {threshold} ({', '.join(sorted(names))}): "
                        "no answers are left to aggregate")
    return kept, out
