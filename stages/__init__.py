"""The DVC stages: thin command-line scripts over the semsim_study library (see dvc.yaml).

Importing the library first pins the CPU kernels (semsim_study/cpu_kernels.py) before any stage
module imports torch or numpy.
"""

import semsim_study  # noqa: F401
