"""Where metrics contradict each other on the same images (the paper's "metrics disagree" figure).

Each metric is first oriented so that higher = more recognisable (more leakage): PSNR, SSIM
and classification as they are, distances (MSE, LPIPS, SemSim, CE) negated. Then, per pair:
- Spearman rho between the two oriented metrics (positive = they agree);
- the discordant share: among image pairs that both metrics order strictly (no tie in
  either), the fraction they order oppositely. 0 = never contradict, 0.5 = unrelated.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from .correlate import finite_pairs, point, undefined_reason
from .orientation import LABELS, leakage_sign


def discordant_share(a, b) -> tuple[float, int]:
    """(share of strictly-ordered pairs that a and b order oppositely, number of such pairs)."""
    a, b = finite_pairs(a, b)
    iu = np.triu_indices(len(a), k=1)
    da = np.sign(a[:, None] - a[None, :])[iu]
    db = np.sign(b[:, None] - b[None, :])[iu]
    strict = (da != 0) & (db != 0)
    n = int(strict.sum())
    if n == 0:
        return math.nan, 0
    return float((da[strict] != db[strict]).mean()), n


def pairwise(images: pd.DataFrame, metrics) -> list[dict]:
    """One row per metric pair: oriented Spearman and discordant share on the images both score."""
    rows = []
    present = [m for m in metrics if m in images.columns]
    for m1, m2 in itertools.combinations(present, 2):
        a = images[m1].to_numpy(dtype=float) * leakage_sign(m1)
        b = images[m2].to_numpy(dtype=float) * leakage_sign(m2)
        fa, fb = finite_pairs(a, b)
        reason = undefined_reason(fa, fb, LABELS[m1], LABELS[m2])
        rho = math.nan
        if not reason:
            rho = point(fa, fb)["spearman"][0]
        share, pairs = discordant_share(a, b) if len(fa) >= 2 else (math.nan, 0)
        share_reason = "" if pairs else (reason or "no pair of images that both metrics order strictly")
        rows.append({"metric": f"{m1}~{m2}", "spearman": rho, "spearman_reason": reason, "n": len(fa),
                     "discordant_share": share, "pairs": pairs, "share_reason": share_reason})
    return rows
