"""The gradient-matching engine behind all four attacks.

Every attack minimises D(grad_theta L(f(x), y), g*) over a dummy image x (and, for DLG, a
dummy label), where g* is the gradient the attacker observed. Each iteration is a forward
pass, a backward pass that keeps its graph, and a backward pass through that gradient (a
double backward). The parts, chosen by ``AttackConfig``:

- distance: ``l2`` (squared L2 summed over layers, DLG) or ``cosine`` (1 - cosine over the
  whole concatenated gradient, Inverting Gradients);
- optimiser: ``lbfgs`` (DLG/iDLG; torch's default 20 inner iterations per step) or ``adam``,
  optionally with the signed gradient, the box constraint to the valid pixel range, and the
  x0.1 step decay at 3/8, 5/8, 7/8 of the iterations;
- priors: total variation (anisotropic, mean |dx| + mean |dy|, in normalised space), the
  BatchNorm-statistics prior of GradInversion (L2 distance between each BN layer's batch mean
  and variance and its running ones, as GradAttack), and an L2 image prior;
- labels: ``given``, ``idlg`` (the row of the last layer's weight gradient with negative sum),
  ``yin`` (the row with the smallest minimum), ``joint`` (DLG: soft label optimised with x);
- restarts from independent random starts, best kept by final matching loss.

A restart whose objective turns NaN or infinite stops there; if every restart does, the
result has status ``diverged`` and keeps the last finite image, never raising.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, asdict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

DISTANCES = ("l2", "cosine")
OPTIMIZERS = ("adam", "lbfgs")
LABEL_STRATEGIES = ("given", "idlg", "yin", "joint")


@dataclass(frozen=True)
class AttackConfig:
    distance: str = "cosine"
    optimizer: str = "adam"
    lr: float = 0.1
    iterations: int = 8000
    signed: bool = True
    boxed: bool = True
    lr_decay: bool = True
    tv: float = 1e-4
    bn_prior: float = 0.0
    l2_prior: float = 0.0
    restarts: int = 1
    labels: str = "given"
    loss_scale: float = 0.5
    lbfgs_inner: int = 20

    def __post_init__(self):
        checks = [("distance", self.distance, DISTANCES), ("optimizer", self.optimizer, OPTIMIZERS),
                  ("labels", self.labels, LABEL_STRATEGIES)]
        for key, value, options in checks:
            if value not in options:
                raise ConfigError(f"attack: '{key}' is {value!r}; valid values: {', '.join(options)}")
        if self.iterations <= 0 or self.restarts <= 0:
            raise ConfigError("attack: 'iterations' and 'restarts' must be positive")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Reconstruction:
    image: torch.Tensor  # (1, 3, H, W) in [0, 1], de-normalised
    label: int
    loss: float
    iterations: int
    seconds: float
    status: str  # ok | diverged
    restart_losses: list[float] = field(default_factory=list)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale`` x cross-entropy; soft (probability) labels for DLG's joint optimisation."""
    if labels.dtype.is_floating_point:
        return scale * torch.mean(torch.sum(-labels * F.log_softmax(logits, dim=-1), dim=-1))
    return scale * F.cross_entropy(logits, labels)


def parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def observed_gradient(model: nn.Module, x: torch.Tensor, label: int, loss_scale: float) -> list[torch.Tensor]:
    """The gradient a client shares for one image: eval-mode model, ``loss_scale`` x CE."""
    model.eval()
    loss = classification_loss(model(x), torch.tensor([label], device=x.device), loss_scale)
    return [g.detach() for g in torch.autograd.grad(loss, parameters(model))]


