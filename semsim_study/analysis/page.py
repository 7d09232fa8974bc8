"""The self-contained HTML report: tables, inline SVG plots, image grids, provenance banner.

Everything is inline (CSS, base64 PNGs, SVG), so the single file can be mailed or archived and
opened offline. The sample of reconstructions per dataset is seeded, spread over the range
of human verdicts (sorted by recognised rate), and each shows the verdict and every metric.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import checks_table, disagreement, render
from .artifacts import Artifacts, alpha_table, column_titles, pair_caption
from .correlate import rng_for
from .images import data_uri, image_paths
from .orientation import IMAGE_METRICS, LABELS
from .study import POOLED, Study

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem auto;max-width:1150px;color:#222;
 padding:0 1rem;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}h3{font-size:1rem}
.banner{background:#fff4d6;border:1px solid #e0b84c;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
.banner.ok{background:#e8f5e9;border-color:#81c784}.banner li{margin:.2rem 0}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right;white-space:nowrap}th:first-child,td:first-child{text-align:left;white-space:normal}
thead th{background:#f3f3f3}td.na{color:#999}td.pos{background:#eef7ee}td.neg{background:#fbeaea}
.notes{font-size:.8rem;color:#555}.figure svg{max-width:100%;height:auto}
.grid{display:flex;flex-wrap:wrap;gap:.6rem}
.cell{border:1px solid #ddd;border-radius:4px;padding:.35rem;width:170px;font-size:.72rem}
.pair{display:flex;gap:4px}.pair figure{margin:0;text-align:center}.pair figcaption{font-size:.65rem;color:#666}
.pair img{width:80px;height:80px;image-rendering:pixelated;display:block;border:1px solid #eee}
.verdict{font-weight:600;margin:.2rem 0}.verdict.rec{color:#2e7d32}.verdict.unrec{color:#c62828}
.cell dl{display:grid;grid-template-columns:auto auto;margin:0;gap:0 .4rem}.cell dd{margin:0;text-align:right}
.missing{width:80px;height:80px;background:#eee;color:#888;display:flex;align-items:center;justify-content:center}
tr.tau td{color:#555;border-top-style:dotted}
tr.ceiling td{border-top:2px solid #999;font-style:italic}
.disagree{display:flex;gap:1rem;flex-wrap:wrap;margin:.4rem 0 1rem;align-items:flex-start}
.disagree h4{width:100%;margin:.2rem 0}
.disagree figure{margin:0;width:215px;font-size:.72rem}.disagree figcaption{white-space:pre-line}
.disagree img,.disagree .missing{width:192px;height:192px;image-rendering:pixelated;display:block;border:1px solid #ccc}
.disagree .label{font-weight:600;display:block}
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
    """Cell classes: n/a grey, positive (follows the annotators) green, negative red."""
    return [["", ""] + ["na" if v.startswith("n/a") else ("pos" if v.startswith("+") else "neg") for v in row[2:]]
            for row in rows]


def _corr_table(study: Study, level: str, scopes: list[str]) -> str:
    header, rows, reasons = render.table_rows(study, level, scopes)
    # the tau row under each metric is lighter, so a metric's two rows read as one; the noise
    # ceiling's rows stand apart from the metrics'
    return (_table(header, rows, reasons, _classes(rows))
            .replace("<tr><td></td><td>τ</td>", "<tr class='tau'><td></td><td>τ</td>")
            .replace(f"<tr><td>{render.CEILING_LABEL}</td>", f"<tr class='ceiling'><td>{render.CEILING_LABEL}</td>"))


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


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    v = float(v)
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _img(path: Path | None, label: str, title: str, caption: str = "") -> str:
    src = data_uri(path)
    inner = (f"<img src='{src}' alt='{_esc(label)}' title='{_esc(title)}'>" if src else
             "<div class='missing'>no image</div>")
    return f"<figure>{inner}<figcaption>{caption or _esc(label)}</figcaption></figure>"


def _grid(root: Path, study: Study, dataset: str, attacks: list[str], k: int, seed: int) -> str:
    d = study.dataset(dataset)
    paths = image_paths(root, dataset, attacks)
    cells = []
    for row in sample_items(d.images, k, seed, dataset).itertuples(index=False):
        figs = [_img(path, label, f"{row.item_id} {label}")
                for label, path in zip(("original", "reconstruction"), paths.get(row.item_id, (None, None)))]
        if row.annotators > 0 and math.isfinite(row.recognised_rate):
            cls = "rec" if row.recognised_rate > 0.5 else "unrec"
            text = render.verdict(row.recognised_rate, row.annotators, row.annotation_source)
            verdict = f"<div class='verdict {cls}'>{_esc(text)}</div>"
        else:
            verdict = "<div class='verdict'>not annotated</div>"
        values = "".join(f"<dt>{LABELS[m]}</dt><dd>{_fmt(getattr(row, m))}</dd>" for m in IMAGE_METRICS)
        cells.append(f"<div class='cell'><div class='pair'>{''.join(figs)}</div>{verdict}"
                     f"<div>{_esc(row.model)} · {_esc(row.attack)}</div><dl>{values}</dl></div>")
    if not cells:
        return "<p>No reconstructions.</p>"
    return "<div class='grid'>" + "".join(cells) + "</div>"


def _figure(art: Artifacts, name: str, fallback: str = "") -> str:
    """The figure's inline SVG (the bytes of reports/report/figures/<name>.svg), or a line why not."""
    fig = art.figures.get(name)
    if fig is None:
        return f"<p>{_esc(fallback)}</p>" if fallback else ""
    return f"<div class='figure' id='figure-{name}'>{fig.svg}</div>"


