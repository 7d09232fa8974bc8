"""DVC stage `train@<dataset>`: train every model params name for one dataset.

Writes models/<dataset>/<model_id>.pt (state dict) and .json (card), per-epoch curves as one
chart per quantity with a line per model (reports/train_curves/<dataset>/<quantity>.csv), and
a summary reports/train/<dataset>.json that `dvc metrics show` reads.
"""

from __future__ import annotations

import logging

from semsim_study import atomic, curves, executor, params as P
from semsim_study.classifiers import grid, training
from semsim_study.datasets import standard

from ._cli import arguments, begin, run

log = logging.getLogger("train")


def main() -> None:
    # one torch thread by default, the fastest for these small nets on a shared 2-core CPU
    # (benchmarks/threads.py); every job, here or on Ray, runs with the same count
    args, params = begin(arguments(__doc__), threads="train.threads")
    threads = P.positive_int(params, "train.threads", 1)
    name = args.dataset
    specs = grid.model_grid(params, name)
    jobs = [(spec, training.from_params(params, name, spec.backbone, spec.setting), threads) for spec in specs]
    run_on = executor.from_params(params)  # every param is checked before the first model trains
    ds = standard.load(f"data/prepared/{name}")
    results = training.train_all(jobs, ds, P.get(params, "seed", int), run_on)
    summary, histories = {}, {}
    with atomic.build_dir(f"models/{name}") as model_dir, atomic.build_dir(f"reports/train_curves/{name}") as curve_dir:
        for trained in results:  # in the grid's order, wherever each model was trained
            histories[trained.model_id] = trained.history
            info = trained.card
            (model_dir / f"{trained.model_id}.pt").write_bytes(trained.weights)
            (model_dir / f"{trained.model_id}.json").write_text(atomic.dumps_json(info), encoding="utf-8")
            summary[trained.model_id] = {k: info[k] for k in ("test_accuracy", "train_accuracy", "chance_accuracy")}
            log.info("%s/%s: test accuracy %.3f (chance %.3f), %d parameters, %.1f s", name, trained.model_id,
                     info["test_accuracy"], info["chance_accuracy"], info["parameters"], trained.seconds)
        curves.by_quantity(curve_dir, histories)
    atomic.write_json(f"reports/train/{name}.json", summary)


if __name__ == "__main__":
    run(main)
