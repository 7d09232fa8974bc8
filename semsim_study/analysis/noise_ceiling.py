"""The noise ceiling: how high any metric's correlation with the crowd could reach.

The crowd's rates are themselves noisy (K answers per item; K = 3 in the embedded profile), so
even a metric that knew each reconstruction's true recognisability would not correlate 1 with
them. The ceiling estimates that bound from the answers alone (``data/annotations/<ds>/answers.csv``,
one row per annotator per item, ``recognised`` derived from the item's truth by the annotate stage):

1. **Split-half.** Each item's answers (items with at least two) are split at random into two
   disjoint halves of ``n // 2`` and ``n - n // 2`` answers (1 and 2 when K = 3). Each half gets
   its own rates, computed as the report's targets are: per item the half's recognised rate
   (image level); per (model, attack) set one minus the mean of its items' majority verdicts,
   a tie counting 1/2 (model level, the rule of ``annotation/aggregate.py``). The split-half
   coefficient is the correlation of half A's rates with half B's over the comparison's units
   (the very sets or items its metric rows use; scope ``all`` on within-dataset percentile
   ranks, as the metrics), averaged over ``SPLITS`` random splits, seeded by ``seed`` and the
   dataset's name.
2. **Spearman-Brown** to the full crowd: under the classical model (each answer = the item's
   true rate + independent noise) two halves of a and b answers correlate as
   sqrt(rel_a * rel_b), with rel_k = k q / (1 + (k - 1) q) the reliability of k answers and q
   that of one. ``spearman_brown`` solves that for q and returns rel_K, K = a + b (for equal
   halves the textbook 2r / (1 + r)). a and b are the mean half sizes over the units' items.
   This ``reliability`` is the correlation to expect between this crowd and another of the same size.
3. **Ceiling** = sqrt(reliability): a metric free of annotator noise correlates with the
   crowd's rate at most as well as the crowd's own true rate does, sqrt(reliability) (the
   classical bound on validity). Signs are kept (a negative split-half agreement gives a
   negative reliability and ceiling: the crowd agrees with itself no better than chance).

Rho and r are treated as Pearson coefficients on the Spearman-Brown scale (ranks of rates);
Kendall's tau goes through Greiner's relation, r = sin(pi tau / 2), and back. The interval is a
percentile bootstrap over the units (``report.bootstrap`` resamples, ``report.confidence``; one
set of resamples per comparison, drawn from ``seed`` and its name), each resample scored on the
first ``INTERVAL_SPLITS`` splits, averaged and carried through the same three steps. Only the ceiling's ``value`` and
interval show in the tables; ``summary.json`` keeps the split-half mean and the reliability too.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import DataError
from .correlate import COEFFICIENTS, bootstrap, resample_counts, rng_for, undefined_reason
from .inputs import read_table
from .study import FINGERPRINT, POOLED, BootstrapConfig, Study

#: random splits of the answers averaged for every ceiling
SPLITS = 100
#: of which the bootstrap resamples use the first this many (the interval's cost grows with it)
INTERVAL_SPLITS = 10
COLUMNS = ("level", "scope", "coefficient", "value", "ci_low", "ci_high", "reliability", "split_half", "n",
           "answers_per_item", "half_a", "half_b", "reason")
METHOD = (f"split-half agreement of the crowd's rates (answers split at random per item into halves of n//2 and "
          f"n - n//2; mean over {SPLITS} splits), Spearman-Brown corrected to the full crowd (reliability); "
          "ceiling = sqrt(reliability); percentile bootstrap over sets (model level) or items (image level)")
#: (level, scope, fingerprint) -> that comparison's rows (one per coefficient), as stage correlate wrote them
Reuse = Mapping[tuple[str, str, str], list[dict]]
ANSWER_COLUMNS = ("item_id", "annotator_id", "recognised")
_TRUE = {"true", "1", "yes", "1.0"}
_FALSE = {"false", "0", "no", "0.0"}


# --------------------------------------------------------------------------- the corrections

def spearman_brown(r, a: float, b: float, k: float | None = None):
    """Reliability of ``k`` answers per item (default a + b) from the correlation ``r`` between two
    disjoint halves of ``a`` and ``b`` answers: solve r^2 = rel_a rel_b for one answer's reliability
    q (rel_k = k q / (1 + (k - 1) q)), then return rel_k. Sign-preserving; NaN stays NaN."""
    r = np.asarray(r, dtype=float)
    k = a + b if k is None else k
    s = np.clip(np.abs(r), 0.0, 1.0) ** 2
    big_a = a * b - s * (a - 1) * (b - 1)          # > 0 whenever s < 1; = a + b - 1 at s = 1
    lin = s * (a + b - 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = (lin + np.sqrt(lin * lin + 4 * big_a * s)) / (2 * big_a)
        rel = k * q / (1 + (k - 1) * q)
    out = np.sign(r) * rel
    return float(out) if out.ndim == 0 else out


def _to_pearson(coefficient: str, v):
    return np.sin(np.pi * np.asarray(v, dtype=float) / 2) if coefficient == "kendall" else np.asarray(v, dtype=float)


def _from_pearson(coefficient: str, v):
    return 2 / np.pi * np.arcsin(np.clip(v, -1, 1)) if coefficient == "kendall" else v


def _signed_sqrt(v):
    return np.sign(v) * np.sqrt(np.abs(v))


def correct(coefficient: str, split_half, a: float, b: float) -> tuple:
    """(reliability, ceiling) on ``coefficient``'s own scale from the mean split-half coefficient."""
    rel = spearman_brown(_to_pearson(coefficient, split_half), a, b)
    return _from_pearson(coefficient, rel), _from_pearson(coefficient, _signed_sqrt(rel))