def _disagreement(root: Path, study: Study, art: Artifacts, attacks: list[str]) -> list[str]:
    """Original, A and B per dataset as HTML (sharp, pixel-exact images) beside the SVG/PDF figure."""
    who = render.study_annotators(study)
    out = [f"<h2 id='disagreement'>Metrics vs {_esc(who)} disagree</h2>",
           f"<p class='notes'>{_esc(disagreement.RULE)} Figure: figures/disagreement.svg and .pdf.</p>"]
    _, title_a, title_b = column_titles(who)
    for pair in art.pairs:
        paths = image_paths(root, pair.dataset, attacks)
        a, b = paths.get(pair.a["item_id"], (None, None)), paths.get(pair.b["item_id"], (None, None))
        out.append(f"<div class='disagree' data-dataset='{_esc(pair.dataset)}'>"
                   f"<h4>{_esc(render.column_label(study, pair.dataset))}</h4>"
                   + _img(a[0], "original", pair.a["item_id"], f"<span class='label'>original</span>{_esc(pair.image_id)}")
                   + _img(a[1], "A", pair.a["item_id"], f"<span class='label'>{_esc(title_a)}</span>"
                          + _esc(pair_caption(pair, "a")))
                   + _img(b[1], "B", pair.b["item_id"], f"<span class='label'>{_esc(title_b)}</span>"
                          + _esc(pair_caption(pair, "b")))
                   + "</div>")
    for name in art.no_pair:
        out.append(f"<p class='no-pair'>{_esc(name)}: no pair where {disagreement.metric_names()} all rank one "
                   f"reconstruction above another of the same original while the {_esc(who)} recognise only "
                   "the other.</p>")
    if not art.pairs and not art.no_pair:
        out.append("<p class='no-pair'>No annotated dataset.</p>")
    return out


def _alpha(art: Artifacts) -> list[str]:
    out = ["<h2 id='alpha-sweep'>The alpha sweep (SemSim's triplet margin)</h2>"]
    if art.alpha_rows is None:
        return out + ["<p>No alpha sweep yet: queue `dvc exp run --queue -S alpha=...` runs, `dvc queue start`, then "
                      "`python -m semsim_study.analysis.alpha_sweep` writes reports/alpha_sweep/alpha_sweep.csv, which this page "
                      "shows on its next build.</p>"]
    header, rows = alpha_table(art.alpha_rows)
    return out + [f"<p class='notes'>From {_esc(art.alpha_source)} (written by the alpha_sweep command from "
                  "`dvc exp show`; not a tracked input of this stage).</p>",
                  _figure(art, "alpha-sweep"), _table(header, rows)]


