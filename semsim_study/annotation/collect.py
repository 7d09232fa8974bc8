"""Collect a dataset's answers from the source params name (simulated or people's files), aggregate them.

What the annotate stage runs, kept out of stages/annotate.py so that it can be tested without
DVC. Whatever the source, the answers pass through one importer (``importers``) and one
aggregation (``aggregate``, ``agreement``); simulated answers are written to a long-format CSV
and read back by the CSV importer, exactly as a file from people would be.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .. import atomic, params as P, seeding
from ..datasets import halves, standard
from ..datasets.imaging import read_png
from ..errors import ConfigError, DataError
from ..torch_helpers import state_bytes
from . import aggregate, agreement, crowd_checks, importers, observer, quality, simulated
from .longformat import COLUMNS
from .tasks import Task, check_section, read_tasks

SOURCES = ("simulated",) + tuple(importers.SOURCES)
#: Where files of people's answers live (a DVC dependency of every annotate stage).
INPUT_DIR = Path("annotations")
#: The observer's weights beside the answers (only for simulated answers).
OBSERVER_FILE = "observer.pt"
# what `dvc metrics show` lists of the summary (the full one: reports/annotate/<dataset>.json)
HEADLINE = ("recognised_rate", "majority_recognised_share", "fleiss_kappa", "krippendorff_alpha",
            "observer_test_accuracy", "crowd_clean_original_rate", "crowd_invisible_rate", "crowd_near_copy_rate",
            "crowd_invariance_rate")


@dataclass
class Result:
    answers: pd.DataFrame
    items: pd.DataFrame
    sets: pd.DataFrame
    info: dict
    summary: dict = field(default_factory=dict)
    observer: bytes | None = None  # the simulated crowd's eyes, kept for the planted-cue control

    def write(self, folder: Path) -> None:
        for name, table in (("answers", self.answers), ("items", self.items), ("sets", self.sets)):
            buf = io.StringIO()
            table.to_csv(buf, index=False, lineterminator="\n", float_format="%.6g")
            (folder / f"{name}.csv").write_text(buf.getvalue(), encoding="utf-8")
        atomic.write_json(folder / "annotators.json", self.info)
        if self.observer is not None:
            (folder / OBSERVER_FILE).write_bytes(self.observer)


def _dataclass_from(cls, section: Mapping, where: str):
    return cls(**P.known(P.Section(section, where), "", [f.name for f in fields(cls)]))


def _read_image(path: str, item_id: str) -> np.ndarray:
    return read_png(path, f"image of item {item_id} is missing (rerun the attack stage)")


def from_params(params: Mapping) -> tuple[observer.ObserverConfig, simulated.PoolConfig]:
    """The observer's and the pool's settings from ``annotate.simulated``."""
    section = P.Section(P.get(params, "annotate.simulated", dict, {}) or {}, "annotate.simulated")
    obs_cfg = _dataclass_from(observer.ObserverConfig, dict(section.get("observer", {}) or {}), "annotate.simulated.observer")
    pool_cfg = _dataclass_from(simulated.PoolConfig, {k: v for k, v in section.items() if k != "observer"},
                               "annotate.simulated")
    if not 1 <= pool_cfg.per_item <= pool_cfg.pool:
        raise ConfigError("params: 'annotate.simulated.per_item' must be between 1 and 'pool'")
    return obs_cfg, pool_cfg


def train_eyes(ds: standard.PreparedDataset, obs_cfg: observer.ObserverConfig, seed: int,
               on_epoch=None) -> tuple[observer.Observer, np.ndarray]:
    """The simulated crowd's observer, trained on its own half of the training split (never an
    image the feature network learnt from); returns it and that half's indices."""
    own = halves.training_half(ds.train_labels, "observer")
    net = observer.train_observer(ds.train_images[own], ds.train_labels[own], ds.num_classes, obs_cfg,
                                  seed=seeding.torch_seed([seed, 5]), on_epoch=on_epoch)
    return net, own


