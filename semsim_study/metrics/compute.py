"""One dataset's metrics, streamed: image rows as pairs go by, set rows as sets complete.

Pairs are read in batches (``pairs.batches``); each batch gets MSE/PSNR/SSIM (``pixel``),
LPIPS and FID features (a ``feature_extractors`` extractor) and the classifier's predictions in a few
batched calls. Image rows go straight to a sink (the CSV writer), per-set sums and
``frechet.SetFeatures`` are kept only for sets still open (pairs arrive grouped by set), so
memory is bounded by one batch plus one or two sets' feature statistics, whatever the
number of images.

Set rows average the per-image metrics over the set (as the paper's code averages over a
model's 600 images) and add the set's FID between its originals and its reconstructions.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .. import metric_table as T
from . import frechet, pixel
from .pairs import Pair, batches
from ..errors import DataError

log = logging.getLogger(__name__)

# the columns come from the metric table; classification_original (the classifier on the
# originals) is the baseline's reference, not a metric compared with people
IMAGE_METRICS = T.names(stage="metrics", level="image")
IMAGE_COLUMNS = ("item_id", "dataset", "model", "attack", "image_id", "status", *IMAGE_METRICS,
                 "classification_original", "features")
SET_COLUMNS = ("dataset", "model", "attack", "images", *T.names(stage="metrics", level="set"), *IMAGE_METRICS,
               "classification_original", "classification_ratio", "diverged", "features")
AVERAGED = (*IMAGE_METRICS, "classification_original")


def fmt(value) -> str:
    """Table cell: integers as is, floats to 10 significant digits, NaN as an empty cell."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else format(float(value), ".10g")
    return str(value)


@dataclass
class _OpenSet:
    size: int
    ori: frechet.SetFeatures
    rec: frechet.SetFeatures
    seen: int = 0
    diverged: int = 0
    sums: dict = field(default_factory=lambda: dict.fromkeys(AVERAGED, 0.0))


def to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)


@dataclass
class Evaluation:
    sets: list[dict]
    image_shape: tuple[int, int, int]  # (H, W, C) of the dataset's images


def evaluate(pairs: Sequence[Pair], backbone, classifier, *, batch_size: int = 64, fid_method: str = "exact",
             sink: Callable[[dict], None] | None = None, progress: bool = True) -> Evaluation:
    """Compute every metric for ``pairs`` (grouped by set, as ``read_pairs`` returns them).

    Each image row is passed to ``sink`` as soon as its batch is done; the set rows come back
    in the returned ``Evaluation``.
    """
    if not pairs:
        raise DataError("no reconstructions to evaluate")
    sizes = Counter(p.set_key for p in pairs)
    open_sets: dict[tuple[str, str], _OpenSet] = {}
    set_rows: list[dict] = []
    shape = None
    bar = tqdm(total=len(pairs), unit="pair", desc="metrics", leave=False, disable=None if progress else True)
    for chunk, ori, rec in batches(pairs, batch_size):
        if shape is None:
            shape = ori.shape[1:]
        elif ori.shape[1:] != shape:
            raise DataError(f"{chunk[0].original}: size {ori.shape[2]}x{ori.shape[1]} differs from the dataset's "
                            f"other images ({shape[1]}x{shape[0]}, e.g. {pairs[0].original})")
        px = pixel.pixel_metrics(ori, rec)
        x0, x1 = to_unit(ori), to_unit(rec)
        lp, f0, f1 = backbone(x0, x1)
        labels = np.array([p.label for p in chunk])
        cls_rec = (classifier.predict(x1) == labels).astype(int)
        cls_ori = (classifier.predict(x0) == labels).astype(int)
        for i, p in enumerate(chunk):
            values = {**{name: v[i] for name, v in px.items()}, "lpips": lp[i],
                      "classification": int(cls_rec[i]), "classification_original": int(cls_ori[i])}
            if sink is not None:
                sink({"item_id": p.item_id, "dataset": p.dataset, "model": p.model, "attack": p.attack,
                      "image_id": p.image_id, "status": p.status, **values, "features": backbone.name})
            s = open_sets.get(p.set_key)
            if s is None:
                s = open_sets[p.set_key] = _OpenSet(sizes[p.set_key], frechet.SetFeatures(backbone.dim),
                                                    frechet.SetFeatures(backbone.dim))
            s.ori.add(f0[i : i + 1])
            s.rec.add(f1[i : i + 1])
            s.seen += 1
            s.diverged += p.status == "diverged"
            for k in AVERAGED:
                s.sums[k] += float(values[k])
            if s.seen == s.size:
                set_rows.append(_close(p, s, fid_method, backbone.name))
                del open_sets[p.set_key]
        bar.update(len(chunk))
    bar.close()
    return Evaluation(set_rows, tuple(int(v) for v in shape))


