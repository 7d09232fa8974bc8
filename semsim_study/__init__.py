"""A reproducible study of privacy metrics on reconstructed images (Sun et al., NeurIPS 2023).

The library behind the DVC stages: datasets, models, attacks, annotation, metrics, SemSim and
the report. Stage scripts in ``stages/`` only read params, call into here and write outputs.
"""

__version__ = "0.1.0"
