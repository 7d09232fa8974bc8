"""What torch.optim.SGD costs the SemSim stage: its one-off import, against one split's training.

The SemSim trainer once wrote the SGD update out by hand, because building the first
``torch.optim`` optimiser of a process imports ``torch._dynamo``. This benchmark measures that
one-off cost in fresh processes (median of ``--runs``, each: ``import torch``, then the first
SGD built and stepped) and sets it beside the training it would be saved from: triplet steps
of the embedded recipe (tinyconv16, 32 px, batch 32 triplets = 96 images, one thread) timed
with torch.optim.SGD, times the triplet steps of one embedded split (``--steps``; the
CE baseline's steps come on top, so the share printed is an upper bound).

Run: `python -m benchmarks.semsim_optimiser` (also in `make bench`). Results go to
benchmarks/results/semsim_optimiser.json and a summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

FIRST_OPTIMISER = """
import sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
p = torch.nn.Parameter(torch.zeros(3))
opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
p.grad = torch.ones(3)
opt.step()
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, "torch._dynamo" in sys.modules)
"""


def first_optimiser(runs: int) -> dict:
    imports, firsts, dynamo = [], [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", FIRST_OPTIMISER], capture_output=True, text=True, check=True)
        a, b, d = out.stdout.split()
        imports.append(float(a))
        firsts.append(float(b))
        dynamo.append(d == "True")
    return {"import_torch_s": statistics.median(imports), "first_sgd_s": statistics.median(firsts),
            "imports_dynamo": all(dynamo), "runs": runs}


def triplet_steps(steps: int) -> float:
    """Seconds per triplet step with torch.optim.SGD (after the one-off import)."""
    import torch

    from semsim_study.semsim import embedding_nets
    from semsim_study.semsim.loss import triplet_loss

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = embedding_nets.build("tinyconv16")
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(96, 3, 32, 32)

    def step() -> None:
        emb = net(x)
        loss = triplet_loss(emb[:32], emb[32:64], emb[64:], 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes timing the first optimiser")
    parser.add_argument("--timed-steps", type=int, default=50)
    parser.add_argument("--steps", type=int, default=320,
                        help="triplet steps of one embedded split (~2,500 triplets an epoch / 32, 4 epochs; "
                             "the CE baseline's steps come on top)")
    args = parser.parse_args()
    first = first_optimiser(args.runs)
    per_step = triplet_steps(args.timed_steps)
    split_s = per_step * args.steps
    result = {**first, "triplet_step_s": per_step, "split_steps": args.steps, "split_training_s": split_s,
              "first_sgd_share_of_split": first["first_sgd_s"] / (first["first_sgd_s"] + split_s)}
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "semsim_optimiser.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"import torch {first['import_torch_s']:.2f} s; first torch.optim.SGD (imports torch._dynamo: "
          f"{first['imports_dynamo']}) {first['first_sgd_s']:.2f} s, median of {args.runs} processes")
    print(f"triplet step {per_step * 1e3:.1f} ms; {args.steps} steps (one embedded split) {split_s:.1f} s; "
          f"the one-off import is {result['first_sgd_share_of_split']:.0%} of a split's optimiser time")


if __name__ == "__main__":
    main()