def _datasets(root: Path, study: Study, art: Artifacts, datasets: list[str], attacks: list[str], grid: int,
              bootstrap) -> list[str]:
    body = ["<h2 id='datasets'>Per dataset: scatter plots and reconstructions</h2>",
            "<p class='notes'>Each point is one (model, attack) set; line: ordinary least squares, band: its "
            f"{bootstrap.confidence:.0%} confidence interval (Student t); panel titles: signed Spearman ρ "
            "[bootstrap interval].</p>"]
    for name in datasets:
        d = study.dataset(name)
        body.append(f"<h3>{_esc(render.column_label(study, name))}</h3>")
        body.append(_figure(art, f"scatter-{name}", f"No scatter: {d.annotation_note or 'no annotated set'}."))
        body.append(_grid(root, study, name, attacks, grid, bootstrap.seed))
    return body


def _banner(study: Study) -> str:
    lines = render.banner(study)
    if lines:
        return ("<div class='banner' id='provenance'><strong>Read with care:</strong><ul>"
                + "".join(f"<li>{_esc(x)}</li>" for x in lines) + "</ul></div>")
    return ("<div class='banner ok' id='provenance'>Every result rests on human annotations and "
            "ImageNet-pretrained LPIPS/FID backbones.</div>")


def build_html(root: Path, study: Study, datasets: list[str], attacks: list[str], bootstrap, grid_images: int,
               art: Artifacts) -> str:
    scopes = datasets + [POOLED]
    who = render.study_annotators(study)
    body = [f"<h1>How faithfully each metric follows human judgement</h1>{_banner(study)}",
            f"<p>Cells: oriented Spearman ρ and Kendall τ-b, each with its {bootstrap.confidence:.0%} bootstrap "
            f"interval ({bootstrap.reps} resamples); higher = more faithful to the {_esc(who)} (PSNR, SSIM and "
            "classification are expected to fall as the unrecognised rate rises, MSE, LPIPS, FID, SemSim and the "
            "CE baseline to rise). Signed values and p-values are in correlations.csv; every figure is also in "
            "figures/ (SVG, PDF) and every table in tables/ (LaTeX). Column “all” pools within datasets "
            f"(percentile ranks within each dataset first). {_esc(render.CEILING_NOTE)}</p>",
            "<h2 id='model-level'>Model level: each (model, attack) set vs its unrecognised rate</h2>",
            _corr_table(study, "model", scopes), f"<p>{_esc(render.untrained_note(study, scopes))}</p>",
            _figure(art, "spearman-model"),
            "<h2 id='image-level'>Image level: each reconstruction vs its recognised rate</h2>",
            _corr_table(study, "image", scopes)]
    if study.held_out:
        body += ["<h2 id='generalisation'>Generalisation: held-out attacks and backbones</h2>",
                 "<p>Every metric on the items a SemSim trained without that attack / attacked backbone scored. "
                 "The per-dataset SemSim columns above are leave-one-dataset-out already.</p>",
                 "<h3>Model level</h3>", _corr_table(study, "model", study.held_out),
                 "<h3>Image level</h3>", _corr_table(study, "image", study.held_out)]
    controls, worse, compared = checks_table.rows(root, datasets)
    body += [f"<h2 id='controls'>{_esc(checks_table.TITLE)}</h2><p>{_esc(checks_table.INTRO)}</p>",
             _table(checks_table.HEADER, controls), f"<p>{_esc(checks_table.verdict(worse, compared))}</p>"]
    body += _disagreement(root, study, art, attacks)
    body.append("<h2 id='contradictions'>Contradictions between metrics (image level)</h2><p>Upper triangle: "
                "Spearman between metrics oriented so that higher = more recognisable; lower triangle: share of "
                "image pairs that the two metrics order oppositely.</p>")
    for scope in render.contradiction_scopes(study):
        header, rows = render.contradiction_matrix(study, scope)
        body.append(f"<h3>{_esc(render.column_label(study, scope))}</h3>" + _table(header, rows))
    body += _alpha(art)
    body += _datasets(root, study, art, datasets, attacks, grid_images, bootstrap)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>SemSim study report</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
