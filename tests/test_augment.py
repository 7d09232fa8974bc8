"""ATS policies against their definition: the operation, the magnitude, the order, the sign."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from semsim_study import augment
from semsim_study.errors import ConfigError


class FixedSigns:
    """A stand-in generator whose draws are scripted, to pin each sign and crop offset."""

    def __init__(self, randoms, integers=()):
        self._r, self._i = list(randoms), list(integers)

    def random(self, size=None):
        return self._r.pop(0) if size is None else np.array([self._r.pop(0) for _ in range(size)])

    def integers(self, lo, hi=None, size=None):
        return self._i.pop(0) if size is None else np.array([self._i.pop(0) for _ in range(size)])


def _square(size=32):
    img = np.zeros((size, size, 3), np.uint8)
    img[8:16, 8:16] = (200, 100, 50)
    return img


def test_paper_policy_ids_map_to_the_reference_ops():
    assert [augment.SUB_POLICIES[i] for i in (3, 1, 7)] == [("translateX", 9), ("contrast", 6), ("translateY", 2)]
    assert [augment.SUB_POLICIES[i] for i in (43, 18, 18)] == [("translateY", 3), ("contrast", 7), ("contrast", 7)]
    assert len(augment.SUB_POLICIES) == 50


def test_magnitude_tables():
    assert augment.MAGNITUDES["translateX"][9] == pytest.approx(150 / 331)  # 0.4532 of the width
    assert augment.MAGNITUDES["translateY"][2] == pytest.approx(0.1007, abs=1e-4)
    assert augment.MAGNITUDES["translateY"][3] == pytest.approx(0.1511, abs=1e-4)
    assert augment.MAGNITUDES["contrast"][6] == pytest.approx(1 / 3)
    assert augment.MAGNITUDES["contrast"][7] == pytest.approx(0.3889, abs=1e-4)
    assert list(augment.MAGNITUDES["posterize"][[0, 9]]) == [8, 4]


@pytest.mark.parametrize("draw,direction", [(0.1, -1), (0.9, 1)])
def test_translate_x_shifts_by_the_magnitude_with_black_fill(draw, direction):
    """At 64 px, level 9 moves content by 0.4532 * 64 = 29 px; sign +1 (draw < 0.5) moves it left."""
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, 31:33] = 200
    out = np.asarray(augment.apply_op(Image.fromarray(img), "translateX", 9, FixedSigns([draw])))
    cols = np.flatnonzero(out[:, :, 0].max(0))
    assert abs((cols.mean() - 31.5) - direction * 29) <= 1
    assert out[:, 31:33].max() == 0  # the stripe has left its place
    assert set(np.unique(out)) <= {0, 200}  # nearest sampling, black fill: no blended pixels


def test_translate_y_fills_black():
    img = np.full((32, 32, 3), 255, np.uint8)
    out = np.asarray(augment.apply_op(Image.fromarray(img), "translateY", 3, FixedSigns([0.1])))
    shift = round(0.1511 * 32)
    assert out[-shift + 1:].max() == 0 and out[: 32 - shift - 1].min() == 255


def test_contrast_is_pil_enhance_with_signed_factor():
    img = Image.fromarray((np.arange(32 * 32 * 3).reshape(32, 32, 3) % 256).astype(np.uint8))
    for draw, factor in ((0.1, 1 + 1 / 3), (0.9, 1 - 1 / 3)):
        out = augment.apply_op(img, "contrast", 6, FixedSigns([draw]))
        assert np.array_equal(np.asarray(out), np.asarray(ImageEnhance.Contrast(img).enhance(factor)))


def test_policy_applies_every_op_in_order_after_crop_and_flip():
    """3-1-7 = translateX(9), contrast(6), translateY(2), each always (the stored p is ignored)."""
    img = _square()
    aug = augment.Augmentation(crop_flip=True, policy="3-1-7")
    # crop offsets (4, 4) = no shift, flip draw 0.9 = no flip, then three signs
    rng = FixedSigns([0.9, 0.1, 0.1, 0.1], integers=[4, 4])
    got = aug(img, rng)
    pil = Image.fromarray(img)
    step = augment.apply_op(pil, "translateX", 9, FixedSigns([0.1]))
    step = augment.apply_op(step, "contrast", 6, FixedSigns([0.1]))
    step = augment.apply_op(step, "translateY", 2, FixedSigns([0.1]))
    assert np.array_equal(got, np.asarray(step))


def test_policy_ops_are_applied_in_order(monkeypatch):
    calls = []
    real = augment.apply_op
    monkeypatch.setattr(augment, "apply_op", lambda img, op, level, rng: calls.append((op, level)) or real(img, op, level, rng))
    augment.Augmentation(crop_flip=True, policy="43-18-18")(_square(), np.random.default_rng(0))
    assert calls == [("translateY", 3), ("contrast", 7), ("contrast", 7)]


def test_hybrid_policy_picks_one_whole_alternative_per_image(monkeypatch):
    aug = augment.Augmentation(crop_flip=True, policy="3-1-7+43-18-18")
    assert aug.alternatives == [[3, 1, 7], [43, 18, 18]]
    calls = []
    real = augment.apply_op
    monkeypatch.setattr(augment, "apply_op", lambda img, op, level, rng: calls.append(op) or real(img, op, level, rng))
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(30):
        calls.clear()
        aug(_square(), rng)
        seen.add(tuple(calls))
    assert seen == {("translateX", "contrast", "translateY"), ("translateY", "contrast", "contrast")}


def test_crop_flip_pads_with_zeros_and_is_seeded():
    img = np.full((32, 32, 3), 255, np.uint8)
    out = augment.random_crop_flip(img, FixedSigns([0.9], integers=[0, 8]))  # window at padded (y 0, x 8)
    assert out[:4].max() == 0 and out[:, 28:].max() == 0  # 4 rows of top padding, 4 cols of right padding
    assert out[4:, :28].min() == 255
    a = augment.Augmentation(crop_flip=True).batch(np.stack([_square()] * 4), np.random.default_rng(3))
    b = augment.Augmentation(crop_flip=True).batch(np.stack([_square()] * 4), np.random.default_rng(3))
    assert np.array_equal(a, b)


def test_no_augmentation_returns_images_untouched():
    x = np.stack([_square()] * 3)
    assert augment.Augmentation().batch(x, np.random.default_rng(0)) is x


@pytest.mark.parametrize("op", sorted(augment.MAGNITUDES))
def test_every_operation_runs_at_every_level(op):
    img = Image.fromarray(_square())
    for level in range(augment.LEVELS):
        out = augment.apply_op(img, op, level, np.random.default_rng(level))
        assert out.size == img.size and out.mode == "RGB"


def test_bad_policies_are_config_errors():
    with pytest.raises(ConfigError, match="outside 0..49"):
        augment.parse_policy("3-1-70")
    with pytest.raises(ConfigError, match="must be integers"):
        augment.parse_policy("3-x-7")
    with pytest.raises(ConfigError, match="set augment: crop"):
        augment.from_config({"augment": "none", "policy": "3-1-7"}, "train.settings.bad")
