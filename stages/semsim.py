"""DVC stages `semsim@<dataset>`, `semsim-attack@<attack>`, `semsim-backbone@<backbone>`.

Trains SemSim (triplet loss, margin = params `alpha`) and its cross-entropy baseline on every
annotated reconstruction outside the held-out dataset / attack / attacked backbone, then
scores every held-out reconstruction. Writes (for <name> = <split>-<held_out>):
  models/semsim/<name>/        semsim.pt, ce_baseline.pt, semsim.json (the card)
  data/semsim/<name>/scores.csv item_id,dataset,model,attack,image_id,split,held_out,semsim,ce_distance
  reports/semsim/<name>.json    final losses, held-out triplet accuracy (dvc metrics)
  reports/semsim_curves/<name>/ DVCLive per-epoch logs (dvc plots)
"""

from __future__ import annotations

import csv
import io
import logging

import torch
from dvclive import Live

from semsim_study import atomic, params as P
from semsim_study.semsim import items, metric, modelcard, study
from semsim_study.torch_helpers import state_bytes

from ._cli import arguments, run

log = logging.getLogger("semsim")


def main() -> None:
    parser = arguments(__doc__, dataset=False, raw=True)
    parser.add_argument("--split", required=True, choices=items.SPLITS)
    parser.add_argument("--held-out", required=True)
    args = parser.parse_args()
    params = P.load(args.params)
    # float sums depend on the thread count: a fixed count (default one) gives the same weights
    # on any machine, and the small embedding net gains little from a second, shared core
    torch.set_num_threads(P.positive_int(params, "semsim.threads", 1))
    name = study.split_name(args.split, args.held_out)
    with atomic.build_dir(f"models/semsim/{name}") as model_dir, \
            atomic.build_dir(f"data/semsim/{name}") as data_dir, \
            atomic.build_dir(f"reports/semsim_curves/{name}") as curve_dir:
        with Live(str(curve_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
            def on_epoch(epoch: int, m: dict) -> None:
                for key, value in m.items():
                    live.log_metric(key, value)
                live.next_step()

            result = study.run_split(params, args.split, args.held_out, ".", on_epoch)
        # DVCLive's own summary would duplicate reports/semsim/<name>.json and is not a plot
        (curve_dir / "metrics.json").unlink(missing_ok=True)
        (model_dir / metric.WEIGHTS["semsim"]).write_bytes(state_bytes(result.semsim.net))
        if result.baseline is not None:
            (model_dir / metric.WEIGHTS["ce_baseline"]).write_bytes(state_bytes(result.baseline.net))
        (model_dir / metric.CARD_NAME).write_text(atomic.dumps_json(result.card), encoding="utf-8")
        (model_dir / "MODEL_CARD.md").write_text(modelcard.render(result.card, result.metrics), encoding="utf-8")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=study.SCORE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(result.rows)
        (data_dir / "scores.csv").write_text(buf.getvalue(), encoding="utf-8")
    atomic.write_json(f"reports/semsim/{name}.json", result.metrics)
    m = result.metrics
    log.info("%s: trained on %d reconstructions in %.1f s; %d held-out scored; held-out triplet accuracy "
             "SemSim %s, untrained network %s, CE baseline %s (%d pairs)", name, m["train_items"], result.seconds,
             m["heldout_items"], m["heldout_triplet_accuracy"], m["heldout_triplet_accuracy_random_init"],
             m["heldout_triplet_accuracy_ce"], m["heldout_pairs"])


if __name__ == "__main__":
    run(main)
