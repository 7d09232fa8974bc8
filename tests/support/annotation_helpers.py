"""Small annotation projects made inside a test: a few PNGs, attack index files and tasks.csv.

Nothing here depends on the pipeline having run: images are drawn from a seeded generator,
so each test sees the same pictures every time.
"""

from __future__ import annotations

import csv
import threading
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from semsim_study.annotation import tasks as T

CLASSES_A = [f"class{i:02d}" for i in range(12)]  # 12 > 10: the two-digit keyboard path


def png(path: Path, seed: int, size: int = 32) -> None:
    """A colourful, clearly non-blank 32x32 PNG."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    img = np.tile(base, (size, size, 1)).astype(np.int64)
    img[: size // 2, : size // 2] = 255 - base
    img += rng.integers(-30, 31, size=img.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


def attack_folder(root: Path, dataset: str, attack: str, models: list[str], labels: list[int],
                  statuses: list[str] | None = None) -> list[dict]:
    """data/attacks/<dataset>/<attack>/ with index.csv and images, as the attack stage writes it."""
    folder = root / "data" / "attacks" / dataset / attack
    rows = []
    n = 0
    for model in models:
        for j, label in enumerate(labels):
            image_id = f"test-{j:06d}"
            rel = f"images/{model}/{image_id}"
            png(folder / f"{rel}_original.png", seed=1000 + j)
            png(folder / f"{rel}_attacked.png", seed=1000 + j)
            png(folder / f"{rel}_reconstruction.png", seed=zlib.crc32(f"{dataset}/{attack}/{model}/{j}".encode()))
            status = statuses[n % len(statuses)] if statuses else "ok"
            rows.append({"item_id": f"{dataset}/{model}/{attack}/{image_id}", "dataset": dataset, "model": model,
                         "attack": attack, "image_id": image_id, "label": label, "recovered_label": label,
                         "final_loss": 0.1, "iterations": 2, "seconds": 0.1, "status": status,
                         "original": f"{rel}_original.png", "attacked": f"{rel}_attacked.png",
                         "reconstruction": f"{rel}_reconstruction.png"})
            n += 1
    with open(folder / "index.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def settings(dataset: str, protocol: str, attacks=("dlg", "invgrad"), max_candidates: int = 20,
             candidate_model: str | None = None, seed: int = 0) -> T.TaskConfig:
    return T.TaskConfig(dataset, protocol, "prepare", tuple(attacks), max_candidates, candidate_model, seed)


def project(root: Path, datasets: dict[str, str], images: int = 3, models=("m1", "m2"),
            attacks=("dlg", "invgrad"), classes=None) -> dict[str, dict[str, T.Task]]:
    """A project with data/attacks and data/tasks for ``datasets`` (name -> protocol)."""
    classes = classes or CLASSES_A
    out = {}
    for ds, protocol in datasets.items():
        labels = [(3 * j + 1) % len(classes) for j in range(images)]
        for attack in attacks:
            attack_folder(root, ds, attack, list(models), labels)
        built = T.build_tasks(settings(ds, protocol, attacks), classes, root=root)
        T.write_tasks(root / "data" / "tasks" / ds / "tasks.csv", built)
        out[ds] = {t.item_id: t for t in built}
    return out


class ServerThread:
    """A waitress server for a Flask app on an ephemeral loopback port, in a daemon thread."""

    def __init__(self, app, threads: int = 8):
        import waitress

        self.server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.close()
        self.thread.join(timeout=10)
