"""Training-time augmentations: crop+flip and the ATS policies (Gao et al., CVPR 2021).

Reproduced from the ATSPrivacy / SemSim code's facts (``policy.py``, ``autoaugment.py``):

- a policy id like ``3-1-7`` is a sequence of indices into the 50 sub-policies below; ``+``
  separates alternative policies, one drawn uniformly per image;
- the pipeline is RandomCrop(size, padding 4) -> horizontal flip (p 0.5) -> every operation
  of the chosen policy, in order. The reference stores a probability per sub-policy but its
  ``__call__`` ignores it, so every operation always applies; so do we;
- magnitudes are ``linspace`` tables over 10 levels; each call draws its sign (+/-) anew;
- translations are PIL affine transforms with nearest sampling and black fill, by a
  fraction of the image size (150/331 at level 9, i.e. +/-14.5 px at 32 px).

All randomness comes from one ``numpy.random.Generator`` (the reference mixes Python's
``random`` and NumPy's global state), so a seed fixes every augmented image.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from .errors import ConfigError

LEVELS = 10
MAGNITUDES: dict[str, np.ndarray] = {
    "shearX": np.linspace(0, 0.3, LEVELS),
    "shearY": np.linspace(0, 0.3, LEVELS),
    "translateX": np.linspace(0, 150 / 331, LEVELS),
    "translateY": np.linspace(0, 150 / 331, LEVELS),
    "rotate": np.linspace(0, 30, LEVELS),
    "color": np.linspace(0.0, 0.5, LEVELS),
    "contrast": np.linspace(0.0, 0.5, LEVELS),
    "sharpness": np.linspace(0.0, 0.5, LEVELS),
    "brightness": np.linspace(0.0, 0.5, LEVELS),
    "posterize": np.round(np.linspace(8, 4, LEVELS)).astype(int),
    "solarize": np.linspace(256, 0, LEVELS),
    "autocontrast": np.zeros(LEVELS),
    "equalize": np.zeros(LEVELS),
    "invert": np.zeros(LEVELS),
}
BLACK = (0, 0, 0)

# The 50 ATS sub-policies: (operation, magnitude level); index = position in this list.
# Operations without a magnitude (autocontrast, equalize, invert) carry level 0.
SUB_POLICIES: list[tuple[str, int]] = [
    ("invert", 0), ("contrast", 6), ("rotate", 2), ("translateX", 9), ("sharpness", 1),
    ("sharpness", 3), ("shearY", 2), ("translateY", 2), ("autocontrast", 0), ("equalize", 0),
    ("shearY", 5), ("posterize", 5), ("color", 3), ("brightness", 5), ("sharpness", 9),
    ("brightness", 9), ("equalize", 0), ("equalize", 0), ("contrast", 7), ("sharpness", 5),
    ("color", 5), ("translateX", 5), ("equalize", 0), ("autocontrast", 0), ("translateY", 3),
    ("sharpness", 6), ("brightness", 6), ("color", 8), ("solarize", 0), ("invert", 0),
    ("equalize", 0), ("autocontrast", 0), ("equalize", 0), ("equalize", 0), ("color", 5),
    ("equalize", 0), ("autocontrast", 0), ("solarize", 4), ("brightness", 3), ("color", 0),
    ("solarize", 1), ("autocontrast", 0), ("translateY", 3), ("translateY", 3), ("autocontrast", 0),
    ("solarize", 1), ("equalize", 0), ("invert", 0), ("translateY", 3), ("autocontrast", 0),
]


def _sign(rng: np.random.Generator) -> int:
    return 1 if rng.random() < 0.5 else -1


def _rotate(img: Image.Image, degrees: float) -> Image.Image:
    """Rotate and fill the uncovered corners with grey 128, as AutoAugment's reference does."""
    rgba = img.convert("RGBA").rotate(degrees)
    grey = Image.new("RGBA", rgba.size, (128,) * 4)
    return Image.composite(rgba, grey, rgba).convert(img.mode)


