"""Is the simulated crowd fooled by the class cues that gradient inversion plants?

An inversion that is still noise to a person can already make the attacked classifier
predict the true class: the optimisation writes features that CNN reads into the pixels. A
CNN observer may read them too, and then "recognise" what no person would. The annotate
stage cannot test this itself (it must never see the attacked classifiers), so this control
runs after it, with the observer the annotate stage saved and the attacked models.

``observer_adversarial_gap`` (the control): take every reconstruction under ``max_psnr`` dB
(topped up with the noise an inversion starts from when the study has fewer than
``min_images``) and make two copies of each that differ only by an imperceptible
perturbation (L-inf ``epsilon``, projected gradient steps on the attacked classifier): one
the attacked classifier reads as the true class, one it reads as another class. The same
simulated people (the same draws) judge both copies against the same original. The gap is
the crowd's majority-recognised rate on the "true" copies minus that on the "other" copies,
with a paired bootstrap interval. People cannot see an 8/255 perturbation, so their gap is
0; so should the crowd's be.

``observer_observational_gap`` (shown beside it, not a bound): the same difference read off
the study's own verdicts on its low-PSNR reconstructions, split by the attacked classifier's
prediction on each. It mixes planted cues with real content: a low-PSNR reconstruction that
the classifier gets right often shows the digit or the ring through its noise, which a
person reads too, so this one is expected to be positive for people as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import params as P
from ..classifiers import checkpoints
from ..datasets import standard
from ..datasets.imaging import read_png
from ..errors import ConfigError, DataError
from ..torch_helpers import normalize
from . import collect, observer, simulated
from .tasks import Task, read_tasks


# what `dvc metrics show` lists of the summary (the full one: reports/observer/<dataset>.json)
HEADLINE = ("observer_adversarial_gap", "observer_adversarial_gap_ci", "observer_observational_gap",
            "observer_adversarial_pairs")
COLUMNS = ("item_id", "copy_of", "kind", "model", "psnr", "truth", "prediction", "pred_true_copy",
           "pred_other_copy", "planted", "recognised_true_copy", "recognised_other_copy")


@dataclass(frozen=True)
class Inputs:
    """Where the control reads a dataset's files (the stage names them, as dvc.yaml does)."""

    tasks: Path  # the tasks stage's tasks.csv
    prepared: Path  # the prepared dataset (class names)
    annotations: Path  # the annotate stage's folder: its observer and items.csv
    metrics: Path  # the metrics stage's images.csv (PSNR of every reconstruction)
    models: Path  # the attacked classifiers, <model id>.pt with their cards


#: PSNR of uint8 NHWC pairs (originals, images) -> one value a pair; the stage passes the
#: metrics package's (annotation does not import metrics: the domain packages stay apart).
Psnr = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ControlConfig:
    max_psnr: float = 10.0  # "low PSNR": reconstructions under this many dB
    min_images: int = 200  # pairs wanted per dataset; noise tops the study's own up to this
    epsilon: float = 8 / 255  # L-inf size of the planted cue (imperceptible at this size)
    steps: int = 20  # projected gradient steps per copy
    bootstrap: int = 1000
    confidence: float = 0.95


def from_params(params: Mapping) -> ControlConfig:
    section = dict(P.known(params, "observer_controls", ControlConfig.__dataclass_fields__))
    for key, value in section.items():  # text such as 8/255 (how the comments write it) is not a number to YAML
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = " (YAML reads a fraction as text: write 0.0313725 for 8/255)" if isinstance(value, str) and "/" in value else ""
            raise ConfigError(f"params.yaml: observer_controls.{key} must be a number, got {value!r}{hint}")
    cfg = ControlConfig(**section)
    checks = {"max_psnr": cfg.max_psnr > 0, "min_images": isinstance(cfg.min_images, int) and cfg.min_images > 0,
              "epsilon": 0 < cfg.epsilon < 1, "steps": isinstance(cfg.steps, int) and cfg.steps > 0,
              "bootstrap": isinstance(cfg.bootstrap, int) and cfg.bootstrap >= 0, "confidence": 0 < cfg.confidence < 1}
    for key, ok in checks.items():
        value = getattr(cfg, key)
        if isinstance(value, bool) or not ok:
            raise ConfigError(f"params.yaml: observer_controls.{key} is out of range, got {value!r}")
    return cfg


def plant(model: torch.nn.Module, norm: Mapping, images: np.ndarray, targets: np.ndarray,
          cfg: ControlConfig) -> np.ndarray:
    """Copies of uint8 ``images`` within ``epsilon`` (L-inf) that ``model`` reads as ``targets``:
    targeted projected gradient descent on the cross-entropy, then rounded to uint8 as a PNG
    would store them."""
    x0 = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(targets.astype(np.int64))
    eps = float(cfg.epsilon)
    x = x0.clone()
    for _ in range(cfg.steps):
        x.requires_grad_(True)
        loss = F.cross_entropy(model(normalize(x, norm["mean"], norm["std"])), y)
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x = x - (eps / 4) * grad.sign()
            x = torch.minimum(torch.maximum(x, x0 - eps), x0 + eps).clamp(0, 1)
    q = (x.detach() * 255.0).round().clamp(0, 255)
    q = torch.minimum(torch.maximum(q, x0 * 255 - round(eps * 255)), x0 * 255 + round(eps * 255))
    return q.byte().permute(0, 2, 3, 1).numpy()


