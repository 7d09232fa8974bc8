"""DVC stage `observer-controls@<dataset>`: does the simulated crowd read planted class cues?

Runs after the annotate stage with the observer it saved, the attacked classifiers and the
study's PSNR per reconstruction (semsim_study/observer_controls.py says how). Writes
data/observer_controls/<dataset>/pairs.csv (one row per low-PSNR image: its two copies, what
the attacked classifier read in each and whether the crowd recognised each) and the metrics
reports/observer/<dataset>.json (`observer_adversarial_gap` with its interval), headline in
reports/metrics/observer-<dataset>.json (DVC metrics).
"""

from __future__ import annotations

import logging
import time

import torch

from semsim_study import atomic, observer_controls, params as P

from ._cli import arguments, run

log = logging.getLogger("observer-controls")


def main() -> None:
    parser = arguments(__doc__)
    args = parser.parse_args()
    start = time.perf_counter()
    torch.set_num_threads(1)  # the same copies and verdicts on any machine
    params = P.load(args.params)
    summary, table = observer_controls.run(params, args.dataset)
    with atomic.build_dir(f"data/observer_controls/{args.dataset}") as tmp:
        table.to_csv(tmp / "pairs.csv", index=False, lineterminator="\n", float_format="%.6g")
    atomic.write_json(f"reports/observer/{args.dataset}.json", summary)
    atomic.write_metrics(f"reports/metrics/observer-{args.dataset}.json", summary, observer_controls.HEADLINE)
    log.info("%s: adversarial gap %s %s on %s pairs, in %.1f s", args.dataset, summary.get("observer_adversarial_gap"),
             summary.get("observer_adversarial_gap_ci"), summary.get("observer_adversarial_pairs"),
             time.perf_counter() - start)


if __name__ == "__main__":
    run(main)
