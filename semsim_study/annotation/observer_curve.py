"""How the simulated crowd's keys grow with the observer's training epochs: its budget's curve.

The annotate stage trains one observer per dataset for ``annotate.simulated.observer.epochs``.
That number should come from a measured curve, not habit, and be chosen only on what the
crowd's settings may be chosen on: originals and their degradations, never the study's
reconstructions. One training run gives the whole curve (the learning rate is constant, so an
E-epoch observer is this run's state at epoch E); at every ``every``-th epoch it records:

- ``test_accuracy``: the observer on the clean test split;
- ``crowd_clean_original_rate`` and ``crowd_invariance_rate``: the crowd (same pool, same
  draws as the stage) on the attack-subset originals and on the changes people ignore;
- ``crowd_random_start_rate``: the crowd shown what the attacks start from (Gaussian noise in
  the classifiers' normalised space) in place of each original, which people never recognise;
- ``min_p_true``: the observer's lowest posterior for the true class of an attack-subset original.

Run by ``scripts/observer_curve.py``; see docs/simulated-annotators.md for the curve it gave.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping

import numpy as np

from .. import params as P
from ..datasets import standard
from ..datasets.imaging import read_png
from . import collect, crowd_checks, observer
from .tasks import read_tasks

RANDOM_STARTS = 3  # random starts shown per original (60 for 20 originals)


def curve(params: Mapping, dataset: str, tasks_csv: str | Path, prepared_dir: str | Path,
          every: int = 10, epochs: int | None = None) -> list[dict]:
    """One row per checkpoint epoch of the observer ``params`` describe (``epochs`` overrides its budget)."""
    obs_cfg, pool = collect.from_params(params)
    if epochs is not None:
        obs_cfg = replace(obs_cfg, epochs=int(epochs))
    seed = P.get(params, "seed", int)
    ds = standard.load(prepared_dir)
    tasks = read_tasks(tasks_csv)
    ids = sorted(tasks)
    originals = np.stack([read_png(tasks[i].original, f"original of item {i}") for i in ids])
    reference, clean = crowd_checks.distinct_originals(tasks, ids, originals)
    truth = np.array([ds.class_names.index(t.truth) for t in reference])
    mean, std = ds.channel_stats()
    starts = crowd_checks.random_starts(clean, mean, std, np.random.default_rng([seed, 0x63757276]), RANDOM_STARTS)
    start_reference = [t for t in reference for _ in range(RANDOM_STARTS)]
    rows: list[dict] = []

    def record(epoch: int, net: observer.Observer) -> None:
        if epoch % every and epoch != obs_cfg.epochs:
            return
        keys = crowd_checks.on_originals(reference, clean, net.posterior, ds.class_names, pool, seed, dataset)
        p_clean = net.posterior(clean)
        rows.append({
            "dataset": dataset, "epoch": epoch,
            "test_accuracy": round(observer.accuracy(net, ds.test_images, ds.test_labels), 6),
            "crowd_clean_original_rate": keys["crowd_clean_original_rate"],
            "crowd_invariance_rate": keys["crowd_invariance_rate"],
            "crowd_random_start_rate": round(crowd_checks.crowd_on(
                starts, start_reference, np.repeat(p_clean, RANDOM_STARTS, axis=0), net.posterior, ds.class_names,
                pool, seed, f"{dataset}#start"), 6),
            "min_p_true": round(float(p_clean[np.arange(len(clean)), truth].min()), 6),
        })

    collect.train_eyes(ds, obs_cfg, seed, on_epoch=record)
    return rows
