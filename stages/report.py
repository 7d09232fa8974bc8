"""DVC stage `report`: how faithfully each metric follows human judgement.

Reads data/metrics/<ds>/, data/annotations/<ds>/, data/semsim/dataset-<ds>/ (and the held-out
attack / backbone scores), data/attacks/<ds>/<attack>/ for the image grids, and stage
correlate's data/correlations/correlations.csv, whose rows it reuses where their data match
(every metric but SemSim's own; an alpha experiment then bootstraps only SemSim), and the noise
ceiling beside it (noise_ceiling.csv, likewise). Writes:
  reports/headline/<scope>.json    DVC metrics (the project's only ones): per dataset and pooled, the
                                   model-level rho of SemSim, its controls and the pixel metrics, and
                                   the noise ceiling: what `dvc metrics show` prints
  reports/metrics/report.json      the longer headline (oriented model-level rho per dataset and
                                   metric, SemSim family on held-out attacks / backbones)
  reports/report/summary.json      every oriented rho / tau / r, level -> scope -> metric; noise_ceiling
  reports/report/correlations.csv  every coefficient: signed, oriented, p, bootstrap CI, n, reason
  reports/report/provenance.json   per dataset: annotation source, feature backbone, notes
  reports/report/report.md         the paper-style tables
  reports/report/index.html        self-contained page: tables, plots, grids, provenance banner
  reports/report/plots/            DVC plots: scatter/<ds>/<metric>.csv, spearman/<scope>.csv
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from semsim_study.analysis import config, precomputed, report

from ._cli import arguments, begin, run

log = logging.getLogger("report")


def main() -> None:
    parser = arguments(__doc__, dataset=False, raw=True)
    parser.add_argument("--root", default=".", help="project folder holding data/ (default: here)")
    parser.add_argument("--out", default="reports/report")
    parser.add_argument("--metrics", help="the longer headline file (default: ROOT/reports/metrics/report.json)")
    parser.add_argument("--headline", help="the DVC metrics folder (default: ROOT/reports/headline)")
    parser.add_argument("--precomputed", help="stage correlate's rows to reuse where their data match (default: "
                        f"ROOT/{precomputed.DEFAULT_PATH} when it exists; 'none' computes every row here)")
    args, params = begin(parser)
    start = time.perf_counter()
    cfg = config.from_params(params)
    root = Path(args.root)
    metrics = Path(args.metrics) if args.metrics else root / "reports" / "metrics" / "report.json"
    source = (None if args.precomputed == "none" else Path(args.precomputed) if args.precomputed
              else root / precomputed.DEFAULT_PATH if (root / precomputed.DEFAULT_PATH).exists() else None)
    reuse = precomputed.read(source) if source is not None else None
    ceiling_reuse = precomputed.read_ceiling(source) if source is not None else None
    headline = Path(args.headline) if args.headline else root / "reports" / "headline"
    result = report.write(root, Path(args.out), cfg, metrics, reuse, ceiling_reuse, headline)
    # a metric result with data has a fingerprint; it was taken when the file offered that key
    results = {(r.level, r.scope, r.metric, r.fingerprint) for r in result.correlations.itertuples() if r.fingerprint}
    taken = len(results & set(reuse or {}))
    ceilings = {(r.level, r.scope, r.fingerprint) for r in result.ceiling.itertuples() if r.fingerprint}
    log.info("report: %d correlations (%d metric results taken from %s, %d computed here; noise ceiling: %d "
             "of %d comparisons taken), %d datasets (%d annotated) in %.1f s -> %s", len(result.correlations), taken,
             source or "nowhere", len(results) - taken, len(ceilings & set(ceiling_reuse or {})), len(ceilings),
             len(result.datasets), sum(d.annotated for d in result.datasets), time.perf_counter() - start, args.out)


if __name__ == "__main__":
    run(main)
