"""A trained classifier read back: one ``load`` (checkpoint and card) and one ``predict``.

Every reader of the train stage's models uses these: the annotation tasks (protocol A's
candidate classes), the attacks, the classification baseline of the metrics and the crowd's
planted-cue control. None of them imports the training loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import atomic
from ..errors import DataError
from ..torch_helpers import fill, load_state, normalize, to_tensor
from . import backbones


def load(checkpoint: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild a trained model from ``<id>.pt`` and its card ``<id>.json`` (weights only, no code)."""
    checkpoint = Path(checkpoint)
    info = atomic.read_json(checkpoint.with_suffix(".json"), f"model card missing beside {checkpoint.name}")
    state = load_state(checkpoint, str(checkpoint), "checkpoint missing; rerun the train stage")
    return from_state(state, info, str(checkpoint)), info


def from_state(state: dict, info: dict, where: str) -> nn.Module:
    """The model a card describes, with the weights of ``state`` (from ``load_state``)."""
    model = backbones.build(info["backbone"], info["num_classes"], info["image_size"])
    return fill(model, state, where, f"backbone {info['backbone']!r}").eval()


def normalization(card: dict, where: str = "model card") -> tuple[list[float], list[float]]:
    """The mean and std the model was trained with (its card's ``normalization``)."""
    norm = card.get("normalization") or {}
    if "mean" not in norm or "std" not in norm:
        raise DataError(f"{where}: card has no normalization mean/std")
    return norm["mean"], norm["std"]


def inputs(images: np.ndarray | torch.Tensor, card: dict) -> torch.Tensor:
    """What the model reads: uint8 NHWC images, or a float [0, 1] NCHW batch, normalised as in training."""
    mean, std = normalization(card)
    return to_tensor(images, mean, std) if isinstance(images, np.ndarray) else normalize(images, mean, std)


@torch.no_grad()
def logits(model: nn.Module, card: dict, images: np.ndarray | torch.Tensor, device: str = "cpu",
           batch_size: int | None = None) -> torch.Tensor:
    """The model's logits for ``images`` (see ``inputs``), ``batch_size`` at a time (None: all at once)."""
    step = batch_size or max(len(images), 1)
    out = [model(inputs(images[i : i + step], card).to(device)) for i in range(0, len(images), step)]
    return torch.cat(out) if out else torch.zeros((0, card["num_classes"]))


def predict(model: nn.Module, card: dict, images: np.ndarray | torch.Tensor, device: str = "cpu",
            batch_size: int | None = None) -> np.ndarray:
    """The class the model reads in each of ``images`` (see ``inputs``)."""
    return logits(model, card, images, device, batch_size).argmax(1).cpu().numpy()
