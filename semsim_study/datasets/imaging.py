"""Small image helpers shared by the dataset builders (PIL-based, deterministic on CPU)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

RESAMPLE = Image.Resampling.BICUBIC


def to_rgb_array(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Scale the shorter side to ``size`` and crop the centre square.

    The paper's code resizes with an int (aspect ratio kept) and then random-crops at training
    time; the stored standard form needs one fixed square per image, so the crop is central.
    """
    img = img.convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), RESAMPLE)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def decode(data: bytes | str | Path, name: str | None = None) -> Image.Image:
    """Open an image from bytes or a path, fully decoded, or raise DataError naming it."""
    label = name or str(data if not isinstance(data, bytes) else "<bytes>")
    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        with Image.open(src) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{label}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{label}: unreadable or corrupt image ({exc})") from None


def read_png(path: str | Path, missing: str = "image missing (rerun the attack stage)") -> np.ndarray:
    """A stored image (PNG, or any format PIL reads) as uint8 HWC RGB; DataError ``<path>: <missing>``
    when the file is not there, naming the file when it cannot be decoded."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: {missing}") from None
    return np.asarray(decode(data, str(path)))


def save_png(arr: np.ndarray, path: str | Path) -> None:
    """PNG without timestamps or other metadata, so the same pixels give the same bytes."""
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path, format="PNG", optimize=False)


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()
