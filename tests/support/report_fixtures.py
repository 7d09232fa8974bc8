"""A synthetic project folder with every input the report stage reads (no pipeline run needed).

Each reconstruction gets a hidden quality q in [0, 1]; people recognise it with rate ~ q and
every metric follows q with noise (in its own direction), so correlations have known signs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from semsim_study import metric_table as T

MODELS = ("resnet8_none", "resnet8_crop", "lenet_none", "lenet_crop")
ATTACKS = ("dlg", "idlg", "invgrad", "gradinversion")


def _write_csv(path: Path, header, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _write_scores(root: Path, scope: str, rows: list) -> None:
    """rows: id columns (7), then semsim, ce_distance, semsim_untrained; written as the two stages do."""
    ids = ["item_id", "dataset", "model", "attack", "image_id", "split", "held_out"]
    _write_csv(root / "data" / "semsim" / scope / "scores.csv", ids + ["semsim", "semsim_untrained"],
               [[*r[:7], r[7], r[9]] for r in rows])
    _write_csv(root / "data" / "ce_baseline" / scope / "scores.csv", ids + ["ce_distance"], [[*r[:7], r[8]] for r in rows])


# metrics of the table beyond the five this fixture models by hand get a noisy function of the
# reconstruction's quality, oriented by the table, so a metric added to the table needs no edit here
EXTRA = [m for m in T.names(stage="metrics", level="image") if m not in ("mse", "psnr", "ssim", "lpips", "classification")]


def make_project(root: Path, datasets=("digits", "faces"), *, models=MODELS, attacks=ATTACKS, images=3,
                 annotated=None, source="simulated", features="pipeline", seed=0, pngs=True,
                 held_out_attacks=("dlg",), held_out_backbones=("lenet",)) -> dict:
    """Write data/{metrics,annotations,semsim,attacks} under root; return the params used."""
    root = Path(root)
    annotated = set(datasets if annotated is None else annotated)
    rng = np.random.default_rng(seed)
    all_scores = []
    for ds in datasets:
        img_rows, set_rows, item_rows, aset_rows, score_rows, answer_rows = [], [], [], [], [], []
        for mi, model in enumerate(models):
            for ai, attack in enumerate(attacks):
                base = rng.uniform(0.05, 0.95)
                q = np.clip(base + rng.normal(0, 0.15, images), 0, 1)
                index_rows = []
                vals = []
                for k in range(images):
                    image_id = f"test-{k:06d}"
                    item = f"{ds}/{model}/{attack}/{image_id}"
                    psnr = 8 + 25 * q[k] + rng.normal(0, 2)
                    mse = 10 ** (-psnr / 10)
                    ssim = float(np.clip(q[k] + rng.normal(0, 0.1), -1, 1))
                    lpips = float(np.clip(1 - q[k] + rng.normal(0, 0.1), 0, None))
                    cls = int(rng.uniform() < q[k])
                    extra = [(q[k] if T.BY_NAME[m].higher_is_similar else 1 - q[k]) + rng.normal(0, 0.1) for m in EXTRA]
                    vals.append((mse, psnr, ssim, lpips, cls, *extra))
                    img_rows.append([item, ds, model, attack, image_id, "ok", mse, psnr, ssim, lpips, cls, *extra])
                    n_ann = 3
                    rec = int(rng.binomial(n_ann, q[k]))
                    maj = "recognised" if rec * 2 > n_ann else "unrecognised"
                    item_rows.append([item, ds, model, attack, image_id, "A", "cls", n_ann, rec, rec / n_ann, maj,
                                      source])
                    answer_rows += [[item, f"a{j}", "A", "cls" if j < rec else "other", "2026-01-01T00:00:00+00:00",
                                     source, j < rec] for j in range(n_ann)]    # no draw: the rest stays as it was
                    score_rows.append([item, ds, model, attack, image_id, "dataset", ds,
                                       1.5 * (1 - q[k]) + rng.normal(0, 0.2), 1 - q[k] + rng.normal(0, 0.3),
                                       rng.uniform(0, 2)])
                    if pngs:
                        ori = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                        noise = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                        recon = (q[k] * ori + (1 - q[k]) * noise).astype(np.uint8)
                        folder = root / "data" / "attacks" / ds / attack / "images" / model
                        folder.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(ori).save(folder / f"{image_id}_original.png")
                        Image.fromarray(recon).save(folder / f"{image_id}_reconstruction.png")
                    index_rows.append([item, ds, model, attack, image_id, 0, 0, 0.1, 10, 1.0, "ok",
                                       f"images/{model}/{image_id}_original.png",
                                       f"images/{model}/{image_id}_original.png",
                                       f"images/{model}/{image_id}_reconstruction.png"])
                v = np.array(vals)
                fid = 300 * (1 - q.mean()) + rng.normal(0, 10)
                set_rows.append([ds, model, attack, images, fid, *v.mean(axis=0)])
                rate = float(np.mean([r[9] >= 0.5 for r in item_rows[-images:]]))
                aset_rows.append([ds, model, attack, images, images, rate, 1 - rate, source])
                idx = root / "data" / "attacks" / ds / attack / "index.csv"
                header = ["item_id", "dataset", "model", "attack", "image_id", "label", "recovered_label",
                          "final_loss", "iterations", "seconds", "status", "original", "attacked", "reconstruction"]
                old = list(csv.reader(open(idx, encoding="utf-8")))[1:] if idx.exists() else []
                _write_csv(idx, header, old + index_rows)
        mdir = root / "data" / "metrics" / ds
        _write_csv(mdir / "images.csv", ["item_id", "dataset", "model", "attack", "image_id", "status", "mse", "psnr",
                                         "ssim", "lpips", "classification", *EXTRA], img_rows)
        _write_csv(mdir / "sets.csv", ["dataset", "model", "attack", "images", "fid", "mse", "psnr", "ssim", "lpips",
                                       "classification", *EXTRA], set_rows)
        (mdir / "meta.json").write_text(json.dumps({"dataset": ds, "features": features}), encoding="utf-8")
        if ds in annotated:
            adir = root / "data" / "annotations" / ds
            _write_csv(adir / "items.csv", ["item_id", "dataset", "model", "attack", "image_id", "protocol", "truth",
                                            "annotators", "recognised", "recognised_rate", "majority", "source"],
                       item_rows)
            _write_csv(adir / "sets.csv", ["dataset", "model", "attack", "images", "annotated", "recognised_rate",
                                           "unrecognised_rate", "source"], aset_rows)
            _write_csv(adir / "answers.csv", ["item_id", "annotator_id", "protocol", "answer", "submitted_at", "source",
                                              "recognised"], answer_rows)
        _write_scores(root, f"dataset-{ds}", score_rows)
        all_scores += score_rows
    for a in held_out_attacks:
        rows = [[*r[:5], "attack", a, r[7] + 0.05, r[8], r[9]] for r in all_scores if r[3] == a]
        _write_scores(root, f"attack-{a}", rows)
    for b in held_out_backbones:
        rows = [[*r[:5], "backbone", b, r[7] + 0.05, r[8], r[9]] for r in all_scores if r[2].split("_")[0] == b]
        _write_scores(root, f"backbone-{b}", rows)
    return {"seed": seed, "datasets": list(datasets), "attacks": list(attacks),
            "semsim": {"held_out_attacks": list(held_out_attacks), "held_out_backbones": list(held_out_backbones)},
            "report": {"bootstrap": 200, "confidence": 0.95, "grid_images": 4}}
