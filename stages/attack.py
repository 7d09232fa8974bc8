"""DVC stage `attack@<dataset>-<attack>`: reconstruct the attack subset from every model's gradients.

Output data/attacks/<dataset>/<attack>/: index.csv (one row per model x image),
images/<model>/<image_id>_{original,attacked,reconstruction}.png and config.json. Jobs run
in `attack.workers` processes and are saved as they finish under
data/attack_jobs/<dataset>/<attack>/, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections import Counter

from semsim_study import executor, params as P
from semsim_study.attacks import configs, jobs
from semsim_study.classifiers import grid
from semsim_study.errors import ConfigError
from semsim_study.torch_helpers import resolve_device

from ._cli import arguments, begin, run

log = logging.getLogger("attack")


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--attack", required=True)
    args, params = begin(parser, threads=1)  # every attack job runs on one torch thread (jobs.py)
    attacks = P.get(params, "attacks", list)
    if args.attack not in attacks:
        raise ConfigError(f"params: attack {args.attack!r} is not listed in 'attacks' ({', '.join(attacks)})")
    ctx = jobs.Context(
        dataset=args.dataset, attack=args.attack, prepared_dir=f"data/prepared/{args.dataset}",
        model_dir=f"models/{args.dataset}", work_dir=f"data/attack_jobs/{args.dataset}/{args.attack}",
        config=configs.from_params(params, args.attack, args.dataset), seed=P.get(params, "seed", int),
        device=resolve_device(P.get(params, "attack.device", str, "cpu"), "attack.device"),
    )
    model_ids = grid.model_ids(params, args.dataset)
    run_on = executor.from_params(params)
    limit = P.get(params, "attack.images_per_model", int, None)
    plan = jobs.plan(ctx, model_ids, limit, P.positive_int(params, "attack.batch_size", 1))
    stale = jobs.prune_stale(ctx, plan)
    if stale:
        log.info("%s/%s: removed %d stale job folders from an earlier run", args.dataset, args.attack, stale)
    jobs.run_jobs(ctx, plan, P.positive_int(params, "attack.workers"), run_on)
    rows = jobs.assemble(ctx, plan, f"data/attacks/{args.dataset}/{args.attack}")
    jobs.clear_work(ctx)
    status = Counter(r["status"] for r in rows)
    labels = sum(int(r["label"]) == int(r["recovered_label"]) for r in rows)
    log.info("%s/%s: %d reconstructions (%s), labels recovered %d/%d", args.dataset, args.attack, len(rows),
             ", ".join(f"{k} {v}" for k, v in sorted(status.items())), labels, len(rows))


if __name__ == "__main__":
    run(main)
