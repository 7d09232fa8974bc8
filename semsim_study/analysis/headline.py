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

``by_scope`` is what `dvc metrics show` prints (reports/headline/<scope>.json, the project's only
DVC metrics): one row per dataset and the pooled scope, a handful of columns that fit a
terminal (SemSim, its untrained network, the CE baseline, the pixel metrics, the noise
ceiling). An alpha experiment moves only the SemSim column, so `dvc metrics diff` lists those
rows alone.
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


#: `dvc metrics show`'s columns (DVC sorts them by name) -> the summary's metric: its oriented
#: model-level Spearman rho; short names keep the table within 120 characters.
SHOWN = {"semsim": "semsim", "untrained": "semsim_untrained", "ce": "ce_distance", "ssim": "ssim",
         "psnr": "psnr", "lpips": "lpips"}
DIGITS = 3  # a terminal's worth: bootstrap intervals are wider than 0.001


def by_scope(summary: Mapping) -> dict[str, dict]:
    """Per scope (each dataset and "all"): the SHOWN metrics' oriented model-level Spearman rho,
    SemSim's Kendall tau (the alpha sweep plots both) and the noise ceiling (``ceiling``), rounded;
    the file name is the scope. A value the summary lacks (too few sets) is left out."""
    ceiling = summary.get("noise_ceiling", {}).get("model_level", {})
    out = {}
    for scope, metrics in summary.get("model_level", {}).items():
        row = {}
        for column, metric in SHOWN.items():
            value = (metrics.get(metric) or {}).get("spearman")
            if isinstance(value, (int, float)):
                row[column] = round(value, DIGITS)
        tau = (metrics.get("semsim") or {}).get("kendall")
        if isinstance(tau, (int, float)):
            row["semsim_kendall"] = round(tau, DIGITS)
        value = (ceiling.get(scope, {}).get("spearman") or {}).get("value")
        if isinstance(value, (int, float)):
            row["ceiling"] = round(value, DIGITS)
        out[scope] = row
    return out
