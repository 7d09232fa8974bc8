"""Classifier training as in the paper's code (inversefed's "conservative" strategy).

SGD with lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4; learning rate x0.1 after
epochs // 2.667, // 1.6 and // 1.142 (3/8, 5/8 and 7/8 of training); cross-entropy; the
setting's augmentation on every image of every batch; the gradient defence, when it acts in
training, after backward and before the optimiser step.

Determinism: the model's initial weights, the batch order, every augmentation draw and the
defence noise come from generators seeded by (seed, dataset, model id), so the same params
give the same weights on the same CPU.

Only the train stages import this module (tests/test_dvc_deps.py checks it): the model grid is
``grid.py``, reading a trained model back is ``checkpoints.py``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .. import augment, defenses, executor, seeding
from .. import params as P
from ..datasets.standard import PreparedDataset
from ..errors import DataError
from ..torch_helpers import resolve_device, state_bytes, to_tensor
from . import backbones
from .grid import ModelSpec, Setting

log = logging.getLogger(__name__)
MILESTONE_DIVISORS = (2.667, 1.6, 1.142)


@dataclass
class ClassifierTrainConfig:
    epochs: int
    batch_size: int
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    defense_at: str = "training"
    eval_batch_size: int = 256
    device: str = "cpu"

    @property
    def milestones(self) -> list[int]:
        return [int(self.epochs // d) for d in MILESTONE_DIVISORS]


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    test_accuracy: float = float("nan")
    train_accuracy: float = float("nan")
    seconds: float = 0.0


def augmentation(setting: Setting) -> augment.Augmentation:
    """What ``setting`` does to each training image (its ``augment`` and ``policy`` options)."""
    return augment.from_config(setting.config(), setting.where)


def defense(setting: Setting) -> defenses.Defense:
    """The gradient defence of ``setting`` (its ``defense``, ``prune_ratio``, ``noise_sigma`` options)."""
    return defenses.from_config(setting.config(), setting.where)


def from_params(params: Mapping, dataset: str, backbone: str,
                setting: Setting | None = None) -> ClassifierTrainConfig:
    """params.yaml -> ClassifierTrainConfig: the optimiser settings for one model;
    ``train.optimizer.backbone_lr.<backbone>`` overrides lr, the setting's ``epochs`` (when set)
    the dataset's."""
    P.known(params, "train", ("defense_at", "device", "threads", "optimizer", "settings", "datasets"))
    P.known(params, f"train.datasets.{dataset}", ("epochs", "batch_size", "models"))
    opt = P.Section(P.known(params, "train.optimizer", ("lr", "momentum", "nesterov", "weight_decay", "backbone_lr")),
                    "train.optimizer")
    defense_at = P.choice(params, "train.defense_at", defenses.THREAT_MODELS)
    own = P.get(opt, f"backbone_lr.{backbone}", None, None) is not None  # a per-backbone lr wins
    lr = P.number(opt, f"backbone_lr.{backbone}" if own else "lr", above=0)
    epochs = P.positive_int(params, f"train.datasets.{dataset}.epochs")
    if setting is not None:
        augmentation(setting), defense(setting)  # a bad option stops the stage before the first model trains
        if setting.epochs is not None:
            epochs = setting.epochs
    return ClassifierTrainConfig(
        epochs=epochs,
        batch_size=P.positive_int(params, f"train.datasets.{dataset}.batch_size"),
        lr=lr,
        momentum=P.number(opt, "momentum", at_least=0, below=1),
        nesterov=bool(P.get(opt, "nesterov", bool)),
        weight_decay=P.number(opt, "weight_decay", at_least=0),
        defense_at=defense_at,
        device=resolve_device(P.get(params, "train.device", str, "cpu"), "train.device"),
    )


def seeds(seed: int, dataset: str, model_id: str) -> tuple[int, np.random.Generator, torch.Generator]:
    """Torch seed for initialisation, a NumPy generator (order, augmentation), a torch one (noise)."""
    key = seeding.key(seed, dataset, model_id)
    torch_seed = seeding.torch_seed(key)
    gen = torch.Generator().manual_seed(torch_seed + 1)
    return torch_seed, np.random.default_rng(key), gen


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean, std, batch_size: int = 256,
             device: str = "cpu") -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        pred = model(to_tensor(images[i : i + batch_size], mean, std).to(device)).argmax(1).cpu().numpy()
        correct += int((pred == labels[i : i + batch_size]).sum())
    return correct / len(images)


