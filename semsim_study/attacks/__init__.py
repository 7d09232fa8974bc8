"""Gradient-inversion attacks: one gradient-matching engine, four named configurations.

``engine.reconstruct`` combines the parts (distance, optimiser, priors, labels, restarts);
``configs`` names DLG, iDLG, Inverting Gradients and GradInversion with their reference
settings; ``jobs`` runs (model x image) jobs in parallel, resumably.
"""