def _last_weight_grad(model: nn.Module, grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """The gradient of the last linear layer's weight (classes x features)."""
    params = parameters(model)
    for p, g in zip(reversed(params), reversed(list(grads))):
        if p.dim() == 2:
            return g
    raise ConfigError("label inference needs a final linear layer")


def infer_label(model: nn.Module, grads: Sequence[torch.Tensor], strategy: str) -> int:
    """iDLG: with CE and non-negative features, only the true row sums negative; Yin: row minima."""
    g = _last_weight_grad(model, grads)
    if strategy == "idlg":
        return int(torch.argmin(g.sum(dim=1)))
    if strategy == "yin":
        return int(torch.argmin(g.min(dim=1).values))
    raise ValueError(strategy)


def gradient_distance(grads: Sequence[torch.Tensor], target: Sequence[torch.Tensor], kind: str) -> torch.Tensor:
    if kind == "l2":
        return sum(((g - t) ** 2).sum() for g, t in zip(grads, target))
    dot = sum((g * t).sum() for g, t in zip(grads, target))
    gn = torch.sqrt(sum((g * g).sum() for g in grads))
    tn = torch.sqrt(sum((t * t).sum() for t in target))
    return 1 - dot / (gn * tn + 1e-12)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean() + (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean()


class _BNStatistics:
    """Forward hooks that measure each BatchNorm layer's input statistics against its running ones."""

    def __init__(self, model: nn.Module):
        self.losses: list[torch.Tensor] = []
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    def _hook(self, module: nn.BatchNorm2d, inputs, _output):
        x = inputs[0]
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        self.losses.append(torch.norm(mean - module.running_mean, 2) + torch.norm(var - module.running_var, 2))

    def take(self) -> torch.Tensor | float:
        total = sum(self.losses) if self.losses else 0.0
        self.losses = []
        return total

    def close(self):
        for h in self.handles:
            h.remove()


def _milestones(iterations: int) -> list[int]:
    return [int(iterations // d) for d in (2.667, 1.6, 1.142)]


def reconstruct(model: nn.Module, target: Sequence[torch.Tensor], shape: tuple[int, int, int], mean: Sequence[float],
                std: Sequence[float], cfg: AttackConfig, generator: torch.Generator, label: int | None = None,
                num_classes: int | None = None, device: str = "cpu") -> Reconstruction:
    """Invert ``target`` (the observed gradient) for one image of ``shape`` (C, H, W).

    Random starts are drawn on the CPU from ``generator`` and moved to ``device``, so a seed
    gives the same starts on any device.
    """
    start = time.perf_counter()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    lo, hi = (0 - m) / s, (1 - m) / s
    target = [t.detach() for t in target]
    params = parameters(model)
    num_classes = num_classes or _last_weight_grad(model, target).shape[0]
    if cfg.labels == "given":
        if label is None:
            raise ConfigError("attack: labels 'given' needs the true label")
        fixed_label = label
    elif cfg.labels in ("idlg", "yin"):
        fixed_label = infer_label(model, target, cfg.labels)
    else:
        fixed_label = None
    bn = _BNStatistics(model) if cfg.bn_prior > 0 else None
    best: Reconstruction | None = None
    fallback = None
    total_iterations = 0
    losses = []
    try:
        for _ in range(cfg.restarts):
            x = torch.randn((1, *shape), generator=generator).to(device).requires_grad_(True)
            soft = (torch.randn((1, num_classes), generator=generator).to(device).requires_grad_(True)
                    if fixed_label is None else None)
            variables = [x] + ([soft] if soft is not None else [])

            def objective() -> torch.Tensor:
                y = torch.softmax(soft, dim=-1) if soft is not None else torch.tensor([fixed_label], device=device)
                if bn is not None:
                    bn.take()
                loss = classification_loss(model(x), y, cfg.loss_scale)
                grads = torch.autograd.grad(loss, params, create_graph=True)
                value = gradient_distance(grads, target, cfg.distance)
                if cfg.tv > 0:
                    value = value + cfg.tv * total_variation(x)
                if bn is not None:
                    value = value + cfg.bn_prior * bn.take()
                if cfg.l2_prior > 0:
                    value = value + cfg.l2_prior * (x**2).sum()
                return value

            if cfg.optimizer == "adam":
                opt = torch.optim.Adam(variables, lr=cfg.lr)
            else:
                opt = torch.optim.LBFGS(variables, lr=cfg.lr, max_iter=cfg.lbfgs_inner)
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, _milestones(cfg.iterations), 0.1) if cfg.lr_decay else None
            last_finite = x.detach().clone()
            final = math.nan
            diverged = False
            for it in range(cfg.iterations):
                def closure():
                    opt.zero_grad()
                    value = objective()
                    value.backward()
                    if cfg.signed:
                        x.grad.sign_()
                    return value

                value = opt.step(closure)
                total_iterations += 1
                final = float(value.detach()) if value is not None else math.nan
                if not math.isfinite(final) or not torch.isfinite(x).all():
                    diverged = True
                    break
                with torch.no_grad():
                    if cfg.boxed:
                        x.data = torch.max(torch.min(x, hi), lo)
                last_finite = x.detach().clone()
                if sched is not None:
                    sched.step()
            if not diverged:  # the loss of the final image (the optimiser reports the one before its step)
                final = float(objective().detach())
                diverged = not math.isfinite(final)
            losses.append(final)
            got_label = fixed_label if soft is None else int(torch.argmax(soft.detach()))
            image = torch.clamp(last_finite * s + m, 0, 1).cpu()
            if diverged:
                fallback = fallback or (image, got_label, final)
                continue
            if best is None or final < best.loss:
                best = Reconstruction(image, got_label, final, 0, 0.0, "ok")
    finally:
        if bn is not None:
            bn.close()
    if best is None:
        image, got_label, final = fallback
        best = Reconstruction(image, got_label, final, 0, 0.0, "diverged")
    best.iterations = total_iterations
    best.seconds = time.perf_counter() - start
    best.restart_losses = losses
    return best