def apply_op(img: Image.Image, op: str, level: int, rng: np.random.Generator) -> Image.Image:
    """One ATS operation at a magnitude level (sign drawn from ``rng`` where the op has one)."""
    m = MAGNITUDES[op][level]
    w, h = img.size
    if op == "translateX":
        return img.transform(img.size, Image.Transform.AFFINE, (1, 0, m * w * _sign(rng), 0, 1, 0),
                             Image.Resampling.NEAREST, fillcolor=BLACK)
    if op == "translateY":
        return img.transform(img.size, Image.Transform.AFFINE, (1, 0, 0, 0, 1, m * h * _sign(rng)),
                             Image.Resampling.NEAREST, fillcolor=BLACK)
    if op == "shearX":
        return img.transform(img.size, Image.Transform.AFFINE, (1, m * _sign(rng), 0, 0, 1, 0),
                             Image.Resampling.BICUBIC, fillcolor=BLACK)
    if op == "shearY":
        return img.transform(img.size, Image.Transform.AFFINE, (1, 0, 0, m * _sign(rng), 1, 0),
                             Image.Resampling.BICUBIC, fillcolor=BLACK)
    if op == "rotate":
        return _rotate(img, m * _sign(rng))
    if op in ("color", "contrast", "sharpness", "brightness"):
        enhancer = {"color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast,
                    "sharpness": ImageEnhance.Sharpness, "brightness": ImageEnhance.Brightness}[op]
        return enhancer(img).enhance(1 + m * _sign(rng))
    if op == "posterize":
        return ImageOps.posterize(img, int(m))
    if op == "solarize":
        return ImageOps.solarize(img, m)
    if op == "autocontrast":
        return ImageOps.autocontrast(img)
    if op == "equalize":
        return ImageOps.equalize(img)
    if op == "invert":
        return ImageOps.invert(img)
    raise ConfigError(f"unknown ATS operation {op!r}")


def parse_policy(policy: str) -> list[list[int]]:
    """``'3-1-7+43-18-18'`` -> ``[[3, 1, 7], [43, 18, 18]]``; bad ids name the policy."""
    alternatives = []
    for part in str(policy).split("+"):
        try:
            ids = [int(tok) for tok in part.split("-")]
        except ValueError:
            raise ConfigError(f"ATS policy {policy!r}: ids must be integers joined by '-' (and '+')") from None
        bad = [i for i in ids if not 0 <= i < len(SUB_POLICIES)]
        if bad:
            raise ConfigError(f"ATS policy {policy!r}: ids {bad} outside 0..{len(SUB_POLICIES) - 1}")
        alternatives.append(ids)
    return alternatives


def random_crop_flip(img: np.ndarray, rng: np.random.Generator, padding: int = 4) -> np.ndarray:
    """RandomCrop(size, padding) with zero padding, then a horizontal flip with p = 0.5: one image
    (``crop_flip_batch`` of a batch of one; the same draws: row, column, flip)."""
    return crop_flip_batch(img[None], rng, padding)[0]


def crop_flip_batch(images: np.ndarray, rng: np.random.Generator, padding: int = 4,
                    groups: int | None = None) -> np.ndarray:
    """RandomCrop(size, padding) with zero padding, then a horizontal flip with p = 0.5.

    The transform of torchvision's (as the official code), with the padding done once per
    batch: padding image by image cost a quarter of the time.
    ``groups=None`` draws one crop and flip per image; ``groups=n`` draws n of them and gives
    image i draw ``i % n``: a batch laid out as [anchors, positives, negatives] of n triplets
    then shares one transform per triplet.
    """
    n, h, w = images.shape[:3]
    k = n if groups is None else groups
    if n % k:
        raise ValueError(f"{n} images do not split into {k} groups of equal size")
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ys = rng.integers(0, 2 * padding + 1, size=k)
    xs = rng.integers(0, 2 * padding + 1, size=k)
    flips = rng.random(k) < 0.5
    out = np.empty_like(images)
    for i in range(n):
        j = i % k
        crop = padded[i, ys[j] : ys[j] + h, xs[j] : xs[j] + w]
        out[i] = crop[:, ::-1] if flips[j] else crop
    return out


@dataclass(frozen=True)
class Augmentation:
    """What a training setting does to each image: nothing, crop+flip, or crop+flip+policy."""

    crop_flip: bool = False
    policy: str | None = None

    def __post_init__(self):
        if self.policy is not None:
            parse_policy(self.policy)

    @property
    def alternatives(self) -> list[list[int]]:
        return parse_policy(self.policy) if self.policy else []

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = random_crop_flip(img, rng) if self.crop_flip else img
        alts = self.alternatives
        if alts:
            ids = alts[int(rng.integers(len(alts)))] if len(alts) > 1 else alts[0]
            pil = Image.fromarray(out)
            for i in ids:
                op, level = SUB_POLICIES[i]
                pil = apply_op(pil, op, level, rng)
            out = np.asarray(pil, dtype=np.uint8)
        return out

    def batch(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.crop_flip and not self.policy:
            return images
        return np.stack([self(img, rng) for img in images])

    def describe(self) -> str:
        if not self.crop_flip and not self.policy:
            return "none"
        return "crop+flip" + (f" + ATS {self.policy}" if self.policy else "")


def from_config(cfg: dict, where: str) -> Augmentation:
    kind = cfg.get("augment", "none")
    if kind not in ("none", "crop"):
        raise ConfigError(f"params: '{where}.augment' is {kind!r}; valid values: crop, none")
    policy = cfg.get("policy")
    if policy is not None and kind != "crop":
        raise ConfigError(f"params: '{where}': an ATS policy runs after crop+flip, so set augment: crop")
    return Augmentation(crop_flip=kind == "crop", policy=str(policy) if policy is not None else None)

