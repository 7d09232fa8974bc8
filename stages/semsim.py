"""DVC stages `semsim@<dataset>`, `semsim-attack@<attack>`, `semsim-backbone@<backbone>` (--model
semsim) and `ce-baseline@...` (--model ce_baseline, the paper's cross-entropy variant).

Trains one model on every annotated reconstruction outside the held-out dataset / attack /
attacked backbone, then scores every held-out reconstruction. Writes, for <name> =
<split>-<held_out> and <model> = semsim or ce_baseline:
  models/<model>/<name>/           <model>.pt, semsim.json (the card) and MODEL_CARD.md (the card in prose)
  data/<model>/<name>/scores.csv   item_id,dataset,model,attack,image_id,split,held_out + its scores
                                   (semsim, semsim_untrained | ce_distance)
  reports/<model>/<name>.json      the full record: losses, selection, held-out triplet accuracy
  reports/metrics/<model>-<name>.json  the few numbers `dvc metrics show` lists
  reports/<model>_curves/<name>/curves.csv  per-epoch curves, one chart per run (dvc plots)
"""

from __future__ import annotations

import csv
import io
import logging

import torch

from semsim_study import atomic, curves, params as P
from semsim_study.semsim import items, metric, modelcard, study
from semsim_study.torch_helpers import state_bytes

from ._cli import arguments, run

log = logging.getLogger("semsim")


def main() -> None:
    parser = arguments(__doc__, dataset=False, raw=True)
    parser.add_argument("--split", required=True, choices=items.SPLITS)
    parser.add_argument("--held-out", required=True)
    parser.add_argument("--model", default="semsim", choices=study.MODELS)
    args = parser.parse_args()
    params = P.load(args.params)
    # float sums depend on the thread count: a fixed count (default one) gives the same weights
    # on any machine, and the small embedding net gains little from a second, shared core
    torch.set_num_threads(P.positive_int(params, "semsim.threads", 1))
    name = study.split_name(args.split, args.held_out)
    model = args.model
    with atomic.build_dir(f"models/{model}/{name}") as model_dir, atomic.build_dir(f"data/{model}/{name}") as data_dir:
        result = study.run_split(params, args.split, args.held_out, ".", model=model)
        (model_dir / metric.WEIGHTS[model]).write_bytes(state_bytes(result.net.net))
        (model_dir / metric.CARD_NAME).write_text(atomic.dumps_json(result.card), encoding="utf-8")
        (model_dir / "MODEL_CARD.md").write_text(modelcard.render(result.card, result.metrics), encoding="utf-8")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=result.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(result.rows)
        (data_dir / "scores.csv").write_text(buf.getvalue(), encoding="utf-8")
    with atomic.build_dir(f"reports/{model}_curves/{name}") as curve_dir:
        curves.one_chart(curve_dir / "curves.csv", result.history, skip=("lr",))
    atomic.write_json(f"reports/{model}/{name}.json", result.metrics)
    shown = atomic.write_metrics(f"reports/metrics/{model}-{name}.json", result.metrics, study.HEADLINE[model])
    m = result.metrics
    log.info("%s %s: trained on %d reconstructions in %.1f s; %d held-out scored; %s", model, name,
             m["train_items"], result.seconds, m["heldout_items"], ", ".join(f"{k} {v}" for k, v in shown.items()))


if __name__ == "__main__":
    run(main)
