"""The DVC stages: thin command-line scripts over the semsim_study library (see dvc.yaml)."""
