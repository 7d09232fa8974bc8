"""The SemSim training loss and distance, on L2-normalised embeddings.

The paper: a standard triplet loss with margin alpha (alpha = 1 in its experiments, the
supplementary's section B); the official code: ``nn.TripletMarginLoss(margin=1.0, p=2)`` on
``F.normalize``-d features. The same normalisation is applied when scoring (``distance``), so
the margin learnt in training means the same thing at test time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, p=2, dim=1)


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, alpha: float,
                 reduction: str = "mean") -> torch.Tensor:
    """mean(max(0, ||a-p|| - ||a-n|| + alpha)) over rows, after L2-normalising each embedding.

    torch's triplet_margin_loss (eps 1e-6 inside the distance, as nn.TripletMarginLoss).
    """
    if alpha <= 0:
        raise ValueError(f"triplet margin alpha must be positive, got {alpha}")
    return F.triplet_margin_loss(normalize(anchor), normalize(positive), normalize(negative), margin=float(alpha),
                                 p=2, reduction=reduction)


def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SemSim(x, x^): the L2 distance of the normalised embeddings, in [0, 2]; larger = less leakage."""
    return torch.linalg.vector_norm(normalize(a) - normalize(b), ord=2, dim=1)
