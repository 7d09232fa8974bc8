"""Does the simulated crowd judge as people would? Checks on the study's own images.

Offline, the crowd decides which metric wins, so it has to fail where people fail and succeed
where people succeed. These checks are computed in the annotate stage on the images the crowd
judged and are written to ``reports/annotate/<dataset>.json``:

- ``crowd_clean_original_rate``: the crowd shown the attack-subset originals themselves (the
  same candidates and people; protocol B compares the original with itself). People recognise
  a clean original every time, so this should be near 1.
- ``crowd_invisible_rate``: reconstructions in which nothing of the original is visible.
  "Nothing visible" is defined from the attack's own starting point, not from the crowd: the
  visibility of a reconstruction is the largest absolute correlation between a channel of it
  (luminance or colour-opponent) and the original's, over shifts of up to ``REACH`` of the
  image (inversion often returns the object moved, half out of the frame, in negative or in
  colour only, and people still see it); the attacks start from Gaussian noise in the
  classifiers' normalised input space, so the same score of such random starts against each
  original gives a null distribution, and a reconstruction is invisible when its score is
  within that null (at most its ``NULL_QUANTILE`` quantile). A reconstruction whose colours
  are closer to the original's than random starts get (``colour_distance``: each channel's
  pixel values as a distribution, below the 1 - ``NULL_QUANTILE`` quantile of the starts'
  distances to that original) shows something too, the original's palette: at 16 px a dark,
  speckled field or a red disc is half of what a deep-field or retina photo shows. Invisible
  is neither. Early DLG iterates and diverged runs, saturated colour noise with whatever class
  cues inversion planted, land there. People recognise none of them, so the rate should be
  near 0.
- ``crowd_near_copy_rate``: reconstructions at ``NEAR_COPY_DB`` dB or more: near copies,
  which people recognise.
- ``crowd_invariance_rate``: the originals under global brightness, contrast and colour changes
  and 1-2 pixel shifts (the lowest rate over those changes); people do not care.

Each rate is the share of items the crowd's majority recognises. The checks never feed back
into the verdicts; a crowd that fails them is a crowd to fix, not a number to report quietly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping, Sequence

import numpy as np

from . import simulated
from .tasks import Task

NEAR_COPY_DB = 30.0
NULL_QUANTILE = 0.99
NULL_DRAWS = 60  # random starts per original (1,200 for 20 originals: a stable 99th percentile)
REACH = 0.45  # shifts up to this share of the image (7 px of 16)

#: Changes of an original that people do not notice or ignore (uint8 (N, H, W, 3) in and out).
INVARIANCES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "darker": lambda x: x.astype(np.float32) * 0.7,
    "brighter": lambda x: x.astype(np.float32) * 0.8 + 50,
    "lower_contrast": lambda x: (x.astype(np.float32) - x.mean(axis=(1, 2, 3), keepdims=True)) * 0.6
    + x.mean(axis=(1, 2, 3), keepdims=True),
    "colour_cast": lambda x: x.astype(np.float32) * np.array([1.15, 0.95, 0.75], np.float32),
    "greyscale": lambda x: np.repeat(x.astype(np.float32).mean(axis=3, keepdims=True), 3, axis=3),
    "shift_1px": lambda x: np.roll(x, (1, 1), axis=(1, 2)),
    "shift_2px": lambda x: np.roll(x, (-2, 2), axis=(1, 2)),
}


#: Luminance and two colour-opponent channels: a yellow ring on purple shows in colour, not in grey.
OPPONENT = np.array([[0.299, 0.587, 0.114], [0.5, -0.5, 0.0], [-0.25, -0.25, 0.5]]).T


def _channels(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) -> (3, N, H, W): luminance, red-green and blue-yellow.

    Not blurred: the originals are smooth, so correlating with one is already a matched
    filter; blurring the noise as well leaves it a few degrees of freedom, and at 16 px chance
    correlations of random starts then reach 0.65, so a faint but plain shape was called
    invisible (the first version blurred by 1 px)."""
    return np.moveaxis(images.astype(np.float64) @ OPPONENT, -1, 0)


