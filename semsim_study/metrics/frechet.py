"""Fréchet distance between two image sets' features (FID when the features are Inception's).

The supplementary's formula (eq. 3), on each set's empirical mean and covariance:
``||m1 - m2||^2 + Tr(C1 + C2 - 2 (C1 C2)^{1/2})``.

Two ways to evaluate ``Tr((C1 C2)^{1/2})``, chosen by ``metrics.fid.method``:

- ``exact`` (default): the eigenvalues of C1 C2 are real and non-negative (a product of two
  covariance matrices), so the trace of its square root is the sum of their square roots.
  When both sets have at most ``d`` images (the usual case: 3-600 images per set against
  64-2048 features) the covariances have rank < n, and with centred feature rows A1, A2,
  ``C1 C2`` has the same non-zero eigenvalues as ``(A1 A2^T)(A1 A2^T)^T / ((n1-1)(n2-1))``:
  the trace is the nuclear norm of the small n1 x n2 matrix ``A1 A2^T``, scaled. Otherwise
  ``sqrt(C1) C2 sqrt(C1)`` (symmetric, same eigenvalues) is diagonalised with ``eigh``.
  Both are exact up to rounding and never produce complex parts.
- ``pytorch-fid``: pytorch-fid's ``calculate_frechet_distance`` (``scipy.linalg.sqrtm`` of
  C1 C2, as the paper's code). It takes about a minute per set for 2048-d features on one
  CPU core, and its import pulls in torchvision (seconds per process), which is why it is
  not the default. Tests check the two agree.

``SetFeatures`` accumulates a set's features as they stream by with memory bounded by
``d x d`` whatever the set size: rows are kept while there are at most ``d`` of them (the
low-rank formula needs them), then folded into a running mean and centred scatter matrix
(Chan et al.'s pairwise update, in float64).

A set with fewer than 2 images has no covariance: its FID is NaN (an empty cell in the
tables). FID on a handful of images is dominated by estimation bias (the covariance of n
points has rank n - 1); it is reported as the paper's code computes it, and the tables say
how many images each set has.
"""

from __future__ import annotations

import math

import numpy as np

METHODS = ("exact", "pytorch-fid")


class SetFeatures:
    """Streaming mean and covariance of one set's feature vectors (float64)."""

    def __init__(self, dim: int):
        self.dim = dim
        self.n = 0
        self._rows: list[np.ndarray] | None = []
        self._mean = np.zeros(dim)
        self._scatter: np.ndarray | None = None  # sum of outer products of centred rows

    def add(self, feats: np.ndarray) -> None:
        feats = np.asarray(feats, dtype=np.float64).reshape(-1, self.dim)
        if not len(feats):
            return
        if self._rows is not None and self.n + len(feats) <= self.dim:
            self._rows.append(feats)
            self.n += len(feats)
            return
        if self._rows is not None:  # too many rows to keep: switch to running statistics
            kept, self._rows = self.rows(), None
            self.n, self._mean, self._scatter = 0, np.zeros(self.dim), np.zeros((self.dim, self.dim))
            if len(kept):
                self._merge(kept)
        self._merge(feats)

    def _merge(self, feats: np.ndarray) -> None:
        nb = len(feats)
        mb = feats.mean(axis=0)
        centred = feats - mb
        delta = mb - self._mean
        total = self.n + nb
        self._scatter += centred.T @ centred + np.outer(delta, delta) * (self.n * nb / total)
        self._mean = self._mean + delta * (nb / total)
        self.n = total

    @property
    def low_rank(self) -> bool:
        """True while the raw rows are kept (n <= d)."""
        return self._rows is not None

    def rows(self) -> np.ndarray:
        if self._rows is None:
            raise ValueError("rows are no longer kept once a set has more images than feature dimensions")
        return np.concatenate(self._rows) if self._rows else np.zeros((0, self.dim))

    def mean(self) -> np.ndarray:
        return self.rows().mean(axis=0) if self.low_rank else self._mean.copy()

    def cov(self) -> np.ndarray:
        """Unbiased covariance (as numpy.cov with rowvar=False, and pytorch-fid)."""
        if self.n < 2:
            return np.full((self.dim, self.dim), np.nan)
        if self.low_rank:
            centred = self.rows() - self.mean()
            return centred.T @ centred / (self.n - 1)
        return self._scatter / (self.n - 1)

    def centred(self) -> np.ndarray:
        rows = self.rows()
        return rows - rows.mean(axis=0)


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(c1: np.ndarray, c2: np.ndarray) -> float:
    """Tr((C1 C2)^{1/2}) for covariance matrices, via the symmetric form sqrt(C1) C2 sqrt(C1)."""
    r = _psd_sqrt(c1)
    m = r @ c2 @ r
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def frechet_from_stats(mu1, sigma1, mu2, sigma2, method: str = "exact") -> float:
    """Fréchet distance between two Gaussians given by mean and covariance."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape} vs {mu2.shape}")
    if not (np.isfinite(sigma1).all() and np.isfinite(sigma2).all()):
        return math.nan
    if method == "pytorch-fid":
        from pytorch_fid.fid_score import calculate_frechet_distance  # imports torchvision: only on demand

        return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))
    if method != "exact":
        raise ValueError(f"unknown Fréchet method {method!r}; valid: {', '.join(METHODS)}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


def frechet_distance(a: SetFeatures, b: SetFeatures, method: str = "exact") -> float:
    """FID-style distance between two accumulated sets; NaN if either has fewer than 2 images."""
    if a.n < 2 or b.n < 2:
        return math.nan
    if method == "exact" and a.low_rank and b.low_rank:
        a1, a2 = a.centred(), b.centred()
        k1, k2 = a.n - 1, b.n - 1
        nuclear = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
        diff = a.mean() - b.mean()
        return float(diff @ diff + (a1 * a1).sum() / k1 + (a2 * a2).sum() / k2 - 2 * nuclear / math.sqrt(k1 * k2))
    return frechet_from_stats(a.mean(), a.cov(), b.mean(), b.cov(), method)
