"""Threat-model controls: scores that know only how a set was attacked, never its images.

A metric that follows people no better than knowing which backbone was attacked, or for how
many iterations, tells a reader nothing the threat model did not. These scores give that
floor, per (model, attack) set, next to the metrics at model level:

- ``backbone_only``: the mean unrecognised rate of the sets with the same attacked backbone
  in the *other* datasets (cross-fitted, like leave-one-dataset-out SemSim), so nothing is
  learnt from the dataset it is judged on;
- ``budget_only``: the set's budget as a rank among its attack's budgets, 0 = the smallest,
  1 = the largest (a priori: more iterations, more leakage; no data involved). Sets of an
  attack without budgets get no value;
- ``threat_model``: the mean unrecognised rate of the sets with the same backbone, attack and
  budget in the other datasets (cross-fitted): everything the threat model says at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import threat


def _backbone(model: str) -> str:
    return model.split("_", 1)[0]


def _budget_rank(attacks: pd.Series) -> pd.Series:
    methods = attacks.map(threat.method)
    budgets = attacks.map(threat.budget)
    out = pd.Series(np.nan, index=attacks.index)
    for name in methods.unique():
        mine = methods == name
        levels = sorted({b for b in budgets[mine] if b is not None})
        if not levels:
            continue
        rank = {b: (i / (len(levels) - 1) if len(levels) > 1 else 1.0) for i, b in enumerate(levels)}
        out[mine] = budgets[mine].map(lambda b: rank.get(b, np.nan))
    return out


def add(sets: dict[str, pd.DataFrame], sources: set[str] | None = None) -> dict[str, pd.DataFrame]:
    """Each dataset's set table with the control columns added, cross-fitted over the other
    datasets among ``sources`` (default: all), i.e. those whose rates come from annotations."""
    keyed = {}
    for name, df in sets.items():
        df = df.copy()
        df["_backbone"] = df["model"].map(_backbone)
        keyed[name] = df
    out = {}
    for name, df in keyed.items():
        others = [o for n, o in keyed.items() if n != name and (sources is None or n in sources)]
        rest = pd.concat(others, ignore_index=True) if others else df.iloc[0:0]
        rest = rest[rest["unrecognised_rate"].notna()]
        by_backbone = rest.groupby("_backbone")["unrecognised_rate"].mean()
        by_threat = rest.groupby(["_backbone", "attack"])["unrecognised_rate"].mean()
        df["backbone_only"] = df["_backbone"].map(by_backbone).astype(float)
        df["budget_only"] = _budget_rank(df["attack"]).astype(float)
        df["threat_model"] = [float(by_threat.get((b, a), np.nan)) for b, a in zip(df["_backbone"], df["attack"])]
        out[name] = df.drop(columns=["_backbone"])
    return out