def visibility(reconstructions: np.ndarray, originals: np.ndarray) -> np.ndarray:
    """How much of the original's coarse layout a reconstruction shows: the largest absolute
    correlation of a channel (luminance or colour-opponent) with the original's, over
    shifts of up to ``REACH`` of the image. Inversion often returns the object moved, in
    negative or in colour only, which people still recognise. A channel the original does
    not vary in (a grey face's colour) says nothing and is skipped."""
    h, w = originals.shape[1:3]
    rec, orig = _channels(reconstructions), _channels(originals)
    best = np.zeros(len(reconstructions))
    reach = max(1, int(h * REACH)), max(1, int(w * REACH))  # the overlap keeps at least 55% of each side
    for c in range(3):
        flat = orig[c].reshape(len(originals), -1)
        varies = flat.std(1) > 2.0  # grey levels: the channel shows something of the original
        for dy in range(-reach[0], reach[0] + 1):
            for dx in range(-reach[1], reach[1] + 1):
                a = rec[c][:, max(0, dy): h + min(0, dy), max(0, dx): w + min(0, dx)].reshape(len(best), -1)
                b = orig[c][:, max(0, -dy): h + min(0, -dy), max(0, -dx): w + min(0, -dx)].reshape(len(best), -1)
                a = a - a.mean(1, keepdims=True)
                b = b - b.mean(1, keepdims=True)
                r = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-9)
                best = np.where(varies, np.maximum(best, np.abs(r)), best)
    return best


def random_starts(originals: np.ndarray, mean: Sequence[float], std: Sequence[float],
                  rng: np.random.Generator, draws: int = NULL_DRAWS) -> np.ndarray:
    """What the attacks start from, as a PNG holds it: Gaussian noise in the normalised space,
    mapped back to pixels and clipped ((N * draws, H, W, 3) uint8, ``draws`` per original)."""
    shape = (len(originals) * draws, *originals.shape[1:])
    z = rng.standard_normal(shape)
    pixels = np.asarray(mean, np.float64) + np.asarray(std, np.float64) * z
    return np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8)


def colour_distance(reconstructions: np.ndarray, originals: np.ndarray) -> np.ndarray:
    """How far a reconstruction's colours are from the original's, wherever they lie: the
    Wasserstein-1 distance between the two images' values of each RGB channel (grey levels),
    averaged over channels."""
    n = len(reconstructions)
    a = np.sort(reconstructions.reshape(n, -1, 3).astype(np.float64), axis=1)
    b = np.sort(originals.reshape(n, -1, 3).astype(np.float64), axis=1)
    return np.abs(a - b).mean(axis=(1, 2))


def invisible_threshold(originals: np.ndarray, mean: Sequence[float], std: Sequence[float],
                        rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """The null of random starts: the ``NULL_QUANTILE`` quantile of their visibility against
    the originals, and per original the 1 - ``NULL_QUANTILE`` quantile of their colour distance."""
    starts = random_starts(originals, mean, std, rng)
    repeated = np.repeat(originals, NULL_DRAWS, axis=0)
    null = visibility(starts, repeated)
    colours = colour_distance(starts, repeated).reshape(len(originals), NULL_DRAWS)
    return float(np.quantile(null, NULL_QUANTILE)), np.quantile(colours, 1 - NULL_QUANTILE, axis=1)


def psnr(reconstructions: np.ndarray, originals: np.ndarray) -> np.ndarray:
    diff = reconstructions.astype(np.float64) - originals.astype(np.float64)
    mse = (diff.reshape(len(diff), -1) ** 2).mean(1)
    with np.errstate(divide="ignore"):
        return np.where(mse > 0, 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12)), np.inf)


def _majority(votes: Mapping[str, list[bool]]) -> dict[str, bool]:
    return {k: sum(v) * 2 > len(v) for k, v in votes.items()}


