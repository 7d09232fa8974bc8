"""MSE, PSNR and SSIM for batches of uint8 image pairs, on torch, in float64.

Definitions follow the paper's code (``metrics/pixel_level_metrics.py``), which calls
scikit-image on uint8 arrays read with OpenCV:

- MSE: ``mean_squared_error(ori / 255, rec / 255)``, i.e. on the [0, 1] scale.
- PSNR: ``peak_signal_noise_ratio(ori, rec)`` on uint8, so the data range is 255:
  ``10 log10(255^2 / mse_255)``. Identical images have no noise, and the formula gives +inf,
  which would turn every set average into inf. Here they get the PSNR of the smallest
  non-zero error an 8-bit image of that size can have (one value off by one grey level:
  ``mse_255 = 1 / (H W C)``), i.e. ``10 log10(255^2 H W C)``: finite, and above the PSNR of
  every pair that differs at all (83.0 dB at 32x32x3). ``PSNR_IDENTICAL`` documents it.
- SSIM: ``structural_similarity(ori, rec, channel_axis=-1)`` on uint8: a 7x7 uniform window,
  sample covariance (N / (N - 1)), K1 0.01, K2 0.03, data range 255, computed per channel
  and averaged; scikit-image ignores the 3-pixel border the window cannot cover, so the
  mean runs over the "valid" positions only: a 7x7 box mean without padding (``box_mean``).
  Batched here; tests check it against scikit-image to 1e-6.

Batching on torch makes these a handful of tensor operations per batch instead of three
scikit-image calls (and their filters) per image.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

DATA_RANGE = 255.0
SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03
PSNR_IDENTICAL = "10*log10(255^2 * H*W*C): the PSNR of one 8-bit step in one value"

# name -> per-pair function of float64 (N, C, H, W) batches on the 0..255 scale. A function
# registered here is computed by the metrics stage for every reconstruction, under its name:
# adding a pixel metric is its entry in metric_table.METRICS and its decorated function.
PIXEL: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}


def pixel_metric(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    PIXEL[fn.__name__] = fn
    return fn


def as_float64(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float64 (N, C, H, W) on the 0..255 scale."""
    t = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if t.ndim == 3:
        t = t.unsqueeze(-1)
    return t.permute(0, 3, 1, 2).to(torch.float64)


@pixel_metric
def mse(ori: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
    """Per-pair MSE on the [0, 1] scale; inputs float64 (N, C, H, W) on the 0..255 scale."""
    return ((ori - rec) / DATA_RANGE).pow(2).flatten(1).mean(1)


@pixel_metric
def psnr(ori: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
    """Per-pair PSNR in dB with data range 255; identical pairs get the finite cap (module doc)."""
    err = (ori - rec).pow(2).flatten(1).mean(1)
    floor = 1.0 / ori[0].numel()  # one 8-bit step in one of H*W*C values
    return 10.0 * torch.log10(DATA_RANGE**2 / torch.where(err > 0, err, torch.full_like(err, floor)))


def psnr_identical(height: int, width: int, channels: int = 3) -> float:
    """The PSNR given to a pair of identical images of this size."""
    return 10.0 * math.log10(DATA_RANGE**2 * height * width * channels)


def box_mean(t: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over every k x k window that fits inside the last two dims ("valid" mode).

    Separable running sums (cumsum, then differences k apart): about twice as fast on a CPU
    as ``avg_pool2d(t, k, stride=1)`` and equal to it within 1e-12 in float64.
    """
    c = F.pad(t.cumsum(-1), (1, 0))
    t = c[..., k:] - c[..., :-k]
    c = F.pad(t.cumsum(-2), (0, 0, 1, 0))
    return (c[..., k:, :] - c[..., :-k, :]) / (k * k)


@pixel_metric
def ssim(ori: torch.Tensor, rec: torch.Tensor, win_size: int = SSIM_WINDOW) -> torch.Tensor:
    """Per-pair mean SSIM as scikit-image computes it (uniform window, channel mean)."""
    if min(ori.shape[-2:]) < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}x{win_size}, got {tuple(ori.shape[-2:])}")
    n = win_size * win_size
    cov_norm = n / (n - 1)
    ux, uy, uxx, uyy, uxy = box_mean(torch.stack([ori, rec, ori * ori, rec * rec, ori * rec]), win_size)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(dim=1)


def pixel_metrics(ori: np.ndarray, rec: np.ndarray) -> dict[str, np.ndarray]:
    """Every registered pixel metric for uint8 batches (N, H, W, C): name -> float64 array of length N."""
    a, b = as_float64(ori), as_float64(rec)
    return {name: fn(a, b).numpy() for name, fn in PIXEL.items()}
