"""MSE, PSNR, SSIM: known values, identical images, and agreement with scikit-image on real photos."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
from skimage.filters import gaussian
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from semsim_study.metrics import pixel


def _photo_pairs():
    """Four real photos (same crop size), each with Gaussian noise and with a blur."""
    rng = np.random.default_rng(0)
    out = []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        img = getattr(skimage.data, name)()[:96, :128]
        noisy = np.clip(img + rng.normal(0, 25, img.shape), 0, 255).astype(np.uint8)
        blurred = (gaussian(img, sigma=1.5, channel_axis=-1) * 255).round().astype(np.uint8)
        out += [(img, noisy), (img, blurred)]
    return out


def test_agrees_with_scikit_image_on_noisy_and_blurred_photos():
    pairs = _photo_pairs()
    ori = np.stack([a for a, _ in pairs])
    rec = np.stack([b for _, b in pairs])
    got = pixel.pixel_metrics(ori, rec)  # one batch of 8 non-square pairs
    for i, (a, b) in enumerate(pairs):
        assert got["ssim"][i] == pytest.approx(structural_similarity(a, b, channel_axis=-1), abs=1e-6)
        assert got["psnr"][i] == pytest.approx(peak_signal_noise_ratio(a, b), abs=1e-6)
        assert got["mse"][i] == pytest.approx(mean_squared_error(a / 255, b / 255), abs=1e-9)
    assert 0.05 < got["ssim"].min() < got["ssim"].max() < 0.99  # the cases are neither trivial nor identical


def test_agrees_with_scikit_image_on_a_grey_photo():
    img = skimage.data.camera()[::8, ::8]
    rec = np.clip(img.astype(int) + 30, 0, 255).astype(np.uint8)
    got = pixel.pixel_metrics(img[None], rec[None])
    assert got["ssim"][0] == pytest.approx(structural_similarity(img, rec), abs=1e-6)
    assert got["psnr"][0] == pytest.approx(peak_signal_noise_ratio(img, rec), abs=1e-6)


def test_identical_images():
    img = skimage.data.astronaut()[:32, :32][None]
    got = pixel.pixel_metrics(img, img.copy())
    assert got["mse"][0] == 0.0
    assert got["ssim"][0] == pytest.approx(1.0, abs=1e-12)
    cap = pixel.psnr_identical(32, 32, 3)
    assert got["psnr"][0] == pytest.approx(cap) and math.isfinite(cap)
    assert cap == pytest.approx(10 * math.log10(255**2 * 32 * 32 * 3))
    one_step = img.copy()
    one_step[0, 5, 5, 1] += 1  # the smallest possible difference reaches the cap, never more
    two_steps = img.copy()
    two_steps[0, 5, 5, :2] += 1
    assert pixel.pixel_metrics(img, one_step)["psnr"][0] == pytest.approx(cap)
    assert pixel.pixel_metrics(img, two_steps)["psnr"][0] < cap


def test_known_values_on_constant_images():
    black = np.zeros((1, 16, 16, 3), np.uint8)
    white = np.full((1, 16, 16, 3), 255, np.uint8)
    got = pixel.pixel_metrics(black, white)
    assert got["mse"][0] == 1.0 and got["psnr"][0] == pytest.approx(0.0, abs=1e-12)

    a = np.full((1, 16, 16, 3), 100, np.uint8)
    b = np.full((1, 16, 16, 3), 110, np.uint8)
    got = pixel.pixel_metrics(a, b)
    assert got["mse"][0] == pytest.approx((10 / 255) ** 2)
    assert got["psnr"][0] == pytest.approx(20 * math.log10(255 / 10))
    c1 = (0.01 * 255) ** 2  # variances vanish: SSIM is the luminance term alone
    assert got["ssim"][0] == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1))


@pytest.fixture
def one_thread():
    """The metrics stage runs on one torch thread; with more, float sums split by batch size
    and a pair's value may differ in the last bit (this test then depended on test order)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_batch_results_do_not_depend_on_batch_composition(one_thread):
    pairs = _photo_pairs()
    ori = np.stack([a for a, _ in pairs])
    rec = np.stack([b for _, b in pairs])
    whole = pixel.pixel_metrics(ori, rec)
    for i in range(len(pairs)):
        one = pixel.pixel_metrics(ori[i : i + 1], rec[i : i + 1])
        for k in whole:
            assert one[k][0] == whole[k][i]


def test_images_smaller_than_the_window_are_refused():
    tiny = np.zeros((1, 5, 5, 3), np.uint8)
    with pytest.raises(ValueError, match="at least 7x7"):
        pixel.pixel_metrics(tiny, tiny)


def test_every_pixel_function_is_a_table_metric_and_a_stage_column():
    """Adding a pixel metric is its table entry and its @pixel_metric function: the stage's
    columns follow, and a function without an entry (or an entry without one) fails here."""
    from semsim_study import metric_table as T
    from semsim_study.metrics import compute

    image = set(T.names(stage="metrics", level="image"))
    assert set(pixel.PIXEL) == image - {"lpips", "classification"}  # those two need networks
    assert set(pixel.PIXEL) <= set(compute.IMAGE_COLUMNS)
    a = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert set(pixel.pixel_metrics(a, a)) == set(pixel.PIXEL)
