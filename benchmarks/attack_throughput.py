"""Attack throughput: the engine against a plain single-image reference loop, in one run.

Two tables, both as ratios measured side by side in one process:

1. **Engine vs reference** (the issue's yardstick). The reference is what the paper's code
   (inversefed's GradientReconstructor) does for Inverting Gradients, written out plainly:
   one image, Adam on its pixels, the observed gradient recomputed with ``create_graph``,
   1 - cosine summed over layers, total variation, the signed gradient, the box. The engine
   (``engine.reconstruct_batch``) inverts one or eight images of the same model at once, along
   each per-image gradient route (vmap, rows; auto picks rows for one image, vmap for more).
   ResNet20-4 (the paper's 32-px backbone) and ResNet20 width 16 at 32 px, 2 torch threads.
   Rates are per iteration at steady state (a longer run less a shorter one), as the paper's
   8000 iterations see them. Under each backbone, the arithmetic ceiling: the reference's FLOPs
   per image-iteration and rate against a large matrix product's rate on the same threads and
   pinned kernels, i.e. the most any engine doing the same arithmetic could gain.
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
from torch.utils.flop_counter import FlopCounterMode

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


def _seconds(run, iterations: int, warm: int) -> float:
    """Seconds per iteration at steady state: a run of ``warm + iterations`` less one of ``warm``,
    so set-up and the engine's one-off final evaluation (the reported loss) drop out on both sides."""
    start = time.perf_counter()
    run(warm)
    short = time.perf_counter() - start
    start = time.perf_counter()
    run(warm + iterations)
    return max(time.perf_counter() - start - short, 1e-9) / iterations


def engine_vs_reference(backbone: str, size: int, batch: int, iterations: int,
                        routes: tuple[str, ...] = ("auto",)) -> tuple[float, dict[str, float]]:
    """Image-iterations per second of the reference loop and of the engine along each route
    (``attack.per_sample_gradients``), on ``batch`` images of one model, at steady state."""
    cfg = configs.build("invgrad", {"iterations": iterations, "lr_decay": False})
    model, targets = _setup(backbone, size, batch, cfg)
    shape = (3, size, size)
    labels = [i % 10 for i in range(batch)]
    reference_invgrad(model, targets[0], 0, shape, cfg, 2, 0)  # warm-up

    def reference(n: int) -> None:
        for i in range(batch):
            reference_invgrad(model, targets[i], labels[i], shape, cfg, n, i)

    ref = batch / _seconds(reference, iterations, 2)
    engines = {}
    for route in routes:
        def run(n: int) -> None:
            gens = [torch.Generator().manual_seed(i) for i in range(batch)]
            engine.reconstruct_batch(model, targets, shape, [0.0] * 3, [1.0] * 3,
                                     configs.build("invgrad", {"iterations": n, "lr_decay": False}), gens, labels, 10,
                                     per_sample=route)

        run(1)  # warm-up
        engines[route] = batch / _seconds(run, iterations, 2)
    return ref, engines


def arithmetic_ceiling(backbone: str, size: int, reference_rate: float) -> dict[str, float]:
    """How far any engine doing the reference's arithmetic could get: the reference's FLOPs per
    image-iteration (torch's FlopCounterMode over one iteration), the rate it reaches, and a large
    matrix product's rate on the same threads and kernels (the practical peak)."""
    cfg = configs.build("invgrad", {"iterations": 1, "lr_decay": False})
    model, targets = _setup(backbone, size, 1, cfg)
    with FlopCounterMode(display=False) as counter:
        reference_invgrad(model, targets[0], 0, (3, size, size), cfg, 1, 0)
    flops = counter.get_total_flops()
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    peak = 10 * 2 * 2048**3 / (time.perf_counter() - start)
    achieved = flops * reference_rate
    return {"gflop_per_image_iteration": flops / 1e9, "reference_gflops": achieved / 1e9, "matmul_gflops": peak / 1e9,
            "ceiling_ratio": peak / achieved}


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
    parser.add_argument("--iterations", type=int, default=6,
                        help="timed iterations per image (reference table), after 2 untimed ones")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the reference table")
    parser.add_argument("--out", default="benchmarks/results/attack_throughput.json")
    args = parser.parse_args()
    result = {"engine_vs_reference": [], "single_vs_batch": []}

    torch.set_num_threads(args.threads)
    routes = ("vmap", "rows")
    print(f"Engine vs the paper code's single-image loop (invgrad, {args.threads} threads, image-iterations/s at steady "
          f"state; auto = rows for one image, vmap for more)")
    print(f"{'backbone':11} {'px':>3} {'batch':>5} {'reference':>10} {'vmap':>7} {'rows':>7} {'auto':>7} {'ratio':>6}")
    for backbone, size in REFERENCE_CASES:
        for batch in (1, args.batch):
            ref, eng = engine_vs_reference(backbone, size, batch, args.iterations, routes)
            auto = eng[engine.per_sample_path("auto", batch)]
            result["engine_vs_reference"].append({"backbone": backbone, "size": size, "batch": batch,
                                                  "threads": args.threads, "reference": ref, **eng, "auto": auto,
                                                  "ratio": auto / ref})
            print(f"{backbone:11} {size:>3} {batch:>5} {ref:10.2f} {eng['vmap']:7.2f} {eng['rows']:7.2f} {auto:7.2f} "
                  f"{auto / ref:6.2f}")
        ceiling = arithmetic_ceiling(backbone, size, ref)
        result.setdefault("ceiling", []).append({"backbone": backbone, "size": size, "threads": args.threads,
                                                 **ceiling})
        print(f"{'':11} reference: {ceiling['gflop_per_image_iteration']:.1f} GFLOP per image-iteration at "
              f"{ceiling['reference_gflops']:.0f} GFLOP/s; a 2048x2048 matmul: {ceiling['matmul_gflops']:.0f} GFLOP/s "
              f"(ceiling {ceiling['ceiling_ratio']:.2f}x)")

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
