"""Provenance, the Markdown report (paper-style tables) and the CSV files DVC plots.

Provenance is read from the inputs (annotations' ``source`` column, metrics meta.json
``features``), never assumed: a result resting on simulated annotators or on the pipeline's own
feature network (instead of ImageNet-pretrained LPIPS/FID backbones) is marked wherever shown.
"""

from __future__ import annotations

import math

import pandas as pd

from . import noise_ceiling
from ..decimals import distinct_pair
from .orientation import IMAGE_METRICS, LABELS, SET_IMAGE_METRICS, SET_METRICS
from .study import POOLED, Study, get

SIM, PIPE = "†", "‡"


def provenance(study: Study) -> dict:
    out = {}
    for d in study.datasets:
        out[d.name] = {"annotations": d.annotation_source or "none", "annotation_note": d.annotation_note,
                       "features": d.features, "semsim_note": d.semsim_note}
    return out


def banner(study: Study) -> list[str]:
    """Plain-text lines: which results rest on stand-ins or have no data."""
    prov = provenance(study)
    lines = []
    sim = [n for n, p in prov.items() if p["annotations"] in ("simulated", "mixed")]
    pipe = [n for n, p in prov.items() if p["features"] == "pipeline"]
    unknown = [n for n, p in prov.items() if p["features"] not in ("pipeline", "imagenet")]
    none = [f"{n}: {p['annotation_note']}" for n, p in prov.items() if p["annotations"] == "none"]
    if sim:
        mixed = [n for n in sim if prov[n]["annotations"] == "mixed"]
        lines.append(f"{SIM} Simulated annotators, not people: every human-rate result for {', '.join(sim)}"
                     + (f" (partly simulated: {', '.join(mixed)})" if mixed else "")
                     + " rests on simulated observers, and so do the pooled and held-out results that include them.")
    if pipe:
        lines.append(f"{PIPE} Pipeline-trained feature network instead of ImageNet-pretrained backbones: LPIPS and "
                     f"FID for {', '.join(pipe)}.")
    if unknown:
        lines.append(f"Feature backbone not recorded in data/metrics/<dataset>/meta.json: {', '.join(unknown)}.")
    if none:
        lines.append(f"Datasets without annotations (no correlation computed) — {'; '.join(none)}.")
    for n, p in prov.items():
        if p["semsim_note"]:
            lines.append(f"SemSim missing for {n}: {p['semsim_note']}.")
    for scope, note in study.notes.items():
        lines.append(f"Held-out {scope}: {note}.")
    return lines


def column_label(study: Study, scope: str) -> str:
    if scope == POOLED or scope in study.held_out:
        return scope
    d = study.dataset(scope)
    return scope + (SIM if d.annotation_source in ("simulated", "mixed") else "") + (PIPE if d.features == "pipeline" else "")


COEFFICIENT_SYMBOLS = {"spearman": "ρ", "kendall": "τ"}


def _signed(v: float) -> str:
    """'+0.72', '-0.31'; a value that rounds to zero is '+0.00' whatever its sign."""
    text = f"{v:+.2f}"
    return "+0.00" if text == "-0.00" else text


def interval_text(value: float, low: float, high: float) -> str:
    """'+0.72 [+0.64, +0.78]': a coefficient with its interval (the interval left out when undefined)."""
    interval = f" [{_signed(low)}, {_signed(high)}]" if math.isfinite(low) and math.isfinite(high) else ""
    return f"{_signed(value)}{interval}"


def _cell(r: dict, reasons: list[str], keys=("oriented", "oriented_ci_low", "oriented_ci_high")) -> str:
    """A row's value [interval] (``keys``: value, low, high), or 'n/a [k]' with its reason numbered."""
    value, low, high = keys
    if not r or not math.isfinite(r[value]):
        reason = (r or {}).get("reason") or "not computed"
        if reason not in reasons:
            reasons.append(reason)
        return f"n/a [{reasons.index(reason) + 1}]"
    return interval_text(r[value], r.get(low, math.nan), r.get(high, math.nan))


