"""DVC stage `correlate`: every metric's correlations with the annotators that SemSim's margin cannot move.

Reads data/metrics/<ds>/, data/annotations/<ds>/ and the CE baseline's scores
(data/ce_baseline/<split>/scores.csv), never the triplet SemSim's. Writes
  data/correlations/correlations.csv   the report's rows for every metric but SemSim's own
                                       scores, each with the fingerprint of its data and settings
  data/correlations/noise_ceiling.csv  the crowd's split-half noise ceiling of every comparison
                                       (from data/annotations/<ds>/answers.csv), fingerprinted alike
The report reuses a row whose fingerprint matches its own data, so an alpha experiment
bootstraps only the SemSim columns (semsim_study/analysis/precomputed.py says why).
Each comparison's bootstraps run side by side on `attack.workers` processes: the stage ends
the pipeline with both cores free, and the rows do not depend on the count.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from semsim_study import params as P
from semsim_study.analysis import config, precomputed

from ._cli import arguments, begin, run

log = logging.getLogger("correlate")


def main() -> None:
    parser = arguments(__doc__, dataset=False, raw=True)
    parser.add_argument("--root", default=".", help="project folder holding data/ (default: here)")
    parser.add_argument("--out", help="default: ROOT/data/correlations/correlations.csv")
    args, params = begin(parser)
    start = time.perf_counter()
    cfg = config.from_params(params)
    root = Path(args.root)
    # as many processes as the attack stage uses (not a param of this stage: no row depends on it)
    workers = P.positive_int(params, "attack.workers", 1)
    rows, ceiling = precomputed.compute(root, cfg.datasets, cfg.held_out_attacks, cfg.held_out_backbones,
                                        cfg.bootstrap, workers)
    out = Path(args.out) if args.out else root / precomputed.DEFAULT_PATH
    precomputed.write(out, rows, ceiling)
    log.info("correlate: %d rows for %s and %d noise ceiling rows in %.1f s on %d process(es) -> %s", len(rows),
             ", ".join(precomputed.METRICS), len(ceiling), time.perf_counter() - start, workers, out)


if __name__ == "__main__":
    run(main)
