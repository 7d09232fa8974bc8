"""The paper code's "classification" baseline: does a classifier still recognise the reconstruction?

For each pair, a classifier trained on the dataset's clean training data predicts the class
of the reconstruction (1 if it predicts the true label, else 0) and of the original. The
paper's code turns this into ``acc = rec-recognised / ori-recognised`` per model; the set
table carries both rates and that ratio.

Which classifier: ``metrics.classifier`` (a model id of this dataset), by default the first
trained model that ``train.datasets.<dataset>.models`` lists (an untrained one classifies nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .. import params as P
from ..classifiers import checkpoints, grid
from ..errors import ConfigError


def classifier_id(params: Mapping, dataset: str) -> str:
    """``metrics.classifier`` if set, else the dataset's first listed trained model."""
    ids = grid.model_ids(params, dataset)
    chosen = P.get(params, "metrics.classifier", (str, type(None)), None)
    if chosen is None:
        return grid.default_classifier(params, dataset)
    if chosen not in ids:
        raise ConfigError(f"params: 'metrics.classifier' is {chosen!r}, not a model of {dataset} "
                          f"(train.datasets.{dataset}.models gives: {', '.join(ids)})")
    return chosen


class Classifier:
    """A trained classifier of the study, applied to uint8 image batches."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu"):
        self.checkpoint = Path(checkpoint)
        model, self.card = checkpoints.load(self.checkpoint)
        self.model = model.to(device)
        self.device = device
        self.size = int(self.card["image_size"])

    @torch.no_grad()
    def predict(self, x01: torch.Tensor) -> np.ndarray:
        """Labels for a float [0, 1] NCHW batch (resized to the classifier's input size if needed)."""
        if x01.shape[-1] != self.size:
            x01 = F.interpolate(x01, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return checkpoints.predict(self.model, self.card, x01, self.device)

    def describe(self) -> dict:
        c = self.card
        return {"model": c["model_id"], "checkpoint": str(self.checkpoint), "backbone": c["backbone"],
                "setting": c["setting"], "test_accuracy": c["test_accuracy"],
                "definition": "1 if the classifier predicts the true label on the reconstruction, else 0"}
