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
- restarts from independent random starts, best kept by final matching loss;
- budgets: one optimisation also saves its state at earlier iteration counts. An attacker who
  stops after 50 of 400 iterations is a weaker threat, and its reconstruction is exactly the
  longer run's state at iteration 50, so the snapshots cost one extra evaluation each. Each
  budget picks its own best restart by the matching loss at that budget.

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
from .rowwise import RowWeights

DISTANCES = ("l2", "cosine")
OPTIMIZERS = ("adam", "lbfgs")
LABEL_STRATEGIES = ("given", "idlg", "yin", "joint")
PER_SAMPLE = ("auto", "vmap", "rows")  # how each image's parameter gradient is computed (see _Objective)


def per_sample_path(per_sample: str, rows: int) -> str:
    """The route a batch of ``rows`` images takes: ``auto`` is ``rows`` for a single image and
    ``vmap`` for more, the faster one in each case on a CPU (docs/benchmarks.md: rows 1.4x for
    one image on the embedded backbones; for batches of 8-10 equal there, vmap 3-12 % ahead on
    ResNet20-4)."""
    if per_sample not in PER_SAMPLE:
        raise ConfigError(f"attack: per_sample_gradients must be one of {', '.join(PER_SAMPLE)}, got {per_sample!r}")
    if per_sample == "auto":
        return "rows" if rows == 1 else "vmap"
    return per_sample


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
    budgets: tuple[int, ...] = ()  # extra snapshot iteration counts below ``iterations``; () = final only

    def __post_init__(self):
        def bad(key: str, expected: str) -> ConfigError:
            err = ConfigError(f"attack: '{key}' must be {expected}, got {getattr(self, key)!r}")
            err.key, err.expected = key, expected  # configs.build re-words it with the params key
            return err

        def integer(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        for key, options in (("distance", DISTANCES), ("optimizer", OPTIMIZERS), ("labels", LABEL_STRATEGIES)):
            if getattr(self, key) not in options:
                raise bad(key, f"one of {', '.join(options)}")
        for key in ("iterations", "restarts", "lbfgs_inner"):
            if not integer(getattr(self, key)) or getattr(self, key) <= 0:
                raise bad(key, "a positive integer")
        for key in ("lr", "loss_scale", "tv", "bn_prior", "l2_prior"):
            v, positive = getattr(self, key), key in ("lr", "loss_scale")
            if (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0
                    or (positive and v == 0)):
                raise bad(key, "a positive finite number" if positive else "a non-negative finite number")
        for key in ("signed", "boxed", "lr_decay"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, "true or false")
        b = self.budgets
        if (not isinstance(b, (tuple, list)) or any(not integer(v) or v <= 0 for v in b)
                or list(b) != sorted(set(b)) or (b and b[-1] > self.iterations)):
            raise bad("budgets", f"a strictly increasing list of positive integers up to iterations ({self.iterations})")
        object.__setattr__(self, "budgets", tuple(b))

    @property
    def snapshots(self) -> tuple[int, ...]:
        """The iteration counts whose reconstructions are kept: the budgets and the final one."""
        return tuple(b for b in self.budgets if b < self.iterations) + (self.iterations,)

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
    budget: int = 0  # the iteration count this is the state at (the config's iterations when no budgets)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale`` x cross-entropy; soft (probability) labels for DLG's joint optimisation."""
    if labels.dtype.is_floating_point:
        return scale * torch.mean(torch.sum(-labels * F.log_softmax(logits, dim=-1), dim=-1))
    return scale * F.cross_entropy(logits, labels)


def classification_losses(logits: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """``classification_loss`` of each row on its own: shape ``(rows,)``."""
    if labels.dtype.is_floating_point:
        return scale * torch.sum(-labels * F.log_softmax(logits, dim=-1), dim=-1)
    return scale * F.cross_entropy(logits, labels, reduction="none")


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


def _per_sample_tv(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV of each image of the batch: mean |dx| + mean |dy|, in normalised space."""
    return ((x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
            + (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean(dim=(1, 2, 3)))


class _Objective:
    """The matching objective of every image of a batch at once, one value per image.

    Each image's parameter gradient is its own, by one of two routes (``per_sample``):
    ``vmap`` (``torch.func.vmap`` over ``grad``) or ``rows`` (``rowwise.RowWeights``: a copy
    of the weights per image, one ordinary backward pass; faster for a single image on a CPU,
    other kernels, so other rounding). Either way nothing couples the images in eval mode: image b's value, and
    its gradient with respect to its own pixels, are what a batch of one would give. The BN
    prior is measured per image by forward hooks (inside the vmapped function, or per row).
    """

    def __init__(self, model: nn.Module, cfg: AttackConfig, targets: Sequence[Sequence[torch.Tensor]],
                 per_sample: str = "vmap"):
        per_sample = per_sample_path(per_sample, len(targets))
        self.model, self.cfg = model, cfg
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = {n: p.detach() for n, p in named}
        self.buffers = {n: b for n, b in model.named_buffers()}
        self.target = {n: torch.stack([t[i].detach() for t in targets]) for i, n in enumerate(self.names)}
        self.target_norm = torch.sqrt(sum((t * t).flatten(1).sum(1) for t in self.target.values()))
        self._bn: list[torch.Tensor] = []
        self.handles = ([m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
                        if cfg.bn_prior > 0 else [])
        self.rows = None
        if per_sample == "rows":
            try:
                self.rows = RowWeights(model, len(targets))
            except BaseException:
                self.close()
                raise
            self.per_sample = self._rows_gradients
        else:
            self.per_sample = torch.func.vmap(torch.func.grad(self._loss, has_aux=True), in_dims=(None, 0, 0))

    def _hook(self, module: nn.BatchNorm2d, inputs, _output):
        # GradAttack's prior: L2 distance of the batch's mean/var (here: one image's) to the running ones
        x = inputs[0]
        if self.rows is not None:  # the whole batch: one value per row
            mean = x.mean(dim=(2, 3))
            var = x.var(dim=(2, 3), unbiased=False)
            self._bn.append(torch.linalg.vector_norm(mean - module.running_mean, dim=1)
                            + torch.linalg.vector_norm(var - module.running_var, dim=1))
            return
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        self._bn.append(torch.norm(mean - module.running_mean, 2) + torch.norm(var - module.running_var, 2))

    def _loss(self, params: dict, x: torch.Tensor, y: torch.Tensor):
        self._bn = []
        logits = torch.func.functional_call(self.model, (params, self.buffers), (x[None],))
        loss = classification_loss(logits, y[None], self.cfg.loss_scale)
        return loss, self._take_bn((), x.device)

    def _take_bn(self, shape: tuple[int, ...], device) -> torch.Tensor:
        """The BN prior the hooks collected over the forward pass just run (zeros of ``shape``
        without a prior), leaving the list empty for the next one."""
        bn = sum(self._bn) if self._bn else torch.zeros(shape, device=device)
        self._bn = []
        return bn

    def _rows_gradients(self, _params: dict, x: torch.Tensor, y: torch.Tensor):
        # under no_grad (a snapshot's value) the gradients are needed, not a graph through them
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            self._bn = []
            losses = classification_losses(self.model(x), y, self.cfg.loss_scale)
            bn = self._take_bn((len(x),), x.device)
            grads = self.rows.gradients(losses, create_graph)
        return grads, bn

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        grads, bn = self.per_sample(self.params, x, y)
        cfg = self.cfg
        value = self._distance(grads)
        if cfg.tv > 0:
            value = value + cfg.tv * _per_sample_tv(x)
        if cfg.bn_prior > 0:
            value = value + cfg.bn_prior * bn
        if cfg.l2_prior > 0:
            value = value + cfg.l2_prior * (x**2).flatten(1).sum(1)
        return value

    def _distance(self, grads: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.cfg.distance == "l2":
            return sum(((grads[n] - self.target[n]) ** 2).flatten(1).sum(1) for n in self.names)
        dot = sum((grads[n] * self.target[n]).flatten(1).sum(1) for n in self.names)
        norm = torch.sqrt(sum((grads[n] * grads[n]).flatten(1).sum(1) for n in self.names))
        return 1 - dot / (norm * self.target_norm + 1e-12)

    def close(self):
        for h in self.handles:
            h.remove()
        self.handles = []
        if self.rows is not None:
            self.rows.close()


def _milestones(iterations: int) -> list[int]:
    return [int(iterations // d) for d in (2.667, 1.6, 1.142)]


def _finite_rows(t: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(t.reshape(len(t), -1)).all(1)


def reconstruct(model: nn.Module, target: Sequence[torch.Tensor], shape: tuple[int, int, int], mean: Sequence[float],
                std: Sequence[float], cfg: AttackConfig, generator: torch.Generator, label: int | None = None,
                num_classes: int | None = None, device: str = "cpu", per_sample: str = "auto") -> Reconstruction:
    """Invert ``target`` (the observed gradient) for one image of ``shape`` (C, H, W)."""
    return reconstruct_batch(model, [target], shape, mean, std, cfg, [generator], [label], num_classes, device,
                             per_sample)[0]


def reconstruct_batch(model: nn.Module, targets: Sequence[Sequence[torch.Tensor]], shape: tuple[int, int, int],
                      mean: Sequence[float], std: Sequence[float], cfg: AttackConfig,
                      generators: Sequence[torch.Generator], labels: Sequence[int | None] | None = None,
                      num_classes: int | None = None, device: str = "cpu",
                      per_sample: str = "auto") -> list[Reconstruction]:
    """The final reconstruction of each row (see ``reconstruct_budgets`` for every budget)."""
    return [per_budget[-1] for per_budget in reconstruct_budgets(model, targets, shape, mean, std, cfg, generators,
                                                                 labels, num_classes, device, per_sample)]


@dataclass
class _Snapshot:
    """One restart's state at one budget: what a row would return had the attack stopped there."""

    frozen: torch.Tensor
    counts: list[int]
    image: torch.Tensor  # normalised space, (B, C, H, W)
    values: torch.Tensor
    got: list[int] | None  # DLG's recovered labels (argmax of the soft label), else None


def reconstruct_budgets(model: nn.Module, targets: Sequence[Sequence[torch.Tensor]], shape: tuple[int, int, int],
                        mean: Sequence[float], std: Sequence[float], cfg: AttackConfig,
                        generators: Sequence[torch.Generator], labels: Sequence[int | None] | None = None,
                        num_classes: int | None = None, device: str = "cpu",
                        per_sample: str = "auto") -> list[list[Reconstruction]]:
    """Invert B observed gradients of one model at once: B independent attacks, one batch.

    Returns, per row, one ``Reconstruction`` per entry of ``cfg.snapshots`` (ascending), each
    the optimisation's state at that iteration count. Row b uses only ``targets[b]``,
    ``labels[b]`` and ``generators[b]`` (its random starts, drawn on the CPU so a seed gives
    the same starts on any device); Adam is elementwise and L-BFGS runs per row
    (``lbfgs.BatchedLBFGS``), so rows do not interact. ``per_sample`` picks how each row's
    parameter gradient is computed (``auto``, ``vmap`` or ``rows``: ``per_sample_path``).
    ``seconds`` of each result is its share of the batch's time.
    """
    start = time.perf_counter()
    n = len(targets)
    labels = list(labels) if labels is not None else [None] * n
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    lo, hi = (0 - m) / s, (1 - m) / s
    num_classes = num_classes or _last_weight_grad(model, targets[0]).shape[0]
    if cfg.labels == "given":
        if any(label is None for label in labels):
            raise ConfigError("attack: labels 'given' needs the true label")
        fixed = [int(label) for label in labels]
    elif cfg.labels in ("idlg", "yin"):
        fixed = [infer_label(model, t, cfg.labels) for t in targets]
    else:
        fixed = None
    budgets = cfg.snapshots
    objective = _Objective(model, cfg, targets, per_sample)
    best: list[list[Reconstruction | None]] = [[None] * n for _ in budgets]
    fallback: list[list[tuple | None]] = [[None] * n for _ in budgets]
    iterations = [[0] * n for _ in budgets]
    losses: list[list[list[float]]] = [[[] for _ in range(n)] for _ in budgets]
    try:
        for _ in range(cfg.restarts):
            xs, softs = [], []
            for gen in generators:
                xs.append(torch.randn((1, *shape), generator=gen))
                if fixed is None:
                    softs.append(torch.randn((1, num_classes), generator=gen))
            x = torch.cat(xs).to(device).requires_grad_(True)
            soft = torch.cat(softs).to(device).requires_grad_(True) if fixed is None else None
            y_fixed = torch.tensor(fixed, device=device) if fixed is not None else None

            def values() -> torch.Tensor:
                return objective(x, torch.softmax(soft, dim=-1) if soft is not None else y_fixed)

            snapshots: dict[int, _Snapshot] = {}

            def snapshot(budget: int, frozen: torch.Tensor, counts: list[int], last_finite: torch.Tensor) -> None:
                with torch.no_grad():
                    v = values().detach()
                got = [int(i) for i in torch.argmax(soft.detach(), dim=1)] if soft is not None else None
                snapshots[budget] = _Snapshot(frozen.clone(), list(counts), last_finite.clone(), v, got)

            run = _run_adam if cfg.optimizer == "adam" else _run_lbfgs
            run(cfg, x, soft, values, lo, hi, snapshot)
            for k, budget in enumerate(budgets):
                snap = snapshots[budget]
                for b in range(n):
                    iterations[k][b] += snap.counts[b]
                    diverged = bool(snap.frozen[b]) or not math.isfinite(float(snap.values[b]))
                    value = math.nan if bool(snap.frozen[b]) else float(snap.values[b])
                    losses[k][b].append(value)
                    got = fixed[b] if fixed is not None else snap.got[b]
                    image = torch.clamp(snap.image[b : b + 1] * s + m, 0, 1).cpu()
                    if diverged:
                        fallback[k][b] = fallback[k][b] or (image, got, value)
                    elif best[k][b] is None or value < best[k][b].loss:
                        best[k][b] = Reconstruction(image, got, value, 0, 0.0, "ok")
    finally:
        objective.close()
    share = (time.perf_counter() - start) / n
    out = []
    for b in range(n):
        row = []
        for k, budget in enumerate(budgets):
            rec = best[k][b]
            if rec is None:
                image, got, value = fallback[k][b]
                rec = Reconstruction(image, got, value, 0, 0.0, "diverged")
            rec.iterations, rec.seconds, rec.restart_losses, rec.budget = iterations[k][b], share, losses[k][b], budget
            row.append(rec)
        out.append(row)
    return out


def _settle(x: torch.Tensor, frozen: torch.Tensor, last_finite: torch.Tensor, step_loss: torch.Tensor,
            counts: list[int], lo: torch.Tensor, hi: torch.Tensor, boxed: bool) -> None:
    """After a step: freeze rows that turned non-finite (keeping their last finite image), box the rest."""
    bad = ~torch.isfinite(step_loss) | ~_finite_rows(x.detach())
    for b in torch.nonzero(~frozen).flatten().tolist():
        counts[b] += 1
    frozen |= bad
    with torch.no_grad():
        if boxed:
            x.data = torch.max(torch.min(x, hi), lo)
        x.data[frozen] = last_finite[frozen]
        last_finite.copy_(x.detach())


def _take_snapshots(cfg: AttackConfig, done: int, snapshot, frozen, counts, last_finite, final: bool = False) -> None:
    """Record the state for the budget reached after ``done`` iterations; at the end (``final``,
    also after every row froze early), for every budget not reached."""
    for budget in cfg.snapshots:
        if budget == done or (final and budget > done):
            snapshot(budget, frozen, counts, last_finite)


def _run_adam(cfg: AttackConfig, x, soft, values, lo, hi, snapshot):
    variables = [x] + ([soft] if soft is not None else [])
    opt = torch.optim.Adam(variables, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, _milestones(cfg.iterations), 0.1) if cfg.lr_decay else None
    frozen = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    last_finite = x.detach().clone()
    counts = [0] * len(x)
    for it in range(cfg.iterations):
        opt.zero_grad()
        v = values()
        v.sum().backward(inputs=variables)  # not into rows' weight copies
        if cfg.signed:
            x.grad.sign_()
        for var in variables:  # frozen rows stay put (their gradients may be NaN)
            var.grad[frozen] = 0
        opt.step()
        _settle(x, frozen, last_finite, v.detach(), counts, lo, hi, cfg.boxed)
        if bool(frozen.all()):
            break
        if it + 1 < cfg.iterations:
            _take_snapshots(cfg, it + 1, snapshot, frozen, counts, last_finite)
        if sched is not None:
            sched.step()
    _take_snapshots(cfg, it + 1, snapshot, frozen, counts, last_finite, final=True)


def _run_lbfgs(cfg: AttackConfig, x, soft, values, lo, hi, snapshot):
    from .lbfgs import BatchedLBFGS

    variables = [x] + ([soft] if soft is not None else [])
    sizes = [v[0].numel() for v in variables]
    opt = BatchedLBFGS(len(x), sum(sizes), lr=cfg.lr, max_iter=cfg.lbfgs_inner, device=x.device)

    def closure():
        for var in variables:
            var.grad = None
        v = values()
        v.sum().backward(inputs=variables)  # not into rows' weight copies
        if cfg.signed:
            x.grad.sign_()
        return v.detach(), torch.cat([var.grad.reshape(len(var), -1) for var in variables], 1)

    def move(delta: torch.Tensor) -> None:
        for var, part in zip(variables, torch.split(delta, sizes, 1)):
            var.data.add_(part.reshape(var.shape))

    milestones = _milestones(cfg.iterations) if cfg.lr_decay else []  # as MultiStepLR would
    frozen = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    last_finite = x.detach().clone()
    counts = [0] * len(x)
    for it in range(cfg.iterations):
        opt.lr = cfg.lr * 0.1 ** sum(it >= mi for mi in milestones)
        step_loss = opt.step(closure, move, frozen)
        _settle(x, frozen, last_finite, step_loss, counts, lo, hi, cfg.boxed)
        if bool(frozen.all()):
            break
        if it + 1 < cfg.iterations:
            _take_snapshots(cfg, it + 1, snapshot, frozen, counts, last_finite)
    _take_snapshots(cfg, it + 1, snapshot, frozen, counts, last_finite, final=True)
