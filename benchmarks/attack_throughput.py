"""Attack throughput: image-iterations per second, one image at a time vs vectorised batches.

The attack stage runs one model's images together (``engine.reconstruct_batch``): each
image's gradient is its own, but one pass serves the whole batch. This measures what that
buys on this machine, per backbone and attack family (Adam for invgrad/gradinversion,
L-BFGS for dlg/idlg), as ratios in one run. One torch thread, as the stage's workers use.
Run: `make bench` or `python -m benchmarks.attack_throughput`; results go to
benchmarks/results/attack_throughput.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from semsim_study import models
from semsim_study.attacks import configs, engine

CASES = [("lenet", 16), ("resnet8", 16)]
ATTACKS = {"invgrad": {"iterations": 20}, "idlg": {"iterations": 1, "lbfgs_inner": 20}}


def rate(backbone: str, size: int, attack: str, batch: int) -> float:
    """Image-iterations (model evaluations x images) per second for one batch size."""
    torch.manual_seed(0)
    model = models.build(backbone, 10, size).eval()
    cfg = configs.build(attack, ATTACKS[attack])
    x = torch.rand(batch, 3, size, size)
    targets = [engine.observed_gradient(model, x[i : i + 1], i % 10, cfg.loss_scale) for i in range(batch)]
    gens = [torch.Generator().manual_seed(i) for i in range(batch)]
    args = ((3, size, size), [0.0] * 3, [1.0] * 3, cfg)
    engine.reconstruct_batch(model, targets, *args, gens, list(range(batch)), 10)  # warm-up
    start = time.perf_counter()
    recs = engine.reconstruct_batch(model, targets, *args, gens, [i % 10 for i in range(batch)], 10)
    seconds = time.perf_counter() - start
    evaluations = cfg.iterations * (cfg.lbfgs_inner if cfg.optimizer == "lbfgs" else 1)
    assert all(r.status == "ok" for r in recs)
    return batch * evaluations / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/attack_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'backbone':10} {'px':>3} {'attack':8} {'single it/s':>12} {'batch ' + str(args.batch) + ' it/s':>14} {'ratio':>6}")
    for backbone, size in CASES:
        for attack in ATTACKS:
            one = rate(backbone, size, attack, 1)
            many = rate(backbone, size, attack, args.batch)
            rows.append({"backbone": backbone, "size": size, "attack": attack, "single": one, "batched": many,
                         "batch": args.batch, "ratio": many / one})
            print(f"{backbone:10} {size:>3} {attack:8} {one:12.0f} {many:14.0f} {many / one:6.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
