"""What pinning the AVX2 kernels costs (semsim_study/cpu_kernels.py), native against pinned.

Two workloads of the study's shape, each in fresh processes (the kernel switches are read when
the libraries load), alternating native and pinned so the ratio compares like with like:

- training: SGD steps of a small conv net with BatchNorm on a batch of 64 at 32 px (oneDNN
  convolutions, ATen element-wise kernels, MKL for the linear layer);
- attack: single-image double-backward steps (the gradient-matching inner loop).

On a machine without AVX-512 the two columns run the same kernels and the ratio is about 1.
Run: `python -m benchmarks.cpu_kernels` (also in `make bench`). Results go to
benchmarks/results/cpu_kernels.json and a summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from semsim_study import cpu_kernels

WORK = """
import sys, time
if sys.argv[1] == "pinned":
    import semsim_study  # noqa: F401
import torch
import torch.nn.functional as F
from torch import nn
torch.set_num_threads(1)
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(64, 64, 3, padding=1),
                    nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
x, y = torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,))
F.cross_entropy(net(x), y).backward()  # warm-up: kernels chosen, JIT code generated
t = time.perf_counter()
for _ in range(int(sys.argv[2])):
    opt.zero_grad(); F.cross_entropy(net(x), y).backward(); opt.step()
train = time.perf_counter() - t
net.eval()
t = time.perf_counter()
for _ in range(int(sys.argv[2])):
    xr = torch.rand(1, 3, 32, 32, requires_grad=True)
    g = torch.autograd.grad(F.cross_entropy(net(xr), y[:1]), list(net.parameters()), create_graph=True)
    (d,) = torch.autograd.grad(sum((a * a).sum() for a in g), xr)
attack = time.perf_counter() - t
print(train, attack, torch.backends.cpu.get_cpu_capability())
"""


def _run(mode: str, steps: int) -> tuple[float, float, str]:
    env = {k: v for k, v in os.environ.items() if k not in cpu_kernels.PINNED}
    out = subprocess.run([sys.executable, "-c", WORK, mode, str(steps)], capture_output=True, text=True, check=True,
                         env=env).stdout.split()
    return float(out[0]), float(out[1]), out[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    times: dict[str, dict[str, list[float]]] = {m: {"train": [], "attack": []} for m in ("native", "pinned")}
    capability = {}
    for _ in range(args.runs):
        for mode in ("native", "pinned"):
            train, attack, cap = _run(mode, args.steps)
            times[mode]["train"].append(train)
            times[mode]["attack"].append(attack)
            capability[mode] = cap
    result = {"steps": args.steps, "runs": args.runs, "capability": capability,
              "unpinnable": cpu_kernels.unpinnable_reason()}
    for work in ("train", "attack"):
        native = statistics.median(times["native"][work])
        pinned = statistics.median(times["pinned"][work])
        result[work] = {"native_s": round(native, 4), "pinned_s": round(pinned, 4), "pinned_over_native": round(pinned / native, 3)}
        print(f"{work:6s}: native ({capability['native']}) {native:.3f} s, pinned ({capability['pinned']}) {pinned:.3f} s, "
              f"ratio {pinned / native:.2f}")
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu_kernels.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
