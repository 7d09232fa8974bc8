"""Rank and linear correlation with p-values, bootstrap intervals and a reason when undefined.

The paper's code (metrics/models_rank_corr.py) uses scipy's Spearman rho, Kendall tau-b and
Pearson r; the values and p-values here come from scipy too. The bootstrap is written out
with numpy because 1000 resamples x dozens of correlations must take well under a second:
a resample is a vector of counts w over the original points, and every statistic of the
resample is a weighted sum over pairs of original points, so all resamples go through array
operations instead of a Python loop:

- Pearson: weighted means, variances and covariance;
- Spearman: the resample's average ranks are (w @ [x_b < x_a]) + (w @ [x_b == x_a] + 1) / 2,
  then Pearson of those ranks, weighted by w;
- Kendall tau-b: S = w^T C w / 2 with C_ab = sign(x_a - x_b) sign(y_a - y_b), one matrix
  product; tied pairs in x are (w^T [x_a == x_b] w - N) / 2 (the same point drawn twice is a
  tie in both), likewise y.

The sums over [x_b < x_a] and [x_b == x_a] need no n x n matrix: they are running sums, in
the values' order, of the weight each resample draws of every distinct value (``_drawn``).
Each is a whole number or a half, held exactly whichever way it is added up (as it was by the
float32 n x n products that computed it before), so the pooled image level (thousands of
points) costs a fraction of the time with the same bits; a test compares the two forms.

Too few points (< 3) or a constant variable give NaN with the reason; a resample that is
constant gives NaN and is left out of the percentile interval.
"""

from __future__ import annotations

import functools
import hashlib
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .. import seeding

COEFFICIENTS = ("spearman", "kendall", "pearson")
MIN_POINTS = 3


@dataclass(frozen=True)
class Corr:
    """One coefficient: value, two-sided p, bootstrap interval, points used, and why NaN."""

    coefficient: str
    value: float
    p: float
    ci_low: float
    ci_high: float
    n: int
    reason: str = ""

    def oriented(self, sign: int) -> "Corr":
        """The same result multiplied by ``sign`` (interval bounds swap when sign is -1)."""
        lo, hi = (self.ci_low, self.ci_high) if sign > 0 else (-self.ci_high, -self.ci_low)
        return Corr(self.coefficient, sign * self.value, self.p, lo, hi, self.n, self.reason)


