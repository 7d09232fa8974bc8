"""A small synthetic study for the SemSim tests: attack indexes, PNGs, items.csv, meta.json and
the metrics stage's images.csv (PSNR and SSIM as the metrics stage computes them, a stand-in LPIPS).

Each original is a random 4x4 grid of colour blocks (``make_study``), or, with ``domains``, an
image of one of several synthetic domains (``DOMAINS``: blocks, stripes, discs, checks). A
*recognised* reconstruction is its original with a strong per-channel gain/offset and noise
(far in pixels, same layout); an *unrecognised* one is noise with the original's per-channel
mean and a share of its spread (close in colour statistics, no layout). Labels follow that
rule, one rule for every domain, unless ``labels`` overrides them, so a SemSim that learns
"same layout" separates them on a held-out dataset.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

ITEMS_HEADER = ("item_id,dataset,model,attack,image_id,protocol,truth,annotators,recognised,recognised_rate,"
                "majority,source").split(",")
INDEX_HEADER = ("item_id,dataset,model,attack,image_id,label,recovered_label,final_loss,iterations,seconds,status,"
                "original,attacked,reconstruction").split(",")
METRICS_HEADER = ("item_id,dataset,model,attack,image_id,status,mse,psnr,ssim,lpips,classification,"
                  "classification_original,features").split(",")
MODELS = ("resnet8_none", "convnet4_crop")
ATTACKS = ("dlg", "invgrad")


def original_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    grid = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
    return np.kron(grid, np.ones((size // 4, size // 4, 1), dtype=np.uint8))


def _colours(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3)).astype(np.uint8)


def stripes_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Random-width vertical or horizontal bands of random colours."""
    cuts = np.sort(rng.choice(np.arange(3, size - 2), size=3, replace=False))
    band = np.searchsorted(cuts, np.arange(size), side="right")
    img = _colours(rng, 4)[band][None, :, :].repeat(size, 0)
    return img if rng.random() < 0.5 else img.transpose(1, 0, 2).copy()


def discs_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Two or three filled discs of random colours on a random background."""
    yy, xx = np.mgrid[:size, :size]
    img = np.empty((size, size, 3), np.uint8)
    img[:] = _colours(rng, 1)[0]
    for colour in _colours(rng, int(rng.integers(2, 4))):
        cy, cx, r = rng.uniform(4, size - 4), rng.uniform(4, size - 4), rng.uniform(size / 8, size / 3)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour
    return img


def checks_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """An 8x8 grid of two random colours, each cell drawn at random."""
    pick = rng.random((8, 8)) < 0.5
    grid = np.where(pick[..., None], *_colours(rng, 2)[:, None, None, :]).astype(np.uint8)
    return np.kron(grid, np.ones((size // 8, size // 8, 1), dtype=np.uint8))


# synthetic domains for the leave-one-domain-out tests: one layout family each
DOMAINS = {"blocks": original_image, "stripes": stripes_image, "discs": discs_image, "checks": checks_image}


def recognised_image(orig: np.ndarray, rng: np.random.Generator, noise: float = 8.0) -> np.ndarray:
    gain = rng.uniform(0.5, 1.0, size=3)
    offset = rng.uniform(-40, 80, size=3)
    out = orig.astype(float) * gain + offset + rng.normal(0, noise, orig.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def unrecognised_image(orig: np.ndarray, rng: np.random.Generator, spread: float = 1.0) -> np.ndarray:
    o = orig.astype(float)
    mean, std = o.mean(axis=(0, 1)), spread * o.std(axis=(0, 1)) + 1
    return np.clip(rng.normal(mean, std, orig.shape), 0, 255).astype(np.uint8)


def write_metrics(root: str | Path, dataset: str, rows: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """data/metrics/<dataset>/images.csv as the metrics stage writes it, for (item_id, original,
    reconstruction): PSNR and SSIM from the metrics stage's own functions; LPIPS a stand-in (the
    mean absolute difference of 4x4-pooled images on the [0, 1] scale), which SemSim only reports."""
    from semsim_study.metrics import pixel

    ori = np.stack([o for _, o, _ in rows])
    rec = np.stack([r for _, _, r in rows])
    m = pixel.pixel_metrics(ori, rec)
    n, h, w, c = ori.shape
    pool = lambda a: a.astype(float).reshape(n, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4)) / 255  # noqa: E731
    lpips = np.abs(pool(ori) - pool(rec)).mean(axis=(1, 2, 3))
    path = Path(root) / "data" / "metrics" / dataset / "images.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(METRICS_HEADER)
        for k, (item_id, _, _) in enumerate(rows):
            ds, model, attack, image_id = item_id.split("/")
            wr.writerow([item_id, ds, model, attack, image_id, "ok", f"{m['mse'][k]:.10g}", f"{m['psnr'][k]:.10g}",
                         f"{m['ssim'][k]:.10g}", f"{lpips[k]:.10g}", 0, 0, "fixture"])


def _rule(ds: str, model: str, attack: str, k: int) -> str:
    """Which reconstructions are recognisable: two of each original's four, varying by image."""
    m, a = MODELS.index(model), ATTACKS.index(attack)
    return "recognised" if (m + a + k) % 2 == 0 else "unrecognised"


