"""The five offline domains of the embedded profile, built from data that ships with packages.

Each is a stand-in for one of the paper's datasets and says so in its ``source`` record:

========== ============================================ ====================== ========
domain      images                                       stands in for          protocol
========== ============================================ ====================== ========
digits      scikit-learn's 1797 handwritten digits       CIFAR-100              A
photos      patches of scikit-image's sample photos      Imagenette             A
faces       scikit-image's LFW subset, one identity each CelebA identities      B
glyphs      letters rendered from matplotlib's fonts     Stanford Dogs          B
shapes      procedural shapes on textured backgrounds    Caltech-101            A
========== ============================================ ====================== ========

Every builder draws all its randomness from the generator it is given, so a seed fixes the
bytes. Images are drawn at a multiple of the target size and downsampled, which gives the
anti-aliased edges real photographs have.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from .. import params as P
from ..errors import ConfigError, DataError
from .imaging import RESAMPLE, to_rgb_array
from .standard import PreparedDataset, Source, stratified_split


def _source(kind: str, stand_in_for: str, **details) -> dict:
    return {"kind": kind, "offline_stand_in": True, "stand_in_for": stand_in_for, **details}


def _split(name: str, cfg: Mapping, images: np.ndarray, labels: np.ndarray, class_names: list[str],
           rng: np.random.Generator, protocol: str, source: dict) -> PreparedDataset:
    tr, te = stratified_split(labels, P.fraction(cfg, "test_fraction"), rng)
    return PreparedDataset(name, class_names, images[tr], labels[tr], images[te], labels[te], protocol, source)


# --------------------------------------------------------------------------- digits
def build_sklearn_digits(name: str, cfg: Mapping, rng: np.random.Generator) -> PreparedDataset:
    """scikit-learn's 8x8 handwritten digits (16 grey levels), upsampled to the target size."""
    from sklearn.datasets import load_digits

    size = P.positive_int(cfg, "image_size")
    digits = load_digits()
    images = np.stack([
        to_rgb_array(Image.fromarray(np.round(d * 255.0 / 16.0).astype(np.uint8)).resize((size, size), RESAMPLE))
        for d in digits.images
    ])
    labels = digits.target.astype(np.int64)
    return _split(name, cfg, images, labels, [str(c) for c in range(10)], rng, cfg.get("protocol", "A"),
                  _source("sklearn.datasets.load_digits", "cifar100", images=len(labels)))


# --------------------------------------------------------------------------- photos
def _skimage_photo(photo: str) -> np.ndarray:
    import skimage.data

    loader = getattr(skimage.data, photo, None)
    if loader is None or not callable(loader):
        raise ConfigError(f"params: photo {photo!r} is not a scikit-image sample image")
    try:
        img = np.asarray(loader())
    except Exception as exc:  # the sample may need a download that is impossible offline
        raise DataError(f"scikit-image sample {photo!r} could not be loaded ({exc}); pick a bundled one") from None
    if img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float64), 0, 1) * 255).round().astype(np.uint8) if img.max() <= 1 else img.astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


def build_skimage_photos(name: str, cfg: Mapping, rng: np.random.Generator) -> PreparedDataset:
    """Random square patches of scikit-image's sample photos; the class is the source photo.

    Patch side is drawn between ``patch_min`` and ``patch_max`` of the photo's shorter side, so
    a class is a scene seen at several scales and places, not one fixed crop; patches are
    flipped at random. Patches of one photo overlap, so test accuracy measures recognition of
    a scene from unseen crops rather than of unseen scenes.
    """
    size = P.positive_int(cfg, "image_size")
    photos = P.get(cfg, "photos", list)
    per_photo = P.positive_int(cfg, "patches_per_photo")
    lo, hi = P.fraction(cfg, "patch_min"), float(P.get(cfg, "patch_max", (int, float)))
    if not lo < hi <= 1.0:
        raise ConfigError(f"params: need patch_min < patch_max <= 1 for {name}, got {lo}, {hi}")
    images, labels = [], []
    for c, photo in enumerate(photos):
        pil = Image.fromarray(_skimage_photo(photo))
        w, h = pil.size
        short = min(w, h)
        for _ in range(per_photo):
            side = int(round(short * rng.uniform(lo, hi)))
            x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            patch = pil.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), RESAMPLE)
            if rng.random() < 0.5:
                patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            images.append(to_rgb_array(patch))
            labels.append(c)
    return _split(name, cfg, np.stack(images), np.array(labels, dtype=np.int64), list(photos), rng,
                  cfg.get("protocol", "A"), _source("skimage.data sample photos", "imagenette", photos=list(photos)))


