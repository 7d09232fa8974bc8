"""Colour augmentation for SemSim training: random saturation, hue and greyscale, per image.

Our addition to the official recipe (which only crops and flips). With a few hundred anchors
the triplet loss otherwise learns a colour shortcut (unrecognised reconstructions tend to be
saturated colour noise) that does not carry over to a held-out domain. Each image drawn for
training, in SemSim's triplets and the CE baseline's batches alike, gets independently:

1. saturation: blend with its greyscale by a factor drawn from U(1 - s, 1 + s), as
   torchvision's ``adjust_saturation`` (clamped to [0, 1]);
2. hue: its HSV hue shifted by a fraction of the circle drawn from U(-h, h), as
   torchvision's ``adjust_hue`` (h at most 0.5);
3. greyscale with probability g: every channel set to the luminance
   0.2989 R + 0.587 G + 0.114 B (torchvision's ``rgb_to_grayscale``), so the channels are equal.

Every random number comes from the NumPy generator that already draws the triplets, the
batch order and the crops/flips; the ops are plain float tensor arithmetic, so the same params
give the same bytes on a CPU. Geometry is never touched: only per-pixel colour changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from .. import params as P
from ..errors import ConfigError

KEY = "semsim.training.colour"
LIMITS = {"greyscale": 1.0, "hue": 0.5, "saturation": 1.0}
WHAT = {"greyscale": "the probability of turning an image grey",
        "hue": "the largest hue shift, a fraction of the colour circle",
        "saturation": "the largest relative change of saturation"}
LUMA = (0.2989, 0.587, 0.114)  # torchvision rgb_to_grayscale


@dataclass(frozen=True)
class ColourJitter:
    greyscale: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.greyscale or self.hue or self.saturation)

    def card(self) -> dict:
        return {"greyscale": self.greyscale, "hue": self.hue, "saturation": self.saturation}

    def describe(self) -> str:
        if not self.enabled:
            return "none"
        return (f"saturation x U({1 - self.saturation:g}, {1 + self.saturation:g}), hue shift U(-{self.hue:g}, "
                f"{self.hue:g}), greyscale p = {self.greyscale:g}")

    def __call__(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Jitter float NCHW RGB in [0, 1]; draws exactly 3 numbers per image from ``rng`` when enabled."""
        if not self.enabled or not len(x):
            return x
        n = x.shape[0]
        sat = rng.uniform(1.0 - self.saturation, 1.0 + self.saturation, size=n)
        hue = rng.uniform(-self.hue, self.hue, size=n)
        grey = rng.random(n) < self.greyscale
        if self.saturation:
            x = adjust_saturation(x, torch.from_numpy(sat).to(x.dtype))
        if self.hue:
            x = adjust_hue(x, torch.from_numpy(hue).to(x.dtype))
        if grey.any():
            x = x.clone()
            idx = torch.from_numpy(np.flatnonzero(grey))
            x[idx] = luminance(x[idx]).expand(-1, 3, -1, -1)
        return x


def from_params(params: Mapping) -> ColourJitter:
    """``semsim.training.colour``: {greyscale, hue, saturation}; absent (or all 0) = no colour jitter."""
    node = P.get(params, KEY, None, {})
    if node is None:
        node = {}
    if not isinstance(node, Mapping):
        raise ConfigError(f"params: '{KEY}' must be a mapping {{greyscale, hue, saturation}}, got {node!r}")
    P.known(params, KEY, LIMITS)
    values = {}
    for name, top in LIMITS.items():
        key = f"{KEY}.{name}"
        value = P.get(params, key, (int, float), 0.0)
        if not (np.isfinite(value) and 0.0 <= value <= top):
            raise ConfigError(f"params: '{key}' ({WHAT[name]}) must lie in [0, {top:g}] (0 disables it), "
                              f"got {value!r}")
        values[name] = float(value)
    return ColourJitter(**values)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """NCHW RGB -> N1HW luminance (ITU-R 601-2, as torchvision's rgb_to_grayscale)."""
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per image: factor * x + (1 - factor) * grey(x), clamped to [0, 1]; factor 1 = unchanged."""
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1.0 - f) * luminance(x)).clamp_(0.0, 1.0)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Per image: rotate the HSV hue by ``shift`` (a fraction of the circle, in [-0.5, 0.5])."""
    h, s, v = _rgb_to_hsv(x)
    h = torch.remainder(h + shift.view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(h, s, v)


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    grey = delta == 0
    s = delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    d = torch.where(grey, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(grey, torch.zeros_like(h), h)
    return h, s, maxc


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = i.to(torch.int64) % 6
    p = v * (1.0 - s)
    q = v * (1.0 - s * f)
    t = v * (1.0 - s * (1.0 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.empty(h.shape[0], 3, *h.shape[1:], dtype=h.dtype, device=h.device)
    for c in range(3):
        stack = torch.stack([choice[c] for choice in choices], dim=1)
        out[:, c] = stack.gather(1, i.unsqueeze(1)).squeeze(1)
    return out.clamp_(0.0, 1.0)
