"""A reproducible study of privacy metrics on reconstructed images (Sun et al., NeurIPS 2023).

The library behind the DVC stages: datasets, models, attacks, annotation, metrics, SemSim and
the report. Stage scripts in ``stages/`` only read params, call into here and write outputs.
"""

from . import cpu_kernels

cpu_kernels.pin()  # before torch or numpy loads: the same kernels, so the same bytes, on every x86-64 CPU

__version__ = "0.1.0"

__all__ = ["SemSim", "SemSimMetric"]


def __getattr__(name: str):
    """``from semsim_study import SemSim`` (or ``SemSimMetric``) without importing torch for every
    other module."""
    if name == "SemSim":
        from .semsim.metric import SemSim

        return SemSim
    if name == "SemSimMetric":
        from .semsim.torchmetric import SemSimMetric

        return SemSimMetric
    raise AttributeError(f"module 'semsim_study' has no attribute {name!r}")
