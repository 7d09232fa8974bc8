"""The report's DVC metrics: the numbers a reader compares across experiments, and no more.

`dvc metrics show` and `dvc exp show` print every value of every metrics file; the full
summary (reports/report/summary.json, every level, scope and coefficient, several hundred
values) made those tables unreadable. This keeps, from that summary:
  spearman.<scope>.<metric>            oriented model-level Spearman rho with the unrecognised
                                       rate, per dataset and pooled ("all"), every metric and control
  kendall.<scope>.semsim               SemSim's Kendall tau beside it (the alpha sweep plots both)
  heldout.<split>.<metric>             image-level oriented Spearman rho on a held-out attack or
                                       backbone, for SemSim, its untrained network and the CE baseline
  noise_ceiling.<scope>                the most a model-level Spearman rho could reach against the
                                       crowd (its split-half noise ceiling, analysis/noise_ceiling.py)
The full tables stay in summary.json and correlations.csv.
"""

from __future__ import annotations

from typing import Mapping

from .. import metric_table as T

HELD_OUT_METRICS = T.names(stage="semsim") + T.names(stage="ce_baseline")


def headline(summary: Mapping) -> dict:
    """summary.json's nested dict -> the headline dict (same oriented values, fewer of them)."""
    out: dict = {"spearman": {}, "kendall": {}, "heldout": {}, "noise_ceiling": {}}
    for scope, metrics in summary.get("model_level", {}).items():
        out["spearman"][scope] = {m: v.get("spearman") for m, v in metrics.items()}
        if "semsim" in metrics:
            out["kendall"][scope] = {"semsim": metrics["semsim"].get("kendall")}
    for split, levels in summary.get("generalisation", {}).items():
        image = levels.get("image_level", {})
        out["heldout"][split] = {m: image[m].get("spearman") for m in HELD_OUT_METRICS if m in image}
    for scope, entry in summary.get("noise_ceiling", {}).get("model_level", {}).items():
        out["noise_ceiling"][scope] = (entry.get("spearman") or {}).get("value")
    return out