def paired_interval(a: np.ndarray, b: np.ndarray, cfg: ControlConfig, seed: int) -> list[float] | None:
    """Percentile bootstrap interval of mean(a - b), resampling pairs."""
    if cfg.bootstrap == 0 or len(a) == 0:
        return None
    d = a.astype(float) - b.astype(float)
    rng = np.random.default_rng([seed, 0x676170])  # "gap"
    means = d[rng.integers(0, len(d), (cfg.bootstrap, len(d)))].mean(1)
    tail = (1 - cfg.confidence) / 2
    return [round(float(np.quantile(means, tail)), 6), round(float(np.quantile(means, 1 - tail)), 6)]


def _low_psnr_items(path: Path, tasks: Mapping[str, Task], cfg: ControlConfig, tasks_csv: Path) -> pd.DataFrame:
    try:
        scores = pd.read_csv(path, usecols=["item_id", "status", "psnr"])
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the metrics stage first") from None
    scores = scores[(scores.status == "ok") & (scores.psnr < cfg.max_psnr)]
    unknown = sorted(set(scores.item_id) - set(tasks))
    if unknown:
        raise DataError(f"{path}: item ids not in {tasks_csv}, e.g. {unknown[0]!r}; "
                        "rerun the tasks and metrics stages")
    return scores.sort_values("item_id").reset_index(drop=True)


def _candidates(inputs: Inputs, tasks: Mapping[str, Task], rows: list[dict], rng: np.random.Generator,
                class_index: Mapping[str, int], models: dict, cfg: ControlConfig,
                psnr: Psnr) -> tuple[pd.DataFrame, np.ndarray, ...]:
    """Rows of images (the study's reconstructions or fresh noise) and what the attacked
    classifier reads in each of their two planted copies; the originals and both copies."""
    table = pd.DataFrame(rows, columns=["item_id", "copy_of", "kind"])
    if table.empty:  # no reconstruction under max_psnr: only noise will make up the control
        table = table.assign(psnr=[], truth=[], model=[], prediction=[], pred_true_copy=[], pred_other_copy=[],
                             planted=pd.Series([], dtype=bool))
        return table, *(np.zeros((0, 0, 0, 3), dtype=np.uint8) for _ in range(3))
    originals, images = [], []
    for r in table.itertuples():
        t = tasks[r.copy_of]
        originals.append(read_png(t.original))
        if r.kind == "reconstruction":
            images.append(read_png(t.reconstruction))
        else:
            noise = rng.normal(0.5, 0.5, originals[-1].shape)
            images.append((np.clip(noise, 0, 1) * 255).round().astype(np.uint8))
    originals, images = np.stack(originals), np.stack(images)
    table["psnr"] = psnr(originals, images)
    table["truth"] = [class_index[tasks[i].truth] for i in table.copy_of]
    table["model"] = [tasks[i].model for i in table.copy_of]
    true_copy, other_copy = np.empty_like(images), np.empty_like(images)
    pred, pred_true, pred_other = (np.zeros(len(table), dtype=np.int64) for _ in range(3))
    for model_id, group in table.groupby("model", sort=True):
        if model_id not in models:
            models[model_id] = checkpoints.load(inputs.models / f"{model_id}.pt")
        model, info = models[model_id]
        norm = info["normalization"]
        at = group.index.to_numpy()
        truth = table.truth.to_numpy()[at]
        logits = checkpoints.logits(model, info, images[at])
        pred[at] = logits.argmax(1).numpy()
        logits[torch.arange(len(at)), torch.from_numpy(truth)] = -torch.inf
        true_copy[at] = plant(model, norm, images[at], truth, cfg)
        other_copy[at] = plant(model, norm, images[at], logits.argmax(1).numpy(), cfg)
        pred_true[at] = checkpoints.predict(model, info, true_copy[at])
        pred_other[at] = checkpoints.predict(model, info, other_copy[at])
    table["prediction"], table["pred_true_copy"], table["pred_other_copy"] = pred, pred_true, pred_other
    table["planted"] = (table.pred_true_copy == table.truth) & (table.pred_other_copy != table.truth)
    return table, originals, true_copy, other_copy


