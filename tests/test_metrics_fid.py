"""Fréchet distance: the supplementary's formula computed directly, pytorch-fid, streaming statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import linalg

from semsim_study.metrics import frechet


def direct(a: np.ndarray, b: np.ndarray) -> float:
    """Eq. (3) of the supplementary, verbatim, on empirical mean and covariance."""
    m1, m2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(c1 @ c2)
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * np.real(root)))


def gaussian_sets(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / math.sqrt(d)
    a = rng.normal(size=(n, d)) @ mix + 1.0
    b = (0.7 * rng.normal(size=(n, d)) + 0.5 * a) @ np.diag(np.linspace(0.5, 1.5, d)) + 0.3
    return a, b


def accumulate(x: np.ndarray, batch: int) -> frechet.SetFeatures:
    s = frechet.SetFeatures(x.shape[1])
    for i in range(0, len(x), batch):
        s.add(x[i : i + batch])
    return s


@pytest.mark.parametrize("n,d,batch", [(500, 16, 37), (300, 64, 64), (40, 64, 7), (12, 32, 5)])
def test_agrees_with_the_direct_formula_on_gaussian_features(n, d, batch):
    a, b = gaussian_sets(n, d)
    sa, sb = accumulate(a, batch), accumulate(b, batch)
    assert sa.low_rank == (n <= d)
    got = frechet.frechet_distance(sa, sb)
    assert got == pytest.approx(direct(a, b), rel=1e-6)
    stats = frechet.frechet_from_stats(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert stats == pytest.approx(got, rel=1e-6)  # eigh route: sqrt of rounding-level eigenvalues


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pytorch-fid passes scipy's deprecated `disp`
def test_agrees_with_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    for n, d in ((400, 32), (20, 48)):
        a, b = gaussian_sets(n, d, seed=1)
        ref = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
        assert frechet.frechet_distance(accumulate(a, 9), accumulate(b, 9)) == pytest.approx(ref, rel=1e-6)
        assert frechet.frechet_distance(accumulate(a, 9), accumulate(b, 9), "pytorch-fid") == pytest.approx(ref, rel=1e-6)


def test_known_value_in_one_dimension():
    # N(m1, s1^2) vs N(m2, s2^2): (m1 - m2)^2 + (s1 - s2)^2
    a = np.array([[-1.0], [1.0]]) * math.sqrt(0.5) + 2.0  # mean 2, unbiased variance 1
    b = np.array([[-2.0], [2.0]]) * math.sqrt(0.5) - 1.0  # mean -1, variance 4
    got = frechet.frechet_distance(accumulate(a, 1), accumulate(b, 2))
    assert got == pytest.approx(3.0**2 + (1.0 - 2.0) ** 2)


def test_identical_sets_give_zero():
    a, _ = gaussian_sets(50, 64)
    assert abs(frechet.frechet_distance(accumulate(a, 8), accumulate(a, 50))) < 1e-9
    a, _ = gaussian_sets(300, 16)
    assert abs(frechet.frechet_distance(accumulate(a, 8), accumulate(a, 300))) < 1e-9


def test_streaming_statistics_match_numpy_across_the_switch_to_running_sums():
    a, _ = gaussian_sets(90, 20)
    s = frechet.SetFeatures(20)
    for i in range(0, 90, 13):
        s.add(a[i : i + 13])
        seen = a[: min(90, i + 13)]
        assert s.n == len(seen) and s.low_rank == (len(seen) <= 20)
        np.testing.assert_allclose(s.mean(), seen.mean(0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(s.cov(), np.cov(seen, rowvar=False), rtol=1e-10, atol=1e-12)


def test_sets_of_fewer_than_two_images_have_no_fid():
    a, b = gaussian_sets(5, 4)
    assert math.isnan(frechet.frechet_distance(accumulate(a[:1], 1), accumulate(b, 2)))
    assert math.isnan(frechet.frechet_distance(frechet.SetFeatures(4), frechet.SetFeatures(4)))


def test_unknown_method_and_mismatched_dimensions_are_refused():
    with pytest.raises(ValueError, match="unknown"):
        frechet.frechet_from_stats(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), "sqrt")
    with pytest.raises(ValueError, match="differ"):
        frechet.frechet_from_stats(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
