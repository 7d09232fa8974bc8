"""Every figure and LaTeX table the report writes, built once from the study.

The page inlines the same SVGs that land in reports/report/figures/ (with a PDF twin each), and
the LaTeX tables in reports/report/tables/ carry the same cells as the page and report.md, so
the paper, the page and the Markdown cannot drift apart. Figures (about a second each, and the
stage reruns on every alpha experiment): one multi-panel scatter per annotated dataset, the
Spearman bar chart, the disagreement figure, and the alpha sweep when its CSV exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from . import checks_table, disagreement, latex, render
from .figures import Rendered
from .images import image_paths, rgb
from .orientation import LABELS, SET_IMAGE_METRICS, SET_METRICS
from .study import POOLED, Study, get

ALPHA_SWEEP = Path("reports") / "alpha_sweep" / "alpha_sweep.csv"  # by `python -m semsim_study.analysis.alpha_sweep`


@dataclass
class Artifacts:
    figures: dict[str, Rendered] = field(default_factory=dict)      # name -> SVG + PDF
    tables: dict[str, str] = field(default_factory=dict)            # name -> LaTeX
    pairs: list[disagreement.Pair] = field(default_factory=list)    # one per dataset that has one
    no_pair: list[str] = field(default_factory=list)                # annotated datasets without one
    alpha_rows: list[dict] | None = None                            # None: no alpha sweep CSV
    alpha_source: str = ""                                           # the CSV's path, for the page


def rate_label(study: Study, dataset: str) -> str:
    """The scatter's x label: whose rate it is ('simulated annotators' when simulated)."""
    return f"unrecognised rate ({render.annotators(study.dataset(dataset).annotation_source)})"


def _panel_title(study: Study, dataset: str, metric: str) -> str:
    r = get(study, "model", dataset, metric, "spearman")
    if not r or not math.isfinite(r["value"]):
        return f"{LABELS[metric]}\nρ n/a"
    return f"{LABELS[metric]}\nρ = " + render.interval_text(r["value"], r["ci_low"], r["ci_high"]).replace("-", "−")


def scatter_figure(study: Study, dataset: str, confidence: float) -> Rendered | None:
    """Each set's metric against its unrecognised rate, one panel per metric; None without data."""
    from . import figures

    d = study.dataset(dataset)
    sets = d.sets[d.sets["unrecognised_rate"].notna()]
    panels = [{"title": _panel_title(study, dataset, m), "ylabel": LABELS[m], "x": sets["unrecognised_rate"],
               "y": sets[m]} for m in SET_IMAGE_METRICS if not sets.empty and sets[m].notna().any()]
    if not panels:
        return None
    return figures.export(figures.scatter_panels(panels, xlabel=rate_label(study, dataset), confidence=confidence))


def bar_series(study: Study, scopes: list[str]) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """scope -> (oriented model-level Spearman, interval low, high) per metric."""
    out = {}
    for s in scopes:
        rows = [get(study, "model", s, m, "spearman") for m in SET_METRICS]
        out[render.column_label(study, s)] = tuple([r.get(k, math.nan) for r in rows] for k in
                                                   ("oriented", "oriented_ci_low", "oriented_ci_high"))
    return out


def bars_figure(study: Study, datasets: list[str], confidence: float) -> Rendered:
    from . import figures

    return figures.export(figures.interval_bars([LABELS[m] for m in SET_METRICS],
                                                bar_series(study, datasets + [POOLED]),
                                                ylabel="oriented Spearman ρ (model level)", confidence=confidence))


def _fmt(metric: str, value: float) -> str:
    text = f"{value:.1f}" if metric == "psnr" else f"{value:.2f}"
    text = text[1:] if text.lstrip("-0.") == "" else text     # "-0.00" has no sign
    return f"{text} dB" if metric == "psnr" else text


def column_titles(who: str) -> list[str]:
    """The disagreement figure's three column titles (the page uses the same words)."""
    return ["original", "A: the metrics rank it more similar", f"B: the {who} recognise it"]


def pair_caption(pair: disagreement.Pair, which: str) -> str:
    """Caption under A or B: model and attack, the compared metrics' values, the verdict."""
    row = pair.a if which == "a" else pair.b
    values = " · ".join(f"{LABELS[m]} {_fmt(m, row[m])}" for m in disagreement.COMPARED)
    return (f"{row['model']} · {row['attack']}\n{values}\n"
            + render.verdict(row["recognised_rate"], int(row["annotators"]), row.get("annotation_source")))


def disagreement_figure(root: Path, pairs: list[disagreement.Pair], attacks: list[str], who: str) -> Rendered:
    from . import figures

    rows, titles = [], []
    for pair in pairs:
        paths = image_paths(root, pair.dataset, attacks)
        a, b = paths.get(pair.a["item_id"], (None, None)), paths.get(pair.b["item_id"], (None, None))
        rows.append([(rgb(a[0]), f"original {pair.image_id}"), (rgb(a[1]), pair_caption(pair, "a")),
                     (rgb(b[1]), pair_caption(pair, "b"))])
        titles.append(pair.dataset)
    columns = [t.replace(" it ", " it\n").replace(f"the {who} ", f"the {who}\n") for t in column_titles(who)]
    return figures.export(figures.image_rows(rows, row_titles=titles, column_titles=columns))