def rng_for(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on the params seed and a stable name (not on run order)."""
    return seeding.rng(seed, key)


def undefined_reason(x: np.ndarray, y: np.ndarray, x_name: str = "metric", y_name: str = "human rate") -> str:
    """Why no correlation can be computed on these (finite) points, or '' when it can."""
    if len(x) < MIN_POINTS:
        return f"fewer than {MIN_POINTS} points (n={len(x)})"
    if np.all(x == x[0]):
        return f"{x_name} is constant"
    if np.all(y == y[0]):
        return f"{y_name} is constant"
    return ""


def finite_pairs(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _nan(coefficient: str, n: int, reason: str) -> Corr:
    return Corr(coefficient, math.nan, math.nan, math.nan, math.nan, n, reason)


def point(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[float, float]]:
    """scipy's (statistic, p) for each coefficient on finite, non-degenerate data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = stats.spearmanr(x, y)
        k = stats.kendalltau(x, y)  # tau-b, two-sided, as the paper's code
        r = stats.pearsonr(x, y)
    return {"spearman": (float(s.statistic), float(s.pvalue)),
            "kendall": (float(k.statistic), float(k.pvalue)),
            "pearson": (float(r.statistic), float(r.pvalue))}


def resample_counts(n: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, n) counts: how often each original point is drawn in each bootstrap resample."""
    idx = rng.integers(0, n, size=(reps, n))
    flat = idx + (np.arange(reps) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=reps * n).reshape(reps, n).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _cached_counts(n: int, reps: int, seed: int, key: str) -> np.ndarray:
    counts = resample_counts(n, reps, rng_for(seed, key))
    counts.flags.writeable = False
    return counts


def _weighted_pearson(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson of a and b (each (reps, n) or (n,)) with weights w (reps, n)."""
    total = w.sum(axis=1, keepdims=True)
    ma = (w * a).sum(axis=1, keepdims=True) / total
    mb = (w * b).sum(axis=1, keepdims=True) / total
    da, db = a - ma, b - mb
    cov = (w * da * db).sum(axis=1)
    va = (w * da * da).sum(axis=1)
    vb = (w * db * db).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = cov / np.sqrt(va * vb)
    # constant resamples: variance is (numerically) zero -> undefined
    scale = np.maximum(np.abs(a).max(), 1.0) if a.size else 1.0
    out[(va <= 1e-12 * scale**2) | (vb <= 1e-12 * np.maximum(np.abs(b).max(), 1.0) ** 2)] = np.nan
    return np.clip(out, -1.0, 1.0)


def _drawn(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's index among x's distinct values (ascending), and the weight every resample
    draws of each distinct value, (reps, distinct): exact, as whole numbers."""
    _, value = np.unique(x, return_inverse=True)
    value = value.ravel()
    order = np.argsort(value, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(value))[:-1]])
    return value, np.add.reduceat(w[:, order], starts, axis=1)


def _resample_ranks(value: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of each original point inside each resample (``_drawn``'s pair).

    rank_a = #{drawn b: x_b < x_a} + (#{drawn b: x_b == x_a} + 1) / 2: the weight drawn of the
    smaller values (a running sum) plus half that of x_a's own, all whole numbers or halves."""
    below = np.cumsum(drawn, axis=1) - drawn
    return (below + 0.5 * drawn)[:, value] + 0.5


def _pair_signs(x_value: np.ndarray, y_value: np.ndarray) -> np.ndarray:
    """C_ab = sign(x_a - x_b) sign(y_a - y_b), (n, n) float32, from the points' distinct-value
    indices (same signs as the values', at half the memory traffic of float64 differences)."""
    def signs(v: np.ndarray) -> np.ndarray:
        d = np.subtract.outer(v.astype(np.float32), v.astype(np.float32))
        return np.sign(d, out=d)

    c = signs(x_value)
    c *= signs(y_value)
    return c


def _tied_pairs(drawn: np.ndarray, big_n: np.ndarray) -> np.ndarray:
    """Tied pairs of each resample, (sum over values of drawn^2 - N) / 2: w^T [x_a == x_b] w
    sums, for each value, its drawn weight times itself."""
    return ((drawn * drawn).sum(axis=1) - big_n) / 2.0


def bootstrap(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Each coefficient on every resample given by ``counts`` (NaN where undefined)."""
    w = counts.astype(float)
    out = {"pearson": _weighted_pearson(w, x, y)}
    (x_value, x_drawn), (y_value, y_drawn) = _drawn(w, x), _drawn(w, y)
    out["spearman"] = _weighted_pearson(w, _resample_ranks(x_value, x_drawn), _resample_ranks(y_value, y_drawn))
    big_n = w.sum(axis=1)
    s = np.einsum("ra,ra->r", (counts @ _pair_signs(x_value, y_value)).astype(float), w) / 2.0
    n0 = big_n * (big_n - 1) / 2.0
    n1, n2 = _tied_pairs(x_drawn, big_n), _tied_pairs(y_drawn, big_n)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = s / np.sqrt((n0 - n1) * (n0 - n2))
    tau[(n0 - n1 <= 0) | (n0 - n2 <= 0)] = np.nan
    out["kendall"] = np.clip(tau, -1.0, 1.0)
    return out


def fingerprint(x, y, *, reps: int, seed: int, key: str, confidence: float = 0.95,
                x_name: str = "metric", y_name: str = "human rate") -> str:
    """What ``correlate`` returns depends on nothing else: its finite pairs, in order, and these
    settings. Two calls with the same fingerprint give the same result, which lets the report
    take a result computed upstream (stage ``correlate``) instead of bootstrapping it again."""
    x, y = finite_pairs(x, y)
    h = hashlib.sha256()
    for part in (x, y):
        h.update(len(part).to_bytes(8, "little"))
        h.update(np.ascontiguousarray(part, dtype="<f8").tobytes())
    h.update(repr((int(reps), int(seed), key, float(confidence), x_name, y_name)).encode("utf-8"))
    return h.hexdigest()[:32]


def correlate(x, y, *, reps: int, seed: int, key: str, confidence: float = 0.95,
              x_name: str = "metric", y_name: str = "human rate") -> dict[str, Corr]:
    """Spearman, Kendall tau-b and Pearson of finite (x, y) pairs with a percentile bootstrap CI.

    ``key`` names the comparison so that its resamples are the same whatever else is computed;
    metrics compared on the same points with the same key get the same resamples (paired).
    """
    x, y = finite_pairs(x, y)
    n = len(x)
    reason = undefined_reason(x, y, x_name, y_name)
    if reason:
        return {c: _nan(c, n, reason) for c in COEFFICIENTS}
    values = point(x, y)
    lo_q, hi_q = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    boots = bootstrap(x, y, _cached_counts(n, reps, int(seed), key)) if reps > 0 else {}
    result = {}
    for c in COEFFICIENTS:
        value, p = values[c]
        lo = hi = math.nan
        if c in boots:
            finite = boots[c][np.isfinite(boots[c])]
            if finite.size:
                lo, hi = (float(v) for v in np.percentile(finite, [lo_q, hi_q]))
        result[c] = Corr(c, value, p, lo, hi, n, "" if math.isfinite(value) else "undefined (scipy gave NaN)")
    return result
