"""SemSimMetric: SemSim accumulated over batches, for code written against torchmetrics.

    from semsim_study import SemSimMetric
    metric = SemSimMetric("models/semsim/dataset-digits", normalize=True)   # [0, 1] inputs
    for x, y in loader:
        metric.update(x, y)           # or batch_value = metric(x, y), which updates too
    metric.compute()                  # mean SemSim over every pair seen ("sum"; "none": all of them)
    metric.reset()

It has the API of torchmetrics' ``LearnedPerceptualImagePatchSimilarity`` (``update``,
``compute``, ``reset``, ``forward``, ``reduction``, ``normalize``, ``higher_is_better``,
``is_differentiable``, ``full_state_update``) so an evaluation loop that uses LPIPS takes it
unchanged. It is a plain ``nn.Module``, not a ``torchmetrics.Metric``, even where torchmetrics is
installed: the metric's four dependencies do not include it, and a class whose base depended on
what happens to be importable would behave differently on two machines. So it moves with
``.to(device)`` but does not join a ``MetricCollection`` or synchronise across processes.

Inputs are read as ``SemSim.forward`` reads them (metric.py): float in [-1, 1], or [0, 1] with
``normalize=True``; uint8 as 0..255; grey repeated to RGB; a batch of one broadcast. The scores
keep their autograd graph, as torchmetrics' states do, so ``compute()`` is differentiable when
the inputs were.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from .metric import SemSim

REDUCTIONS = ("mean", "sum", "none")


class SemSimMetric(nn.Module):
    """SemSim distances of (original, reconstruction) pairs, accumulated until ``reset``."""

    # as torchmetrics' LPIPS: a smaller distance is a reconstruction closer to its original, i.e.
    # better for the attacker; for privacy, larger SemSim means less leakage
    higher_is_better = False
    is_differentiable = True
    full_state_update = False  # a batch's value needs only that batch (``forward`` relies on it)

    def __init__(self, model: str | Path | SemSim, normalize: bool = False, reduction: str = "mean",
                 baseline: bool = False, device: str | torch.device | None = None):
        """``model``: a model folder (or its card or weight file), loaded with ``SemSim.load``, or a
        loaded ``SemSim``; ``baseline=True`` loads the folder's CE baseline instead."""
        super().__init__()
        if reduction not in REDUCTIONS:
            raise InputError(f"SemSimMetric: reduction must be one of {', '.join(map(repr, REDUCTIONS))}, "
                             f"got {reduction!r}")
        if not isinstance(normalize, bool):
            raise InputError(f"SemSimMetric: normalize must be True ([0, 1] inputs) or False ([-1, 1]), "
                             f"got {normalize!r}")
        if isinstance(model, SemSim):
            if baseline:
                raise InputError("SemSimMetric: baseline=True picks the CE baseline's weights in a model folder; "
                                 "a loaded SemSim module already has its weights")
            self.semsim = model if device is None else model.to(device)
        elif isinstance(model, (str, Path)):
            self.semsim = SemSim.load(model, baseline=baseline, device=str(device or "cpu"))
        else:
            raise InputError(f"SemSimMetric: model must be a model folder (str or Path) or a SemSim module, "
                             f"got {type(model).__name__}")
        self.normalize = normalize
        self.reduction = reduction
        self._scores: list[torch.Tensor] = []

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}, reduction={self.reduction!r}"

    def _reduce(self, scores: torch.Tensor) -> torch.Tensor:
        if self.reduction == "mean":
            return scores.mean()
        if self.reduction == "sum":
            return scores.sum()
        return scores

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Score one batch of pairs and keep the scores."""
        self._scores.append(self.semsim(x, y, normalize=self.normalize))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The reduced score of this batch alone; the batch is kept for ``compute`` as well."""
        scores = self.semsim(x, y, normalize=self.normalize)
        self._scores.append(scores)
        return self._reduce(scores)

    def compute(self) -> torch.Tensor:
        """Every pair since the last ``reset``, reduced: a scalar, or (N,) with ``reduction='none'``.
        Before any update it warns, as torchmetrics does, and reduces nothing (mean: NaN)."""
        if not self._scores:
            warnings.warn("SemSimMetric.compute() was called before update(): no pairs to reduce",
                          UserWarning, stacklevel=2)
            return self._reduce(torch.zeros(0, device=self.semsim.device))
        return self._reduce(torch.cat(self._scores))

    def reset(self) -> None:
        """Forget every score (the model stays loaded)."""
        self._scores = []
