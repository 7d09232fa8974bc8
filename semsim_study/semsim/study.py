"""One SemSim split end to end: collect labelled reconstructions, train, score the held-out ones.

``run_split`` is what the DVC stages ``semsim@<dataset>``, ``semsim-attack@<attack>`` and
``semsim-backbone@<backbone>`` call; it returns the nets, the card, the score rows and the
metrics, and writes nothing (the stage writes them atomically).

With ``semsim.training.selection_fraction`` > 0 a share of the training split's originals is
held back (``selection.hold_back``), both nets train on the rest, and each keeps the weights
of its best epoch on the held-back originals (epoch 0, the untrained network, included).
"""

from __future__ import annotations

import copy

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from .. import atomic, threat
from .. import params as P
from ..errors import ConfigError
from . import items as I, metric, preprocess, selection
from .train import CETrainer, SemSimTrainConfig, TripletTrainer, ce_data, from_params, image_table, seeds
from .triplets import TripletSampler, ranking_accuracy, ranking_accuracy_interval

log = logging.getLogger(__name__)

INTERVAL_RESAMPLES = 1000  # bootstrap resamples of held-out originals for the accuracy intervals
SCORE_COLUMNS = ("item_id", "dataset", "model", "attack", "image_id", "split", "held_out", "semsim", "ce_distance",
                 "semsim_untrained")


@dataclass
class SplitResult:
    name: str
    semsim: metric.SemSim
    baseline: metric.SemSim | None
    card: dict
    rows: list[dict]
    metrics: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def split_name(split: str, held_out: str) -> str:
    return f"{split}-{held_out}"


def _string_list(params: Mapping, key: str) -> list[str]:
    value = P.get(params, key, list)
    if not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"params: '{key}' must be a non-empty list of names, got {value!r}")
    return value