# --------------------------------------------------------------------------- the answers

def read_answers(root: Path, dataset: str) -> pd.DataFrame | None:
    """item_id, annotator_id, recognised (bool) of every answer; None without answers.csv."""
    path = Path(root) / "data" / "annotations" / dataset / "answers.csv"
    if not path.exists():
        return None
    df = read_table(path, ANSWER_COLUMNS, "raw answers (stage annotate)", text=("item_id", "annotator_id"),
                    keep_default_na=False)[list(ANSWER_COLUMNS)]
    flag = df["recognised"].astype(str).str.strip().str.lower()
    bad = ~flag.isin(_TRUE | _FALSE)
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise DataError(f"{path}, line {line}: 'recognised' must be true or false, "
                        f"got {df['recognised'].iloc[line - 2]!r}")
    return df.assign(recognised=flag.isin(_TRUE))


class Halves:
    """One dataset's answers split ``splits`` times: per split and item, each half's recognised
    count (``rec_a``, ``rec_b``: splits x items) and size (``n_a``, ``n_b``: items). Answers are
    taken in (item, annotator) order, so the file's row order changes nothing."""

    def __init__(self, answers: pd.DataFrame, seed: int, dataset: str, splits: int = SPLITS):
        sizes = answers.groupby("item_id", sort=True).size()
        keep = answers[answers["item_id"].map(sizes) >= 2]        # one answer cannot be split
        keep = keep.sort_values(["item_id", "annotator_id"], kind="stable")
        self.items = list(dict.fromkeys(keep["item_id"]))          # each item's answers form one block
        index = {item: i for i, item in enumerate(self.items)}
        item = keep["item_id"].map(index).to_numpy()
        flags = keep["recognised"].to_numpy(dtype=float)
        n = np.bincount(item, minlength=len(self.items))
        self.n_a, self.n_b = n // 2, n - n // 2
        starts = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(int)
        in_a = (np.arange(len(item)) - starts[item]) < self.n_a[item]   # the first n//2 of each item's block
        rng = rng_for(seed, f"noise_ceiling/{dataset}")
        self.rec_a = np.zeros((splits, len(self.items)))
        self.rec_b = np.zeros((splits, len(self.items)))
        for s in range(splits):
            order = np.argsort(item + rng.random(len(item)), kind="stable")   # a random order within each item
            shuffled = flags[order]
            if len(item):
                self.rec_a[s] = np.add.reduceat(shuffled * in_a, starts)
                self.rec_b[s] = np.add.reduceat(shuffled * ~in_a, starts)

    def item_rates(self) -> tuple[np.ndarray, np.ndarray]:
        """Each half's recognised rate per item (splits x items)."""
        return self.rec_a / self.n_a, self.rec_b / self.n_b

    def majority(self) -> tuple[np.ndarray, np.ndarray]:
        """Each half's majority verdict per item: 1 recognised, 0 not, 1/2 a tie (aggregate's rule)."""
        return ((np.sign(2 * self.rec_a - self.n_a) + 1) / 2, (np.sign(2 * self.rec_b - self.n_b) + 1) / 2)


