"""A small synthetic study for the SemSim tests: attack indexes, PNGs, items.csv, meta.json.

Each original is a random 4x4 grid of colour blocks. A *recognised* reconstruction is its
original with a strong per-channel gain/offset and mild noise (far in pixels, same layout);
an *unrecognised* one is noise with the original's per-channel mean and spread (close in
colour statistics, no layout). Labels follow that rule unless ``labels`` overrides them, so
a SemSim that learns "same layout" separates them on a held-out dataset.
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
MODELS = ("resnet8_none", "convnet4_crop")
ATTACKS = ("dlg", "invgrad")


def original_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    grid = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
    return np.kron(grid, np.ones((size // 4, size // 4, 1), dtype=np.uint8))


def recognised_image(orig: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gain = rng.uniform(0.5, 1.0, size=3)
    offset = rng.uniform(-40, 80, size=3)
    out = orig.astype(float) * gain + offset + rng.normal(0, 8, orig.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def unrecognised_image(orig: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    o = orig.astype(float)
    mean, std = o.mean(axis=(0, 1)), o.std(axis=(0, 1)) + 1
    return np.clip(rng.normal(mean, std, orig.shape), 0, 255).astype(np.uint8)


def _rule(ds: str, model: str, attack: str, k: int) -> str:
    """Which reconstructions are recognisable: two of each original's four, varying by image."""
    m, a = MODELS.index(model), ATTACKS.index(attack)
    return "recognised" if (m + a + k) % 2 == 0 else "unrecognised"


def make_study(root: str | Path, datasets=("alpha", "beta", "gamma"), images: int = 4, seed: int = 0,
               labels: Callable[[str, str, str, int], str | None] | None = None, size: int = 32,
               annotators: int = 3, source: str = "simulated") -> Path:
    """Write the files SemSim reads under ``root``; ``labels`` -> majority, 'tie', or None (unannotated)."""
    root = Path(root)
    labels = labels or _rule
    for d, ds in enumerate(datasets):
        rng = np.random.default_rng([seed, d])
        meta = root / "data" / "prepared" / ds / "meta.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text('{"name": "%s", "source": {"offline_stand_in": true, "stand_in_for": "cifar100"}}' % ds)
        originals = [original_image(rng, size) for _ in range(images)]
        item_rows = []
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
                    recon = recognised_image(orig, rng) if kind == "recognised" else unrecognised_image(orig, rng)
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
                         "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005, "crop_flip": True},
        },
    }
    p["semsim"]["training"].update(training)
    return copy.deepcopy(p)
