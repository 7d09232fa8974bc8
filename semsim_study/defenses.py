"""Gradient defences: magnitude pruning and Gaussian noise, per parameter tensor.

As in the ATS / SemSim code: pruning zeroes, in each tensor separately, the ``ratio`` share
of entries with the smallest magnitude (k = int(numel * ratio), ``topk(largest=False)``);
noise adds N(0, sigma^2) with an absolute sigma to every tensor, biases included.

Where they act is the threat model (``train.defense_at``):

- ``training``: at every training step, after backward and before the optimiser step; the
  attacker inverts a clean gradient of the model so trained. This is the paper's code.
- ``attack``: only on the gradient the attacker observes (the model trains with crop+flip
  alone), the threat model of GradAttack's and GGL's defence evaluations.
- ``both``: on training steps and on the observed gradient (GradAttack's pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import torch

from .errors import ConfigError

THREAT_MODELS = ("training", "attack", "both")


def prune_(grad: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero the ``ratio`` smallest-magnitude entries of ``grad`` in place; returns it."""
    k = int(grad.numel() * ratio)
    if k > 0:
        idx = torch.topk(grad.reshape(-1).abs(), k, largest=False, sorted=False).indices
        keep = torch.ones(grad.numel(), dtype=grad.dtype, device=grad.device)
        keep[idx] = 0
        grad.mul_(keep.view(grad.shape))  # in place, also for non-contiguous autograd outputs
    return grad


def add_noise_(grad: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    grad.add_(torch.randn(grad.shape, generator=generator, dtype=grad.dtype, device=grad.device) * sigma)
    return grad


@dataclass(frozen=True)
class Defense:
    kind: str = "none"  # none | prune | gaussian
    prune_ratio: float = 0.0
    noise_sigma: float = 0.0

    def apply_(self, grads: Iterable[torch.Tensor | None], generator: torch.Generator | None = None) -> None:
        """Apply to each gradient tensor in place (``None`` entries, unused params, are skipped)."""
        if self.kind == "none":
            return
        for g in grads:
            if g is None:
                continue
            if self.kind == "prune":
                prune_(g, self.prune_ratio)
            else:
                add_noise_(g, self.noise_sigma, generator)

    def describe(self) -> str:
        if self.kind == "prune":
            return f"prune {self.prune_ratio:.0%}"
        if self.kind == "gaussian":
            return f"gaussian sigma={self.noise_sigma:g}"
        return "none"


def from_config(cfg: Mapping, where: str) -> Defense:
    kind = cfg.get("defense", "none")
    if kind == "none":
        return Defense()
    if kind == "prune":
        ratio = cfg.get("prune_ratio")
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio < 1:
            raise ConfigError(f"params: '{where}.prune_ratio' must lie strictly between 0 and 1, got {ratio!r}")
        return Defense("prune", prune_ratio=float(ratio))
    if kind == "gaussian":
        sigma = cfg.get("noise_sigma")
        if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or sigma <= 0:
            raise ConfigError(f"params: '{where}.noise_sigma' must be a positive number, got {sigma!r}")
        return Defense("gaussian", noise_sigma=float(sigma))
    raise ConfigError(f"params: '{where}.defense' is {kind!r}; valid values: gaussian, none, prune")