CEILING_LABEL = "Noise ceiling"
CEILING_NOTE = ("Rows “Noise ceiling”: the most any metric could reach against these annotators, from how well "
                f"one half of the crowd's answers predicts the other (split-half, {noise_ceiling.SPLITS} random splits, "
                "Spearman-Brown corrected to the whole crowd, square root; see docs/report.md).")


def table_rows(study: Study, level: str, scopes: list[str]) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, reasons): rows = metric x (rho, tau), columns = scopes, cells = oriented value [interval].

    The metric's name stands on its rho row only; the tau row under it leaves it blank. When the
    study has its noise ceiling, its two rows come last (``noise_ceiling``: the most any metric
    could reach against these annotators).
    """
    metrics = SET_METRICS if level == "model" else IMAGE_METRICS
    reasons: list[str] = []
    header = ["metric", ""] + [column_label(study, s) for s in scopes]
    rows = []
    for m in metrics:
        for i, (coef, symbol) in enumerate(COEFFICIENT_SYMBOLS.items()):
            rows.append([LABELS[m] if i == 0 else "", symbol]
                        + [_cell(get(study, level, s, m, coef), reasons) for s in scopes])
    if study.ceiling is not None:
        for i, (coef, symbol) in enumerate(COEFFICIENT_SYMBOLS.items()):
            rows.append([CEILING_LABEL if i == 0 else "", symbol]
                        + [_cell(noise_ceiling.get(study, level, s, coef), reasons, ("value", "ci_low", "ci_high"))
                           for s in scopes])
    return header, rows, reasons


def annotators(source: str | None) -> str:
    """Who gave the verdicts, in words: 'simulated annotators' wherever the answers are simulated."""
    return {"simulated": "simulated annotators", "mixed": "partly simulated annotators",
            "human": "people"}.get(str(source), "annotators")


def verdict(recognised_rate: float, annotator_count: int, source: str | None) -> str:
    """'simulated annotators: 2/3 recognised' (or 'people: ...' for human answers)."""
    return f"{annotators(source)}: {int(round(recognised_rate * annotator_count))}/{annotator_count} recognised"


def study_annotators(study: Study) -> str:
    """Who judged the study as a whole: one word for every annotated dataset's source."""
    sources = {d.annotation_source for d in study.datasets if d.annotated}
    return annotators(sources.pop() if len(sources) == 1 else "mixed" if "simulated" in sources else None)


def _md_table(header, rows, reasons) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += [""] + [f"[{i}] {r}" for i, r in enumerate(reasons, 1)] if reasons else []
    return "\n".join(out) + "\n"


def contradiction_scopes(study: Study) -> list[str]:
    """Every annotated dataset, then the pooled scope (when any dataset is annotated)."""
    names = [d.name for d in study.datasets if d.annotated]
    return names + [POOLED] if names else []


def contradiction_matrix(study: Study, scope: str) -> tuple[list[str], list[list[str]]]:
    """Upper triangle: oriented Spearman between metrics; lower: share of pairs ordered oppositely."""
    metrics = list(IMAGE_METRICS)
    rows = []
    for i, a in enumerate(metrics):
        row = [LABELS[a]]
        for j, b in enumerate(metrics):
            if i == j:
                row.append("—")
                continue
            pair = f"{a}~{b}" if i < j else f"{b}~{a}"
            coef = "spearman" if i < j else "discordant_share"
            r = get(study, "contradiction", scope, pair, coef)
            row.append(f"{r['value']:.2f}" if r and math.isfinite(r["value"]) else "n/a")
        rows.append(row)
    return ["metric"] + [LABELS[m] for m in metrics], rows


def untrained_note(study: Study, scopes: list[str]) -> str:
    """Where trained SemSim does not beat its own untrained network (model-level oriented rho), in words."""
    worse = []
    for scope in scopes:
        a = get(study, "model", scope, "semsim", "spearman").get("oriented", math.nan)
        b = get(study, "model", scope, "semsim_untrained", "spearman").get("oriented", math.nan)
        if math.isfinite(a) and math.isfinite(b) and a < b:
            worse.append(f"{scope} ({' vs '.join(distinct_pair(a, b))})")
    if not worse:
        return "Trained SemSim matches or beats its untrained network wherever both are defined."
    return (f"Trained SemSim follows {study_annotators(study)} less well than its own untrained network on: "
            + ", ".join(worse) + ".")


