"""DVC stage `annotate@<dataset>`: answers for every reconstruction, aggregated.

Answers come from the source params name (`annotate.source`): `simulated` (the embedded
profile: a pool of simulated annotators, semsim_study/annotation/simulated.py) or files that
people's answers came in (`csv`, `app`, `paper_folders`, `label_studio`; listed per dataset
in `annotate.paths`, kept under annotations/). Simulated answers are written as a raw
long-format CSV first and imported from it like any other file.

Output data/annotations/<dataset>/: answers.csv, items.csv, sets.csv (contract 4),
annotators.json (the source, and for simulated answers the pool and the observer network);
the full summary reports/annotate/<dataset>.json (coverage, recognised rate, agreement, and who
the gold threshold annotate.quality.min_gold_accuracy left out) and
its headline reports/metrics/annotate-<dataset>.json (DVC metrics).
"""

from __future__ import annotations

import logging
import time

from semsim_study import atomic
from semsim_study.annotation import collect

from ._cli import arguments, begin, run

log = logging.getLogger("annotate")


def main() -> None:
    start = time.perf_counter()
    # the simulated observer trains here: one torch thread gives the same answers on any
    # machine, whatever its core count or OMP_NUM_THREADS (the small net gains nothing from more)
    args, params = begin(arguments(__doc__), threads=1)
    result = collect.run(params, args.dataset, f"data/tasks/{args.dataset}/tasks.csv", f"data/prepared/{args.dataset}")
    with atomic.build_dir(f"data/annotations/{args.dataset}") as tmp:
        result.write(tmp)
    atomic.write_json(f"reports/annotate/{args.dataset}.json", result.summary)
    atomic.write_metrics(f"reports/metrics/annotate-{args.dataset}.json", result.summary, collect.HEADLINE)
    s = result.summary
    log.info("%s: %d answers (%s) on %d/%d items, recognised rate %.3f, Fleiss kappa %s, in %.1f s", args.dataset,
             s["answers"], s["source"], s["annotated"], s["items"], s["recognised_rate"], s["fleiss_kappa"],
             time.perf_counter() - start)


if __name__ == "__main__":
    run(main)
