"""SemSim (Sun et al., NeurIPS 2023): an embedding trained with a triplet loss on human
judgements of reconstructions; SemSim(x, x^) = L2 distance of L2-normalised embeddings.

Modules, one job each: ``items`` (labelled reconstructions, splits), ``triplets`` (sampling,
held-out triplet accuracy), ``loss``, ``embedding_nets``, ``preprocess``, ``train`` (SemSim and
the cross-entropy baseline), ``metric`` (``SemSim.load`` / ``.score``), ``pretrained`` (a trained
model's folder fetched from the study's git repository and DVC remote, md5-checked, for
``SemSim.from_pretrained``), ``study`` (one split end to end, for the DVC stage) and ``cli``
(``python -m semsim_study.semsim score ...`` / ``pull ...``).
"""

from .loss import distance, triplet_loss
from .metric import SemSim

__all__ = ["SemSim", "distance", "triplet_loss"]
