"""Provenance, the Markdown report (paper-style tables) and the CSV files DVC plots.

Provenance is read from the inputs (annotations' ``source`` column, metrics meta.json
``features``), never assumed: a result resting on simulated annotators or on the pipeline's own
feature network (instead of ImageNet-pretrained LPIPS/FID backbones) is marked wherever shown.
"""

from __future__ import annotations

import math

import pandas as pd

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


def _cell(study: Study, level: str, scope: str, metric: str, reasons: list[str]) -> str:
    rho = get(study, level, scope, metric, "spearman")
    tau = get(study, level, scope, metric, "kendall")
    if not rho or not math.isfinite(rho["oriented"]):
        reason = (rho or {}).get("reason") or "not computed"
        if reason not in reasons:
            reasons.append(reason)
        return f"n/a [{reasons.index(reason) + 1}]"
    lo, hi = rho.get("oriented_ci_low", math.nan), rho.get("oriented_ci_high", math.nan)
    interval = f" [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f"{rho['oriented']:+.2f}{interval} / {tau['oriented']:+.2f}"


def table_rows(study: Study, level: str, scopes: list[str]) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, reasons) of a rows-metrics x columns-scopes table of oriented rho / tau."""
    metrics = SET_METRICS if level == "model" else IMAGE_METRICS
    reasons: list[str] = []
    header = ["metric"] + [column_label(study, s) for s in scopes]
    rows = [[LABELS[m]] + [_cell(study, level, s, m, reasons) for s in scopes] for m in metrics]
    return header, rows, reasons


def _md_table(header, rows, reasons) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += [""] + [f"[{i}] {r}" for i, r in enumerate(reasons, 1)] if reasons else []
    return "\n".join(out) + "\n"


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
            worse.append(f"{scope} ({a:+.2f} vs {b:+.2f})")
    if not worse:
        return "Trained SemSim matches or beats its untrained network wherever both are defined."
    return "Trained SemSim follows people less well than its own untrained network on: " + ", ".join(worse) + "."


def markdown(study: Study, datasets: list[str], settings) -> str:
    scopes = datasets + [POOLED]
    parts = ["# Report: how faithfully each metric follows human judgement\n",
             "Cells: oriented Spearman rho [its bootstrap interval] / Kendall tau-b (higher = more faithful to "
             "people; signed values, p-values and every interval are in correlations.csv). "
             f"{settings.reps} bootstrap resamples, {settings.confidence:.0%} intervals. "
             "Column \"all\" pools within datasets: each value is first replaced by its percentile rank within "
             "its dataset, so no dataset's offset (nor each dataset's own leave-one-out SemSim) ranks against "
             "another's.\n"]
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
    """plots/scatter/<dataset>/<metric>.csv: one point per set, x = unrecognised rate, y = value."""
    out = {}
    for d in study.datasets:
        sets = d.sets[d.sets["unrecognised_rate"].notna()]
        for m in SET_IMAGE_METRICS:
            if sets.empty or sets[m].isna().all():
                continue
            df = sets[["model", "attack", "unrecognised_rate", m]].rename(columns={m: "value"}).dropna()
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