def crowd_on(images: np.ndarray, reference: Sequence[Task], p_reference: np.ndarray, posterior,
             classes: Sequence[str], pool: simulated.PoolConfig, seed: int, label: str) -> float:
    """The crowd's majority-recognised share on ``images`` shown in place of the reconstructions
    of ``reference`` tasks (same originals, candidates, protocol and people)."""
    p_images = posterior(images)
    fake, posteriors = {}, {}
    for j, task in enumerate(reference):
        item = f"{task.item_id}#{label}{j}"
        fake[item] = replace(task, item_id=item)
        posteriors[item] = (p_reference[j], p_images[j])
    rows = simulated.annotate(fake, posteriors, classes, pool, seed, f"{label}")
    return float(np.mean(list(_majority(simulated.recognised_votes(rows, fake)).values())))


def distinct_originals(tasks: Mapping[str, Task], ids: Sequence[str],
                       originals: np.ndarray) -> tuple[list[Task], np.ndarray]:
    """One task per original (its candidates are the same in every set) and the originals."""
    first: dict[bytes, int] = {}
    for k in range(len(ids)):
        first.setdefault(originals[k].tobytes(), k)
    picks = sorted(first.values())
    return [tasks[ids[k]] for k in picks], originals[picks]


def on_originals(reference: Sequence[Task], clean: np.ndarray, posterior, classes: Sequence[str],
                 pool: simulated.PoolConfig, seed: int, dataset: str) -> dict:
    """The keys that need no reconstruction: the crowd on the clean originals and on the
    changes of them people ignore (what the observer's settings may be chosen on)."""
    p_clean = posterior(clean)
    out = {"crowd_originals": len(clean),
           "crowd_clean_original_rate": round(crowd_on(clean, reference, p_clean, posterior, classes, pool, seed,
                                                       f"{dataset}#clean"), 6)}
    invariance = {name: round(crowd_on(np.clip(np.round(change(clean)), 0, 255).astype(np.uint8), reference, p_clean,
                                       posterior, classes, pool, seed, f"{dataset}#{name}"), 6)
                  for name, change in INVARIANCES.items()}
    out["crowd_invariance_rate"] = min(invariance.values())
    out["crowd_invariance_by_change"] = invariance
    return out


def checks(tasks: Mapping[str, Task], ids: Sequence[str], originals: np.ndarray, reconstructions: np.ndarray,
           recognised: Mapping[str, bool], posterior, classes: Sequence[str], pool: simulated.PoolConfig,
           seed: int, dataset: str, mean: Sequence[float], std: Sequence[float]) -> dict:
    """The crowd keys for one dataset; ``recognised`` is the crowd's majority verdict per item id."""
    reference, clean = distinct_originals(tasks, ids, originals)
    out = on_originals(reference, clean, posterior, classes, pool, seed, dataset)

    rng = np.random.default_rng([seed, 0x76697369])  # "visi"
    threshold, colour_floor = invisible_threshold(clean, mean, std, rng)
    which = {clean[j].tobytes(): j for j in range(len(clean))}
    floor = colour_floor[[which[o.tobytes()] for o in originals]]
    vis = visibility(reconstructions, originals)
    db = psnr(reconstructions, originals)
    verdict = np.array([bool(recognised.get(i, False)) for i in ids])
    invisible = (vis <= threshold) & (colour_distance(reconstructions, originals) >= floor)
    near = db >= NEAR_COPY_DB

    def rate(mask: np.ndarray) -> float | None:
        return round(float(verdict[mask].mean()), 6) if mask.any() else None

    out.update({"crowd_invisible_rate": rate(invisible), "crowd_invisible_items": int(invisible.sum()),
                "crowd_invisible_threshold": round(threshold, 6),
                "crowd_near_copy_rate": rate(near), "crowd_near_copy_items": int(near.sum()),
                "crowd_visible_low_psnr_rate": rate((db < 14) & (vis > 0.6)),
                "crowd_visible_low_psnr_items": int(((db < 14) & (vis > 0.6)).sum())})
    return out