# --------------------------------------------------------------------------- faces
def build_lfw_faces(name: str, cfg: Mapping, rng: np.random.Generator) -> PreparedDataset:
    """scikit-image's LFW subset: each face photo is one identity, seen in jittered views.

    The subset ships 100 face crops (25x25 grey) without identity labels, so an identity
    class is one photo; its views differ by crop position and scale, mirror, brightness and
    contrast, as different shots of one person would (far less than in CelebA). Protocol B
    (same person or not) only needs original and reconstruction, which this supports fully.
    """
    import skimage.data

    size = P.positive_int(cfg, "image_size")
    n_ids = P.positive_int(cfg, "identities")
    views = P.positive_int(cfg, "views_per_identity")
    jitter = float(P.get(cfg, "jitter", (int, float)))
    faces = np.asarray(skimage.data.lfw_subset())[:100]  # first 100 are faces, the rest non-faces
    if n_ids > len(faces):
        raise ConfigError(f"params: {name}.identities is {n_ids}; the LFW subset has {len(faces)} faces")
    chosen = np.sort(rng.choice(len(faces), size=n_ids, replace=False))
    images, labels = [], []
    for c, i in enumerate(chosen):
        base = Image.fromarray((faces[i] * 255).round().astype(np.uint8)).resize((size * 2, size * 2), RESAMPLE)
        for _ in range(views):
            scale = 1.0 - rng.uniform(0, jitter)
            side = int(round(size * 2 * scale))
            x0 = int(rng.integers(0, size * 2 - side + 1))
            y0 = int(rng.integers(0, size * 2 - side + 1))
            view = base.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), RESAMPLE)
            if rng.random() < 0.5:
                view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            view = ImageEnhance.Brightness(view).enhance(1 + rng.uniform(-jitter, jitter))
            view = ImageEnhance.Contrast(view).enhance(1 + rng.uniform(-jitter, jitter))
            images.append(to_rgb_array(view))
            labels.append(c)
    names = [f"lfw-{int(i):03d}" for i in chosen]
    return _split(name, cfg, np.stack(images), np.array(labels, dtype=np.int64), names, rng,
                  cfg.get("protocol", "B"),
                  _source("skimage.data.lfw_subset", "celeba", identity="one photo per identity", faces=chosen.tolist()))


