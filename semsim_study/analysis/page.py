"""The self-contained HTML report: tables, inline SVG plots, image grids, provenance banner.

Everything is inline (CSS, base64 PNGs, SVG), so the single file can be mailed or archived and
opened offline. The sample of reconstructions per dataset is seeded, spread over the range
of human verdicts (sorted by recognised rate), and each shows the verdict and every metric.
"""

from __future__ import annotations

import base64
import csv
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import render
from .correlate import rng_for
from .orientation import IMAGE_METRICS, LABELS, SET_IMAGE_METRICS, SET_METRICS
from .study import POOLED, Study, get

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem auto;max-width:1150px;color:#222;
 padding:0 1rem;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}h3{font-size:1rem}
.banner{background:#fff4d6;border:1px solid #e0b84c;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
.banner.ok{background:#e8f5e9;border-color:#81c784}.banner li{margin:.2rem 0}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}th:first-child,td:first-child{text-align:left}
thead th{background:#f3f3f3}td.na{color:#999}td.pos{background:#eef7ee}td.neg{background:#fbeaea}
.notes{font-size:.8rem;color:#555}.figure svg{max-width:100%;height:auto}
.grid{display:flex;flex-wrap:wrap;gap:.6rem}
.cell{border:1px solid #ddd;border-radius:4px;padding:.35rem;width:170px;font-size:.72rem}
.pair{display:flex;gap:4px}.pair figure{margin:0;text-align:center}.pair figcaption{font-size:.65rem;color:#666}
.pair img{width:80px;height:80px;image-rendering:pixelated;display:block;border:1px solid #eee}
.verdict{font-weight:600;margin:.2rem 0}.verdict.rec{color:#2e7d32}.verdict.unrec{color:#c62828}
.cell dl{display:grid;grid-template-columns:auto auto;margin:0;gap:0 .4rem}.cell dd{margin:0;text-align:right}
.missing{width:80px;height:80px;background:#eee;color:#888;display:flex;align-items:center;justify-content:center}
"""


def _esc(s) -> str:
    return html.escape(str(s))


def _table(header, rows, reasons=(), classes=None) -> str:
    out = ["<table><thead><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for r, row in enumerate(rows):
        cells = []
        for c, v in enumerate(row):
            cls = classes[r][c] if classes else ""
            cells.append(f"<td class='{cls}'>{_esc(v)}</td>" if cls else f"<td>{_esc(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    if reasons:
        out.append("<p class='notes'>" + "<br>".join(f"[{i}] {_esc(r)}" for i, r in enumerate(reasons, 1)) + "</p>")
    return "".join(out)


def _classes(rows) -> list[list[str]]:
    out = []
    for row in rows:
        cl = [""]
        for v in row[1:]:
            cl.append("na" if v.startswith("n/a") else ("pos" if v.startswith("+") else "neg"))
        out.append(cl)
    return out


def _corr_table(study: Study, level: str, scopes: list[str]) -> str:
    header, rows, reasons = render.table_rows(study, level, scopes)
    return _table(header, rows, reasons, _classes(rows))


def _png(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG"):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def image_paths(root: Path, dataset: str, attacks: list[str]) -> dict[str, tuple[Path, Path]]:
    """item_id -> (original, reconstruction) PNG paths, from each attack's index.csv."""
    out = {}
    for attack in attacks:
        folder = Path(root) / "data" / "attacks" / dataset / attack
        try:
            with open(folder / "index.csv", encoding="utf-8", newline="") as fh:
                for row in csv.DictReader(fh):
                    out[row["item_id"]] = (folder / row["original"], folder / row["reconstruction"])
        except (OSError, KeyError):
            continue
    return out


def sample_items(images: pd.DataFrame, k: int, seed: int, dataset: str) -> pd.DataFrame:
    """k reconstructions drawn with the params seed, annotated ones first, ordered by recognised rate."""
    pool = images[images["annotators"] > 0]
    if pool.empty:
        pool = images
    if pool.empty or k <= 0:
        return pool.iloc[:0]
    rng = rng_for(seed, f"grid/{dataset}")
    pick = np.sort(rng.choice(len(pool), size=min(k, len(pool)), replace=False))
    chosen = pool.iloc[pick]
    return chosen.sort_values(["recognised_rate", "item_id"], ascending=[False, True], na_position="last")


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    v = float(v)
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _grid(root: Path, study: Study, dataset: str, attacks: list[str], k: int, seed: int) -> str:
    d = study.dataset(dataset)
    paths = image_paths(root, dataset, attacks)
    cells = []
    for row in sample_items(d.images, k, seed, dataset).itertuples(index=False):
        figs = []
        for label, path in zip(("original", "reconstruction"), paths.get(row.item_id, (None, None))):
            src = _png(path) if path is not None else None
            figs.append(f"<figure><img src='{src}' alt='{label}' title='{_esc(row.item_id)} {label}'>"
                        f"<figcaption>{label}</figcaption></figure>" if src else
                        f"<figure><div class='missing'>no image</div><figcaption>{label}</figcaption></figure>")
        if row.annotators > 0 and math.isfinite(row.recognised_rate):
            rec = int(round(row.recognised_rate * row.annotators))
            cls = "rec" if row.recognised_rate > 0.5 else "unrec"
            verdict = f"<div class='verdict {cls}'>people: {rec}/{row.annotators} recognised</div>"
        else:
            verdict = "<div class='verdict'>not annotated</div>"
        values = "".join(f"<dt>{LABELS[m]}</dt><dd>{_fmt(getattr(row, m))}</dd>" for m in IMAGE_METRICS)
        cells.append(f"<div class='cell'><div class='pair'>{''.join(figs)}</div>{verdict}"
                     f"<div>{_esc(row.model)} · {_esc(row.attack)}</div><dl>{values}</dl></div>")
    if not cells:
        return "<p>No reconstructions.</p>"
    return "<div class='grid'>" + "".join(cells) + "</div>"


def _scatter(study: Study, dataset: str) -> str:
    d = study.dataset(dataset)
    sets = d.sets[d.sets["unrecognised_rate"].notna()]
    if sets.empty:
        return f"<p>No scatter: {_esc(d.annotation_note or 'no annotated set')}.</p>"
    panels = []
    for m in SET_IMAGE_METRICS:
        if sets[m].isna().all():
            continue
        r = get(study, "model", dataset, m, "spearman")
        note = f"ρ={r['value']:+.2f}" if r and math.isfinite(r["value"]) else "ρ n/a"
        panels.append({"title": LABELS[m], "x": sets["unrecognised_rate"], "y": sets[m], "note": note})
    from . import figures  # matplotlib is imported only when a figure is drawn

    return "<div class='figure'>" + figures.scatter_grid(panels, xlabel="unrecognised rate") + "</div>"


def _bars(study: Study, datasets: list[str]) -> str:
    scopes = datasets + [POOLED]
    series = {s: [get(study, "model", s, m, "spearman").get("oriented", math.nan) for m in SET_METRICS]
              for s in scopes}
    from . import figures

    return "<div class='figure'>" + figures.grouped_bars([LABELS[m] for m in SET_METRICS], series,
                                                         ylabel="oriented Spearman (model level)") + "</div>"


def build_html(root: Path, study: Study, datasets: list[str], attacks: list[str], settings, grid_images: int) -> str:
    lines = render.banner(study)
    if lines:
        ban = ("<div class='banner' id='provenance'><strong>Read with care:</strong><ul>"
               + "".join(f"<li>{_esc(x)}</li>" for x in lines) + "</ul></div>")
    else:
        ban = ("<div class='banner ok' id='provenance'>Every result rests on human annotations and "
               "ImageNet-pretrained LPIPS/FID backbones.</div>")
    scopes = datasets + [POOLED]
    body = [f"<h1>How faithfully each metric follows human judgement</h1>{ban}",
            "<p>Cells: oriented Spearman ρ [bootstrap interval] / Kendall τ-b; higher = more faithful to people (PSNR, SSIM and "
            "classification are expected to fall as the unrecognised rate rises, MSE, LPIPS, FID, SemSim and the "
            f"CE baseline to rise). {settings.reps} bootstrap resamples; signed values, p-values and "
            f"{settings.confidence:.0%} intervals are in correlations.csv. Column “all” pools within datasets "
            "(percentile ranks within each dataset first).</p>",
            "<h2 id='model-level'>Model level: each (model, attack) set vs its unrecognised rate</h2>",
            _corr_table(study, "model", scopes), _bars(study, datasets),
            "<h2 id='image-level'>Image level: each reconstruction vs its recognised rate</h2>",
            _corr_table(study, "image", scopes)]
    if study.held_out:
        body += ["<h2 id='generalisation'>Generalisation: held-out attacks and backbones</h2>",
                 "<p>Every metric on the items a SemSim trained without that attack / attacked backbone scored. "
                 "The per-dataset SemSim columns above are leave-one-dataset-out already.</p>",
                 "<h3>Model level</h3>", _corr_table(study, "model", study.held_out),
                 "<h3>Image level</h3>", _corr_table(study, "image", study.held_out)]
    body.append("<h2 id='contradictions'>Contradictions between metrics (image level)</h2><p>Upper triangle: "
                "Spearman between metrics oriented so that higher = more recognisable; lower triangle: share of "
                "image pairs that the two metrics order oppositely.</p>")
    for scope in [d.name for d in study.datasets if d.annotated] + ([POOLED] if any(d.annotated for d in study.datasets) else []):
        header, rows = render.contradiction_matrix(study, scope)
        body.append(f"<h3>{_esc(render.column_label(study, scope))}</h3>" + _table(header, rows))
    body.append("<h2 id='datasets'>Per dataset: scatter plots and reconstructions</h2>")
    for name in datasets:
        body.append(f"<h3>{_esc(render.column_label(study, name))}</h3>")
        body.append(_scatter(study, name))
        body.append(_grid(root, study, name, attacks, grid_images, settings.seed))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>SemSim study report</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