# --------------------------------------------------------------------------- one comparison

def _nan_rows(level: str, scope: str, n: int, reason: str) -> list[dict]:
    return [{"level": level, "scope": scope, "coefficient": c, "value": math.nan, "ci_low": math.nan,
             "ci_high": math.nan, "reliability": math.nan, "split_half": math.nan, "n": n,
             "answers_per_item": math.nan, "half_a": math.nan, "half_b": math.nan, "reason": reason}
            for c in COEFFICIENTS]


def _distinct(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (x, y) pairs, how many units each holds, and each unit's pair ordered by pair
    (``order``) with the first position of every pair in that order (``starts``)."""
    ux, ix = np.unique(x, return_inverse=True)
    uy, iy = np.unique(y, return_inverse=True)
    codes, inverse, sizes = np.unique(ix.ravel() * len(uy) + iy.ravel(), return_inverse=True, return_counts=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.column_stack([ux[codes // len(uy)], uy[codes % len(uy)]]), sizes, order, starts


def _split_statistics(x: np.ndarray, y: np.ndarray, counts: np.ndarray | None) -> tuple[dict, dict]:
    """Each coefficient on the units, and on every resample of ``counts`` (None: none), through
    ``correlate.bootstrap`` on the distinct (x, y) pairs weighted by how many units hold them (how
    often a resample drew them): the same statistics, on far fewer points (rates take few values)."""
    pairs, sizes, order, starts = _distinct(x, y)
    whole = {c: float(v[0]) for c, v in bootstrap(pairs[:, 0], pairs[:, 1], sizes[None, :].astype(np.float32)).items()}
    if counts is None:
        return whole, {}
    return whole, bootstrap(pairs[:, 0], pairs[:, 1], np.add.reduceat(counts[:, order], starts, axis=1))


def ceiling(level: str, scope: str, xs: np.ndarray, ys: np.ndarray, half_a: float, half_b: float,
            s: BootstrapConfig) -> list[dict]:
    """The rows (one per coefficient) of one comparison from each split's half rates (splits x units).

    The value averages every split; each bootstrap resample averages the first ``INTERVAL_SPLITS``
    (the same resamples on each), which leaves a little split-to-split noise in the interval."""
    n = xs.shape[1]
    reasons = [undefined_reason(x, y, "half A's rate", "half B's rate") for x, y in zip(xs, ys)]
    used = [i for i, r in enumerate(reasons) if not r]
    if not used:
        return _nan_rows(level, scope, n, reasons[0] if reasons else "no split")
    counts = (resample_counts(n, s.reps, rng_for(s.seed, f"noise_ceiling/{level}/{scope}")) if s.reps > 0 else None)
    values = {c: [] for c in COEFFICIENTS}
    boot_sum = {c: np.zeros(s.reps) for c in COEFFICIENTS}
    boot_n = {c: np.zeros(s.reps) for c in COEFFICIENTS}
    for i in used:
        whole, boots = _split_statistics(xs[i], ys[i], counts if i < INTERVAL_SPLITS else None)
        for c in COEFFICIENTS:
            values[c].append(whole[c])
            if c in boots:
                ok = np.isfinite(boots[c])
                boot_sum[c][ok] += boots[c][ok]
                boot_n[c][ok] += 1
    lo_q, hi_q = 100 * (1 - s.confidence) / 2, 100 * (1 + s.confidence) / 2
    rows = []
    for c in COEFFICIENTS:
        split_half = float(np.nanmean(values[c]))
        rel, value = correct(c, split_half, half_a, half_b)
        lo = hi = math.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = boot_sum[c] / boot_n[c]
        boot = boot[np.isfinite(boot)]
        if boot.size:
            lo, hi = (float(v) for v in np.percentile(correct(c, boot, half_a, half_b)[1], [lo_q, hi_q]))
        rows.append({"level": level, "scope": scope, "coefficient": c, "value": float(value), "ci_low": lo,
                     "ci_high": hi, "reliability": float(rel), "split_half": split_half, "n": n,
                     "answers_per_item": half_a + half_b, "half_a": half_a, "half_b": half_b,
                     "reason": "" if math.isfinite(value) else "undefined"})
    return rows


# --------------------------------------------------------------------------- every scope of the study

def _ranked(values: np.ndarray, datasets: np.ndarray) -> np.ndarray:
    """Each split's values replaced by their percentile rank within their dataset (ties averaged)."""
    out = np.empty_like(values)
    for name in np.unique(datasets):
        cols = np.flatnonzero(datasets == name)
        out[:, cols] = stats.rankdata(values[:, cols], axis=1) / len(cols)
    return out


def _scopes(study: Study) -> list[tuple[str, str]]:
    names = [d.name for d in study.datasets] + [POOLED] + list(study.held_out)
    return [(level, scope) for scope in names for level in ("model", "image")]


@dataclass(frozen=True)
class Comparison:
    """One comparison's half rates (splits x units) and mean half sizes, or why it has none."""

    level: str
    scope: str
    xs: np.ndarray | None = None
    ys: np.ndarray | None = None
    half_a: float = math.nan
    half_b: float = math.nan
    reason: str = ""

    def fingerprint(self, s: BootstrapConfig) -> str:
        """What ``ceiling`` returns depends on nothing else (see ``correlate.fingerprint``)."""
        h = hashlib.sha256()
        for part in (self.xs, self.ys):
            h.update(repr(part.shape).encode("utf-8"))
            h.update(np.ascontiguousarray(part, dtype="<f8").tobytes())
        h.update(repr((self.level, self.scope, float(self.half_a), float(self.half_b), int(s.reps), int(s.seed),
                       float(s.confidence), INTERVAL_SPLITS)).encode("utf-8"))
        return h.hexdigest()[:32]


def comparisons(root: Path, study: Study, seed: int, splits: int = SPLITS) -> list[Comparison]:
    """Every model- and image-level comparison of ``study``, on the units its metric rows use."""
    halves: dict[str, Halves] = {}
    missing: dict[str, str] = {}
    for d in study.datasets:
        answers = read_answers(root, d.name) if d.annotated else None
        if answers is not None:
            halves[d.name] = Halves(answers, seed, d.name, splits)
        else:
            missing[d.name] = (d.annotation_note or "no annotations") if not d.annotated else \
                f"no raw answers (data/annotations/{d.name}/answers.csv missing)"

    # per dataset and level: the units' keys, each half's rate per split, each half's size
    rates: dict[tuple[str, str], tuple] = {}
    for name, h in halves.items():
        a, b = h.item_rates()
        rates[("image", name)] = (pd.Index(h.items), a, b, h.n_a, h.n_b)
        members = study.dataset(name).images[["item_id", "model", "attack"]]
        members = members[members["item_id"].isin(h.items)]
        member_keys = pd.MultiIndex.from_frame(members[["model", "attack"]])
        keys = member_keys.unique().sort_values()
        member = np.zeros((len(h.items), len(keys)))
        member[pd.Index(h.items).get_indexer(members["item_id"]), keys.get_indexer(member_keys)] = 1.0
        size = member.sum(axis=0)
        ma, mb = h.majority()
        rates[("model", name)] = (keys, 1 - ma @ member / size, 1 - mb @ member / size,
                                  h.n_a @ member / size, h.n_b @ member / size)

    out = []
    for level, scope in _scopes(study):
        units = study.units.get((level, scope))
        if units is None or units.empty:
            out.append(Comparison(level, scope, reason=missing.get(scope) or study.notes.get(scope)
                                  or "no annotated units"))
            continue
        parts, owner = [], []
        for name, g in units.groupby("dataset", sort=True):
            if name not in halves:
                continue
            index, a, b, na, nb = rates[(level, name)]
            keys = g["item_id"] if level == "image" else pd.MultiIndex.from_frame(g[["model", "attack"]])
            pos = index.get_indexer(keys)
            pos = pos[pos >= 0]
            parts.append((a[:, pos], b[:, pos], na[pos], nb[pos]))
            owner += [name] * len(pos)
        if not owner:
            reasons = sorted({missing[n] for n in units["dataset"].unique() if n in missing})
            out.append(Comparison(level, scope, reason="; ".join(reasons) or "no item with two or more answers"))
            continue
        x, y, na, nb = (np.concatenate([p[k] for p in parts], axis=-1) for k in range(4))
        if scope == POOLED:
            x, y = _ranked(x, np.array(owner)), _ranked(y, np.array(owner))
        out.append(Comparison(level, scope, x, y, float(np.mean(na)), float(np.mean(nb))))
    return out


def _ceiling(job: tuple[Comparison, BootstrapConfig, str]) -> list[dict]:
    """``ceiling`` of one comparison with its fingerprint (module-level, so a process pool can run it)."""
    c, s, fp = job
    return [dict(r, fingerprint=fp) for r in ceiling(c.level, c.scope, c.xs, c.ys, c.half_a, c.half_b, s)]


def compute(root: Path, study: Study, s: BootstrapConfig, reuse: Reuse | None = None,
            run: Callable = map) -> pd.DataFrame:
    """The noise ceiling of every model- and image-level comparison of ``study``, each with the
    fingerprint of its data and settings; a comparison whose fingerprint ``reuse`` holds takes its
    rows from there (stage ``correlate`` computed them). The others go through ``run`` at once
    (``map``, or a process pool's: the same rows in the same order)."""
    parts: list[list[dict] | None] = []  # per comparison: its rows, or None while still to compute
    jobs = []
    for c in comparisons(root, study, s.seed):
        if c.reason:
            parts.append([dict(r, fingerprint="") for r in _nan_rows(c.level, c.scope, 0, c.reason)])
            continue
        fp = c.fingerprint(s)
        done = (reuse or {}).get((c.level, c.scope, fp))
        if done is None:
            jobs.append((c, s, fp))
        parts.append(done)
    computed = iter(run(_ceiling, jobs))
    rows = [r for part in parts for r in (next(computed) if part is None else part)]
    return pd.DataFrame(rows, columns=[*COLUMNS, FINGERPRINT])


def get(study: Study, level: str, scope: str, coefficient: str) -> dict:
    """One row of the study's ceiling as a dict (empty when the study has none, or not for that scope)."""
    t = study.ceiling
    if t is None:
        return {}
    hit = t[(t["level"] == level) & (t["scope"] == scope) & (t["coefficient"] == coefficient)]
    return hit.iloc[0].to_dict() if len(hit) else {}


def _num(v) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else round(float(v), 6)


def summary(study: Study) -> dict:
    """summary.json's ``noise_ceiling``: per level and scope each coefficient's ceiling with its
    interval, reliability and split-half mean, and the units, answers per item and half sizes."""
    out: dict = {"method": METHOD, "splits": SPLITS, "model_level": {}, "image_level": {}, "generalisation": {}}
    t = study.ceiling
    if t is None:
        return out
    for (level, scope), g in t.groupby(["level", "scope"], sort=False):
        entry: dict = {}
        for r in g.itertuples(index=False):
            entry[r.coefficient] = {"value": _num(r.value), "ci_low": _num(r.ci_low), "ci_high": _num(r.ci_high),
                                    "reliability": _num(r.reliability), "split_half": _num(r.split_half)}
        first = g.iloc[0]
        entry.update(n=int(first["n"]), answers_per_item=_num(first["answers_per_item"]),
                     half_sizes=[_num(first["half_a"]), _num(first["half_b"])], reason=str(first["reason"]))
        if scope in study.held_out:
            out["generalisation"].setdefault(scope, {})[f"{level}_level"] = entry
        else:
            out[f"{level}_level"][scope] = entry
    return out
