"""DVC stage `observer-controls@<dataset>`: does the simulated crowd read planted class cues?

Runs after the annotate stage with the observer it saved, the attacked classifiers and the
study's PSNR per reconstruction (semsim_study/annotation/planted_cues.py says how). Writes
data/observer_controls/<dataset>/pairs.csv (one row per low-PSNR image: its two copies, what
the attacked classifier read in each and whether the crowd recognised each) and the metrics
reports/observer/<dataset>.json (`observer_adversarial_gap` with its interval), headline in
reports/metrics/observer-<dataset>.json (DVC metrics).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from semsim_study import atomic
from semsim_study.annotation import planted_cues
from semsim_study.metrics import pixel

from ._cli import arguments, begin, run

log = logging.getLogger("observer-controls")


def main() -> None:
    start = time.perf_counter()
    args, params = begin(arguments(__doc__), threads=1)  # the same copies and verdicts on any machine
    ds = args.dataset
    inputs = planted_cues.Inputs(tasks=Path(f"data/tasks/{ds}/tasks.csv"), prepared=Path(f"data/prepared/{ds}"),
                                 annotations=Path(f"data/annotations/{ds}"),
                                 metrics=Path(f"data/metrics/{ds}/images.csv"), models=Path(f"models/{ds}"))
    summary, table = planted_cues.run(params, ds, inputs, psnr=lambda a, b: pixel.pixel_metrics(a, b)["psnr"])
    with atomic.build_dir(f"data/observer_controls/{ds}") as tmp:
        table.to_csv(tmp / "pairs.csv", index=False, lineterminator="\n", float_format="%.6g")
    atomic.write_json(f"reports/observer/{ds}.json", summary)
    atomic.write_metrics(f"reports/metrics/observer-{ds}.json", summary, planted_cues.HEADLINE)
    log.info("%s: adversarial gap %s %s on %s pairs, in %.1f s", ds, summary.get("observer_adversarial_gap"),
             summary.get("observer_adversarial_gap_ci"), summary.get("observer_adversarial_pairs"),
             time.perf_counter() - start)


if __name__ == "__main__":
    run(main)
