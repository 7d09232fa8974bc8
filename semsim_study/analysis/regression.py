"""Ordinary least squares line with its 95% confidence band, for the scatter panels.

The band is the analytic Student-t interval of the fitted mean (not a bootstrap): it needs no
random draws, so the same points always give the same figure bytes, and it is exact under the
usual OLS assumptions, which is all a visual guide beside the rank correlations needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Band:
    x: np.ndarray         # where the line is evaluated (evenly spaced over the requested range)
    fit: np.ndarray       # intercept + slope * x
    low: np.ndarray       # lower bound of the mean's confidence interval at each x
    high: np.ndarray
    slope: float
    intercept: float


def ols_band(x, y, *, x_range: tuple[float, float] | None = None, confidence: float = 0.95,
             points: int = 50) -> Band | None:
    """The OLS fit of y on x and its pointwise confidence band; None when it is undefined.

    Undefined: fewer than 3 finite points (no residual degree of freedom) or a constant x.
    """
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    n = len(xa)
    if n < 3:
        return None
    xbar = xa.mean()
    sxx = float(((xa - xbar) ** 2).sum())
    if sxx <= 1e-15 * max(1.0, float(np.abs(xa).max()) ** 2):
        return None
    slope = float(((xa - xbar) * (ya - ya.mean())).sum() / sxx)
    intercept = float(ya.mean() - slope * xbar)
    resid = ya - (intercept + slope * xa)
    s = math.sqrt(float((resid ** 2).sum()) / (n - 2))
    lo, hi = x_range if x_range else (float(xa.min()), float(xa.max()))
    grid = np.linspace(lo, hi, points)
    fit = intercept + slope * grid
    t = float(stats.t.ppf(0.5 + confidence / 2, n - 2))
    half = t * s * np.sqrt(1.0 / n + (grid - xbar) ** 2 / sxx)
    return Band(grid, fit, fit - half, fit + half, slope, intercept)
