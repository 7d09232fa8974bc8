"""Where the report finds each reconstruction and its original, and how it reads them.

The attack stage's ``data/attacks/<ds>/<attack>/index.csv`` names both PNGs per item; the page
embeds them as data URIs (one self-contained file) and the disagreement figure draws them.
"""

from __future__ import annotations

import base64
import csv
from pathlib import Path

import numpy as np


def image_paths(root: Path, dataset: str, attacks: list[str]) -> dict[str, tuple[Path, Path]]:
    """item_id -> (original, reconstruction) PNG paths, from each attack's index.csv."""
    out = {}
    for attack in attacks:
        folder = Path(root) / "data" / "attacks" / dataset / attack
        try:
            with open(folder / "index.csv", encoding="utf-8", newline="") as fh:
                for row in csv.DictReader(fh):
                    out[row["item_id"]] = (folder / row["original"], folder / row["reconstruction"])
        except (OSError, KeyError):
            continue
    return out


def _png_bytes(path: Path | None) -> bytes | None:
    """The file's bytes if it is a PNG; None when missing or not a PNG (the page says 'no image')."""
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    return data if data.startswith(b"\x89PNG") else None


def data_uri(path: Path | None) -> str | None:
    data = _png_bytes(path)
    return None if data is None else "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def rgb(path: Path | None) -> np.ndarray | None:
    """The PNG as an H x W x 3 uint8 array (greyscale and alpha converted), or None."""
    if _png_bytes(path) is None:
        return None
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
