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
from scipy import stats

from ..metric_table import leakage_sign
from .correlate import finite_pairs, point, undefined_reason
from .orientation import LABELS


def _tied_pairs(*columns: np.ndarray) -> int:
    """Pairs of rows equal in every given column."""
    _, counts = np.unique(np.stack(columns, 1), axis=0, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def discordant_share(a, b) -> tuple[float, int]:
    """(share of strictly-ordered pairs that a and b order oppositely, number of such pairs).

    In O(n log n), not over all n^2 pairs (the pooled embedded run has 4,800 images, 11.5
    million pairs per metric pair): with n0 pairs, n1 / n2 tied in a / b and n3 tied in both,
    C + D = n0 - n1 - n2 + n3 pairs are strictly ordered by both, and Kendall's tau-b gives
    C - D = tau_b * sqrt((n0 - n1) (n0 - n2)); so D = ((C + D) - (C - D)) / 2.
    """
    a, b = finite_pairs(a, b)
    n = len(a)
    n0 = n * (n - 1) // 2
    n1, n2, n3 = _tied_pairs(a), _tied_pairs(b), _tied_pairs(a, b)
    strict = n0 - n1 - n2 + n3
    if strict <= 0:
        return math.nan, 0
    tau = stats.kendalltau(a, b, variant="b").statistic
    c_minus_d = int(round(float(tau) * math.sqrt((n0 - n1) * (n0 - n2))))
    return ((strict - c_minus_d) / 2) / strict, strict


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
