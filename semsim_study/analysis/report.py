"""The report stage's library entry: inputs -> every report file (settings: ``config``)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from .. import atomic
from . import artifacts, checks_table, noise_ceiling, page, render, study as S
from .config import ReportConfig
from .headline import by_scope, headline


def _csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n", float_format="%.6g")
    return buf.getvalue()


def write(root: Path, out: Path, cfg: ReportConfig, metrics: Path | None = None,
          reuse: S.Reuse | None = None, ceiling_reuse: noise_ceiling.Reuse | None = None,
          headline_dir: Path | None = None) -> S.Study:
    """Compute everything (taking matching rows from ``reuse`` and ``ceiling_reuse``, see
    ``precomputed``), then write each file atomically (plots/, figures/, tables/ and the
    headline folder as swapped-in folders)."""
    study = S.build(root, cfg.datasets, cfg.held_out_attacks, cfg.held_out_backbones, cfg.bootstrap, reuse=reuse)
    study.ceiling = noise_ceiling.compute(Path(root), study, cfg.bootstrap, ceiling_reuse)
    out = Path(out)
    art = artifacts.build(Path(root), study, cfg.datasets, cfg.attacks, cfg.bootstrap.confidence)
    html = page.build_html(root, study, cfg.datasets, cfg.attacks, cfg.bootstrap, cfg.grid_images, art)
    md = (render.markdown(study, cfg.datasets, cfg.bootstrap) + "\n" + artifacts.markdown(study, art)
          + checks_table.markdown(Path(root), cfg.datasets))
    with atomic.build_dir(out / "figures") as tmp:
        for name, fig in art.figures.items():
            (tmp / f"{name}.svg").write_text(fig.svg, encoding="utf-8")
            (tmp / f"{name}.pdf").write_bytes(fig.pdf)
    with atomic.build_dir(out / "tables") as tmp:
        for name, text in art.tables.items():
            (tmp / f"{name}.tex").write_text(text, encoding="utf-8")
    with atomic.build_dir(out / "plots") as tmp:
        for name, df in render.scatter_frames(study).items():
            (tmp / "scatter" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / "scatter" / name).write_text(_csv(df), encoding="utf-8")
        (tmp / "spearman").mkdir()
        for name, df in render.bar_frames(study, cfg.datasets).items():
            (tmp / "spearman" / name).write_text(_csv(df), encoding="utf-8")
    atomic.write_text(out / "correlations.csv", _csv(study.correlations[list(S.CORR_COLUMNS)]))
    atomic.write_json(out / "provenance.json", {"datasets": render.provenance(study), "banner": render.banner(study),
                                                "held_out": study.held_out, "held_out_notes": study.notes})
    atomic.write_text(out / "report.md", md)
    atomic.write_text(out / "index.html", html)
    summary = S.summary(study)
    summary["noise_ceiling"] = noise_ceiling.summary(study)
    atomic.write_json(out / "summary.json", summary)
    if metrics is not None:
        atomic.write_json(metrics, headline(summary))
    if headline_dir is not None:
        with atomic.build_dir(Path(headline_dir)) as tmp:
            for scope, row in by_scope(summary).items():
                atomic.write_json(tmp / f"{scope}.json", row)
    return study
