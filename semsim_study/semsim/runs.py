"""Every split of one model (SemSim or the CE baseline), in parallel processes, written into the
stage's folders.

One stage per model rather than one per split: every split reads the same inputs and params,
so they always rerun together, and eleven stages paid eleven process starts (torch import),
eleven reads of the same reconstructions and eleven DVC walks of ``data/attacks``. Splits are
independent (each seeds itself from its own name and runs torch on ``semsim.threads`` threads),
so ``semsim.workers`` processes run them side by side with the same bytes as one after another;
the count is not a stage param, like ``attack.workers``: results never depend on it.
"""

from __future__ import annotations

import csv
import io
import logging
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import torch

from .. import atomic, curves
from ..executor import process_pool
from .. import params as P
from ..errors import ConfigError
from ..torch_helpers import state_bytes
from . import metric, modelcard, study

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Folders:
    """Where one model's splits go (each split writes ``<folder>/<name>...`` inside them)."""

    models: Path  # models/<model>/<name>/: weights, card, MODEL_CARD.md
    data: Path  # data/<model>/<name>/scores.csv
    reports: Path  # reports/<model>/<name>.json
    curves: Path  # reports/<model>_curves/<name>/curves.csv

    @staticmethod
    def of(root: Path, model: str) -> "Folders":
        return Folders(root / "models" / model, root / "data" / model, root / "reports" / model,
                       root / "reports" / f"{model}_curves")


def planned(params: Mapping) -> list[tuple[str, str]]:
    """(split, held_out) of every split the stage trains: each dataset, then each entry of
    ``semsim.held_out_attacks`` and ``semsim.held_out_backbones``."""
    out = [("dataset", ds) for ds in study.string_list(params, "datasets")]
    for split, key in (("attack", "semsim.held_out_attacks"), ("backbone", "semsim.held_out_backbones")):
        values = P.get(params, key, list, [])
        if not all(isinstance(v, str) and v for v in values) or len(set(values)) != len(values):
            raise ConfigError(f"params: '{key}' must be a list of distinct names, got {values!r}")
        out += [(split, v) for v in values]
    return out


def write(result: study.SplitResult, to: Folders) -> None:
    """One split's files, each inside its model's folders."""
    name, model = result.name, result.model
    (to.models / name).mkdir(parents=True)
    (to.models / name / metric.WEIGHTS[model]).write_bytes(state_bytes(result.net.net))
    (to.models / name / metric.CARD_NAME).write_text(atomic.dumps_json(result.card), encoding="utf-8")
    (to.models / name / "MODEL_CARD.md").write_text(modelcard.render(result.card, result.metrics), encoding="utf-8")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=result.columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.rows)
    (to.data / name).mkdir(parents=True)
    (to.data / name / "scores.csv").write_text(buf.getvalue(), encoding="utf-8")
    curves.one_chart(to.curves / name / "curves.csv", result.history, skip=("lr",))
    atomic.write_json(to.reports / f"{name}.json", result.metrics)


def _summary(result: study.SplitResult) -> str:
    m = result.metrics
    shown = {k: m[k] for k in study.HEADLINE[result.model] if m.get(k) is not None}
    return (f"{result.model} {result.name}: trained on {m['train_items']} reconstructions in {result.seconds:.1f} s; "
            f"{m['heldout_items']} held-out scored; " + ", ".join(f"{k} {v}" for k, v in shown.items()))


def _one(params: Mapping, model: str, split: str, held_out: str, root: str, to: Folders, threads: int,
         decoded: Mapping) -> str:
    torch.set_num_threads(threads)
    result = study.run_split(params, split, held_out, root, model=model, decoded=decoded)
    write(result, to)
    return _summary(result)


def run(params: Mapping, model: str, to: Folders, root: str | Path = ".") -> Iterator[str]:
    """Train and score every planned split of ``model``, writing each into ``to``; yields one
    summary line per split as it finishes. An error in any split propagates (the caller's
    folders are built atomically, so nothing half-written is kept)."""
    if model not in study.MODELS:
        raise ConfigError(f"unknown SemSim model {model!r}; valid: {', '.join(study.MODELS)}")
    splits = planned(params)
    threads = P.positive_int(params, "semsim.threads", 1)
    workers = min(P.positive_int(params, "semsim.workers", 1), len(splits))
    if study.from_params(params).device != "cpu":  # a bad recipe fails here, once, not in every worker
        workers = 1  # one GPU: the splits take turns on it
    decoded = study.decode_images(params, root)  # once for all splits (PIL only: no torch op before the fork)
    args = [(params, model, split, held_out, str(root), to, threads, decoded) for split, held_out in splits]
    log.info("%s: %d splits on %d worker(s), %d torch thread(s) each", model, len(splits), workers, threads)
    yield from in_processes(_one, args, workers)


def in_processes(fn: Callable, args: Sequence[tuple], workers: int) -> Iterator:
    """``fn(*a)`` for every ``a``, in ``workers`` processes, yielded as each finishes (in order
    when ``workers`` is 1); an error in any call propagates."""
    if workers <= 1:
        for a in args:
            yield fn(*a)
        return
    with process_pool(workers) as pool:  # the parent ran no torch op, so forking copies no thread pool
        for future in as_completed([pool.submit(fn, *a) for a in args]):
            yield future.result()
