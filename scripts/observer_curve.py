#!/usr/bin/env python3
"""The simulated crowd's keys against the observer's training epochs (run by hand, after `make repro`).

Needs the prepared datasets and the task lists (stages `prepare` and `tasks`). One training run
per dataset, at the params' settings (``--epochs`` to run longer), in ``--workers`` processes;
semsim_study/annotation/observer_curve.py says what each column is.

    python scripts/observer_curve.py --every 20 --epochs 300 --out reports-local/observer_curve.csv
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stages  # noqa: E402,F401  (the stages' environment: one BLAS thread, pinned kernels)
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from semsim_study import atomic, params as P  # noqa: E402
from semsim_study.annotation import observer_curve  # noqa: E402


def _one(args: tuple) -> list[dict]:
    params, dataset, every, epochs = args
    torch.set_num_threads(1)  # as the annotate stage trains it
    return observer_curve.curve(params, dataset, f"data/tasks/{dataset}/tasks.csv", f"data/prepared/{dataset}",
                                every, epochs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--datasets", nargs="*", help="default: every dataset in params")
    parser.add_argument("--every", type=int, default=10, help="record every this many epochs")
    parser.add_argument("--epochs", type=int, help="train this long (default: the params' budget)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", required=True, help="CSV: one row per dataset and checkpoint epoch")
    args = parser.parse_args()
    params = P.load(args.params)
    datasets = args.datasets or P.get(params, "datasets", list)
    with ProcessPoolExecutor(args.workers) as pool:
        parts = list(pool.map(_one, [(params, d, args.every, args.epochs) for d in datasets]))
    table = pd.DataFrame([row for part in parts for row in part])
    atomic.write_text(args.out, table.to_csv(index=False, lineterminator="\n"))
    print(table.pivot(index="epoch", columns="dataset").round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
