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
    threshold, _ = cc.invisible_threshold(o, [0.3] * 3, [0.3] * 3, np.random.default_rng(1))
    assert 0 < threshold < 0.5  # unblurred, 16 px of noise rarely lines up with a shape by chance
    noise = cc.random_starts(o, [0.3] * 3, [0.3] * 3, np.random.default_rng(2), draws=1)
    assert (cc.visibility(noise, o) <= threshold).mean() > 0.8
    faint = np.clip(o.astype(float) * 0.5 + noise.astype(float) * 0.5, 0, 255).astype(np.uint8)
    assert (cc.visibility(faint, o) > threshold).all()  # half the signal shows
    far = np.zeros_like(o)
    far[:, 9:15, 10:15] = 220  # the block moved 7 px (half out of reach of a quarter-image search)
    assert (cc.visibility(far, np.roll(far, (-6, -6), axis=(1, 2))) > 0.9).all()


def test_colour_counts_as_something_visible():
    """Noise in the original's palette shows the palette; noise about the data's mean does not."""
    o = np.zeros((4, 16, 16, 3), np.uint8)
    o[..., 0] = 200  # a red field with a darker disc: a retina at 16 px
    o[:, 5:11, 5:11, 0] = 120
    rng = np.random.default_rng(3)
    _, floor = cc.invisible_threshold(o, [0.5] * 3, [0.25] * 3, np.random.default_rng(1))
    starts = cc.random_starts(o, [0.5] * 3, [0.25] * 3, rng, draws=1)
    assert (cc.colour_distance(starts, o) >= floor).mean() > 0.8
    red_noise = np.clip(o.astype(float) + rng.normal(0, 25, o.shape)[..., :1] * [1, 0, 0], 0, 255).astype(np.uint8)
    red_noise = np.take(red_noise.reshape(4, -1, 3), rng.permutation(256), axis=1).reshape(o.shape)  # no layout left
    assert (cc.colour_distance(red_noise, o) < floor).all()
    assert np.allclose(cc.colour_distance(o, o), 0)


def test_threshold_is_seeded():
    o = _originals()
    a, fa = cc.invisible_threshold(o, [0.5] * 3, [0.25] * 3, np.random.default_rng(5))
    b, fb = cc.invisible_threshold(o, [0.5] * 3, [0.25] * 3, np.random.default_rng(5))
    assert a == b and (fa == fb).all() and fa.shape == (len(o),)


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
