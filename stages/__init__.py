"""The DVC stages: thin command-line scripts over the semsim_study library (see dvc.yaml).

Before any stage module loads numpy or torch: BLAS and OpenMP default to one thread (the stages'
matrix products are small, the machine is shared, and torch's own count comes from params:
``_cli.begin``), and importing the library pins the CPU kernels (semsim_study/cpu_kernels.py).
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import semsim_study  # noqa: E402,F401