def _level(bounds: tuple[float, float], rng: np.random.Generator) -> float:
    """A value from U(bounds); a fixed value draws nothing (the default fixture keeps its bytes)."""
    return bounds[0] if bounds[0] == bounds[1] else float(rng.uniform(*bounds))


def make_study(root: str | Path, datasets=("alpha", "beta", "gamma"), images: int = 4, seed: int = 0,
               labels: Callable[[str, str, str, int], str | None] | None = None, size: int = 32,
               annotators: int = 3, source: str = "simulated", domains: bool = False,
               noise: tuple[float, float] = (8.0, 8.0), spread: tuple[float, float] = (1.0, 1.0)) -> Path:
    """Write the files SemSim reads under ``root``; ``labels`` -> majority, 'tie', or None (unannotated).

    ``domains``: each dataset's originals come from ``DOMAINS[name]`` (datasets named after
    domains) instead of colour grids. ``noise`` / ``spread``: ranges a recognised reconstruction's
    noise std and an unrecognised one's share of the original's spread are drawn from, per image
    (their PSNRs then overlap, which gives PSNR-matched pairs)."""
    root = Path(root)
    labels = labels or _rule
    for d, ds in enumerate(datasets):
        rng = np.random.default_rng([seed, d])
        meta = root / "data" / "prepared" / ds / "meta.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text('{"name": "%s", "source": {"offline_stand_in": true, "stand_in_for": "cifar100"}}' % ds)
        draw = DOMAINS[ds] if domains else original_image
        originals = [draw(rng, size) for _ in range(images)]
        item_rows, metric_rows = [], []
        for attack in ATTACKS:
            folder = root / "data" / "attacks" / ds / attack
            rows = []
            for model in MODELS:
                (folder / "images" / model).mkdir(parents=True, exist_ok=True)
                for k, orig in enumerate(originals):
                    image_id = f"test-{k:06d}"
                    item_id = f"{ds}/{model}/{attack}/{image_id}"
                    majority = labels(ds, model, attack, k)
                    kind = majority if majority in ("recognised", "unrecognised") else _rule(ds, model, attack, k)
                    recon = (recognised_image(orig, rng, _level(noise, rng)) if kind == "recognised"
                             else unrecognised_image(orig, rng, _level(spread, rng)))
                    metric_rows.append((item_id, orig, recon))
                    base = f"images/{model}/{image_id}"
                    Image.fromarray(orig).save(folder / f"{base}_original.png")
                    Image.fromarray(orig).save(folder / f"{base}_attacked.png")
                    Image.fromarray(recon).save(folder / f"{base}_reconstruction.png")
                    rows.append([item_id, ds, model, attack, image_id, 0, 0, 0.1, 3, 0.5, "ok",
                                 f"{base}_original.png", f"{base}_attacked.png", f"{base}_reconstruction.png"])
                    if majority is None:
                        item_rows.append([item_id, ds, model, attack, image_id, "A", "x", 0, 0, "", "", source])
                    else:
                        rec = {"recognised": annotators, "unrecognised": 0, "tie": annotators // 2}[majority]
                        n = annotators if majority != "tie" else 2 * (annotators // 2)
                        item_rows.append([item_id, ds, model, attack, image_id, "A", "x", n, rec,
                                          f"{rec / n:.6f}", majority, source])
            with open(folder / "index.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(INDEX_HEADER)
                w.writerows(rows)
        write_metrics(root, ds, metric_rows)
        items = root / "data" / "annotations" / ds / "items.csv"
        items.parent.mkdir(parents=True, exist_ok=True)
        with open(items, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(ITEMS_HEADER)
            w.writerows(item_rows)
    return root


def params(datasets=("alpha", "beta", "gamma"), epochs: int = 2, alpha: float = 1.0, **training) -> dict:
    """Params for the fixture: the embedded semsim section with few epochs."""
    p = {
        "alpha": alpha,
        "seed": 0,
        "datasets": list(datasets),
        "attacks": list(ATTACKS),
        "semsim": {
            "device": "cpu",
            "held_out_attacks": list(ATTACKS),
            "held_out_backbones": ["resnet8", "convnet4"],
            "model": {"backbone": "tinyconv16", "input_size": 32, "normalization": "cifar100"},
            "training": {"epochs": epochs, "milestones": [], "gamma": 0.1, "batch_size": 16, "lr": 0.05,
                         "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005,
                         "geometry": "per_triplet"},
        },
    }
    p["semsim"]["training"].update(training)
    return copy.deepcopy(p)
