"""DVC stages `semsim` (--model semsim) and `ce-baseline` (--model ce_baseline, the paper's
cross-entropy variant).

Trains one model per split, each on every annotated reconstruction outside its held-out value,
then scores every held-out reconstruction: one split per dataset (leave-one-dataset-out, the
paper's protocol), per entry of semsim.held_out_attacks and of semsim.held_out_backbones. The
splits run side by side on semsim.workers processes (semsim_study/semsim/runs.py). Writes, for
<name> = <split>-<held_out> and <model> = semsim or ce_baseline:
  models/<model>/<name>/           <model>.pt, semsim.json (the card) and MODEL_CARD.md (the card in prose)
  data/<model>/<name>/scores.csv   item_id,dataset,model,attack,image_id,split,held_out + its scores
                                   (semsim, semsim_untrained | ce_distance)
  reports/<model>/<name>.json      the full record: losses, selection, held-out triplet accuracy
  reports/<model>_curves/<name>/curves.csv  per-epoch curves, one chart per run (dvc plots)
Each of the four folders is replaced whole when every split has finished, or kept as it was.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path

from semsim_study import atomic
from semsim_study.semsim import runs, study

from ._cli import arguments, begin, run

log = logging.getLogger("semsim")


def main() -> None:
    parser = arguments(__doc__, dataset=False, raw=True)
    parser.add_argument("--model", default="semsim", choices=study.MODELS)
    args, params = begin(parser)  # each split sets semsim.threads in its own process (runs.py)
    final = runs.Folders.of(Path("."), args.model)
    with ExitStack() as stack:
        building = runs.Folders(*(stack.enter_context(atomic.build_dir(path)) for path in
                                  (final.models, final.data, final.reports, final.curves)))
        for line in runs.run(params, args.model, building):
            log.info("%s", line)


if __name__ == "__main__":
    run(main)
