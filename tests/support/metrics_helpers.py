"""Small inputs for the metrics tests: prepared datasets, a feature network, classifiers, attack folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from semsim_study.torch_helpers import state_bytes
from semsim_study.classifiers import backbones
from semsim_study.datasets.imaging import save_png
from semsim_study.datasets.standard import PreparedDataset
from semsim_study.metrics import featurenet

INDEX_HEADER = ["item_id", "dataset", "model", "attack", "image_id", "label", "recovered_label", "final_loss",
                "iterations", "seconds", "status", "original", "attacked", "reconstruction"]


def blobs(n: int, classes: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class sets the colour and position of a bright square on a noisy background."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    x = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    for i, c in enumerate(labels):
        r, col = (c * 7) % (size - 10), (c * 11) % (size - 10)
        x[i, r : r + 10, col : col + 10] = [(60 + 50 * c) % 256, 200, (30 * c) % 256]
    return x, labels.astype(np.int64)


def prepared(name: str, classes: int, n: int = 48, size: int = 32, seed: int = 0) -> PreparedDataset:
    x, y = blobs(n, classes, size, seed)
    xt, yt = blobs(n // 2, classes, size, seed + 1)
    return PreparedDataset(name, [f"c{i}" for i in range(classes)], x, y, xt, yt)


def feature_dir(folder: Path, epochs: int = 1) -> Path:
    """A trained (briefly) pipeline feature network in ``folder``, as the features stage writes it."""
    cfg = featurenet.FeatureNetConfig(widths=(8, 16, 16, 32), epochs=epochs, batch_size=16)
    model, card = featurenet.train([prepared("a", 3), prepared("b", 4, seed=5)], cfg, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / featurenet.WEIGHTS).write_bytes(state_bytes(model))
    (folder / featurenet.CARD).write_text(json.dumps(card))
    return folder


def classifier(folder: Path, model_id: str, num_classes: int, size: int = 32) -> Path:
    """A randomly initialised resnet8 checkpoint with the card checkpoints.load needs."""
    torch.manual_seed(0)
    model = backbones.build("resnet8", num_classes, size)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{model_id}.pt").write_bytes(state_bytes(model))
    backbone, setting = model_id.split("_", 1)
    card = {"model_id": model_id, "backbone": backbone, "setting": setting, "num_classes": num_classes,
            "image_size": size, "test_accuracy": 0.5,
            "normalization": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]}}
    (folder / f"{model_id}.json").write_text(json.dumps(card))
    return folder / f"{model_id}.pt"


def attack_dir(root: Path, dataset: str, attack: str, model_ids: list[str], images: np.ndarray, labels: np.ndarray,
               reconstruct: Callable[[np.ndarray, int], np.ndarray], status: str = "ok") -> Path:
    """data/attacks/<dataset>/<attack>/ with index.csv and PNGs, as the attack stage writes it."""
    out = root / "data" / "attacks" / dataset / attack
    rows = []
    for model_id in model_ids:
        (out / "images" / model_id).mkdir(parents=True, exist_ok=True)
        for i, (img, label) in enumerate(zip(images, labels)):
            image_id = f"test-{i:06d}"
            rel = {k: f"images/{model_id}/{image_id}_{k}.png" for k in ("original", "attacked", "reconstruction")}
            save_png(img, out / rel["original"])
            save_png(img, out / rel["attacked"])
            save_png(reconstruct(img, i), out / rel["reconstruction"])
            rows.append({"item_id": f"{dataset}/{model_id}/{attack}/{image_id}", "dataset": dataset, "model": model_id,
                         "attack": attack, "image_id": image_id, "label": int(label), "recovered_label": int(label),
                         "final_loss": 0.1, "iterations": 1, "seconds": 0.1, "status": status, **rel})
    with open(out / "index.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, INDEX_HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out
