"""Which way each metric should move with people's judgement, so results read "higher = better".

The paper's code correlates each model's mean metric with its *unrecognised* rate and expects
PSNR and SSIM to fall as it rises (more similar -> more often recognised) while MSE, LPIPS, FID
and SemSim (distances) rise. The classification baseline (1 when a classifier still finds the
true label) behaves like a similarity. Against the *recognised* rate (image level) every sign
flips. "Oriented" = signed value x expected sign: positive means the metric follows people.
"""

from __future__ import annotations

# expected sign of the correlation with the unrecognised rate
# (the threat-model controls of controls.py: backbone_only and threat_model are predicted
# unrecognised rates; budget_only is the budget's rank, and more budget means more leakage)
EXPECTED_VS_UNRECOGNISED = {
    "mse": 1, "psnr": -1, "ssim": -1, "lpips": 1, "fid": 1, "classification": -1,
    "semsim": 1, "ce_distance": 1, "semsim_untrained": 1, "backbone_only": 1, "budget_only": -1, "threat_model": 1,
}
IMAGE_METRICS = ("mse", "psnr", "ssim", "lpips", "classification", "semsim", "semsim_untrained", "ce_distance")
#: scores that see no image, only how the set was attacked (model level only)
CONTROL_METRICS = ("backbone_only", "budget_only", "threat_model")
SET_IMAGE_METRICS = ("mse", "psnr", "ssim", "lpips", "fid", "classification", "semsim", "semsim_untrained",
                     "ce_distance")
SET_METRICS = SET_IMAGE_METRICS + CONTROL_METRICS
LABELS = {"mse": "MSE", "psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "fid": "FID",
          "classification": "Classification", "semsim": "SemSim", "ce_distance": "CE baseline",
          "semsim_untrained": "Control: SemSim untrained",
          "backbone_only": "Control: backbone only", "budget_only": "Control: budget only",
          "threat_model": "Control: threat model"}
TARGETS = {"unrecognised_rate": 1, "recognised_rate": -1}


def expected_sign(metric: str, target: str) -> int:
    """+1 or -1: the sign a faithful metric's correlation with ``target`` should have."""
    return EXPECTED_VS_UNRECOGNISED[metric] * TARGETS[target]


def leakage_sign(metric: str) -> int:
    """+1 when a higher value means a more recognisable reconstruction (more leakage)."""
    return -EXPECTED_VS_UNRECOGNISED[metric]
