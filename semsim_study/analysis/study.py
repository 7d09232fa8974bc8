"""Every correlation the report shows, as rows of one long table, plus the DVC metrics summary.

Levels and scopes (the ``level`` and ``scope`` columns of correlations.csv):
- model: each (model, attack) set's metric (FID per set; SemSim/CE = mean of the set's scores)
  against its unrecognised rate, per dataset and pooled within datasets (scope ``all``: every
  value replaced by its percentile rank within its dataset first, see ``within_dataset_ranks``);
- image: each reconstruction's metric against its recognised rate (annotated items only);
- contradiction: per dataset (and ``all``), pairs of metrics against each other;
- model / image with scope ``attack-<a>`` / ``backbone-<b>``: the items a SemSim trained
  without that attack / attacked backbone scored, every metric on those same items.
Per-dataset SemSim values are already "held-out dataset" results: the semsim stage scores
each dataset with a SemSim trained on the other datasets only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pandas as pd

from . import contradictions, threat_controls
from .correlate import COEFFICIENTS, correlate, fingerprint
from .inputs import SCORE_STAGES, DatasetInputs, held_out_tables, load_dataset, read_split_scores
from .orientation import IMAGE_METRICS, LABELS, SET_METRICS, expected_sign

CORR_COLUMNS = ("level", "scope", "metric", "coefficient", "value", "oriented", "p", "ci_low", "ci_high", "n",
                "reason", "expected_sign", "oriented_ci_low", "oriented_ci_high")
FINGERPRINT = "fingerprint"  # of the data and settings a row was computed from (correlate.fingerprint)
POOLED = "all"

#: reuse[(level, scope, metric, fingerprint)] = that metric's rows (one per coefficient)
Reuse = Mapping[tuple[str, str, str, str], list[dict]]


@dataclass(frozen=True)
class BootstrapConfig:
    """The bootstrap of every correlation: resamples, interval level, seed (from report.* and seed)."""
    reps: int = 1000
    confidence: float = 0.95
    seed: int = 0


@dataclass
class Study:
    datasets: list[DatasetInputs]
    correlations: pd.DataFrame
    held_out: list[str]                      # generalisation scopes, e.g. attack-dlg
    notes: dict[str, str]                    # scope -> why it has no data
    #: (level, scope) -> the units its metric rows compare: dataset, model, attack (and item_id at image level)
    units: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    ceiling: pd.DataFrame | None = None      # the noise ceiling's rows (noise_ceiling.compute), when computed

    def __post_init__(self) -> None:
        cols = list(self.correlations.columns)
        self.index = {(r[0], r[1], r[2], r[3]): dict(zip(cols, r))
                      for r in self.correlations.itertuples(index=False, name=None)}

    def dataset(self, name: str) -> DatasetInputs:
        return next(d for d in self.datasets if d.name == name)


def _correlate(job: tuple) -> dict:
    """``correlate`` of one metric's column (a module-level function, so a process pool can run it)."""
    x, y, args = job
    return correlate(x, y, **args)


def _rows(level: str, scope: str, table: pd.DataFrame, metrics, target: str, s: BootstrapConfig,
          missing_reason: str = "", reuse: Reuse | None = None, run: Callable = map) -> list[dict]:
    """Every metric's rows of one comparison. The bootstraps still to do go through ``run`` at
    once (``map``, or a process pool's, which returns the same results in the same order)."""
    plans, jobs = [], []  # per metric: (metric, sign, reason, fingerprint, reused rows or None)
    for metric in metrics:
        sign = expected_sign(metric, target)
        if missing_reason:
            plans.append((metric, sign, missing_reason, "", None))
        elif metric not in table.columns or table[metric].isna().all():
            plans.append((metric, sign, f"no {LABELS[metric]} values", "", None))
        else:
            args = dict(reps=s.reps, seed=s.seed, key=f"{level}/{scope}", confidence=s.confidence,
                        x_name=LABELS[metric], y_name=target.replace("_", " "))
            fp = fingerprint(table[metric], table[target], **args)
            done = (reuse or {}).get((level, scope, metric, fp))
            if done is None:
                jobs.append((table[metric], table[target], args))
            plans.append((metric, sign, "", fp, done))
    computed = iter(run(_correlate, jobs))
    rows = []
    for metric, sign, reason, fp, done in plans:
        if done is not None:
            rows += done
            continue
        results = None if reason else next(computed)
        for c in COEFFICIENTS:
            if results is None:
                rows.append({"level": level, "scope": scope, "metric": metric, "coefficient": c, "value": math.nan,
                             "oriented": math.nan, "p": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                             "n": int(table[[target]].notna().sum().iloc[0]) if target in table else 0,
                             "reason": reason, "expected_sign": sign, "oriented_ci_low": math.nan,
                             "oriented_ci_high": math.nan, FINGERPRINT: fp})
                continue
            r = results[c]
            o = r.oriented(sign)
            rows.append({"level": level, "scope": scope, "metric": metric, "coefficient": c, "value": r.value,
                         "oriented": o.value, "p": r.p, "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.n,
                         "reason": r.reason, "expected_sign": sign, "oriented_ci_low": o.ci_low,
                         "oriented_ci_high": o.ci_high, FINGERPRINT: fp})
    return rows


def within_dataset_ranks(table: pd.DataFrame, columns) -> pd.DataFrame:
    """Each column replaced by its percentile rank within its dataset (ties averaged, NaN kept).

    The pooled ("all") scope pools *within* datasets: every dataset's SemSim comes from its own
    leave-one-out model, and every metric has its own offset per domain, so concatenating raw
    values would rank one dataset's sets against another's. On within-dataset ranks, Spearman
    and Pearson measure how well a metric orders each dataset's sets or images, all datasets
    weighing by their size, and the bootstrap resamples the pooled rows as before.
    """
    if table.empty:
        return table
    out = table.copy()
    for col in columns:
        if col in out.columns:
            out[col] = out.groupby("dataset")[col].rank(pct=True)
    return out


