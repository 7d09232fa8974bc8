"""The report's table of checks on the annotators and on SemSim (its "controls" table), one row per dataset.

Offline the "people" are simulated, so the report shows how far they can be trusted beside
the correlations that rest on them: the observer's clean test accuracy, how the crowd judges
clean originals, reconstructions that show nothing and near copies (``crowd_*``, computed on
the study's own images in the annotate stage), and whether it reads the class cues inversion plants
(``observer_adversarial_gap``, from the observer-controls stage); and whether SemSim learnt
more than its untrained network (held-out triplet accuracy). Read from the stages' metrics
files (reports/annotate, reports/observer, reports/semsim); a missing file leaves "n/a".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from ..decimals import distinct_pair

HEADER = ["dataset", "observer clean accuracy", "crowd: originals / nothing visible / near copies (items)",
          "planted-cue gap [95% CI] (pairs)",
          "observational gap", "SemSim held-out triplet acc.: trained / untrained (epoch kept)",
          "SemSim gain over untrained [paired 95% CI]", "the same on PSNR-matched pairs"]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _num(value, fmt: str = "{:.2f}") -> str:
    return fmt.format(value) if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _gain(sem: dict, tag: str) -> str:
    """Trained minus untrained held-out accuracy with its paired 95% interval (same resampled originals)."""
    ci = sem.get(f"heldout_gain_over_random_init{tag}_ci") or [None, None]
    return (f"{_num(sem.get(f'heldout_gain_over_random_init{tag}'), '{:+.4f}')} [{_num(ci[0], '{:+.4f}')}, "
            f"{_num(ci[1], '{:+.4f}')}]")


def rows(root: Path, datasets: Sequence[str]) -> tuple[list[list[str]], list[str], int]:
    """Table rows, the datasets where trained SemSim falls below its untrained network, and how many
    datasets have both accuracies to compare."""
    out, worse, compared = [], [], 0
    for name in datasets:
        ann = _read(root / "reports" / "annotate" / f"{name}.json")
        obs = _read(root / "reports" / "observer" / f"{name}.json")
        sem = _read(root / "reports" / "semsim" / f"dataset-{name}.json")
        ci = obs.get("observer_adversarial_gap_ci") or [None, None]
        gap = (f"{_num(obs.get('observer_adversarial_gap'), '{:+.3f}')} [{_num(ci[0], '{:+.3f}')}, "
               f"{_num(ci[1], '{:+.3f}')}] ({obs.get('observer_adversarial_pairs', 'n/a')})") if obs.get("simulated") \
            else "n/a (people)" if obs else "n/a"
        trained, untrained = sem.get("heldout_triplet_accuracy"), sem.get("heldout_triplet_accuracy_random_init")
        both = isinstance(trained, (int, float)) and isinstance(untrained, (int, float))
        compared += both
        if both and trained < untrained:
            worse.append(f"{name} ({' vs '.join(distinct_pair(trained, untrained, 3, 5, signed=False))})")
        crowd = (f"{_num(ann.get('crowd_clean_original_rate'))} / {_num(ann.get('crowd_invisible_rate'))} "
                 f"({ann.get('crowd_invisible_items', 'n/a')}) / {_num(ann.get('crowd_near_copy_rate'))} "
                 f"({ann.get('crowd_near_copy_items', 'n/a')})") if ann.get("simulated") else "n/a (people)" if ann else "n/a"
        out.append([name, _num(ann.get("observer_test_accuracy")), crowd,
                    gap, _num(obs.get("observer_observational_gap"), "{:+.3f}"),
                    f"{_num(trained, '{:.3f}')} / {_num(untrained, '{:.3f}')} ({sem.get('selected_epoch', 'n/a')})",
                    _gain(sem, ""), _gain(sem, "_matched")])
    return out, worse, compared


TITLE = "Controls: the annotators, and SemSim against its untrained network"

INTRO = ("The first four columns check a simulated crowd (with people they read n/a). Observer clean accuracy: "
         "the crowd's network on the clean test split. Crowd: the "
         "majority-recognised share of the attack-subset originals shown as they are (1 for people), of the "
         "reconstructions in which nothing of the original is visible (no more like it than the attack's random "
         "start; 0 for people) and of those at 30 dB or more (1 for people). Planted-cue "
         "gap: the crowd's recognised rate on low-PSNR images that an imperceptible perturbation (L-inf 8/255) "
         "makes the attacked classifier read as the true class, minus that on the same images read as another "
         "class, judged by the same crowd (0 for people). Observational gap: the same difference on the "
         "study's own verdicts of its reconstructions under 10 dB, split by the attacked classifier's prediction; "
         "it mixes planted cues with content people see too, so it is shown, not bounded. Epoch kept: the "
         "epoch chosen on held-back originals of the training domains (0 = the untrained network). Gain: trained "
         "minus untrained accuracy; its interval resamples the held-out originals once for both networks, so an "
         "interval that spans 0 is a difference within the resampling noise.")


def verdict(worse: Sequence[str], compared: int) -> str:
    """One sentence: where trained SemSim falls below its untrained network, that it nowhere does,
    or that there is nothing to compare (no SemSim record yet)."""
    if worse:
        return ("Trained SemSim falls below its untrained network in held-out triplet accuracy on: " + ", ".join(worse)
                + " (the gain column says whether that is beyond resampling noise).")
    if not compared:
        return "No SemSim record with both held-out accuracies yet: nothing to compare."
    return "Trained SemSim matches or beats its untrained network in held-out triplet accuracy wherever both are recorded."


def markdown(root: Path, datasets: Sequence[str]) -> str:
    table, worse, compared = rows(root, datasets)
    lines = [f"## {TITLE}\n", INTRO + "\n", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in table]
    lines += ["", verdict(worse, compared)]
    return "\n".join(lines) + "\n"