def _upstream_flags(root: Path, datasets: Sequence[str]) -> dict:
    """Per dataset: whether it is an offline stand-in and for which paper dataset (prepare's meta.json)."""
    out = {}
    for ds in datasets:
        meta = atomic.read_json(root / "data" / "prepared" / ds / "meta.json", "missing; run the prepare stage")
        source = meta.get("source", {}) if isinstance(meta.get("source"), dict) else {}
        out[ds] = {"offline_stand_in": bool(meta.get("offline_stand_in", source.get("offline_stand_in", False))),
                   "stand_in_for": source.get("stand_in_for")}
    return out


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def run_split(params: Mapping, split: str, held_out: str, root: str | Path = ".",
              on_epoch: Callable[[int, dict], None] | None = None) -> SplitResult:
    """Train SemSim and the CE baseline without the held-out value; score every held-out item."""
    start = time.perf_counter()
    root = Path(root)
    cfg: SemSimTrainConfig = from_params(params)
    seed = P.get(params, "seed", int)
    datasets = _string_list(params, "datasets")
    attacks = _string_list(params, "attacks")
    all_items = I.collect(root, datasets, attacks)
    train_items, test_items = I.split(all_items, split, held_out)
    name = split_name(split, held_out)
    # the selection set: held-back originals of the training split only (never the held-out value)
    fit_items, selection_items = selection.hold_back(train_items, cfg.selection_fraction, seed)
    sampler = TripletSampler(fit_items)
    stats = sampler.stats
    log.info("%s: %d training reconstructions (%d recognised, %d unrecognised, %d ties) of %d originals, "
             "%d anchors (%d with fallback negatives), %d triplets per epoch; %d held-out reconstructions; "
             "%d held back for model selection", name, len(fit_items), stats.positives, stats.negatives, stats.ties, stats.originals, stats.anchors,
             stats.fallback_anchors, stats.triplets_per_epoch, len(test_items), len(selection_items))

    # training images: one original per original key (the first item's file), every reconstruction
    first: dict[tuple[str, str], I.Item] = {}
    for it in fit_items:
        first.setdefault(it.original_key, it)
    cache: dict = {}
    originals = image_table([first[k].original for k in sampler.originals], cfg.input_size, cache)
    reconstructions = image_table([it.reconstruction for it in fit_items], cfg.input_size, cache)
    mean, std = cfg.mean_std
    selection_originals = image_table([it.original for it in selection_items], cfg.input_size, cache)
    selection_reconstructions = image_table([it.reconstruction for it in selection_items], cfg.input_size, cache)
    # the held-out images are scored after training; reading them now fails a corrupt file in seconds
    image_table([p for it in test_items for p in (it.original, it.reconstruction)], cfg.input_size, cache)

    torch_seed, rng = seeds(seed, split, held_out, "semsim")
    trainers = {"semsim": TripletTrainer(cfg, sampler, originals, reconstructions, torch_seed, rng)}
    # the control: the very same network before any training (what the triplets add over it)
    untrained_net = copy.deepcopy(trainers["semsim"].net)
    ce = None
    if cfg.baseline:
        ce = ce_data(sampler, originals, reconstructions)
        torch_seed, rng = seeds(seed, split, held_out, "ce_baseline")
        trainers["ce_baseline"] = CETrainer(cfg, ce, torch_seed, rng)
    selectors = {kind: selection.Selector(selection_items, selection_originals, selection_reconstructions, mean, std,
                                          cfg.device) for kind in trainers}
    for kind, trainer in trainers.items():
        selectors[kind].observe(0, trainer.net)  # epoch 0: the untrained network may be the best
    history = []
    for epoch in range(cfg.epochs):
        m = {}
        for kind, trainer in trainers.items():
            m.update(trainer.run_epoch(epoch))
            acc = selectors[kind].observe(epoch + 1, trainer.net)
            if acc is not None:
                m["selection_triplet_accuracy" + ("_ce" if kind == "ce_baseline" else "")] = acc
        history.append(m)
        log.info("%s epoch %d/%d: %s", name, epoch + 1, cfg.epochs, ", ".join(f"{k} {v:.4g}" for k, v in m.items()))
        if on_epoch:
            on_epoch(epoch, m)
    selected = {kind: selectors[kind].restore(trainer.net, cfg.epochs) for kind, trainer in trainers.items()}
    if selectors["semsim"].active:
        log.info("%s: selection triplet accuracy by epoch (0 = untrained) %s; kept epoch %d (CE baseline: %s)", name,
                 ", ".join(f"{a:.4f}" for a in selectors["semsim"].by_epoch), selected["semsim"],
                 selected.get("ce_baseline"))
    elif selection_items:
        log.warning("%s: the %d held-back reconstructions give no (recognised, unrecognised) pair; keeping the "
                    "last epoch", name, len(selection_items))

    upstream = _upstream_flags(root, sorted(set(datasets)))
    train_ds = sorted({it.dataset for it in train_items})
    sources = sorted({it.label.source for it in train_items if it.label.source})
    norm = preprocess.normalization(cfg.normalization)
    card = {
        "format": metric.CARD_FORMAT,
        "format_version": metric.CARD_VERSION,
        "backbone": cfg.backbone,
        "input_size": cfg.input_size,
        "embedding_dim": trainers["semsim"].net.out_dim,
        "embedding_normalized": True,
        "distance": "l2 of L2-normalised embeddings, in [0, 2]; larger = less leakage",
        "normalization": norm,
        "resize": "bilinear, antialiased, to input_size x input_size",
        "alpha": cfg.alpha,
        "loss": "triplet margin loss (p=2) on L2-normalised embeddings",
        "weights": {k: metric.WEIGHTS[k] for k in trainers},
        "split": split,
        "held_out": held_out,
        "training_datasets": train_ds,
        "training_attacks": sorted({threat.method(it.attack) for it in train_items}),
        "training_backbones": sorted({it.backbone for it in train_items}),
        "training_items": len(fit_items),
        "selection": {"fraction": cfg.selection_fraction, "items": len(selection_items),
                      "originals": len({it.original_key for it in selection_items}),
                      "pairs": selectors["semsim"].pairs, "selected_epoch": selected["semsim"],
                      "selected_epoch_ce": selected.get("ce_baseline"),
                      "rule": "best triplet accuracy on held-back originals of the training domains, "
                              "epoch 0 = untrained, ties -> earliest; the last epoch without selection"},
        "triplets": {"originals": stats.originals, "anchors": stats.anchors, "positives": stats.positives,
                     "negatives": stats.negatives, "ties_left_out": stats.ties,
                     "fallback_negative_anchors": stats.fallback_anchors, "per_epoch": stats.triplets_per_epoch},
        "ce_baseline": ({"classes": ce.classes, "images": int(len(ce.labels)),
                         "scheme": "official ImageFolder: <id> = original + recognised, -<id> = unrecognised"}
                        if ce else None),
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "optimizer": cfg.optimizer_card(),
        "augmentation": {"crop_flip": "random crop (padding 4) + horizontal flip" if cfg.crop_flip else "none",
                         "colour": cfg.colour.card(), "colour_description": cfg.colour.describe()},
        "seed": seed,
        "device": cfg.device,
        "parameters": sum(p.numel() for p in trainers["semsim"].net.parameters()),
        "annotation_sources": sources,
        "simulated_annotations": "simulated" in sources,
        "offline_stand_in": any(upstream[d]["offline_stand_in"] for d in train_ds),
        "datasets": {d: upstream[d] for d in train_ds},
        "final_triplet_loss": _round(history[-1]["triplet_loss"]),
        "final_ce_loss": _round(history[-1].get("ce_loss")),
        "torch_version": torch.__version__.split("+")[0],
    }
    semsim = metric.SemSim(trainers["semsim"].net, card, device=cfg.device)
    baseline = metric.SemSim(trainers["ce_baseline"].net, card, device=cfg.device) if ce else None
    untrained = metric.SemSim(untrained_net, card, device=cfg.device)

    rows, scores, ce_scores, raw_scores = _score(semsim, baseline, untrained, test_items, split, held_out,
                                                 cfg.input_size)
    acc, pairs = ranking_accuracy(test_items, scores)
    acc_ce, _ = ranking_accuracy(test_items, ce_scores) if ce else (float("nan"), 0)
    acc_raw, _ = ranking_accuracy(test_items, raw_scores)
    intervals = {}  # 95% bootstrap over held-out originals, each from the same seeded draws
    for key, values in (("", scores), ("_ce", ce_scores if ce else None), ("_random_init", raw_scores)):
        ci = ranking_accuracy_interval(test_items, values, seeds(seed, split, held_out, "interval")[1],
                                       INTERVAL_RESAMPLES) if values is not None else None
        intervals[f"heldout_triplet_accuracy{key}_ci"] = [_round(v) for v in ci] if ci else None
    rec = [s for it, s in zip(test_items, scores) if it.annotated and it.label.majority == "recognised"]
    unrec = [s for it, s in zip(test_items, scores) if it.annotated and it.label.majority == "unrecognised"]
    metrics = {
        "split": split,
        "held_out": held_out,
        "final_triplet_loss": _round(history[-1]["triplet_loss"]),
        "final_triplet_accuracy": _round(history[-1]["triplet_accuracy"]),
        "final_ce_loss": _round(history[-1].get("ce_loss")),
        "train_items": len(fit_items),
        "selection_items": len(selection_items),
        "selection_pairs": selectors["semsim"].pairs,
        "selection_triplet_accuracy_by_epoch": [_round(a) for a in selectors["semsim"].by_epoch],
        "selected_epoch": selected["semsim"],
        "selection_triplet_accuracy_ce_by_epoch": ([_round(a) for a in selectors["ce_baseline"].by_epoch]
                                                   if ce else None),
        "selected_epoch_ce": selected.get("ce_baseline"),
        "heldout_items": len(test_items),
        "heldout_annotated": sum(1 for it in test_items if it.annotated),
        "heldout_pairs": pairs,
        "heldout_triplet_accuracy": _round(acc),
        "heldout_triplet_accuracy_ce": _round(acc_ce),
        "heldout_triplet_accuracy_random_init": _round(acc_raw),
        **intervals,
        "trained_matches_random_init": bool(np.isfinite(acc) and np.isfinite(acc_raw) and acc >= acc_raw),
        "heldout_mean_semsim_recognised": _round(float(np.mean(rec))) if rec else None,
        "heldout_mean_semsim_unrecognised": _round(float(np.mean(unrec))) if unrec else None,
        "simulated_annotations": card["simulated_annotations"],
        "offline_stand_in": card["offline_stand_in"],
    }
    return SplitResult(name, semsim, baseline, card, rows, metrics, history, time.perf_counter() - start)