def model_table(d: DatasetInputs) -> pd.DataFrame:
    return d.sets[d.sets["unrecognised_rate"].notna()]


def image_table(d: DatasetInputs) -> pd.DataFrame:
    return d.images[(d.images["annotators"] > 0) & d.images["recognised_rate"].notna()]


def _contradiction_rows(scope: str, images: pd.DataFrame) -> list[dict]:
    rows = []
    for r in contradictions.pairwise(images, IMAGE_METRICS):
        for coef, value, n, reason in (("spearman", r["spearman"], r["n"], r["spearman_reason"]),
                                       ("discordant_share", r["discordant_share"], r["pairs"], r["share_reason"])):
            rows.append({"level": "contradiction", "scope": scope, "metric": r["metric"], "coefficient": coef,
                         "value": value, "oriented": value, "p": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                         "n": n, "reason": reason, "expected_sign": 1, "oriented_ci_low": math.nan,
                         "oriented_ci_high": math.nan, FINGERPRINT: ""})
    return rows


def build(root: Path, datasets: list[str], held_out_attacks: list[str], held_out_backbones: list[str],
          s: BootstrapConfig, *, metrics: Sequence[str] | None = None, score_stages: Sequence[str] = SCORE_STAGES,
          reuse: Reuse | None = None, run: Callable = map) -> Study:
    """Every correlation of the report (``metrics`` None), or only those of ``metrics`` (no
    metric-vs-metric rows then), reading the scores of ``score_stages`` only. A metric whose
    data and settings match an entry of ``reuse`` takes its rows from there: the same numbers
    the bootstrap would give, without running it again. ``run`` maps the bootstraps of one
    comparison (see ``_rows``)."""
    root = Path(root)
    only = None if metrics is None else set(metrics)
    set_metrics = [m for m in SET_METRICS if only is None or m in only]
    image_metrics = [m for m in IMAGE_METRICS if only is None or m in only]
    loaded = [load_dataset(root, name, score_stages) for name in datasets]
    with_controls = threat_controls.add({d.name: d.sets for d in loaded}, {d.name for d in loaded if d.annotated})
    for d in loaded:
        d.sets = with_controls[d.name]
    rows: list[dict] = []
    units: dict[tuple[str, str], pd.DataFrame] = {}

    def add(level: str, scope: str, table: pd.DataFrame, reason: str = "") -> None:
        names, target = (set_metrics, "unrecognised_rate") if level == "model" else (image_metrics, "recognised_rate")
        rows.extend(_rows(level, scope, table, names, target, s, reason, reuse, run))
        if not reason and not table.empty:
            ids = ["dataset", "model", "attack"] + (["item_id"] if level == "image" else [])
            units[(level, scope)] = table[ids].reset_index(drop=True)

    for d in loaded:
        add("model", d.name, model_table(d), d.annotation_note)
        add("image", d.name, image_table(d), d.annotation_note)
    annotated = [d for d in loaded if d.annotated]
    none_reason = "" if annotated else "no dataset has annotations"
    all_sets = pd.concat([model_table(d) for d in annotated], ignore_index=True) if annotated else pd.DataFrame()
    all_images = pd.concat([image_table(d) for d in annotated], ignore_index=True) if annotated else pd.DataFrame()
    pooled_sets = within_dataset_ranks(all_sets, SET_METRICS + ("unrecognised_rate",))
    pooled_images = within_dataset_ranks(all_images, IMAGE_METRICS + ("recognised_rate",))
    add("model", POOLED, pooled_sets, none_reason)
    add("image", POOLED, pooled_images, none_reason)
    if only is None:
        for d in annotated:
            rows += _contradiction_rows(d.name, image_table(d))
        if annotated:
            rows += _contradiction_rows(POOLED, pooled_images)

    scopes, notes = [], {}
    for kind, names in (("attack", held_out_attacks), ("backbone", held_out_backbones)):
        for name in names:
            scope = f"{kind}-{name}"
            scopes.append(scope)
            scores, missing = read_split_scores(root, scope, score_stages)
            reason = none_reason or ("; ".join(missing) if scores.empty else "")
            if missing and not reason:
                notes[scope] = "; ".join(missing)
            if reason:
                notes[scope] = reason
                add("model", scope, pd.DataFrame(), reason)
                add("image", scope, pd.DataFrame(), reason)
                continue
            images, sets = held_out_tables(all_images, all_sets, scores)
            add("model", scope, sets)
            add("image", scope, images)
    table = pd.DataFrame(rows, columns=[*CORR_COLUMNS, FINGERPRINT])
    return Study(loaded, table, scopes, notes, units)


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), 6)


def summary(study: Study) -> dict:
    """DVC metrics: oriented coefficients only, nested level -> scope -> metric -> coefficient."""
    out: dict = {"model_level": {}, "image_level": {}, "generalisation": {}}
    t = study.correlations
    for row in t[t["level"].isin(["model", "image"])].itertuples(index=False):
        if row.scope in study.held_out:
            scope = out["generalisation"].setdefault(row.scope, {}).setdefault(f"{row.level}_level", {})
        else:
            scope = out[f"{row.level}_level"].setdefault(row.scope, {})
        scope.setdefault(row.metric, {})[row.coefficient] = _num(row.oriented)
    return out


def get(study: Study, level: str, scope: str, metric: str, coefficient: str) -> dict:
    """One row of the correlation table as a dict (empty dict if absent)."""
    return study.index.get((level, scope, metric, coefficient), {})
