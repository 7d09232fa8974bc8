"""DVC stage `tasks@<dataset>`: the annotation tasks for every reconstruction of a dataset.

Output data/tasks/<dataset>/: tasks.csv (one row per reconstruction: protocol, truth,
candidates, image paths; see semsim_study/annotation/tasks.py) and meta.json (protocol,
candidate model, counts). The web app and the annotate stage read them.
"""

from __future__ import annotations

import logging
import time

from semsim_study import atomic
from semsim_study.annotation import tasks

from ._cli import arguments, begin, run

log = logging.getLogger("tasks")


def main() -> None:
    start = time.perf_counter()
    # protocol A's candidates: their order must not depend on the machine's core count
    args, params = begin(arguments(__doc__), threads=1)
    meta = atomic.read_json(f"data/prepared/{args.dataset}/meta.json", "missing; run the prepare stage first")
    settings = tasks.from_params(params, args.dataset, meta)
    built = tasks.build_tasks(settings, meta["class_names"])
    with atomic.build_dir(f"data/tasks/{args.dataset}") as tmp:
        (tmp / "tasks.csv").write_text(tasks.tasks_csv(built), encoding="utf-8")
        atomic.write_json(tmp / "meta.json", tasks.tasks_meta(settings, meta["class_names"], built, meta))
    log.info("%s: %d tasks, protocol %s%s, in %.1f s", args.dataset, len(built), settings.protocol,
             f", candidates from {settings.candidate_model}" if settings.candidate_model else "",
             time.perf_counter() - start)


if __name__ == "__main__":
    run(main)
