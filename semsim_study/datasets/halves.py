"""Disjoint halves of a training split, so that two learners never see the same image.

The simulated annotators' observer and the feature network behind LPIPS/FID must not learn
from the same images, or the "people" would share what the metrics know.
"""

from __future__ import annotations

import numpy as np

#: Who learns from which half of every training split; each class is dealt alternately to the halves.
TRAINING_HALVES = {"feature_net": 0, "observer": 1}


def training_half(labels: np.ndarray, who: str) -> np.ndarray:
    """Indices of the training split that ``who`` (a key of TRAINING_HALVES) learns from:
    every other image of each class, so both halves keep every class and the halves never meet."""
    part = TRAINING_HALVES[who]
    keep = [np.flatnonzero(labels == c)[part::2] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
