"""Attack throughput: the engine against a plain single-image reference loop, in one run.

Two tables, both as ratios measured side by side in one process:

1. **Engine vs reference** (the issue's yardstick). The reference is what the paper's code
   (inversefed's GradientReconstructor) does for Inverting Gradients, written out plainly:
   one image, Adam on its pixels, the observed gradient recomputed with ``create_graph``,
   1 - cosine summed over layers, total variation, the signed gradient, the box. The engine
   (``engine.reconstruct_batch``) inverts one or eight images of the same model at once.
   ResNet20-4 (the paper's 32-px backbone) and ResNet20 width 16 at 32 px, 2 torch threads.
2. **Single vs batch on the embedded backbones** (LeNet, ResNet8 at 16 px, one thread, as the
   attack stage's workers run them), Adam (invgrad) and L-BFGS (idlg).

Figures are image-iterations per second (model evaluations x images); the ratios are what
carries over between machines. Run: `make bench` or `python -m benchmarks.attack_throughput`;
results go to benchmarks/results/attack_throughput.json and tables on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from semsim_study.classifiers import backbones
from semsim_study.attacks import configs, engine

REFERENCE_CASES = [("resnet20-4", 32), ("resnet20", 32)]
EMBEDDED_CASES = [("lenet", 16), ("resnet8", 16)]
ATTACKS = {"invgrad": {"iterations": 20}, "idlg": {"iterations": 1, "lbfgs_inner": 20}}


def _setup(backbone: str, size: int, batch: int, cfg: engine.AttackConfig):
    torch.manual_seed(0)
    model = backbones.build(backbone, 10, size).eval()
    x = torch.rand(batch, 3, size, size)
    targets = [engine.observed_gradient(model, x[i : i + 1], i % 10, cfg.loss_scale) for i in range(batch)]
    return model, targets


def reference_invgrad(model: torch.nn.Module, target: list[torch.Tensor], label: int, shape: tuple[int, ...],
                      cfg: engine.AttackConfig, iterations: int, seed: int) -> torch.Tensor:
    """One image, one Python loop: the paper code's Inverting Gradients step by step."""
    params = [p for p in model.parameters() if p.requires_grad]
    x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed)).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=cfg.lr)
    y = torch.tensor([label])
    for _ in range(iterations):
        opt.zero_grad()
        loss = cfg.loss_scale * F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        dot, n1, n2 = 0.0, 0.0, 0.0
        for g, t in zip(grads, target):
            dot = dot + (g * t).sum()
            n1 = n1 + g.pow(2).sum()
            n2 = n2 + t.pow(2).sum()
        cost = 1 - dot / (n1.sqrt() * n2.sqrt())
        tv = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean() + (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean()
        (cost + cfg.tv * tv).backward()
        x.grad.sign_()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)  # the box: mean 0, std 1 here, so pixels in [0, 1]
    return x.detach()


def engine_vs_reference(backbone: str, size: int, batch: int, iterations: int) -> tuple[float, float]:
    """(reference, engine) image-iterations per second on ``batch`` images of one model."""
    cfg = configs.build("invgrad", {"iterations": iterations, "lr_decay": False})
    model, targets = _setup(backbone, size, batch, cfg)
    shape = (3, size, size)
    reference_invgrad(model, targets[0], 0, shape, cfg, 2, 0)  # warm-up
    start = time.perf_counter()
    for i in range(batch):
        reference_invgrad(model, targets[i], i % 10, shape, cfg, iterations, i)
    ref = batch * iterations / (time.perf_counter() - start)
    gens = [torch.Generator().manual_seed(i) for i in range(batch)]
    args = (shape, [0.0] * 3, [1.0] * 3)
    engine.reconstruct_batch(model, targets, *args, configs.build("invgrad", {"iterations": 2}), gens,
                             [i % 10 for i in range(batch)], 10)  # warm-up
    start = time.perf_counter()
    engine.reconstruct_batch(model, targets, *args, cfg, gens, [i % 10 for i in range(batch)], 10)
    return ref, batch * iterations / (time.perf_counter() - start)


def single_vs_batch(backbone: str, size: int, attack: str, batch: int) -> float:
    """Image-iterations (model evaluations x images) per second for one batch size."""
    cfg = configs.build(attack, ATTACKS[attack])
    model, targets = _setup(backbone, size, batch, cfg)
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
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations per image (reference table)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the reference table")
    parser.add_argument("--out", default="benchmarks/results/attack_throughput.json")
    args = parser.parse_args()
    result = {"engine_vs_reference": [], "single_vs_batch": []}

    torch.set_num_threads(args.threads)
    print(f"Engine vs the paper code's single-image loop (invgrad, {args.threads} threads)")
    print(f"{'backbone':11} {'px':>3} {'batch':>5} {'reference it/s':>15} {'engine it/s':>12} {'ratio':>6}")
    for backbone, size in REFERENCE_CASES:
        for batch in (1, args.batch):
            ref, eng = engine_vs_reference(backbone, size, batch, args.iterations)
            result["engine_vs_reference"].append({"backbone": backbone, "size": size, "batch": batch,
                                                  "threads": args.threads, "reference": ref, "engine": eng,
                                                  "ratio": eng / ref})
            print(f"{backbone:11} {size:>3} {batch:>5} {ref:15.2f} {eng:12.2f} {eng / ref:6.2f}")

    torch.set_num_threads(1)
    print(f"\nEmbedded backbones, single image vs a batch of {args.batch} (1 thread)")
    print(f"{'backbone':11} {'px':>3} {'attack':8} {'single it/s':>12} {'batch it/s':>11} {'ratio':>6}")
    for backbone, size in EMBEDDED_CASES:
        for attack in ATTACKS:
            one = single_vs_batch(backbone, size, attack, 1)
            many = single_vs_batch(backbone, size, attack, args.batch)
            result["single_vs_batch"].append({"backbone": backbone, "size": size, "attack": attack, "single": one,
                                              "batched": many, "batch": args.batch, "ratio": many / one})
            print(f"{backbone:11} {size:>3} {attack:8} {one:12.0f} {many:11.0f} {many / one:6.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
