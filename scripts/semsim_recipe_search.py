#!/usr/bin/env python3
"""Compare SemSim training recipes by nested leave-one-dataset-out transfer (run by hand).

Each recipe is a set of params overrides; each is run on every (outer D, inner E) split of
the study's own annotations, D never read (semsim_study/semsim/recipe_search.py says why).
Needs the pipeline's outputs up to `annotate` and `metrics` (after `make repro`).

    python scripts/semsim_recipe_search.py --out reports-local/recipes.json \\
        --recipe current= --recipe lr0.01=semsim.training.lr=0.01 \\
        --recipe nogeom=semsim.training.geometry=none,semsim.training.lr=0.01
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semsim_study import atomic, params as P  # noqa: E402
from semsim_study.semsim import recipe_search  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--recipe", action="append", required=True,
                        help="NAME=key=value[,key=value...] (NAME= alone: params as they are)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", required=True, help="JSON file for every inner split and the summary")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    base = P.load(args.params)
    results = {}
    for spec in args.recipe:
        name, _, rest = spec.partition("=")
        overrides = [o for o in rest.split(",") if o]
        params = recipe_search.apply_overrides(base, overrides)
        rows = recipe_search.run(params, workers=args.workers)
        results[name] = {"overrides": overrides, "summary": recipe_search.summarise(rows), "splits": rows}
        s = results[name]["summary"]
        print(f"{name:>16}: gain {s['gain']:+.4f} (not worse in {s['splits_not_worse']}/{s['splits']}), "
              f"matched {s['gain_matched']:+.4f} (above in {s['splits_above_matched']}/{s['splits']})", flush=True)
        for held_out, h in s["by_held_out"].items():
            print(f"{'held out ' + held_out:>24}: gain {h['gain']:+.4f} (not worse in {h['splits_not_worse']}/"
                  f"{h['splits']}), matched {h['gain_matched']:+.4f} (above in {h['splits_above_matched']}/"
                  f"{h['splits']})", flush=True)
        atomic.write_json(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
