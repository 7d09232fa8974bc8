"""SemSim (Sun et al., NeurIPS 2023): an embedding trained with a triplet loss on human
judgements of reconstructions; SemSim(x, x^) = L2 distance of L2-normalised embeddings.

Modules, one job each: ``items`` (labelled reconstructions, splits), ``triplets`` (sampling,
held-out triplet accuracy), ``loss``, ``embedding_nets``, ``preprocess``, ``train`` (SemSim and
the cross-entropy baseline), ``metric`` (``SemSim.load`` / ``.score``), ``torchmetric``
(``SemSimMetric``: scores accumulated over batches, the torchmetrics way), ``modelcard``
(MODEL_CARD.md), ``pretrained`` (a trained model's folder fetched from the study's git
repository and DVC remote, md5-checked, for ``SemSim.from_pretrained``), ``study`` (one split
end to end, for the DVC stage) and ``cli`` (the ``semsim score ...`` / ``pull ...`` command).
"""

from .loss import distance, triplet_loss
from .metric import SemSim

__all__ = ["SemSim", "SemSimMetric", "distance", "triplet_loss"]


def __getattr__(name: str):
    """``SemSimMetric`` on first use: the DVC stages import this package and never need it, so
    they neither load nor depend on torchmetric.py."""
    if name == "SemSimMetric":
        from .torchmetric import SemSimMetric

        return SemSimMetric
    raise AttributeError(f"module 'semsim_study.semsim' has no attribute {name!r}")
