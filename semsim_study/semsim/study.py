"""One SemSim split end to end: collect labelled reconstructions, train, score the held-out ones.

``run_split`` is what the DVC stages run once per split (``runs.py``): ``semsim`` trains SemSim
proper; ``ce-baseline`` trains the paper's cross-entropy baseline on the very same items. Two
stages, because the baseline does not depend on ``alpha``: an alpha experiment reruns only the
triplet stage.
It returns the net, the card, the score rows and the metrics, and writes nothing (the stage
writes them atomically).

With ``semsim.training.selection_fraction`` > 0 a share of the training split's originals is
held back (``selection.hold_back``), the net trains on the rest, and keeps the weights of its
best epoch on the held-back originals' PSNR-matched pairs (epoch 0, the untrained network,
included).

Held-out triplet accuracy is reported on all (recognised, unrecognised) pairs and on the
PSNR-matched ones (``matched.py``: PSNRs within ``semsim.matched_db`` dB), for the model, for
SemSim's untrained network, and (in SemSim's record) for PSNR, SSIM and LPIPS used as scorers,
read from the metrics stage's tables.
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
from . import items as I, matched, metric, preprocess, selection
from .train import (BATCH_NORM, GEOMETRIES, TRAINABLE, CETrainer, SemSimTrainConfig, TripletTrainer, ce_data,
                    from_params, image_table, pixels, seeds)
from .triplets import TripletSampler, ranking_accuracy, ranking_accuracy_interval, ranking_gain_interval

log = logging.getLogger(__name__)

INTERVAL_RESAMPLES = 1000  # bootstrap resamples of held-out originals for the accuracy intervals


MODELS = ("semsim", "ce_baseline")  # what a split stage trains: SemSim proper or the paper's CE baseline
# per-image score columns each model's scores.csv adds (the untrained control rides with SemSim)
SCORES_OF = {"semsim": ("semsim", "semsim_untrained"), "ce_baseline": ("ce_distance",)}
ID_COLUMNS = ("item_id", "dataset", "model", "attack", "image_id", "split", "held_out")


@dataclass
class SplitResult:
    name: str
    model: str  # "semsim" or "ce_baseline"
    net: metric.SemSim
    card: dict
    rows: list[dict]
    metrics: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def columns(self) -> tuple[str, ...]:
        return ID_COLUMNS + SCORES_OF[self.model]


def split_name(split: str, held_out: str) -> str:
    return f"{split}-{held_out}"


def string_list(params: Mapping, key: str) -> list[str]:
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


def decode_images(params: Mapping, root: str | Path = ".", limit_bytes: int = 256 * 2**20) -> dict:
    """Every original and reconstruction the splits read, decoded once (path -> uint8 HxWx3), for
    the stage to hand to each split: eleven splits per model otherwise decode the same PNGs eleven
    times (about 1.7 s of a 16 px split's 8). Empty when they would take more than ``limit_bytes``
    (the paper profile's full-size photos): then each split reads its own files, as before."""
    items = I.collect(Path(root), string_list(params, "datasets"), string_list(params, "attacks"))
    out: dict = {}
    size = 0
    for path in dict.fromkeys(p for it in items for p in (it.original, it.reconstruction)):
        out[path] = preprocess.load_rgb(path)
        size += out[path].nbytes
        if size > limit_bytes:
            return {}
    return out


def run_split(params: Mapping, split: str, held_out: str, root: str | Path = ".",
              on_epoch: Callable[[int, dict], None] | None = None, model: str = "semsim",
              decoded: Mapping | None = None) -> SplitResult:
    """Train one model (``semsim`` or the ``ce_baseline``) without the held-out value; score every
    held-out item. SemSim also scores them with its untrained network, the control for what the
    triplets add. The CE baseline ignores ``alpha``, so its stage does not depend on it.
    ``decoded``: image files already read (``decode_images``); the bytes are the same without."""
    if model not in MODELS:
        raise ConfigError(f"unknown SemSim model {model!r}; valid: {', '.join(MODELS)}")
    for image in (decoded or {}).values():
        # read-only, as load_rgb's are (a pickled copy arrives writable): preprocess.uint8_to_float
        # then copies it as it does a file's pixels, and the scores keep their bytes
        image.setflags(write=False)
    start = time.perf_counter()
    root = Path(root)
    cfg: SemSimTrainConfig = from_params(params)
    seed = P.get(params, "seed", int)
    datasets = string_list(params, "datasets")
    attacks = string_list(params, "attacks")
    all_items = I.collect(root, datasets, attacks)
    train_items, test_items = I.split(all_items, split, held_out)
    name = split_name(split, held_out)
    # the selection set: held-back originals of the training split only (never the held-out value)
    fit_items, selection_items = selection.hold_back(train_items, cfg.selection_fraction, seed)
    # PSNR (for matched pairs), SSIM and LPIPS of the selection and held-out reconstructions
    pixel_table = matched.read_pixel_metrics(root, datasets)
    selection_pixel = matched.pixel_values(selection_items, pixel_table)
    test_pixel = matched.pixel_values(test_items, pixel_table)
    sampler = TripletSampler(fit_items)
    stats = sampler.stats
    log.info("%s (%s): %d training reconstructions (%d recognised, %d unrecognised, %d ties) of %d originals, "
             "%d anchors (%d with fallback negatives), %d triplets per epoch; %d held-out reconstructions; "
             "%d held back for model selection", name, model, len(fit_items), stats.positives, stats.negatives,
             stats.ties, stats.originals, stats.anchors, stats.fallback_anchors, stats.triplets_per_epoch,
             len(test_items), len(selection_items))

    # training images: one original per original key (the first item's file), every reconstruction
    first: dict[tuple[str, str], I.Item] = {}
    for it in fit_items:
        first.setdefault(it.original_key, it)
    cache: dict = {}
    originals = image_table([first[k].original for k in sampler.originals], cfg.input_size, cache, decoded)
    reconstructions = image_table([it.reconstruction for it in fit_items], cfg.input_size, cache, decoded)
    mean, std = cfg.mean_std
    selection_originals = image_table([it.original for it in selection_items], cfg.input_size, cache, decoded)
    selection_reconstructions = image_table([it.reconstruction for it in selection_items], cfg.input_size, cache,
                                            decoded)
    # the held-out images are scored after training; reading them now fails a corrupt file in seconds
    image_table([p for it in test_items for p in (it.original, it.reconstruction)], cfg.input_size, cache, decoded)

    torch_seed, rng = seeds(seed, split, held_out, model)
    ce = None
    if model == "semsim":
        trainer = TripletTrainer(cfg, sampler, originals, reconstructions, torch_seed, rng)
    else:
        ce = ce_data(sampler, originals, reconstructions)
        trainer = CETrainer(cfg, ce, torch_seed, rng)
    # the control: the very same network before any training (what the triplets add over it)
    untrained_net = copy.deepcopy(trainer.net) if model == "semsim" else None
    selector = selection.Selector(selection_items, selection_originals, selection_reconstructions, mean, std,
                                  cfg.device, psnr=selection_pixel[matched.MATCH_ON], within_db=cfg.matched_db,
                                  confidence=cfg.selection_confidence, rng=seeds(seed, split, held_out, "selection")[1])
    selector.observe(0, trainer.net)  # epoch 0: the untrained network may be the best
    if selector.criterion == "all_pairs":
        log.warning("%s: the held-back originals give no pair within %g dB PSNR; selecting on all %d pairs", name,
                    cfg.matched_db, selector.pairs)
    history = []
    for epoch in range(cfg.epochs):
        m = trainer.run_epoch(epoch)
        if selector.observe(epoch + 1, trainer.net) is not None:
            m["selection_triplet_accuracy"] = selector.all_pairs_by_epoch[-1]
            if selector.criterion == "matched":
                m["selection_triplet_accuracy_matched"] = selector.by_epoch[-1]
        history.append(m)
        log.info("%s epoch %d/%d: %s", name, epoch + 1, cfg.epochs, ", ".join(f"{k} {v:.4g}" for k, v in m.items()))
        if on_epoch:
            on_epoch(epoch, m)
    selected = selector.restore(trainer.net, cfg.epochs)
    if selector.active:
        log.info("%s: selection triplet accuracy (%s) by epoch (0 = untrained) %s; kept epoch %d", name,
                 selector.criterion, ", ".join(f"{a:.4f}" for a in selector.by_epoch), selected)
        if selector.test is not None:
            t = selector.test
            log.info("%s: epoch %d gains %+.4f over the untrained network, lower %g bound %+.4f: %s", name,
                     t["best_epoch"], t["gain"], t["confidence"], t["lower_bound"],
                     "kept" if t["passed"] else "within chance, the untrained network is kept")
    elif selection_items:
        log.warning("%s: the %d held-back reconstructions give no (recognised, unrecognised) pair; keeping the "
                    "last epoch", name, len(selection_items))

    card = _card(cfg, model, split, held_out, seed, root, datasets, train_items, fit_items, selection_items,
                 selector, selected, stats, ce, trainer.net, history)
    net = metric.SemSim(trainer.net, card, device=cfg.device)
    nets = {SCORES_OF[model][0]: net}
    if untrained_net is not None:
        nets["semsim_untrained"] = metric.SemSim(untrained_net, card, device=cfg.device)
    scores = _score(nets, test_items, cfg.input_size, decoded)
    rows = [{**{"item_id": it.item_id, "dataset": it.dataset, "model": it.model, "attack": it.attack,
                "image_id": it.image_id, "split": split, "held_out": held_out},
             **{col: f"{values[n]:.6f}" for col, values in scores.items()}} for n, it in enumerate(test_items)]
    metrics = {"split": split, "held_out": held_out, "model": model, **_metrics(model, history, fit_items,
               selection_items, selector, selected, test_items, scores, split, held_out, seed, test_pixel,
               cfg.matched_db),
               "simulated_annotations": card["simulated_annotations"], "offline_stand_in": card["offline_stand_in"]}
    # the card carries the held-out results too (the weights do not depend on them)
    card["heldout_results"] = {k: v for k, v in metrics.items()
                               if k.startswith(("heldout_triplet_accuracy", "heldout_gain_over_random_init", "heldout_pairs",
                                                 "heldout_matched_pairs"))
                               or k in ("matched_db", "heldout_annotated")}
    return SplitResult(name, model, net, card, rows, metrics, history, time.perf_counter() - start)


SELECTION_RULES = {
    "matched": "best triplet accuracy on the PSNR-matched pairs of held-back originals of the training domains, "
               "epoch 0 = untrained, ties -> earliest",
    "all_pairs": "best triplet accuracy on all pairs of held-back originals of the training domains (they had no "
                 "PSNR-matched pair), epoch 0 = untrained, ties -> earliest",
    "none": "the last epoch (no model selection, or no (recognised, unrecognised) pair held back)",
    "gain_test": "with selection_confidence c > 0: the best epoch is kept only if the lower one-sided c bound of "
                 "its gain over epoch 0 (paired bootstrap over held-back originals) is above zero, else epoch 0",
}


def _card(cfg: SemSimTrainConfig, model: str, split: str, held_out: str, seed: int, root: Path, datasets: Sequence[str],
          train_items, fit_items, selection_items, selector: selection.Selector, selected: int, stats, ce, net,
          history) -> dict:
    """The machine-readable card (semsim.json): what scoring needs and what the model was trained on."""
    upstream = _upstream_flags(root, sorted(set(datasets)))
    train_ds = sorted({it.dataset for it in train_items})
    sources = sorted({it.label.source for it in train_items if it.label.source})
    card = {
        "format": metric.CARD_FORMAT,
        "format_version": metric.CARD_VERSION,
        "model": model,
        "backbone": cfg.backbone,
        "input_size": cfg.input_size,
        "embedding_dim": net.out_dim,
        "embedding_normalized": True,
        "distance": "l2 of L2-normalised embeddings, in [0, 2]; larger = less leakage",
        "normalization": preprocess.normalization(cfg.normalization),
        "standardise_input": cfg.standardise,
        "resize": "bilinear, antialiased, to input_size x input_size",
        **({"alpha": cfg.alpha, "loss": "triplet margin loss (p=2) on L2-normalised embeddings"} if model == "semsim"
           else {"loss": "cross-entropy over the annotation tree's classes (the official code's --semsim False); "
                         "the feature extractor is kept, its classifier head dropped"}),
        "weights": {model: metric.WEIGHTS[model]},
        "split": split,
        "held_out": held_out,
        "training_datasets": train_ds,
        "training_attacks": sorted({threat.method(it.attack) for it in train_items}),
        "training_backbones": sorted({it.backbone for it in train_items}),
        "training_items": len(fit_items),
        "selection": {"fraction": cfg.selection_fraction, "items": len(selection_items),
                      "originals": len({it.original_key for it in selection_items}),
                      "pairs": selector.pairs, "matched_pairs": selector.matched_pairs, "matched_db": cfg.matched_db,
                      "criterion": selector.criterion, "selected_epoch": selected,
                      "rule": SELECTION_RULES[selector.criterion]
                      + ("; " + SELECTION_RULES["gain_test"] if selector.confidence > 0 else ""),
                      # the gain test's keys only where it ran (selection_confidence > 0)
                      **({"confidence": selector.confidence, "gain_test": selector.test}
                         if selector.confidence > 0 else {})},
        "triplets": {"originals": stats.originals, "anchors": stats.anchors, "positives": stats.positives,
                     "negatives": stats.negatives, "ties_left_out": stats.ties,
                     "fallback_negative_anchors": stats.fallback_anchors, "per_epoch": stats.triplets_per_epoch},
        "ce_baseline": ({"classes": ce.classes, "images": int(len(ce.labels)),
                         "scheme": "official ImageFolder: <id> = original + recognised, -<id> = unrecognised"}
                        if ce else None),
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "optimizer": cfg.optimizer_card(),
        "batch_norm": {"mode": cfg.batch_norm, "description": BATCH_NORM[cfg.batch_norm]},
        "trainable": {"mode": cfg.trainable, "description": TRAINABLE[cfg.trainable]},
        "augmentation": {"geometry": cfg.geometry, "geometry_description": GEOMETRIES[cfg.geometry],
                         "colour": cfg.colour.card(), "colour_description": cfg.colour.describe()},
        "seed": seed,
        "device": cfg.device,
        "parameters": sum(p.numel() for p in net.parameters()),
        "annotation_sources": sources,
        "simulated_annotations": "simulated" in sources,
        "offline_stand_in": any(upstream[d]["offline_stand_in"] for d in train_ds),
        "datasets": {d: upstream[d] for d in train_ds},
        "final_loss": _round(history[-1]["triplet_loss" if model == "semsim" else "ce_loss"]),
        "torch_version": torch.__version__.split("+")[0],
    }
    return card


def _metrics(model: str, history: list[dict], fit_items, selection_items, selector: selection.Selector,
             selected: int, test_items: Sequence[I.Item], scores: Mapping[str, list[float]], split: str,
             held_out: str, seed: int, pixel: Mapping[str, list[float]], matched_db: float) -> dict:
    """The stage's record: training, selection and held-out triplet accuracy with 95% intervals,
    on all pairs and on the PSNR-matched pairs (``_matched``).

    SemSim's keys are plain (``heldout_triplet_accuracy``, ``..._random_init`` for its untrained
    network); the CE baseline's carry ``_ce``, so the two records never collide in a table.
    SemSim's record also scores the held-out pairs with PSNR, SSIM and LPIPS (``_psnr``, ...)."""
    suffix = "" if model == "semsim" else "_ce"
    loss = "triplet_loss" if model == "semsim" else "ce_loss"
    matched_by_epoch = selector.by_epoch if selector.criterion == "matched" else [None] * len(selector.by_epoch)
    out = {f"final_{loss}": _round(history[-1][loss]),
           ("final_triplet_accuracy" if model == "semsim" else "final_ce_accuracy"):
               _round(history[-1]["triplet_accuracy" if model == "semsim" else "ce_accuracy"]),
           "train_items": len(fit_items), "selection_items": len(selection_items), "selection_pairs": selector.pairs,
           "selection_matched_pairs": selector.matched_pairs, "selection_criterion": selector.criterion,
           f"selection_triplet_accuracy{suffix}_by_epoch": [_round(a) for a in selector.all_pairs_by_epoch],
           f"selection_triplet_accuracy{suffix}_matched_by_epoch": [_round(a) for a in matched_by_epoch],
           f"selected_epoch{suffix}": selected, "matched_db": matched_db, "heldout_items": len(test_items),
           "heldout_annotated": sum(1 for it in test_items if it.annotated)}
    if selector.confidence > 0:
        out["selection_gain_test"] = selector.test
    psnr = pixel[matched.MATCH_ON]
    scorers = {f"heldout_triplet_accuracy{KEYS[col]}": values for col, values in scores.items()}
    if model == "semsim":
        scorers |= {f"heldout_triplet_accuracy_{m}": matched.as_scores(m, pixel[m]) for m in matched.SCORERS}
    out["heldout_pairs"] = ranking_accuracy(test_items, [0.0] * len(test_items))[1]
    out["heldout_matched_pairs"] = ranking_accuracy(test_items, [0.0] * len(test_items), psnr, matched_db)[1]
    for key, values in scorers.items():
        for tag, within in (("", {}), ("_matched", {"psnr": psnr, "within_db": matched_db})):
            acc, _ = ranking_accuracy(test_items, values, **within)
            out[f"{key}{tag}"] = _round(acc)
            # 95% bootstrap over held-out originals, each score from the same seeded draws
            ci = ranking_accuracy_interval(test_items, values, seeds(seed, split, held_out, "interval")[1],
                                           INTERVAL_RESAMPLES, **within)
            out[f"{key}{tag}_ci"] = [_round(v) for v in ci] if ci else None
    if model == "semsim":
        acc, acc_raw = out["heldout_triplet_accuracy"], out["heldout_triplet_accuracy_random_init"]
        out["trained_matches_random_init"] = bool(acc is not None and acc_raw is not None and acc >= acc_raw)
        acc, acc_raw = out["heldout_triplet_accuracy_matched"], out["heldout_triplet_accuracy_random_init_matched"]
        # None: no matched pair to compare on
        out["trained_matches_random_init_matched"] = None if acc is None or acc_raw is None else bool(acc >= acc_raw)
        # what training changed, with a paired interval: the same resampled originals for both nets
        for tag, within in (("", {}), ("_matched", {"psnr": psnr, "within_db": matched_db})):
            acc, acc_raw = out[f"heldout_triplet_accuracy{tag}"], out[f"heldout_triplet_accuracy_random_init{tag}"]
            out[f"heldout_gain_over_random_init{tag}"] = (None if acc is None or acc_raw is None
                                                          else _round(acc - acc_raw))
            ci = ranking_gain_interval(test_items, scores["semsim"], scores["semsim_untrained"],
                                       seeds(seed, split, held_out, "interval")[1], INTERVAL_RESAMPLES, **within)
            out[f"heldout_gain_over_random_init{tag}_ci"] = [_round(v) for v in ci] if ci else None
        majority = {v: [s for it, s in zip(test_items, scores["semsim"]) if it.annotated and it.label.majority == v]
                    for v in ("recognised", "unrecognised")}
        for v, found in majority.items():
            out[f"heldout_mean_semsim_{v}"] = _round(float(np.mean(found))) if found else None
    return out


KEYS = {"semsim": "", "semsim_untrained": "_random_init", "ce_distance": "_ce"}  # score column -> key suffix


# the few numbers of a split's record its stage logs when it finishes (all of it: reports/<model>/<name>.json)
HEADLINE = {"semsim": ("heldout_triplet_accuracy", "heldout_triplet_accuracy_random_init",
                       "heldout_triplet_accuracy_matched", "heldout_triplet_accuracy_random_init_matched",
                       "selected_epoch"),
            "ce_baseline": ("heldout_triplet_accuracy_ce", "selected_epoch_ce")}


def _load(paths: Sequence[Path], size: int, decoded: Mapping | None = None) -> torch.Tensor:
    """Image files -> float [0, 1] NCHW at ``size``, each resized on its own (as SemSim.score does)."""
    return torch.cat([preprocess.resize(preprocess.uint8_to_float(pixels(p, decoded)[None]), size) for p in paths])


def _score(nets: Mapping[str, metric.SemSim], test: Sequence[I.Item], size: int, decoded: Mapping | None = None,
           chunk: int = 512) -> dict[str, list[float]]:
    """Score held-out pairs from their own files (each item's original and reconstruction), in
    chunks, with every net: column name -> one distance per item."""
    scores: dict[str, list[float]] = {col: [] for col in nets}
    for i in range(0, len(test), chunk):
        part = test[i : i + chunk]
        x = _load([it.original for it in part], size, decoded)
        y = _load([it.reconstruction for it in part], size, decoded)
        for col, net in nets.items():
            scores[col] += net.score(x, y).tolist()
    return scores
