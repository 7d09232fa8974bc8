"""Which torch thread count is fastest for each stage's inner step on this machine.

Every stage fixes its thread count (outputs depend on it: float sums are split differently),
so the count is a choice made once, here, not a property of the machine running the study.
This benchmark times the step that dominates each stage at its embedded-profile size, with
1 and with 2 threads, alternating the two so that other load on the machine hits both alike,
and reports the ratio (time with 2 threads / time with 1; above 1 means one thread is faster),
once on a quiet machine and once with one other busy process beside it.

Run: `python -m benchmarks.threads` (also in `make bench`). Results go to
benchmarks/results/threads.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from semsim_study.classifiers import backbones
from semsim_study.annotation.observer import Observer
from semsim_study.metrics.featurenet import FeatureNet
from semsim_study.semsim import embedding_nets
from semsim_study.semsim.loss import triplet_loss


def _train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def _attack_step(backbone: str, batch: int) -> Callable[[], None]:
    """One Inverting-Gradients iteration per image: the model's gradient with create_graph,
    a cosine distance to the observed gradient, and its gradient with respect to the images."""
    model = backbones.build(backbone, 10, 16)
    x = torch.rand(batch, 3, 16, 16, requires_grad=True)
    y = torch.randint(0, 10, (batch,))
    params = [p for p in model.parameters() if p.requires_grad]
    targets = [torch.randn_like(p) for p in params]

    def step() -> None:
        for i in range(batch):  # rows are independent: one gradient per image
            grads = torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), params, create_graph=True)
            dist = sum(1 - F.cosine_similarity(g.flatten(), t.flatten(), dim=0) for g, t in zip(grads, targets))
            dist.backward()

    return step


def _semsim_step(batch: int) -> Callable[[], None]:
    net = embedding_nets.build("tinyconv16")
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    a, p, n = (torch.rand(batch, 3, 32, 32) for _ in range(3))

    def step() -> None:
        loss = triplet_loss(net.embed(a), net.embed(p), net.embed(n), 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def _metrics_step(batch: int) -> Callable[[], None]:
    net = FeatureNet(30).eval()
    x = torch.rand(batch, 3, 16, 16)

    def step() -> None:
        with torch.no_grad():
            net.layers(x)
            net.layers(x)

    return step


def cases() -> dict[str, Callable[[], None]]:
    """stage -> the step that dominates it, at the embedded profile's sizes."""
    torch.manual_seed(0)
    x16, y16 = torch.rand(32, 3, 16, 16), torch.randint(0, 10, (32,))
    return {
        "train (lenet, batch 32)": _train_step(backbones.build("lenet", 10, 16), x16, y16),
        "train (resnet8, batch 32)": _train_step(backbones.build("resnet8", 10, 16), x16, y16),
        "attack (invgrad on lenet, batch 10)": _attack_step("lenet", 10),
        "attack (invgrad on resnet8, batch 10)": _attack_step("resnet8", 10),
        "features (featurenet, batch 64)": _train_step(FeatureNet(30), torch.rand(64, 3, 16, 16),
                                                       torch.randint(0, 30, (64,))),
        "metrics (featurenet forward, batch 64)": _metrics_step(64),
        "annotate (observer, batch 64)": _train_step(Observer(10, 32, blur=1.0), torch.rand(64, 3, 16, 16),
                                                     torch.randint(0, 10, (64,))),
        "semsim (tinyconv16 triplets, batch 32)": _semsim_step(32),
    }


def time_step(step: Callable[[], None], threads: int, seconds: float) -> float:
    torch.set_num_threads(threads)
    step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 3:
        step()
        n += 1
    return (time.perf_counter() - start) / n


def _busy(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def measure(seconds: float, rounds: int) -> dict:
    results = {}
    for name, step in cases().items():
        times = {1: [], 2: []}
        for _ in range(rounds):
            for threads in (1, 2):
                times[threads].append(time_step(step, threads, seconds))
        one, two = statistics.median(times[1]), statistics.median(times[2])
        results[name] = {"ms_1_thread": round(one * 1e3, 3), "ms_2_threads": round(two * 1e3, 3),
                         "ratio_2_over_1": round(two / one, 3), "fastest": 1 if one <= two else 2}
        print(f"{name:42s} {one * 1e3:12.2f} {two * 1e3:13.2f} {two / one:6.2f}  {results[name]['fastest']}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating 1/2-thread rounds (median kept)")
    args = parser.parse_args()
    before = torch.get_num_threads()
    report = {"cpu_count": os.cpu_count()}
    # quiet: nothing else runs; loaded: one other process keeps a core busy, as a second DVC
    # job, a test run or the attack stage's other worker does
    for condition in ("quiet", "one busy core beside"):
        print(f"== {condition}")
        print(f"{'stage step':42s} {'1 thread ms':>12s} {'2 threads ms':>13s} {'2/1':>6s}  fastest")
        stop, busy = multiprocessing.Event(), None
        if condition != "quiet":
            busy = multiprocessing.Process(target=_busy, args=(stop,), daemon=True)
            busy.start()
        try:
            report[condition] = measure(args.seconds, args.rounds)
        finally:
            stop.set()
            if busy is not None:
                busy.join()
    torch.set_num_threads(before)
    out = Path("benchmarks/results/threads.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