def train(ds: PreparedDataset, spec: ModelSpec, cfg: ClassifierTrainConfig, seed: int,
          on_epoch: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train one model of the grid on ``ds``; ``on_epoch(epoch, metrics)`` after each epoch."""
    torch_seed, rng, noise_gen = seeds(seed, ds.name, spec.model_id)
    torch.manual_seed(torch_seed)
    model = backbones.build(spec.backbone, ds.num_classes, ds.image_size).to(cfg.device)
    mean, std = ds.channel_stats()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=cfg.milestones, gamma=0.1)
    augment_ = augmentation(spec.setting)
    defend = defense(spec.setting) if cfg.defense_at in ("training", "both") else defenses.Defense()
    if cfg.device != "cpu":
        noise_gen = torch.Generator(device=cfg.device).manual_seed(torch_seed + 1)
    x_all, y_all = ds.train_images, ds.train_labels
    result = TrainResult(model)
    start = time.perf_counter()
    bar = tqdm(total=cfg.epochs * len(x_all), unit="img", desc=f"{ds.name}/{spec.model_id}", leave=False, disable=None)
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(x_all))
        loss_sum, correct, seen = 0.0, 0, 0
        lr = opt.param_groups[0]["lr"]
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            x = to_tensor(augment_.batch(x_all[idx], rng), mean, std).to(cfg.device)
            y = torch.from_numpy(y_all[idx]).to(cfg.device)
            out = model(x)
            loss = F.cross_entropy(out, y)
            if not torch.isfinite(loss):
                raise DataError(f"{ds.name}/{spec.model_id}: training loss became {loss.item()} in epoch {epoch + 1}; "
                                f"lower train.optimizer.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            defend.apply_((p.grad for p in model.parameters()), noise_gen)
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == y).sum())
            seen += len(idx)
            bar.update(len(idx))
        sched.step()
        metrics = {"train_loss": loss_sum / seen, "train_acc": correct / seen,
                   "test_acc": accuracy(model, ds.test_images, ds.test_labels, mean, std, cfg.eval_batch_size, cfg.device),
                   "lr": lr}
        result.history.append(metrics)
        log.info("%s/%s epoch %d/%d: loss %.3f, train acc %.3f, test acc %.3f, lr %g", ds.name, spec.model_id,
                 epoch + 1, cfg.epochs, metrics["train_loss"], metrics["train_acc"], metrics["test_acc"], lr)
        if on_epoch:
            on_epoch(epoch, metrics)
    bar.close()
    result.seconds = time.perf_counter() - start
    result.test_accuracy = (result.history[-1]["test_acc"] if result.history else  # 0 epochs: at initialisation
                            accuracy(model, ds.test_images, ds.test_labels, mean, std, cfg.eval_batch_size, cfg.device))
    result.train_accuracy = accuracy(model, ds.train_images, ds.train_labels, mean, std, cfg.eval_batch_size, cfg.device)
    result.model = model.cpu().eval()
    return result


@dataclass
class Trained:
    """One finished training job, as plain data: what the stage writes, wherever it ran."""

    model_id: str
    weights: bytes
    card: dict
    history: list[dict]
    seconds: float


def train_job(job: tuple[ModelSpec, ClassifierTrainConfig, int], ds: PreparedDataset, seed: int) -> Trained:
    """Train one model with ``threads`` torch threads (a job of the train stage, local or on Ray)."""
    spec, cfg, threads = job
    torch.set_num_threads(threads)
    result = train(ds, spec, cfg, seed)
    return Trained(spec.model_id, state_bytes(result.model), card(ds, spec, cfg, seed, result), result.history,
                   result.seconds)


def train_all(jobs: Sequence[tuple[ModelSpec, ClassifierTrainConfig, int]], ds: PreparedDataset, seed: int,
              run_on: executor.ExecutorConfig) -> Iterator[Trained]:
    """Every job's result, in the jobs' order: here, one after another, or on Ray when ``run_on``
    says so (the same bytes either way)."""
    if run_on.kind != "ray":
        return (train_job(job, ds, seed) for job in jobs)
    done = dict(executor.run_ray(run_on, train_job, jobs, {"ds": ds, "seed": seed},
                                 gpu=any(cfg.device.startswith("cuda") for _, cfg, _ in jobs), desc=f"train {ds.name}"))
    return (done[i] for i in range(len(jobs)))


def card(ds: PreparedDataset, spec: ModelSpec, cfg: ClassifierTrainConfig, seed: int, result: TrainResult) -> dict:
    """The JSON card written beside each checkpoint: everything later stages and readers need."""
    mean, std = ds.channel_stats()
    setting = spec.setting
    augmented, defended = augmentation(setting), defense(setting)
    return {
        "dataset": ds.name,
        "model_id": spec.model_id,
        "backbone": spec.backbone,
        "setting": setting.name,
        "augmentation": augmented.describe(),
        "ats_policy": augmented.policy,
        "crop_flip": augmented.crop_flip,
        "defense": {"kind": defended.kind, "prune_ratio": defended.prune_ratio,
                    "noise_sigma": defended.noise_sigma, "description": defended.describe()},
        "defense_at": cfg.defense_at,
        "defense_in_training": defended.kind != "none" and cfg.defense_at in ("training", "both"),
        "defense_on_observed_gradient": defended.kind != "none" and cfg.defense_at in ("attack", "both"),
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "optimizer": {"name": "SGD", "lr": cfg.lr, "momentum": cfg.momentum, "nesterov": cfg.nesterov,
                      "weight_decay": cfg.weight_decay, "milestones": cfg.milestones, "gamma": 0.1},
        "seed": seed,
        "device": cfg.device,
        "parameters": backbones.parameter_count(result.model),
        "image_size": ds.image_size,
        "num_classes": ds.num_classes,
        "normalization": {"mean": mean, "std": std, "source": "training split of the prepared dataset"},
        "test_accuracy": round(result.test_accuracy, 6),
        "train_accuracy": round(result.train_accuracy, 6),
        "chance_accuracy": round(1.0 / ds.num_classes, 6),
        "offline_stand_in": bool(ds.source.get("offline_stand_in", False)),
        "torch_version": torch.__version__.split("+")[0],
    }
