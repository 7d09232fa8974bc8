"""DVC stage `metrics@<dataset>`: MSE, PSNR, SSIM, LPIPS per reconstruction, FID per image set.

Reads every attack's data/attacks/<dataset>/<attack>/index.csv and images, the dataset's
classifier (classification baseline) and the feature backbone (`metrics.features`:
`pipeline` = models/features, `imagenet` = local lpips/pytorch-fid weight files). Writes
data/metrics/<dataset>/: images.csv (one row per reconstruction), sets.csv (one row per
(model, attack) set: FID and the per-image metrics averaged) and meta.json (which backbone,
which classifier, every definition). Streams in batches of `metrics.batch_size`.
"""

from __future__ import annotations

import csv
import logging
import time

from semsim_study import atomic, params as P
from semsim_study.errors import DataError
from semsim_study.metrics import classification, compute, feature_extractors, settings
from semsim_study.metrics.pairs import check_images, read_pairs

from ._cli import arguments, begin, run

log = logging.getLogger("metrics")


def main() -> None:
    start = time.perf_counter()
    args, params = begin(arguments(__doc__), threads="metrics.threads")
    name = args.dataset
    cfg = settings.from_params(params)
    attacks = P.get(params, "attacks", list)
    pairs = read_pairs(f"data/attacks/{name}", attacks)
    if not pairs:
        raise DataError(f"data/attacks/{name}: the attack indexes list no reconstructions")
    check_images(pairs)
    backbone = feature_extractors.build(cfg.features, features_dir="models/features", weights_dir=cfg.weights_dir,
                               lpips=cfg.lpips, device=cfg.device)
    model_id = classification.classifier_id(params, name)
    classifier = classification.Classifier(f"models/{name}/{model_id}.pt", cfg.device)
    with atomic.build_dir(f"data/metrics/{name}") as out:
        with open(out / "images.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, compute.IMAGE_COLUMNS, lineterminator="\n")
            writer.writeheader()
            result = compute.evaluate(pairs, backbone, classifier, batch_size=cfg.batch_size,
                                        fid_method=cfg.fid_method,
                                        sink=lambda row: writer.writerow({k: compute.fmt(v) for k, v in row.items()}))
        with open(out / "sets.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, compute.SET_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: compute.fmt(v) for k, v in row.items()} for row in result.sets)
        meta = compute.meta(name, attacks, len(pairs), result, backbone, classifier, cfg.fid_method, cfg.batch_size)
        (out / "meta.json").write_text(atomic.dumps_json(meta), encoding="utf-8")
    log.info("%s: %d reconstructions in %d sets, features %s, %.1f s", name, len(pairs), len(result.sets),
             backbone.name, time.perf_counter() - start)


if __name__ == "__main__":
    run(main)
