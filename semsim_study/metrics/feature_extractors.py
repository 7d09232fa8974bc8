"""Feature extractors behind LPIPS and FID: ``imagenet`` (the standard ones) or ``pipeline``.

Both expose one call, ``backbone(ori, rec) -> (lpips, ori_features, rec_features)`` on float
[0, 1] NCHW batches, so the metrics loop does not care which is in use; ``describe()`` says
which, for meta.json and the tables' ``features`` column.

LPIPS input scale: LPIPS trunks expect [-1, 1] (``lpips.LPIPS(..., normalize=False)`` takes
[-1, 1]; ``normalize=True`` maps [0, 1] there). The paper's code fed ToTensor's [0, 1]
unscaled, which shifts every activation; ``metrics.lpips.paper_input_scale: true``
reproduces that, for comparison only. FID inputs are [0, 1] for pytorch-fid's Inception
(which rescales internally) and [-1, 1] for the pipeline network (as it was trained).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import featurenet, imagenet

KINDS = ("imagenet", "pipeline")


@dataclass(frozen=True)
class LpipsOptions:
    net: str = "alex"                # imagenet trunk: alex | vgg | squeeze
    paper_input_scale: bool = False  # True: feed [0, 1] unscaled, as the paper's code
    resize: int | None = None        # imagenet trunk only: resize to this side first (paper code: 256)

    @property
    def input_scale(self) -> str:
        return "[0, 1] (unscaled, as the paper's code)" if self.paper_input_scale else "[-1, 1]"


class PipelineFeatures:
    """The feature network trained by the ``features`` stage (an offline stand-in)."""

    name = "pipeline"

    def __init__(self, folder: str | Path, lpips: LpipsOptions, device: str = "cpu"):
        self.folder = Path(folder)
        model, self.card = featurenet.load(folder)
        self.model = model.to(device)
        self.opts, self.device = lpips, device
        self.dim = int(self.card["widths"][-1])
        self.size = int(self.card["image_size"])

    def _fit(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return x.to(self.device)

    @torch.no_grad()
    def __call__(self, ori: torch.Tensor, rec: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = self._fit(ori), self._fit(rec)
        la, lb = self.model.layers(a * 2 - 1), self.model.layers(b * 2 - 1)
        fa, fb = featurenet.pool(la[-1]), featurenet.pool(lb[-1])
        if self.opts.paper_input_scale:
            la, lb = self.model.layers(a), self.model.layers(b)
        dist = featurenet.lpips_distance(la, lb)
        return dist.cpu().double().numpy(), fa.cpu().double().numpy(), fb.cpu().double().numpy()

    def describe(self) -> dict:
        c = self.card
        return {
            "features": self.name,
            "offline_stand_in": True,
            "network": {k: c[k] for k in ("kind", "stands_in_for", "datasets", "num_classes", "widths", "image_size",
                                          "test_accuracy", "chance_accuracy", "parameters", "attacked_classifier")},
            "checkpoint": str(self.folder / featurenet.WEIGHTS),
            "lpips": {"trunk": "pipeline feature network", "layers": c["lpips"]["layers"],
                      "formula": c["lpips"]["formula"], "input_scale": self.opts.input_scale,
                      "resize": f"to {self.size} px (the network's training size) when different"},
            "fid": {"features": c["fid"]["features"], "dims": self.dim, "input_scale": "[-1, 1]"},
        }


class ImagenetFeatures:
    """lpips' calibrated LPIPS on an ImageNet trunk, and pytorch-fid's Inception-v3."""

    name = "imagenet"
    dim = 2048

    def __init__(self, folder: str | Path | None, lpips: LpipsOptions, device: str = "cpu"):
        self.folder = imagenet.weights_dir(folder)
        self.opts, self.device = lpips, device
        self.lpips = imagenet.lpips_model(lpips.net, self.folder).to(device)
        self.inception = imagenet.inception_model(self.folder).to(device)

    @torch.no_grad()
    def __call__(self, ori: torch.Tensor, rec: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ori, rec = ori.to(self.device), rec.to(self.device)
        a, b = (ori, rec) if self.opts.paper_input_scale else (ori * 2 - 1, rec * 2 - 1)
        if self.opts.resize and a.shape[-1] != self.opts.resize:
            size = (self.opts.resize, self.opts.resize)
            a = F.interpolate(a, size=size, mode="bilinear", align_corners=False, antialias=True)
            b = F.interpolate(b, size=size, mode="bilinear", align_corners=False, antialias=True)
        dist = self.lpips(a, b, normalize=False).flatten()
        fa = self.inception(ori)[0].flatten(1)  # [0, 1]; the model resizes to 299 and rescales itself
        fb = self.inception(rec)[0].flatten(1)
        return dist.cpu().double().numpy(), fa.cpu().double().numpy(), fb.cpu().double().numpy()

    def describe(self) -> dict:
        return {
            "features": self.name,
            "offline_stand_in": False,
            "weights_dir": str(self.folder),
            "lpips": {"package": "lpips 0.1.4 (linear layers v0.1)", "net": self.opts.net,
                      "trunk_file": imagenet.TRUNK_FILES[self.opts.net], "input_scale": self.opts.input_scale,
                      "resize": self.opts.resize},
            "fid": {"network": "pytorch-fid InceptionV3, TF-FID weights", "file": imagenet.INCEPTION_FILE,
                    "features": "pool3", "dims": self.dim,
                    "input_scale": "[0, 1], resized to 299 (bilinear) inside the network"},
        }


def build(kind: str, *, features_dir: str | Path, weights_dir: str | Path | None, lpips: LpipsOptions,
          device: str = "cpu"):
    if kind == "pipeline":
        return PipelineFeatures(features_dir, lpips, device)
    if kind == "imagenet":
        return ImagenetFeatures(weights_dir, lpips, device)
    raise ValueError(f"unknown feature backbone {kind!r}; valid: {', '.join(KINDS)}")