def correlation_tables(study: Study, datasets: list[str], confidence: float) -> dict[str, str]:
    """model_level, image_level (and generalisation_*) as LaTeX: the same cells as the page."""
    out = {}
    scopes = datasets + [POOLED]
    what = (f"oriented coefficient [{confidence:.0%} bootstrap interval]"
            + ("; last rows: the noise ceiling, the most any metric could reach" if study.ceiling is not None else ""))
    specs = [("model_level", "model", scopes,
              f"Model level: each (model, attack) set's metric vs its unrecognised rate; {what}."),
             ("image_level", "image", scopes,
              f"Image level: each reconstruction's metric vs its recognised rate; {what}.")]
    if study.held_out:
        specs += [(f"generalisation_{lvl}", lvl, study.held_out,
                   f"Held-out attacks and backbones, {lvl} level; {what}.") for lvl in ("model", "image")]
    for name, level, cols, caption in specs:
        header, rows, reasons = render.table_rows(study, level, cols)
        out[name] = latex.table(header, rows, notes=reasons, caption=caption, label=f"tab:{name.replace('_', '-')}")
    return out


def contradiction_tables(study: Study) -> dict[str, str]:
    out = {}
    for scope in render.contradiction_scopes(study):
        header, rows = render.contradiction_matrix(study, scope)
        out[f"contradictions_{scope}"] = latex.table(
            header, rows, caption=f"Contradictions between metrics ({scope}): upper triangle Spearman between "
            "metrics oriented so that higher = more recognisable, lower triangle share of image pairs ordered "
            "oppositely.", label=f"tab:contradictions-{scope}")
    return out


def alpha_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["experiment", "α", "SemSim ρ", "SemSim τ", "scope"]
    fmt = lambda v: f"{v:+.3f}" if math.isfinite(v) else "n/a"  # noqa: E731
    return header, [[str(r["experiment"]), f"{r['alpha']:g}", fmt(r["semsim_spearman"]), fmt(r["semsim_kendall"]),
                     str(r["scope"])] for r in rows]


def _alpha_sweep(root: Path, art: Artifacts) -> None:
    """Read reports/alpha_sweep/alpha_sweep.csv if present (made after `dvc exp` runs; never required)."""
    path = Path(root) / ALPHA_SWEEP
    if not path.is_file():
        return
    from . import alpha_sweep, figures

    art.alpha_rows = alpha_sweep.read_csv(path)
    art.alpha_source = ALPHA_SWEEP.as_posix()
    if art.alpha_rows:
        art.figures["alpha-sweep"] = figures.export(alpha_sweep.figure(art.alpha_rows))
        art.tables["alpha_sweep"] = latex.table(*alpha_table(art.alpha_rows), caption=(
            f"SemSim's oriented model-level correlation against the triplet margin alpha (from {art.alpha_source})."),
            label="tab:alpha-sweep")


def build(root: Path, study: Study, datasets: list[str], attacks: list[str], confidence: float) -> Artifacts:
    art = Artifacts()
    art.figures["spearman-model"] = bars_figure(study, datasets, confidence)
    for name in datasets:
        fig = scatter_figure(study, name, confidence)
        if fig is not None:
            art.figures[f"scatter-{name}"] = fig
    for d in study.datasets:
        if not d.annotated:
            continue
        pair = disagreement.pick(d.images, d.name)
        if pair is None:
            art.no_pair.append(d.name)
        else:
            art.pairs.append(pair)
    if art.pairs:
        art.figures["disagreement"] = disagreement_figure(root, art.pairs, attacks, render.study_annotators(study))
    art.tables.update(correlation_tables(study, datasets, confidence))
    art.tables.update(contradiction_tables(study))
    controls, _, _ = checks_table.rows(Path(root), datasets)
    art.tables["controls"] = latex.table(checks_table.HEADER, controls, caption="Controls on the annotators and "
                                         "on SemSim (see report.md).", label="tab:controls")
    _alpha_sweep(root, art)
    return art


def markdown(study: Study, art: Artifacts) -> str:
    """report.md's sections for the disagreement pairs, the alpha sweep and the figure files."""
    who = render.study_annotators(study)
    parts = [f"## Metrics vs {who} disagree\n", disagreement.RULE + " Figure: `figures/disagreement.svg` / `.pdf`.\n"]
    for pair in art.pairs:
        parts.append(f"- **{pair.dataset}**, original `{pair.image_id}`: A = "
                     + pair_caption(pair, "a").replace("\n", "; ") + "; B = " + pair_caption(pair, "b").replace("\n", "; "))
    parts += [f"- {name}: no such pair." for name in art.no_pair]
    parts.append("\n## Alpha sweep\n")
    if art.alpha_rows is None:
        parts.append("No `reports/alpha_sweep/alpha_sweep.csv` yet (see docs/report.md, \"The alpha sweep\").\n")
    else:
        header, rows = alpha_table(art.alpha_rows)
        parts.append(f"From `{art.alpha_source}`; figure `figures/alpha-sweep.svg`.\n")
        parts.append("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
                     + "".join("| " + " | ".join(r) + " |\n" for r in rows))
    parts.append("\n## Files\n")
    parts.append("Figures (SVG and PDF): " + ", ".join(f"`figures/{n}`" for n in art.figures) + ". LaTeX tables "
                 "(booktabs): " + ", ".join(f"`tables/{n}.tex`" for n in art.tables) + ".\n")
    return "\n".join(parts) + "\n"
