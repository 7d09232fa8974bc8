"""Which way each metric should move with people's judgement, so results read "higher = better"
(derived from ``metric_table``, where each metric's direction is stated once).

The paper's code correlates each model's mean metric with its *unrecognised* rate and expects
PSNR and SSIM to fall as it rises (more similar -> more often recognised) while MSE, LPIPS, FID
and SemSim (distances) rise. The classification baseline (1 when a classifier still finds the
true label) behaves like a similarity. Against the *recognised* rate (image level) every sign
flips. "Oriented" = signed value x expected sign: positive means the metric follows people.
"""

from __future__ import annotations

from .. import metric_table as T

# expected sign of the correlation with the unrecognised rate: a similarity falls as it rises
EXPECTED_VS_UNRECOGNISED = {m.name: -1 if m.higher_is_similar else 1 for m in T.METRICS}
IMAGE_METRICS = T.names(level="image")
#: scores that see no image, only how the set was attacked (model level only)
CONTROL_METRICS = T.names(stage="control")
SET_IMAGE_METRICS = tuple(n for n in T.names() if n not in CONTROL_METRICS)
SET_METRICS = SET_IMAGE_METRICS + CONTROL_METRICS
LABELS = {m.name: m.label for m in T.METRICS}
TARGETS = {"unrecognised_rate": 1, "recognised_rate": -1}


def expected_sign(metric: str, target: str) -> int:
    """+1 or -1: the sign a faithful metric's correlation with ``target`` should have."""
    return EXPECTED_VS_UNRECOGNISED[metric] * TARGETS[target]
