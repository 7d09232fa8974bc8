"""DVC stage `attack@<dataset>`: every attack in `attacks` reconstructs the dataset's attack subset
from every model's gradients.

Output data/attacks/<dataset>/<attack>/ per attack: index.csv (one row per model x image),
images/<model>/<image_id>_{original,attacked,reconstruction}.png and config.json. The batches
of all the attacks run in one pool of `attack.workers` processes (one torch thread each, so the
bytes do not depend on the pool) and are saved as they finish under
data/attack_jobs/<dataset>/<attack>/, so a killed run resumes where it stopped. `--attack`
(repeatable) runs only the attacks named, e.g. into another `--out` folder to compare bytes.
"""

from __future__ import annotations

import logging
from collections import Counter

from semsim_study import executor, params as P
from semsim_study.attacks import configs, engine, jobs
from semsim_study.classifiers import grid
from semsim_study.errors import ConfigError
from semsim_study.torch_helpers import resolve_device

from ._cli import arguments, begin, run

log = logging.getLogger("attack")


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--attack", action="append", help="an attack to run (repeatable; default: every one in 'attacks')")
    parser.add_argument("--out", default=None, help="output folder (default data/attacks/<dataset>)")
    args, params = begin(parser, threads=1)  # every attack job runs on one torch thread (jobs.py)
    attacks = P.get(params, "attacks", list)
    for attack in args.attack or []:
        if attack not in attacks:
            raise ConfigError(f"params: attack {attack!r} is not listed in 'attacks' ({', '.join(attacks)})")
    names = [a for a in attacks if a in args.attack] if args.attack else attacks
    device = resolve_device(P.get(params, "attack.device", str, "cpu"), "attack.device")
    per_sample = P.get(params, "attack.per_sample_gradients", str, "auto")
    engine.per_sample_path(per_sample, 1)  # a bad value fails before any job runs
    model_ids = grid.model_ids(params, args.dataset)
    run_on = executor.from_params(params)
    limit = P.get(params, "attack.images_per_model", int, None)
    batch_size = P.positive_int(params, "attack.batch_size", 1)
    workers = P.positive_int(params, "attack.workers")
    plans = []
    for attack in names:  # every attack's params are checked before the first job runs
        ctx = jobs.Context(
            dataset=args.dataset, attack=attack, prepared_dir=f"data/prepared/{args.dataset}",
            model_dir=f"models/{args.dataset}", work_dir=f"data/attack_jobs/{args.dataset}/{attack}",
            config=configs.from_params(params, attack, args.dataset), seed=P.get(params, "seed", int), device=device,
            per_sample=per_sample,
        )
        plans.append((ctx, jobs.plan(ctx, model_ids, limit, batch_size)))
    for ctx, plan in plans:
        stale = jobs.prune_stale(ctx, plan)
        if stale:
            log.info("%s/%s: removed %d stale job folders from an earlier run", ctx.dataset, ctx.attack, stale)
    jobs.run_all(plans, workers, run_on)
    out = args.out or f"data/attacks/{args.dataset}"
    for ctx, plan in plans:
        rows = jobs.assemble(ctx, plan, f"{out}/{ctx.attack}")
        jobs.clear_work(ctx)
        status = Counter(r["status"] for r in rows)
        labels = sum(int(r["label"]) == int(r["recovered_label"]) for r in rows)
        log.info("%s/%s: %d reconstructions (%s), labels recovered %d/%d", ctx.dataset, ctx.attack, len(rows),
                 ", ".join(f"{k} {v}" for k, v in sorted(status.items())), labels, len(rows))


if __name__ == "__main__":
    run(main)
