"""Every metric the study compares with people, listed once.

The metrics stage, the SemSim stages and the report all read their columns, labels and
directions from ``METRICS``: to add a metric, add its entry here and its function where its
stage computes it (a pixel metric: a function decorated ``@pixel_metric`` in
``metrics/pixel.py``, and the metrics stage computes and writes it; a threat-model control:
``analysis/threat_controls.py``); tests check that every stage's columns match this table. Like
torchmetrics' ``higher_is_better``, each entry carries its direction, so nobody far from the
metric has to remember whether a larger value means more similar.

Ground floor: no torch, no pandas, nothing from the rest of the package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str  # the column name in every table
    label: str  # how the report names it
    level: str  # "image": one value per reconstruction, a set's value is their mean; "set": one per set
    higher_is_similar: bool  # True: a larger value means the reconstruction is closer to the original
    stage: str  # where it is computed: "metrics", "semsim" / "ce_baseline" (those stages' scores.csv) or "control"
    description: str  # how it is computed, in a line


METRICS: tuple[Metric, ...] = (
    Metric("mse", "MSE", "image", False, "metrics", "mean squared error on the [0, 1] scale"),
    Metric("psnr", "PSNR", "image", True, "metrics", "dB, uint8 data range 255 (scikit-image's formula)"),
    Metric("ssim", "SSIM", "image", True, "metrics", "scikit-image's SSIM: 7x7 uniform window, per channel, averaged"),
    Metric("lpips", "LPIPS", "image", False, "metrics", "lpips' learnt distance on the feature backbone"),
    Metric("fid", "FID", "set", False, "metrics", "Frechet distance of the set's pooled backbone features"),
    Metric("classification", "Classification", "image", True, "metrics",
           "1 when the attacked dataset's classifier still finds the true label"),
    Metric("semsim", "SemSim", "image", False, "semsim", "distance of the trained SemSim embeddings"),
    Metric("semsim_untrained", "Control: SemSim untrained", "image", False, "semsim",
           "the same network before training (what the triplets add)"),
    Metric("ce_distance", "CE baseline", "image", False, "ce_baseline",
           "distance of the cross-entropy baseline's features (the paper's)"),
    # threat-model controls: scores that see no image, only how the set was attacked (model level)
    Metric("backbone_only", "Control: backbone only", "set", False, "control",
           "the unrecognised rate predicted from the attacked backbone alone"),
    Metric("budget_only", "Control: budget only", "set", True, "control",
           "the rank of the attack's iteration budget (more budget, more leakage)"),
    Metric("threat_model", "Control: threat model", "set", False, "control",
           "the unrecognised rate predicted from backbone, setting, attack and budget"),
)
BY_NAME = {m.name: m for m in METRICS}
assert len(BY_NAME) == len(METRICS), "a metric is listed twice"


def names(*, stage: str | None = None, level: str | None = None) -> tuple[str, ...]:
    """Metric names in table order, filtered by the stage computing them and/or their level."""
    return tuple(m.name for m in METRICS if (stage is None or m.stage == stage) and (level is None or m.level == level))


def label(name: str) -> str:
    return BY_NAME[name].label


def leakage_sign(name: str) -> int:
    """+1 when a higher value means a more recognisable reconstruction (more leakage)."""
    return 1 if BY_NAME[name].higher_is_similar else -1
