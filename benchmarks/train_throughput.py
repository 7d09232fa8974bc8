"""Training throughput (images/s) per backbone on this machine: forward, backward, SGD step.

Also times the augmentation pipeline per setting, since ATS policies run in PIL per image
and could starve the model on a CPU. Run: `make bench` or `python -m benchmarks.train_throughput`.
Results go to benchmarks/results/train_throughput.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from semsim_study import augment
from semsim_study.classifiers import backbones

CASES = [  # (backbone, image size)
    ("lenet", 32), ("resnet8", 32), ("convnet4", 32), ("convnet8", 32), ("resnet20", 32),
    ("resnet20-4", 32), ("convnet", 32), ("resnet20-4", 64), ("densenet121", 64), ("resnet50", 64),
]
POLICIES = {"none": augment.Augmentation(), "crop": augment.Augmentation(True),
            "ats-3-1-7": augment.Augmentation(True, "3-1-7"), "ats-3-1-7+43-18-18": augment.Augmentation(True, "3-1-7+43-18-18")}


def time_backbone(name: str, size: int, batch: int, seconds: float) -> float:
    torch.manual_seed(0)
    model = backbones.build(name, 10, size).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 2:
        step()
        n += 1
    return batch * n / (time.perf_counter() - start)


def time_augmentation(aug: augment.Augmentation, batch: int = 256) -> float:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    start = time.perf_counter()
    aug.batch(images, rng)
    return batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--out", default="benchmarks/results/train_throughput.json")
    args = parser.parse_args()
    rows = []
    for name, size in CASES:
        ips = time_backbone(name, size, args.batch, args.seconds)
        rows.append({"backbone": name, "image_size": size, "batch": args.batch, "images_per_s": round(ips, 1),
                     "parameters": backbones.parameter_count(backbones.build(name, 10, size))})
    ref = next(r["images_per_s"] for r in rows if r["backbone"] == "resnet8")
    for r in rows:
        r["relative_to_resnet8"] = round(r["images_per_s"] / ref, 3)
    aug_rows = [{"setting": k, "images_per_s": round(time_augmentation(a), 1)} for k, a in POLICIES.items()]
    result = {"torch_threads": torch.get_num_threads(), "train_step": rows, "augmentation_32px": aug_rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"training step, batch {args.batch}, {torch.get_num_threads()} threads")
    print(f"{'backbone':<14}{'px':>4}{'params':>11}{'img/s':>9}{'vs resnet8':>12}")
    for r in rows:
        print(f"{r['backbone']:<14}{r['image_size']:>4}{r['parameters']:>11,}{r['images_per_s']:>9.1f}{r['relative_to_resnet8']:>12.3f}")
    print("augmentation (32 px, per image, single process)")
    for r in aug_rows:
        print(f"{r['setting']:<22}{r['images_per_s']:>10.0f} img/s")


if __name__ == "__main__":
    main()