def markdown(study: Study, datasets: list[str], bootstrap) -> str:
    scopes = datasets + [POOLED]
    parts = ["# Report: how faithfully each metric follows human judgement\n",
             "Cells: oriented Spearman rho (row ρ) and Kendall tau-b (row τ), each with its "
             f"{bootstrap.confidence:.0%} bootstrap interval; higher = more faithful to the "
             f"{study_annotators(study)} (signed values and p-values are in correlations.csv). "
             f"{bootstrap.reps} bootstrap resamples. "
             "Column \"all\" pools within datasets: each value is first replaced by its percentile rank within "
             "its dataset, so no dataset's offset (nor each dataset's own leave-one-out SemSim) ranks against "
             "another's. " + CEILING_NOTE + "\n"]
    lines = banner(study)
    if lines:
        parts.append("\n".join(f"> {line}  " for line in lines) + "\n")
    parts.append("## Model level: each (model, attack) set's metric vs its unrecognised rate\n")
    parts.append("Rows \"Control: ...\" see no learning from the held-out data: the threat model alone "
                 "(backbone, budget; cross-fitted on the other datasets) and SemSim's network before training. "
                 "Recipes were chosen on training domains only; held-out numbers are as they came out.\n")
    parts.append(_md_table(*table_rows(study, "model", scopes)))
    parts.append(untrained_note(study, scopes) + "\n")
    parts.append("## Image level: each reconstruction's metric vs its recognised rate\n")
    parts.append(_md_table(*table_rows(study, "image", scopes)))
    if study.held_out:
        parts.append("## Generalisation: SemSim trained without an attack / attacked backbone\n")
        parts.append("Every metric on the held-out items only (SemSim scored by the run that never saw them). "
                     "Per-dataset SemSim values above are already leave-one-dataset-out.\n")
        for level in ("model", "image"):
            parts.append(f"### {level.capitalize()} level\n")
            parts.append(_md_table(*table_rows(study, level, study.held_out)))
    parts.append("## Contradictions between metrics (image level, all datasets)\n")
    parts.append("Upper triangle: Spearman between metrics oriented so that higher = more recognisable; lower "
                 "triangle: share of image pairs the two metrics order oppositely. Per dataset: "
                 "correlations.csv, level `contradiction`.\n")
    header, rows = contradiction_matrix(study, POOLED)
    parts.append(_md_table(header, rows, []))
    return "\n".join(parts)


def scatter_frames(study: Study) -> dict[str, pd.DataFrame]:
    """plots/scatter/<dataset>/<metric>.csv: one point per set, x = unrecognised rate, y = the
    metric's own column (DVC takes the last column as y and names the axis after it)."""
    out = {}
    for d in study.datasets:
        sets = d.sets[d.sets["unrecognised_rate"].notna()]
        for m in SET_IMAGE_METRICS:
            if sets.empty or sets[m].isna().all():
                continue
            df = sets[["model", "attack", "unrecognised_rate", m]].dropna()
            out[f"{d.name}/{m}.csv"] = df.round(6)
    return out


def bar_frames(study: Study, datasets: list[str]) -> dict[str, pd.DataFrame]:
    """plots/spearman/<scope>.csv: metric, oriented model-level and image-level Spearman."""
    out = {}
    for scope in datasets + [POOLED]:
        rows = []
        for m in SET_METRICS:
            model = get(study, "model", scope, m, "spearman").get("oriented", math.nan)
            image = get(study, "image", scope, m, "spearman").get("oriented", math.nan) if m in IMAGE_METRICS else math.nan
            rows.append({"metric": m, "model_level": model, "image_level": image})
        df = pd.DataFrame(rows)
        if df[["model_level", "image_level"]].notna().any().any():
            out[f"{scope}.csv"] = df.round(6)
    return out
