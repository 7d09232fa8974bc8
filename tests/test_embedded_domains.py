"""The five offline domains: shapes, classes, protocols, determinism, and learnability."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from semsim_study.datasets import build, embedded
from semsim_study.errors import ConfigError

DOMAINS = ["digits", "photos", "faces", "glyphs", "shapes"]
EXPECTED = {  # name: (classes, protocol)
    "digits": (10, "A"),
    "photos": (12, "A"),
    "faces": (12, "B"),
    "glyphs": (12, "B"),
    "shapes": (8, "A"),
}


@pytest.fixture(scope="module")
def built(tiny_params):
    return {name: build.prepare(tiny_params, name) for name in DOMAINS}


@pytest.mark.parametrize("name", DOMAINS)
def test_domain_shapes_classes_protocol(built, name):
    ds, split, idx = built[name]
    classes, protocol = EXPECTED[name]
    assert ds.num_classes == classes
    assert ds.protocol == protocol
    for s in ("train", "test"):
        x = ds.images(s)
        size = ds.image_size
        assert x.dtype == np.uint8 and x.shape[1:] == (size, size, 3) and size in (16, 32)
        assert set(np.unique(ds.labels(s))) <= set(range(classes))
    assert set(np.unique(ds.train_labels)) == set(range(classes))
    assert ds.source["offline_stand_in"] is True and ds.source["stand_in_for"]
    # real variation, not a constant image per class
    assert ds.train_images.reshape(len(ds.train_images), -1).std(0).mean() > 10


@pytest.mark.parametrize("name", DOMAINS)
def test_domain_is_deterministic_per_seed(tiny_params, built, name):
    again, _, idx_again = build.prepare(tiny_params, name)
    ds, _, idx = built[name]
    assert np.array_equal(ds.train_images, again.train_images)
    assert np.array_equal(ds.test_labels, again.test_labels)
    assert np.array_equal(idx, idx_again)
    other = copy.deepcopy(tiny_params)
    other["seed"] = tiny_params["seed"] + 1
    changed, _, _ = build.prepare(other, name)
    if name != "digits":  # digits are the fixed scikit-learn set; only the split moves
        assert not np.array_equal(ds.train_images, changed.train_images)
    assert not np.array_equal(ds.test_labels, changed.test_labels) or not np.array_equal(ds.train_images, changed.train_images)


@pytest.mark.parametrize("name", DOMAINS)
def test_attack_subset_is_stratified(built, name):
    ds, split, idx = built[name]
    labels = ds.labels(split)[idx]
    assert len(idx) == len(set(idx.tolist()))
    counts = np.bincount(labels, minlength=ds.num_classes)
    assert counts.max() - counts[counts > 0].min() <= 1
    if len(idx) <= ds.num_classes:
        assert len(set(labels.tolist())) == len(idx)


def _features(x: np.ndarray) -> np.ndarray:
    """Raw colour at 8x8, plus HOG of the grey image's distance from its border (background)
    colour, so that glyphs and shapes drawn in random colours on random backgrounds are
    compared by form; a linear model on these is a cheap stand-in for a small CNN."""
    from skimage.feature import hog

    k = x.shape[1] // 8
    small = x.reshape(len(x), 8, k, 8, k, 3).mean((2, 4)).reshape(len(x), -1) / 255.0
    g = x.astype(np.float32).mean(-1) / 255.0
    border = np.concatenate([g[:, 0, :], g[:, -1, :], g[:, :, 0], g[:, :, -1]], axis=1)
    g = np.abs(g - np.median(border, axis=1)[:, None, None])
    return np.hstack([small, np.stack([hog(im, pixels_per_cell=(8, 8), cells_per_block=(2, 2)) for im in g])])


@pytest.mark.parametrize("name", DOMAINS)
def test_a_linear_classifier_beats_chance(embedded_params, name):
    """Classes must be learnable from pixels, or the study's classifiers would learn nothing.

    Checked on the embedded profile as shipped, which is what the classifiers will see."""
    from sklearn.linear_model import RidgeClassifier

    ds, _, _ = build.prepare(embedded_params, name)
    clf = RidgeClassifier(alpha=1.0).fit(_features(ds.train_images), ds.train_labels)
    acc = (clf.predict(_features(ds.test_images)) == ds.test_labels).mean()
    assert acc > 2.5 / ds.num_classes, f"{name}: test accuracy {acc:.2f} is near chance"


def test_every_glyph_font_draws_every_letter(embedded_params):
    from PIL import Image, ImageDraw, ImageFont

    cfg = embedded_params["prepare"]["glyphs"]
    for path in embedded.font_files(cfg["fonts"]):
        font = ImageFont.truetype(str(path), 40)
        shapes = set()
        for ch in cfg["characters"]:
            img = Image.new("L", (80, 80), 0)
            ImageDraw.Draw(img).text((40, 40), ch, font=font, fill=255, anchor="mm")
            shapes.add(img.tobytes())
        assert len(shapes) == len(cfg["characters"]), f"{path.name} draws some letters identically (missing glyphs)"


def test_unknown_font_names_the_available_ones():
    with pytest.raises(ConfigError, match="available: .*DejaVuSans.ttf"):
        embedded.font_files(["NoSuchFont.ttf"])


def test_unknown_shape_and_photo_are_config_errors(tiny_params):
    p = copy.deepcopy(tiny_params)
    p["prepare"]["shapes"]["shapes"] = ["circle", "blob"]
    with pytest.raises(ConfigError, match="unknown shape 'blob'"):
        build.prepare(p, "shapes")
    p["prepare"]["photos"]["photos"] = ["astronaut", "nonexistent_photo"]
    with pytest.raises(ConfigError, match="nonexistent_photo"):
        build.prepare(p, "photos")
