"""Image input for SemSim: files or [0, 1] tensors -> the network's normalised input.

One path for training and scoring: images are resized to the card's ``input_size`` (the
official code resizes every dataset to 32x32) with bilinear, antialiased interpolation, then
normalised with fixed constants that do not depend on the data being scored. The official
code uses CIFAR-100's mean/std for every dataset; so do we by default (``cifar100``), which
keeps a trained SemSim usable on any new domain without its statistics.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, DataError

# inversefed's constants (the official SemSim code normalises every dataset with these)
NORMALIZATIONS: dict[str, tuple[list[float], list[float]]] = {
    "cifar100": ([0.5071598291397095, 0.4866936206817627, 0.44120192527770996],
                 [0.2673342823982239, 0.2564384639263153, 0.2761504650115967]),
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}


def normalization(name: str) -> dict:
    if name not in NORMALIZATIONS:
        raise ConfigError(f"unknown SemSim normalization {name!r}; valid: {', '.join(sorted(NORMALIZATIONS))}")
    mean, std = NORMALIZATIONS[name]
    return {"name": name, "mean": list(mean), "std": list(std)}


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as uint8 HxWx3 (grey, palette and alpha images converted to RGB), fully
    decoded, or a DataError naming the file (as datasets.imaging.decode, whose package import
    would pull every dataset builder into this stage)."""
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or corrupt image ({exc})") from None


def uint8_to_float(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 NHWC (or a list of HWC arrays of one size) -> float NCHW in [0, 1]."""
    arr = np.ascontiguousarray(np.stack(images) if not isinstance(images, np.ndarray) else images)
    return torch.from_numpy(arr.copy() if not arr.flags.writeable else arr).permute(0, 3, 1, 2).float().div_(255.0)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize of float NCHW to size x size (a no-op at that size)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def normalize_input(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def check_tensor(x: torch.Tensor, what: str) -> None:
    """A batch of RGB images in [0, 1], float, NCHW; otherwise a DataError saying what is wrong."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise DataError(f"{what}: expected a tensor of shape (N, 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise DataError(f"{what}: expected a float tensor with values in [0, 1], got dtype {x.dtype}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise DataError(f"{what}: contains NaN or infinite values")
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-6 or hi > 1 + 1e-6 or math.isnan(lo):
            raise DataError(f"{what}: values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]")


def resize_uint8(img: np.ndarray, size: int) -> np.ndarray:
    """The training table's images at the input size (the scoring resize, rounded back to uint8)."""
    if img.shape[:2] == (size, size):
        return img
    x = resize(uint8_to_float(img[None]), size)
    return (x[0].permute(1, 2, 0).mul(255.0).round().clamp(0, 255)).to(torch.uint8).numpy()