def _load(paths: Sequence[Path], size: int) -> torch.Tensor:
    """Image files -> float [0, 1] NCHW at ``size``, each resized on its own (as SemSim.score does)."""
    return torch.cat([preprocess.resize(preprocess.uint8_to_float(preprocess.load_rgb(p)[None]), size) for p in paths])


def _score(semsim: metric.SemSim, baseline: metric.SemSim | None, untrained: metric.SemSim, test: Sequence[I.Item],
           split: str, held_out: str, size: int,
           chunk: int = 512) -> tuple[list[dict], list[float], list[float], list[float]]:
    """Score held-out pairs from their own files (each item's original and reconstruction), in chunks,
    with the trained SemSim, the CE baseline and the untrained network."""
    scores: list[float] = []
    ce_scores: list[float] = []
    raw_scores: list[float] = []
    for i in range(0, len(test), chunk):
        part = test[i : i + chunk]
        x = _load([it.original for it in part], size)
        y = _load([it.reconstruction for it in part], size)
        scores += semsim.score(x, y).tolist()
        raw_scores += untrained.score(x, y).tolist()
        if baseline is not None:
            ce_scores += baseline.score(x, y).tolist()
    if baseline is None:
        ce_scores = [float("nan")] * len(test)
    rows = []
    for n, it in enumerate(test):
        rows.append({"item_id": it.item_id, "dataset": it.dataset, "model": it.model, "attack": it.attack,
                     "image_id": it.image_id, "split": split, "held_out": held_out,
                     "semsim": f"{scores[n]:.6f}",
                     "ce_distance": f"{ce_scores[n]:.6f}" if np.isfinite(ce_scores[n]) else "",
                     "semsim_untrained": f"{raw_scores[n]:.6f}"})
    return rows, scores, ce_scores, raw_scores