def simulate(tasks: Mapping[str, Task], dataset: str, params: Mapping, seed: int,
             prepared_dir: str | Path) -> tuple[pd.DataFrame, dict, observer.Observer]:
    """Answers of the simulated pool for ``tasks``, through the CSV importer; what was
    simulated; and the observer network the pool saw through (trained on the prepared dataset
    in ``prepared_dir``)."""
    obs_cfg, pool_cfg = from_params(params)
    ds = standard.load(prepared_dir)
    ids = sorted(tasks)  # every image is read (and checked) before the observer trains
    originals = np.stack([_read_image(tasks[i].original, i) for i in ids])
    recons = np.stack([_read_image(tasks[i].reconstruction, i) for i in ids])
    if originals.shape[1:] != ds.train_images.shape[1:] or recons.shape[1:] != ds.train_images.shape[1:]:
        raise DataError(f"tasks of {dataset}: images are {recons.shape[1:]}, the prepared dataset's ({prepared_dir}) "
                        f"are {ds.train_images.shape[1:]}; rerun the attack and tasks stages")
    net, own = train_eyes(ds, obs_cfg, seed)
    p_orig, p_rec = net.posterior(originals), net.posterior(recons)
    posteriors = {i: (p_orig[k], p_rec[k]) for k, i in enumerate(ids)}
    rows = simulated.annotate(tasks, posteriors, ds.class_names, pool_cfg, seed, dataset)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / f"simulated-{dataset}.csv"
        pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(raw, index=False, lineterminator="\n")
        answers = importers.read_csv_answers([raw], tasks)
    people = simulated.make_pool(pool_cfg, ds.class_names, seed, dataset)
    info = simulated.describe(pool_cfg, people)
    majority = {k: sum(v) * 2 > len(v) for k, v in simulated.recognised_votes(rows, tasks).items()}
    mean, std = ds.channel_stats()
    info["crowd_checks"] = crowd_checks.checks(tasks, ids, originals, recons, majority, net.posterior, ds.class_names,
                                               pool_cfg, seed, dataset, mean, std)
    info["observer"] = {"network": "three-layer CNN with global pooling on low-passed, standardised pixels, "
                                   "trained in this stage on its own half of the clean training split",
                        "training_images": int(len(own)), "weights": OBSERVER_FILE,
                        "config": obs_cfg.__dict__,
                        "test_accuracy": observer.accuracy(net, ds.test_images, ds.test_labels),
                        "shares_nothing_with": ["attacked classifiers", "LPIPS/FID feature networks", "SemSim"]}
    return answers, info, net


def import_people(tasks: Mapping[str, Task], dataset: str, params: Mapping, source: str) -> tuple[pd.DataFrame, dict]:
    paths = P.get(params, f"annotate.paths.{dataset}", list, None)
    if not paths:
        raise ConfigError(f"params: 'annotate.source' is {source!r} but 'annotate.paths.{dataset}' lists no files "
                          f"(put them under {INPUT_DIR}/ and list them there)")
    # reader options of this source only (paper_folders: mapping; label_studio: item_key, from_name, choice_map)
    options = dict(P.get(params, f"annotate.options.{source}", dict, {}) or {})
    others = set(P.get(params, "datasets", list)) - {dataset}
    threshold = quality.min_gold_accuracy(params, source)
    answers = importers.import_answers(source, paths, tasks, skip_datasets=others, **options)
    info = {"source": "human", "format": source, "paths": [str(p) for p in paths]}
    if threshold is not None:
        answers, info["excluded_annotators"] = quality.exclude(answers, paths, threshold)
        info["min_gold_accuracy"] = threshold
    return answers, info


def source_of(params: Mapping, dataset: str) -> str:
    """``annotate.source``: one source for every dataset, or a mapping <dataset>: <source> (people
    on one dataset while the others stay simulated, say)."""
    if isinstance(P.get(params, "annotate.source", (str, dict)), dict):
        P.known(params, "annotate.source", P.get(params, "datasets", list))
        return P.choice(params, f"annotate.source.{dataset}", SOURCES)
    return P.choice(params, "annotate.source", SOURCES)


def run(params: Mapping, dataset: str, tasks_csv: str | Path, prepared_dir: str | Path) -> Result:
    """The answers, aggregates and summary of ``dataset`` for the tasks in ``tasks_csv`` (the
    simulated crowd learns to see from the prepared dataset in ``prepared_dir``)."""
    check_section(params)
    source = source_of(params, dataset)
    seed = P.get(params, "seed", int)
    tasks = read_tasks(tasks_csv)
    net = None
    if source == "simulated":
        answers, info, net = simulate(tasks, dataset, params, seed, prepared_dir)
    else:
        answers, info = import_people(tasks, dataset, params, source)
    kind = info["source"]
    items = aggregate.aggregate_items(answers, tasks, source=kind)
    sets = aggregate.aggregate_sets(items, source=kind)
    table = aggregate.answers_with_recognised(answers, tasks, source=kind)
    agree = agreement.dataset_agreement(answers, tasks).get(dataset, agreement.binary_agreement({}))
    info["agreement"] = agree
    rates = items["recognised_rate"].dropna()
    summary = {
        "dataset": dataset, "source": kind, **aggregate.coverage(items), **aggregate.spread(items, sets),
        "recognised_rate": round(float(rates.mean()), 6) if len(rates) else None,
        "fleiss_kappa": agree["fleiss_kappa"]["value"], "krippendorff_alpha": agree["krippendorff_alpha"]["value"],
        "simulated": kind == "simulated",
    }
    if "min_gold_accuracy" in info:  # who the gold threshold left out, and why
        summary["min_gold_accuracy"] = info["min_gold_accuracy"]
        summary["excluded_annotators"] = info["excluded_annotators"]
    if kind == "simulated":
        summary["observer_test_accuracy"] = round(info["observer"]["test_accuracy"], 6)
        summary.update(info.pop("crowd_checks"))  # controls of this run, not part of the answers
    return Result(table, items, sets, info, summary, state_bytes(net) if net is not None else None)
