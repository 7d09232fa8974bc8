"""DVC stage `train@<dataset>`: train every model params name for one dataset.

Writes models/<dataset>/<model_id>.pt (state dict) and .json (card), per-epoch DVCLive logs
under reports/train_curves/<dataset>/<model_id>/, and a summary reports/train/<dataset>.json
that `dvc metrics show` reads.
"""

from __future__ import annotations

import argparse
import logging

import torch
from dvclive import Live

from semsim_study import atomic, params as P, training
from semsim_study.datasets import standard

from ._cli import run

log = logging.getLogger("train")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = P.load(args.params)
    # float sums depend on the thread count: a fixed count (default one, the fastest for these
    # small nets on a shared 2-core CPU) gives the same checkpoints on any machine
    torch.set_num_threads(training.threads(params))
    name = args.dataset
    specs = training.model_grid(params, name)
    seed = P.get(params, "seed", int)
    ds = standard.load(f"data/prepared/{name}")
    summary = {}
    with atomic.build_dir(f"models/{name}") as model_dir, atomic.build_dir(f"reports/train_curves/{name}") as curve_dir:
        for spec in specs:
            cfg = training.train_config(params, name, spec.backbone, spec.setting)
            with Live(str(curve_dir / spec.model_id), dvcyaml=False, save_dvc_exp=False, report=None) as live:
                def on_epoch(epoch: int, metrics: dict) -> None:
                    for key, value in metrics.items():
                        live.log_metric(key, value)
                    live.next_step()

                result = training.train(ds, spec, cfg, seed, on_epoch)
            # DVCLive's own summary would duplicate reports/train/<dataset>.json and is not a plot
            (curve_dir / spec.model_id / "metrics.json").unlink(missing_ok=True)
            info = training.card(ds, spec, cfg, seed, result)
            (model_dir / f"{spec.model_id}.pt").write_bytes(training.checkpoint_bytes(result.model))
            (model_dir / f"{spec.model_id}.json").write_text(atomic.dumps_json(info), encoding="utf-8")
            summary[spec.model_id] = {k: info[k] for k in ("test_accuracy", "train_accuracy", "chance_accuracy")}
            log.info("%s/%s: test accuracy %.3f (chance %.3f), %d parameters, %.1f s", name, spec.model_id,
                     info["test_accuracy"], info["chance_accuracy"], info["parameters"], result.seconds)
    atomic.write_json(f"reports/train/{name}.json", summary)


if __name__ == "__main__":
    run(main)