def _close(p: Pair, s: _OpenSet, fid_method: str, features: str) -> dict:
    means = {k: v / s.size for k, v in s.sums.items()}
    ori_hits = s.sums["classification_original"]
    ratio = s.sums["classification"] / ori_hits if ori_hits else math.nan
    fid = frechet.frechet_distance(s.ori, s.rec, fid_method)
    if not math.isnan(fid):
        fid = max(0.0, fid)  # a true FID is >= 0; identical sets can round to -1e-12
    log.info("%s/%s/%s: %d images, FID %.4g, PSNR %.2f dB, SSIM %.3f, LPIPS %.4f", p.dataset, p.model, p.attack,
             s.size, fid, means["psnr"], means["ssim"], means["lpips"])
    return {"dataset": p.dataset, "model": p.model, "attack": p.attack, "images": s.size, "fid": fid, **means,
            "classification_ratio": ratio, "diverged": s.diverged, "features": features}


def meta(dataset: str, attacks: Sequence[str], n_images: int, result: Evaluation, backbone, classifier,
         fid_method: str, batch_size: int) -> dict:
    """meta.json: which backbone and classifier, and how every column is defined."""
    h, w, c = result.image_shape
    return {
        "dataset": dataset,
        "features": backbone.name,
        "offline_stand_in": backbone.name == "pipeline",
        "backbone": backbone.describe(),
        "classification": classifier.describe(),
        "attacks": list(attacks),
        "images": n_images,
        "sets": len(result.sets),
        "image_size": [h, w, c],
        "batch_size": batch_size,
        "definitions": {
            "mse": "mean squared error on the [0, 1] scale (scikit-image mean_squared_error(ori/255, rec/255))",
            "psnr": "10 log10(255^2 / MSE on 0..255), uint8 data range 255 (scikit-image peak_signal_noise_ratio)",
            "psnr_identical": {"rule": pixel.PSNR_IDENTICAL, "value": round(pixel.psnr_identical(h, w, c), 6)},
            "ssim": "scikit-image structural_similarity(ori, rec, channel_axis=-1) on uint8: 7x7 uniform window, "
                    "sample covariance, K1 0.01, K2 0.03, data range 255, mean over channels",
            "lpips": "see backbone.lpips; lower is more similar",
            "fid": {"sets": "one per (model, attack): its originals vs its reconstructions",
                    "features": backbone.describe()["fid"], "method": fid_method,
                    "formula": "||m1 - m2||^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2)), empirical mean and unbiased covariance",
                    "fewer_than_2_images": "empty (no covariance)",
                    "tiny_sets": "with n images the covariance has rank n - 1; FID then mostly measures estimation "
                                 "bias, so compare sets of equal size only"},
            "classification": "1 if the classifier predicts the true label on the reconstruction, else 0",
            "classification_original": "the same on the original",
            "classification_ratio": "sets: reconstructions recognised / originals recognised (the paper code's acc); "
                                    "empty if no original is recognised",
            "set_values": "per-image metrics averaged over the set's images, diverged reconstructions included",
        },
        "columns": {"images.csv": list(IMAGE_COLUMNS), "sets.csv": list(SET_COLUMNS)},
        "torch_version": torch.__version__.split("+")[0],
    }
