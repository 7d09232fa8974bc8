"""MODEL_CARD.md: a trained model described for a person deciding whether to trust it.

``semsim.json`` is the machine-readable card that loading validates; this is its companion in
prose, written by the SemSim stage from the same run's numbers (nothing here is typed by hand),
so it cannot drift from the weights beside it. Both models the stage trains get one: SemSim
(models/semsim/<name>/) and the paper's cross-entropy baseline (models/ce_baseline/<name>/),
whose folders load and score the same way, so a reader of either needs the same facts.
"""

from __future__ import annotations

from typing import Mapping

SPLIT_WORDS = {"dataset": "dataset", "attack": "attack", "backbone": "attacked backbone"}


def _acc(metrics: Mapping, key: str) -> str:
    value, ci = metrics.get(key), metrics.get(f"{key}_ci")
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _gain(metrics: Mapping, tag: str) -> str:
    """Trained minus untrained accuracy and its paired interval (same resampled originals for both),
    in four decimals: the gains are often a few pairs in thousands."""
    value, ci = metrics.get(f"heldout_gain_over_random_init{tag}"), metrics.get(f"heldout_gain_over_random_init{tag}_ci")
    if value is None:
        return "n/a"
    return f"{value:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "")


def _description(card: Mapping) -> list[str]:
    """What the model is and how its distance reads, per model kind."""
    net = f"`{card['backbone']}` ({card.get('parameters', '?')} parameters)"
    if card.get("model") == "ce_baseline":
        ce = card.get("ce_baseline") or {}
        return ["The cross-entropy baseline of SemSim (Sun et al., NeurIPS 2023; the official code's",
                f"`--semsim False`): the embedding network {net} trained as a classifier",
                f"with cross-entropy over the annotation tree's {ce.get('classes', '?')} classes (`<id>` = an original",
                "and the reconstructions annotators recognised, `-<id>` = the ones they did not), its classifier",
                "head then dropped. It is scored exactly like SemSim, as the control for what the triplet loss",
                f"adds: the L2 distance of L2-normalised {card['embedding_dim']}-d embeddings of the original and the",
                "reconstruction, in [0, 2]; larger means the reconstruction reveals less of the original."]
    return ["A learned privacy metric for gradient-inversion reconstructions (Sun et al., NeurIPS 2023):",
            f"SemSim(x, x^) is the L2 distance of L2-normalised {card['embedding_dim']}-d embeddings of the",
            "original and the reconstruction, in [0, 2]; larger means the reconstruction reveals less of",
            f"the original. Embedding network: {net},",
            f"trained with a triplet loss (margin alpha = {card['alpha']}) on annotators' verdicts of which",
            "reconstructions they recognised."]


