"""Pairs where the metrics and the annotators disagree (the paper's Fig. 1), picked from the run.

A pair is one original and two of its reconstructions, A and B, where every compared metric
(PSNR, SSIM and LPIPS, the paper's) ranks A as more similar to the original than B, while the
majority of annotators recognises B and not A. Picked, not drawn: among a dataset's discordant
pairs the one whose *smallest* lead of A over B across the metrics is largest (leads in
within-dataset percentile ranks, so dB and SSIM units compare), then the larger gap in
recognised rate, then item ids. The rule is deterministic and stated in the figure caption,
so the figure shows the run's clearest contradiction, not a hand-picked one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..metric_table import leakage_sign
from .orientation import LABELS

#: the metrics that must all rank A above B (the paper's Fig. 1 compares these)
COMPARED = ("psnr", "ssim", "lpips")
RULE = ("Chosen, per dataset, among pairs of reconstructions of one original where PSNR, SSIM and LPIPS all "
        "rank A as more similar than B while the majority of annotators recognises B and not A: the pair whose "
        "smallest lead of A over B across the three metrics (in percentile ranks within the dataset) is largest; "
        "ties: larger recognised-rate gap, then item ids.")


@dataclass(frozen=True)
class Pair:
    dataset: str
    image_id: str               # the original both reconstructions come from
    a: dict                     # the reconstruction the metrics prefer (people do not recognise it)
    b: dict                     # the one people recognise
    lead: float                 # smallest percentile-rank lead of A over B across COMPARED


def _eligible(images: pd.DataFrame, metrics) -> pd.DataFrame:
    """Annotated reconstructions with every compared metric, plus oriented within-dataset ranks."""
    ok = images[(images["annotators"] > 0) & images["recognised_rate"].notna()]
    if "status" in ok.columns:
        ok = ok[ok["status"].fillna("ok") == "ok"]
    ok = ok.dropna(subset=list(metrics)).copy()
    for m in metrics:
        # percentile rank, oriented so that higher = more similar to the original
        ok[f"_rank_{m}"] = (ok[m] * leakage_sign(m)).rank(pct=True)
    return ok.sort_values("item_id", kind="stable")


def _group_candidates(group: pd.DataFrame, metrics) -> list[tuple[float, float, str, str]]:
    """(lead, human gap, item A, item B) of every discordant pair among one original's reconstructions."""
    ranks = group[[f"_rank_{m}" for m in metrics]].to_numpy()
    rec = group["recognised_rate"].to_numpy(dtype=float)
    ids = group["item_id"].to_numpy()
    lead = (ranks[:, None, :] - ranks[None, :, :]).min(axis=2)      # [i, j]: A = i, B = j
    discordant = (lead > 0) & (rec[:, None] < 0.5) & (rec[None, :] > 0.5)
    gap = rec[None, :] - rec[:, None]
    return [(float(lead[i, j]), float(gap[i, j]), str(ids[i]), str(ids[j])) for i, j in zip(*np.nonzero(discordant))]


def _order(candidate: tuple[float, float, str, str]) -> tuple:
    """Sort key: largest lead first, then largest recognised-rate gap, then item ids."""
    lead, gap, a, b = candidate
    return (-lead, -gap, a, b)


def pick(images: pd.DataFrame, dataset: str, metrics=COMPARED) -> Pair | None:
    """The dataset's strongest metrics-vs-annotators contradiction, or None if there is none."""
    if images.empty or any(m not in images.columns for m in metrics):
        return None
    table = _eligible(images, metrics)
    candidates = [c for _, group in table.groupby("image_id", sort=True) for c in _group_candidates(group, metrics)]
    if not candidates:
        return None
    lead, _gap, a, b = min(candidates, key=_order)
    rows = table.drop(columns=[f"_rank_{m}" for m in metrics]).set_index("item_id")
    a_row, b_row = ({"item_id": item, **rows.loc[item].to_dict()} for item in (a, b))
    return Pair(dataset, str(a_row["image_id"]), a_row, b_row, lead)


def metric_names(metrics=COMPARED) -> str:
    """'PSNR, SSIM and LPIPS': the compared metrics in words, for captions."""
    labels = [LABELS[m] for m in metrics]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