def run(params: Mapping, dataset: str, inputs: Inputs, psnr: Psnr) -> tuple[dict, pd.DataFrame]:
    """The control's summary (reports/observer/<ds>.json) and its per-copy table."""
    cfg = from_params(params)
    seed = P.get(params, "seed", int)
    if collect.source_of(params, dataset) != "simulated":  # people's eyes need no control for a CNN's
        return {"dataset": dataset, "simulated": False,
                "note": "answers come from people; the planted-cue control applies to simulated annotators"}, \
            pd.DataFrame(columns=COLUMNS)
    obs_cfg, pool_cfg = collect.from_params(params)
    tasks = read_tasks(inputs.tasks)
    ds = standard.load(inputs.prepared)
    net = observer.load(inputs.annotations / collect.OBSERVER_FILE, ds.num_classes, obs_cfg)
    class_index = {c: i for i, c in enumerate(ds.class_names)}
    low = _low_psnr_items(inputs.metrics, tasks, cfg, inputs.tasks)

    # the study's own low-PSNR reconstructions, then the noise an inversion starts from until
    # ``min_images`` pairs took the planted cue (a cue does not always flip a classifier)
    rng = np.random.default_rng([seed, 0x706C616E74])  # "plant"
    pool = sorted(i for i, t in tasks.items() if t.attack_status == "ok")
    models: dict[str, tuple] = {}
    parts = [_candidates(inputs, tasks, [{"item_id": i, "copy_of": i, "kind": "reconstruction"} for i in low.item_id],
                         rng, class_index, models, cfg, psnr)]
    started = 0
    while (planted := int(sum(p[0].planted.sum() for p in parts))) < cfg.min_images and pool \
            and started < 20 * cfg.min_images:
        need = cfg.min_images - planted
        bases = [pool[int(k)] for k in rng.integers(len(pool), size=2 * need)]
        rows = [{"item_id": f"{b}#start{started + k}", "copy_of": b, "kind": "inversion start (noise)"}
                for k, b in enumerate(bases)]
        started += len(rows)
        parts.append(_candidates(inputs, tasks, rows, rng, class_index, models, cfg, psnr))
    parts = [p for p in parts if len(p[0])] or parts[:1]
    table = pd.concat([p[0] for p in parts], ignore_index=True)
    originals, true_copy, other_copy = (np.concatenate([p[k] for p in parts]) for k in (1, 2, 3))
    if table.empty:
        raise DataError(f"{inputs.tasks}: no reconstruction to build the planted-cue control from")

    # the same people (same draws) judge each pair: only what the observer reads can differ
    fake = {i: tasks[c] for i, c in zip(table.item_id, table.copy_of)}
    p_orig = net.posterior(originals)

    def crowd(copies: np.ndarray) -> np.ndarray:
        p = net.posterior(copies)
        post = {i: (p_orig[j], p[j]) for j, i in enumerate(table.item_id)}
        answers = simulated.annotate(fake, post, ds.class_names, pool_cfg, seed, f"{dataset}#planted")
        votes = simulated.recognised_votes(answers, fake)
        return np.array([sum(votes[i]) * 2 > len(votes[i]) for i in table.item_id])

    table["recognised_true_copy"] = crowd(true_copy)
    table["recognised_other_copy"] = crowd(other_copy)
    pairs = table[table.planted]
    a, b = pairs.recognised_true_copy.to_numpy(), pairs.recognised_other_copy.to_numpy()
    mine = pairs[pairs.kind == "reconstruction"]
    own_a, own_b = mine.recognised_true_copy.to_numpy(), mine.recognised_other_copy.to_numpy()

    # the observational difference on the study's own verdicts (content and cues mixed)
    items = pd.read_csv(inputs.annotations / "items.csv", usecols=["item_id", "majority"])
    own = table[table.kind == "reconstruction"].merge(items, on="item_id", how="left")
    hit = (own.prediction == own.truth).to_numpy()
    seen = (own.majority == "recognised").to_numpy()
    summary = {
        "dataset": dataset,
        "observer_adversarial_gap": round(float(a.mean() - b.mean()), 6) if len(a) else None,
        "observer_adversarial_gap_ci": paired_interval(a, b, cfg, seed),
        "observer_adversarial_pairs": int(len(pairs)),
        "observer_adversarial_gap_study_images": (round(float(own_a.mean() - own_b.mean()), 6) if len(own_a) else None),
        "observer_adversarial_pairs_study_images": int(len(own_a)),
        "recognised_rate_true_copy": round(float(a.mean()), 6) if len(a) else None,
        "recognised_rate_other_copy": round(float(b.mean()), 6) if len(a) else None,
        "images_below_psnr": int(len(low)),
        "images_topped_up_with_noise": int(len(table) - len(low)),
        "planting_failed": int((~table.planted).sum()),
        "observer_observational_gap": (round(float(seen[hit].mean() - seen[~hit].mean()), 6)
                                       if hit.any() and (~hit).any() else None),
        "observational_images": int(len(own)),
        "observational_classifier_right": int(hit.sum()),
        "max_psnr": cfg.max_psnr,
        "epsilon": round(cfg.epsilon, 6),
        "simulated": True,
    }
    return summary, table[list(COLUMNS)]