def render(card: Mapping, metrics: Mapping) -> str:
    """The Markdown card of one trained model (``card``: semsim.json; ``metrics``: the stage's
    reports/<model>/<name>.json, held-out accuracies with their intervals). SemSim's record also
    holds the untrained network's and PSNR/SSIM/LPIPS's accuracies, so its table has those rows;
    the CE baseline's table has its own row and points to SemSim's card for the rest."""
    split, held_out = card["split"], card["held_out"]
    name = f"{split}-{held_out}"
    ce_model = card.get("model") == "ce_baseline"
    folder = f"models/{'ce_baseline' if ce_model else 'semsim'}/{name}"
    datasets = card.get("datasets") or {}
    stand_ins = {d: v.get("stand_in_for") for d, v in datasets.items() if v.get("offline_stand_in")}
    sources = ", ".join(card.get("annotation_sources") or []) or "unknown"
    sel = card["selection"]
    rows = ((("this CE baseline", "heldout_triplet_accuracy_ce"),) if ce_model else (
        ("this SemSim", "heldout_triplet_accuracy"),
        ("the same network untrained (control)", "heldout_triplet_accuracy_random_init"),
        ("PSNR (higher = closer)", "heldout_triplet_accuracy_psnr"),
        ("SSIM (higher = closer)", "heldout_triplet_accuracy_ssim"),
        ("LPIPS (lower = closer)", "heldout_triplet_accuracy_lpips")))
    lines = [
        f"# {'CE-baseline' if ce_model else 'SemSim'} model `{name}`",
        "",
        *_description(card),
        "",
        "## Trained on",
        "",
        f"- Split: leave one {SPLIT_WORDS.get(split, split)} out; held out: **{held_out}** (never seen in training).",
        f"- Datasets: {', '.join(card.get('training_datasets') or [])}"
        + (f" (offline stand-ins for {', '.join(f'{d} -> {s}' for d, s in sorted(stand_ins.items()))})"
           if stand_ins else "") + ".",
        f"- Attacks: {', '.join(card.get('training_attacks') or [])}; attacked backbones: "
        f"{', '.join(card.get('training_backbones') or [])}.",
        f"- {card.get('training_items', '?')} labelled reconstructions; annotation source: **{sources}**"
        + (" (simulated annotators, not people)" if card.get("simulated_annotations") else "") + ".",
        f"- Recipe: {'cross-entropy, ' if ce_model else ''}{card['epochs']} epochs, batch {card['batch_size']}, "
        f"{card['optimizer'].get('name', 'SGD')} "
        f"lr {card['optimizer'].get('lr')}; geometric augmentation: "
        f"{card['augmentation'].get('geometry_description', 'none')}"
        f"; colour: {card['augmentation'].get('colour_description') or 'none'}; trained: "
        f"{(card.get('trainable') or {}).get('description', 'every weight')}.",
        f"- Model selection: kept epoch {sel['selected_epoch']} (0 = untrained) by {sel['rule']}"
        + (f" ({sel.get('matched_pairs', 0)} matched pairs within {sel.get('matched_db')} dB among "
           f"{sel.get('pairs', 0)} pairs of {sel.get('originals', 0)} held-back originals)" if sel.get("pairs") else "")
        + "." + _gain_test_words(sel.get("gain_test")),
        "",
        "## Held-out results",
        "",
        f"Triplet accuracy on the held-out {SPLIT_WORDS.get(split, split)}: over pairs of a recognised and an",
        "unrecognised reconstruction of the same original, how often a score ranks the recognised one",
        "closer (equal scores count one half; 0.5 is chance), with 95% bootstrap intervals over held-out",
        f"originals. *All pairs*: {metrics.get('heldout_pairs', 0)} pairs from {metrics.get('heldout_annotated', 0)} "
        f"annotated reconstructions. *PSNR-matched*: the {metrics.get('heldout_matched_pairs', 0)} pairs whose two",
        f"PSNRs (vs the original) differ by at most {metrics.get('matched_db', '?')} dB, where pixel distance cannot",
        "decide and a metric must see more than it" + ("." if ce_model else
                                                       "; PSNR, SSIM and LPIPS come from the metrics stage."),
        "",
        "| score | all pairs [95% CI] | PSNR-matched pairs [95% CI] |",
        "|---|---|---|",
        *(f"| {label} | {_acc(metrics, key)} | {_acc(metrics, key + '_matched')} |" for label, key in rows),
        *([] if ce_model else [f"| gain over the untrained network (paired interval) | {_gain(metrics, '')} | "
                               f"{_gain(metrics, '_matched')} |"]),
        "",
        *(["SemSim trained on the same items by the `semsim` stage, its untrained network, PSNR, SSIM and",
           f"LPIPS on the same pairs: models/semsim/{name}/MODEL_CARD.md (reports/semsim/{name}.json and the",
           "report)."] if ce_model else
          ["The paper's cross-entropy baseline, trained on the same items by the `ce-baseline` stage, is in",
           f"models/ce_baseline/{name}/ (its held-out accuracy, `heldout_triplet_accuracy_ce` and",
           f"`heldout_triplet_accuracy_ce_matched`: reports/ce_baseline/{name}.json and the report)."]),
        "",
    ]
    beaten = [what for what, key in (("on all pairs", "trained_matches_random_init"),
                                     ("on PSNR-matched pairs", "trained_matches_random_init_matched"))
              if metrics.get(key) is False]
    if beaten:
        lines += [f"**Training did not beat the untrained network on this split ({' or '.join(beaten)})**: prefer",
                  "the control, or treat this model's scores with care.", ""]
    lines += [
        "## Intended use",
        "",
        "Ranking reconstructions of the same kind of images by how much they reveal, next to (not",
        "instead of) PSNR, SSIM, LPIPS and people's judgement; comparing attacks or defences on data",
        "like the training data.",
        "",
        "## Limitations",
        "",
        f"- It sees every image at {card['input_size']}x{card['input_size']} px (inputs are resized, "
        f"{card.get('resize', 'bilinear')}); detail finer than that is invisible to it.",
        f"- Inputs are normalised with fixed `{card['normalization'].get('name', 'custom')}` statistics, "
        "not the scored data's" + ("; then each image to zero mean and unit spread (brightness and contrast "
                                   "do not count)." if card.get("standardise_input") else "."),
    ]
    if card.get("simulated_annotations"):
        lines.append("- Its labels came from simulated annotators (an offline stand-in for people): it has "
                     "learnt what that simulation recognises, which is not evidence about human perception.")
    if stand_ins:
        lines.append("- It was trained on offline stand-in datasets, not the paper's: do not expect it to "
                     "transfer to CIFAR-100, CelebA or the other paper datasets.")
    lines += [
        "- Distances are comparable between reconstructions of similar images; an absolute threshold "
        "for \"private\" is not calibrated.",
        "",
        "## How to load",
        "",
        "```python",
        "from semsim_study import SemSim",
        f'metric = SemSim.load("{folder}"{", baseline=True" if ce_model else ""})   # this folder',
        "d = metric(x, y)                   # (N, 3, H, W) in [-1, 1], as lpips -> (N,) distances, differentiable",
        "d = metric(x, y, normalize=True)   # the same for [0, 1] inputs",
        "d = metric.score(original_files, reconstruction_files)   # files, batched",
        "```",
        "",
        f"Or from the command line: `semsim score --model {folder}{' --baseline' if ce_model else ''} "
        "--originals DIR --reconstructions DIR --out scores.csv`"
        + (" (its column: `ce_distance`)." if ce_model else "."),
        "",
    ]
    return "\n".join(lines)


def _gain_test_words(test: dict | None) -> str:
    if not test:
        return ""
    verdict = "kept" if test["passed"] else "within chance, so the untrained network was kept"
    return (f" Epoch {test['best_epoch']} gained {test['gain']:+.4f} over the untrained network on them, lower "
            f"{test['confidence']:g} bound {test['lower_bound']:+.4f}: {verdict}.")