# --------------------------------------------------------------------------- glyphs
def font_files(names: list[str]) -> list[Path]:
    """The named TrueType files from matplotlib's bundled fonts."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        have = ", ".join(sorted(p.name for p in folder.glob("*.ttf")))
        raise ConfigError(f"params: font(s) {', '.join(missing)} not in {folder}; available: {have}")
    return [folder / n for n in names]


def _colour(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int, int]:
    """A random colour with every channel in [lo, hi]: dark or light, of any hue."""
    return tuple(int(v) for v in rng.integers(lo, hi + 1, 3))


def build_font_glyphs(name: str, cfg: Mapping, rng: np.random.Generator) -> PreparedDataset:
    """Characters rendered from matplotlib's fonts: a fine-grained domain (class = character).

    Each image draws a font (DejaVu, STIX and Computer Modern families, in regular, bold,
    italic and mono styles), a rotation, a size (the glyph's larger side as a share of the
    frame, so that thin and wide letters fill it alike), a position that keeps it in frame,
    and ink and paper colours (dark ink on light paper, each of random hue, as print is).
    Classes differ in
    small strokes (E/F, O/Q, I/J), and the same class varies a lot across fonts.
    """
    size = P.positive_int(cfg, "image_size")
    chars = P.get(cfg, "characters", str)
    per_class = P.positive_int(cfg, "images_per_class")
    fonts = font_files(P.get(cfg, "fonts", list))
    lo, hi = P.fraction(cfg, "size_min"), float(P.get(cfg, "size_max", (int, float)))
    max_rot = float(P.get(cfg, "max_rotation", (int, float)))
    big = size * 4
    cache: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}  # (font index, px)
    images, labels = [], []
    for c, ch in enumerate(chars):
        for _ in range(per_class):
            f = int(rng.integers(len(fonts)))
            font = cache.setdefault((f, big), ImageFont.truetype(str(fonts[f]), big))
            fg, bg = _colour(rng, 0, 100), _colour(rng, 155, 255)
            layer = Image.new("L", (big * 2, big * 2), 0)
            ImageDraw.Draw(layer).text((big, big), ch, font=font, fill=255, anchor="mm")
            layer = layer.rotate(float(rng.uniform(-max_rot, max_rot)), resample=Image.Resampling.BILINEAR)
            box = layer.getbbox()
            if box is None:
                raise DataError(f"font {fonts[f].name} has no glyph for {ch!r}")
            glyph = layer.crop(box)
            scale = big * rng.uniform(lo, hi) / max(glyph.size)  # the glyph's larger side, as a share of the frame
            glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), RESAMPLE)
            gw, gh = glyph.size
            canvas = Image.new("RGB", (big, big), bg)
            pos = (int(rng.integers(0, big - gw + 1)), int(rng.integers(0, big - gh + 1)))
            canvas.paste(Image.new("RGB", glyph.size, fg), pos, glyph)
            images.append(to_rgb_array(canvas.resize((size, size), RESAMPLE)))
            labels.append(c)
    return _split(name, cfg, np.stack(images), np.array(labels, dtype=np.int64), list(chars), rng,
                  cfg.get("protocol", "B"),
                  _source("matplotlib fonts", "stanford_dogs", fonts=[p.name for p in fonts]))


# --------------------------------------------------------------------------- shapes
def _polygon(cx: float, cy: float, r: float, n: int, rot: float, inner: float | None = None) -> list[tuple[float, float]]:
    pts = []
    steps = n * 2 if inner else n
    for k in range(steps):
        rad = r if (inner is None or k % 2 == 0) else r * inner
        a = rot + 2 * math.pi * k / steps
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, rot: float, fill, bg) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        draw.ellipse((cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55), fill=bg)
    elif shape == "ellipse":
        pts = [(cx + r * math.cos(t) * math.cos(rot) - 0.5 * r * math.sin(t) * math.sin(rot),
                cy + r * math.cos(t) * math.sin(rot) + 0.5 * r * math.sin(t) * math.cos(rot))
               for t in np.linspace(0, 2 * math.pi, 64, endpoint=False)]
        draw.polygon(pts, fill=fill)
    elif shape in ("triangle", "square", "pentagon", "hexagon"):
        n = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}[shape]
        draw.polygon(_polygon(cx, cy, r, n, rot), fill=fill)
    elif shape == "star":
        draw.polygon(_polygon(cx, cy, r, 5, rot, inner=0.45), fill=fill)
    elif shape == "cross":
        w = r * 0.35
        arm = [(-r, -w), (-w, -w), (-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w)]
        c, s = math.cos(rot), math.sin(rot)
        draw.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in arm], fill=fill)
    elif shape == "crescent":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        ox, oy = 0.45 * r * math.cos(rot), 0.45 * r * math.sin(rot)
        draw.ellipse((cx + ox - r * 0.85, cy + oy - r * 0.85, cx + ox + r * 0.85, cy + oy + r * 0.85), fill=bg)
    elif shape == "arrow":
        pts = [(-r, -0.25 * r), (0.1 * r, -0.25 * r), (0.1 * r, -0.7 * r), (r, 0), (0.1 * r, 0.7 * r), (0.1 * r, 0.25 * r), (-r, 0.25 * r)]
        c, s = math.cos(rot), math.sin(rot)
        draw.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=fill)
    else:
        raise ConfigError(f"params: unknown shape {shape!r}; valid: {', '.join(SHAPES)}")


SHAPES = ("circle", "ring", "ellipse", "triangle", "square", "pentagon", "hexagon", "star", "cross", "crescent", "arrow")


def _texture(big: int, rng: np.random.Generator) -> Image.Image:
    """A smooth dark two-colour background: a linear gradient plus blurred noise."""
    c0, c1 = np.asarray(_colour(rng, 0, 110), np.float64), np.asarray(_colour(rng, 0, 110), np.float64)
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:big, 0:big] / big
    t = (np.cos(a) * xx + np.sin(a) * yy)
    t = (t - t.min()) / max(np.ptp(t), 1e-9)
    noise = Image.fromarray((rng.random((big // 8, big // 8)) * 255).astype(np.uint8)).resize((big, big), RESAMPLE)
    t = 0.7 * t + 0.3 * np.asarray(noise.filter(ImageFilter.GaussianBlur(big / 16)), dtype=np.float64) / 255.0
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8))


def build_procedural_shapes(name: str, cfg: Mapping, rng: np.random.Generator) -> PreparedDataset:
    """Filled shapes of random light colour, size, position and rotation on dark textured backgrounds."""
    size = P.positive_int(cfg, "image_size")
    shapes = P.get(cfg, "shapes", list)
    for s in shapes:
        if s not in SHAPES:
            raise ConfigError(f"params: unknown shape {s!r} in {name}.shapes; valid: {', '.join(SHAPES)}")
    per_class = P.positive_int(cfg, "images_per_class")
    big = size * 4
    images, labels = [], []
    for c, shape in enumerate(shapes):
        for _ in range(per_class):
            canvas = _texture(big, rng)
            bg_mean = tuple(int(v) for v in np.asarray(canvas).reshape(-1, 3).mean(0))
            fill = _colour(rng, 145, 255)
            r = big * rng.uniform(0.2, 0.42)
            cx, cy = rng.uniform(r, big - r), rng.uniform(r, big - r)
            _draw_shape(ImageDraw.Draw(canvas), shape, cx, cy, r, rng.uniform(0, 2 * math.pi), fill, bg_mean)
            images.append(to_rgb_array(canvas.resize((size, size), RESAMPLE)))
            labels.append(c)
    return _split(name, cfg, np.stack(images), np.array(labels, dtype=np.int64), list(shapes), rng,
                  cfg.get("protocol", "A"), _source("procedural shapes", "caltech101"))


# source -> its builder and the prepare.<dataset> keys it reads beyond the common ones
BUILDERS: dict[str, Source] = {
    "sklearn_digits": Source(build_sklearn_digits, ("test_fraction",), "digit"),
    "skimage_photos": Source(build_skimage_photos, ("test_fraction", "photos", "patches_per_photo", "patch_min",
                                                    "patch_max"), "photo"),
    "lfw_faces": Source(build_lfw_faces, ("test_fraction", "identities", "views_per_identity", "jitter"), "person"),
    "font_glyphs": Source(build_font_glyphs, ("test_fraction", "characters", "images_per_class", "fonts",
                                              "size_min", "size_max", "max_rotation"), "letter"),
    "procedural_shapes": Source(build_procedural_shapes, ("test_fraction", "shapes", "images_per_class"), "shape"),
}
