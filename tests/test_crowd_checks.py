"""The crowd checks' own measures (semsim_study/annotation/crowd_checks.py): what counts as
"nothing of the original visible", PSNR, and the changes people ignore."""

from __future__ import annotations

import numpy as np

from semsim_study.annotation import crowd_checks as cc


def _originals(n: int = 6, size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    out = np.zeros((n, size, size, 3), np.uint8)
    for k in range(n):  # a bright block somewhere on a dark ground: a shape a person sees
        y, x = rng.integers(2, size // 2, 2)
        out[k, y : y + 6, x : x + 5] = 220
    return out


def test_visibility_sees_moved_and_negative_copies_but_not_noise():
    o = _originals()
    assert np.allclose(cc.visibility(o, o), 1.0)
    moved = np.roll(o, (2, -1), axis=(1, 2))
    assert (cc.visibility(moved, o) > 0.9).all()  # inversion often returns the object moved
    assert np.allclose(cc.visibility(255 - o, o), 1.0)  # ... or in negative
    threshold = cc.invisible_threshold(o, [0.3] * 3, [0.3] * 3, np.random.default_rng(1))
    assert 0 < threshold < 0.9
    noise = cc.random_starts(o, [0.3] * 3, [0.3] * 3, np.random.default_rng(2), draws=1)
    assert (cc.visibility(noise, o) <= threshold).mean() > 0.8
    faint = np.clip(o.astype(float) * 0.5 + noise.astype(float) * 0.5, 0, 255).astype(np.uint8)
    assert (cc.visibility(faint, o) > threshold).all()  # half the signal shows


def test_threshold_is_seeded():
    o = _originals()
    a = cc.invisible_threshold(o, [0.5] * 3, [0.25] * 3, np.random.default_rng(5))
    assert a == cc.invisible_threshold(o, [0.5] * 3, [0.25] * 3, np.random.default_rng(5))


def test_psnr_and_the_changes_people_ignore():
    o = _originals()
    assert np.isinf(cc.psnr(o, o)).all()
    off = o.astype(int)
    off[..., 0] = np.clip(off[..., 0] + 10, 0, 255)
    assert np.allclose(cc.psnr(off.astype(np.uint8), o)[o[..., 0].max(axis=(1, 2)) < 245],
                       10 * np.log10(255**2 / (100 / 3)), atol=0.5)
    for name, change in cc.INVARIANCES.items():
        changed = np.clip(np.round(change(o)), 0, 255).astype(np.uint8)
        assert changed.shape == o.shape, name
        assert (cc.visibility(changed, o) > 0.9).all(), name  # the object is still all there
