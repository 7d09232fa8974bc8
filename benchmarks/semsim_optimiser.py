"""Why SemSim keeps its own SGD: what ``torch.optim.SGD`` would cost each SemSim stage process.

Building the first ``torch.optim`` optimiser of a process imports ``torch._dynamo``; the
SemSim trainer's ``NesterovSGD`` (the same update, bit for bit) does not. Measured here, in
one run:

- the first optimiser of a fresh process, built and stepped (median of ``--runs`` processes
  each way), after ``import torch``;
- the steady-state triplet step of the embedded recipe (tinyconv16, 32 px, 32 triplets = 96
  images, one thread) with either optimiser, alternating, so the ratio compares like with like;
- torch's one-off cost as a share of one embedded split's training (``--steps`` triplet steps).

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
from semsim_study.semsim.train import NesterovSGD
t1 = time.perf_counter()
p = torch.nn.Parameter(torch.zeros(3))
if sys.argv[1] == "torch":
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
else:
    opt = NesterovSGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
p.grad = torch.ones(3)
opt.step()
t2 = time.perf_counter()
print(t2 - t1, "torch._dynamo" in sys.modules)
"""


def first_optimiser(kind: str, runs: int) -> dict:
    firsts, dynamo = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", FIRST_OPTIMISER, kind], capture_output=True, text=True,
                             check=True)
        seconds, imported = out.stdout.split()
        firsts.append(float(seconds))
        dynamo.append(imported == "True")
    return {"first_step_s": statistics.median(firsts), "imports_dynamo": any(dynamo)}


def triplet_steps(steps: int, rounds: int) -> dict:
    """Seconds per triplet step with each optimiser (after its one-off costs), alternating rounds."""
    import torch

    from semsim_study.semsim import embedding_nets
    from semsim_study.semsim.loss import triplet_loss
    from semsim_study.semsim.train import NesterovSGD

    torch.set_num_threads(1)
    x = torch.randn(96, 3, 32, 32)
    runs = {}
    for kind, make in (("torch", torch.optim.SGD), ("own", NesterovSGD)):
        torch.manual_seed(0)
        net = embedding_nets.build("tinyconv16")
        runs[kind] = (net, make(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4))

    def step(kind: str) -> None:
        net, opt = runs[kind]
        emb = net(x)
        loss = triplet_loss(emb[:32], emb[32:64], emb[64:], 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    times: dict[str, list[float]] = {"torch": [], "own": []}
    for kind in times:
        for _ in range(5):
            step(kind)
    for _ in range(rounds):
        for kind in times:
            start = time.perf_counter()
            for _ in range(steps):
                step(kind)
            times[kind].append((time.perf_counter() - start) / steps)
    return {kind: statistics.median(v) for kind, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes timing each first optimiser")
    parser.add_argument("--timed-steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds per optimiser")
    parser.add_argument("--steps", type=int, default=264,
                        help="triplet steps of one embedded split (digits held out: 2,083 triplets an epoch / 32, "
                             "4 epochs)")
    args = parser.parse_args()
    torch_first = first_optimiser("torch", args.runs)
    own_first = first_optimiser("own", args.runs)
    per_step = triplet_steps(args.timed_steps, args.rounds)
    split_s = per_step["own"] * args.steps
    one_off = torch_first["first_step_s"] - own_first["first_step_s"]
    result = {"torch_first_step_s": torch_first["first_step_s"], "torch_imports_dynamo": torch_first["imports_dynamo"],
              "own_first_step_s": own_first["first_step_s"], "own_imports_dynamo": own_first["imports_dynamo"],
              "torch_step_s": per_step["torch"], "own_step_s": per_step["own"],
              "step_ratio_own_over_torch": per_step["own"] / per_step["torch"],
              "split_steps": args.steps, "split_training_s": split_s,
              "torch_one_off_share_of_split": one_off / (one_off + split_s), "runs": args.runs}
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "semsim_optimiser.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"first optimiser of a process, built and stepped (median of {args.runs}): torch.optim.SGD "
          f"{torch_first['first_step_s']:.2f} s (imports torch._dynamo: {torch_first['imports_dynamo']}), "
          f"NesterovSGD {own_first['first_step_s']:.3f} s (imports it: {own_first['imports_dynamo']})")
    print(f"triplet step: NesterovSGD {per_step['own'] * 1e3:.1f} ms, torch {per_step['torch'] * 1e3:.1f} ms "
          f"(ratio {result['step_ratio_own_over_torch']:.2f}); {args.steps} steps (one embedded split) "
          f"{split_s:.1f} s; torch's one-off import would be {result['torch_one_off_share_of_split']:.0%} of it")


if __name__ == "__main__":
    main()
