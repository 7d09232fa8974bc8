"""Inter-annotator agreement: Fleiss' kappa and Krippendorff's alpha (nominal).

Both are computed here from their definitions (neither statsmodels nor the ``krippendorff``
package is among the project's requirements) and checked in the tests against published
worked examples. Per dataset the rating is binary, recognised / unrecognised, derived from
each answer as everywhere else.

Fleiss' kappa (Fleiss 1971) assumes every item has the same number of raters n. With
``n_i`` raters on item i it is used here in its usual generalisation: the per-item agreement
P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1)) is averaged over items, and the category
shares p_j pool all ratings; with a constant n this is exactly Fleiss' formula. Items with
fewer than two raters carry no agreement information and are left out of both (the count is
reported). Krippendorff's alpha handles missing ratings by construction (its coincidence
matrix pairs values within an item, weighting each item by 1 / (m_u - 1)); it too ignores
items with a single value.

Undefined cases return NaN with a reason instead of a number that means nothing: no item
with two or more ratings; or every rating in one category (chance agreement is then 1 and
kappa is 0/0; alpha's expected disagreement is 0). Perfect agreement on data that does vary
gives kappa = alpha = 1.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Hashable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .longformat import Expected, TaskLike, default_expected, recognised_flags


@dataclass(frozen=True)
class Agreement:
    """A coefficient, or NaN with the reason it is undefined; ``units``: items used (>= 2 ratings)."""

    value: float
    units: int
    reason: str = ""
    detail: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-ready: an undefined value is ``None`` (JSON has no NaN) with its reason."""
        out = {"value": None if math.isnan(self.value) else self.value, "units": self.units}
        if self.reason:
            out["undefined_because"] = self.reason
        out.update(self.detail)
        return out


NO_PAIRS = "no item has two or more ratings"
ONE_CATEGORY = "every rating is in one category, so chance agreement is 1 and the coefficient is 0/0"


def fleiss_kappa(counts: Sequence[Sequence[int]] | np.ndarray) -> Agreement:
    """Fleiss' kappa from an items x categories table of rater counts (rows may sum differently)."""
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2:
        raise ValueError(f"counts must be a 2-D items x categories table, got shape {table.shape}")
    if (table < 0).any():
        raise ValueError("counts must be non-negative")
    n_i = table.sum(axis=1)
    used = table[n_i >= 2]
    n_used = n_i[n_i >= 2]
    if len(used) == 0:
        return Agreement(math.nan, 0, NO_PAIRS)
    p_i = ((used * (used - 1)).sum(axis=1)) / (n_used * (n_used - 1))
    p_bar = float(p_i.mean())
    p_j = used.sum(axis=0) / used.sum()
    p_e = float((p_j ** 2).sum())
    detail = {"observed_agreement": p_bar, "chance_agreement": p_e}
    if math.isclose(p_e, 1.0):
        return Agreement(math.nan, len(used), ONE_CATEGORY, detail)
    return Agreement((p_bar - p_e) / (1.0 - p_e), len(used), "", detail)


def krippendorff_alpha_nominal(units: Iterable[Iterable[Hashable]]) -> Agreement:
    """Krippendorff's alpha for nominal data; each unit lists the values it received
    (missing ratings are simply absent; ``None`` and NaN entries are dropped)."""
    coincidences: Counter = Counter()
    used = 0
    for unit in units:
        values = [v for v in unit if v is not None and not (isinstance(v, float) and math.isnan(v))]
        m = len(values)
        if m < 2:
            continue
        used += 1
        n_uc = Counter(values)
        for c, n_c in n_uc.items():
            for k, n_k in n_uc.items():
                pairs = n_c * (n_k - (1 if c == k else 0))
                if pairs:
                    coincidences[(c, k)] += pairs / (m - 1)
    if not used:
        return Agreement(math.nan, 0, NO_PAIRS)
    n_c: Counter = Counter()
    for (c, _k), o in coincidences.items():
        n_c[c] += o
    n = sum(n_c.values())
    observed = sum(o for (c, k), o in coincidences.items() if c != k)
    expected_pairs = n * n - sum(v * v for v in n_c.values())  # sum over c != k of n_c n_k
    detail = {"pairable_values": round(n, 9)}
    if expected_pairs <= 0:
        return Agreement(math.nan, used, ONE_CATEGORY, detail)
    return Agreement(1.0 - (n - 1) * observed / expected_pairs, used, "", detail)


def binary_units(answers: pd.DataFrame, tasks: Mapping[str, TaskLike],
                 expected: Expected = default_expected) -> dict[str, list[int]]:
    """item_id -> the recognised flags (1/0) of its annotators, for every item with an answer."""
    flags = recognised_flags(answers, tasks, expected)
    units: dict[str, list[int]] = {}
    for item_id, flag in zip(answers["item_id"], flags):
        units.setdefault(item_id, []).append(int(flag))
    return units


def binary_agreement(units: Mapping[str, Sequence[int]]) -> dict:
    """Fleiss' kappa and Krippendorff's alpha on recognised (1) / unrecognised (0) ratings."""
    counts = [[len(v) - sum(v), sum(v)] for _, v in sorted(units.items())]
    raters = [len(v) for v in units.values()]
    kappa = fleiss_kappa(counts if counts else np.zeros((0, 2)))
    alpha = krippendorff_alpha_nominal(v for _, v in sorted(units.items()))
    return {
        "items_rated": len(units),
        "items_with_two_or_more": sum(1 for n in raters if n >= 2),
        "raters_per_item_min": min(raters) if raters else 0,
        "raters_per_item_max": max(raters) if raters else 0,
        "fleiss_kappa": kappa.as_dict(),
        "krippendorff_alpha": alpha.as_dict(),
    }


def dataset_agreement(answers: pd.DataFrame, tasks: Mapping[str, TaskLike],
                      expected: Expected = default_expected) -> dict[str, dict]:
    """Per dataset of the tasks (answered or not): ``binary_agreement`` of its items'
    recognised / unrecognised ratings."""
    units = binary_units(answers, tasks, expected)
    by_dataset: dict[str, dict[str, list[int]]] = {t.dataset: {} for t in tasks.values()}
    for item_id, values in units.items():
        by_dataset.setdefault(tasks[item_id].dataset, {})[item_id] = values
    return {ds: binary_agreement(u) for ds, u in sorted(by_dataset.items())}
