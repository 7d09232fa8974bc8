"""Image input for SemSim: files or tensors -> the network's normalised input.

Tensors from users are checked and read once, here (``check_images``, ``to_unit``): [0, 1] or
[-1, 1] floats, uint8 pixel values, grey or RGB, a little out of range clamped; anything else
an ``InputError`` naming shape, dtype and value range, so ``metric.py`` keeps only the policy
of which convention each entry point takes.

One path for training and scoring: images are resized to the card's ``input_size`` (the
official code resizes every dataset to 32x32) with bilinear, antialiased interpolation, then
normalised with fixed constants that do not depend on the data being scored. The official
code uses CIFAR-100's mean/std for every dataset; so do we by default (``cifar100``), which
keeps a trained SemSim usable on any new domain without its statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, DataError, InputError

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


# How far (as a share of the value range) a float input may stray outside its range: such values
# are clamped, further ones are an error. Enough for float round-off, a resampling filter's
# overshoot or an attack's unclamped iterate (lpips checks nothing; torchmetrics rejects any
# excess), and far below the mistakes worth stopping: [-1, 1] images read as [0, 1] stray by
# 100% of the range, 0..255 ones by 25,000%.
TOLERANCE = 0.05


def _range_hint(lo: float, hi: float, signed: bool, flag: bool) -> str:
    """The likely mistake behind an out-of-range input, said in the caller's terms."""
    if hi > 1 + 2 * TOLERANCE and hi <= 255 and lo >= -TOLERANCE:
        return ("pixel values 0..255? pass a uint8 tensor, or divide by 255"
                + (" and use normalize=True" if flag else ""))
    if not signed and lo < 0 and lo >= -1 - 2 * TOLERANCE:
        return "values in [-1, 1]? " + ("use normalize=False" if flag else "map them to [0, 1] with (x + 1) / 2")
    return "clamp or rescale the images"


def check_images(x: object, what: str, signed: bool = False, flag: bool = False) -> None:
    """A batch of images SemSim can read, or an InputError naming shape, dtype and value range.

    Accepted: a tensor of shape (N, 3, H, W) or (N, 1, H, W); uint8 (pixel values 0..255, so any
    value is in range) or float in [0, 1], or in [-1, 1] when ``signed``, within ``TOLERANCE``;
    nothing NaN or infinite. ``flag``: the caller has lpips' ``normalize`` flag, which the hint
    then names."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{what}: expected a torch.Tensor of images, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        hint = "; for one image use x[None]" if x.ndim == 3 and x.shape[0] in (1, 3) else ""
        raise InputError(f"{what}: expected a tensor of shape (N, 3, H, W) or (N, 1, H, W), got {tuple(x.shape)} "
                         f"(dtype {x.dtype}){hint}")
    if x.dtype == torch.uint8:
        return
    low, high = (-1.0, 1.0) if signed else (0.0, 1.0)
    if not x.is_floating_point():
        raise InputError(f"{what}: expected a float tensor with values in [{low:g}, {high:g}] or a uint8 one "
                         f"(0..255), got dtype {x.dtype} (shape {tuple(x.shape)})")
    if not x.numel():
        return
    x = x.detach()
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{what}: contains NaN or infinite values (dtype {x.dtype}, shape {tuple(x.shape)})")
    lo, hi = (float(v) for v in torch.aminmax(x))
    slack = TOLERANCE * (high - low)
    if lo < low - slack or hi > high + slack:
        convention = (f" (normalize={not signed}, as lpips and torchmetrics read it)" if flag else "")
        raise InputError(f"{what}: values must lie in [{low:g}, {high:g}]{convention}, found [{lo:.4g}, {hi:.4g}] "
                         f"in a {x.dtype} tensor of shape {tuple(x.shape)}; {_range_hint(lo, hi, signed, flag)}")


def to_unit(x: torch.Tensor, signed: bool = False, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Images that passed ``check_images`` -> ``dtype`` NCHW in [0, 1] with 3 channels.

    uint8 is divided by 255 (torchvision's ``to_dtype(..., scale=True)``), whatever ``signed``
    says: its range is not in doubt. Float is mapped from [-1, 1] when ``signed``, then clamped
    to [0, 1] (values within the tolerance land on the edge, as when the image is saved to a
    file; a clamped value passes no gradient). One channel is repeated to three (grey as RGB)."""
    if x.dtype == torch.uint8:
        x = x.to(dtype).div(255.0)
    else:
        if signed:
            x = (x + 1) / 2
        x = x.clamp(0.0, 1.0).to(dtype)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def resize_uint8(img: np.ndarray, size: int) -> np.ndarray:
    """The training table's images at the input size (the scoring resize, rounded back to uint8)."""
    if img.shape[:2] == (size, size):
        return img
    x = resize(uint8_to_float(img[None]), size)
    return (x[0].permute(1, 2, 0).mul(255.0).round().clamp(0, 255)).to(torch.uint8).numpy()
