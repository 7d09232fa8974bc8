"""The report stage's library entry: params -> settings, inputs -> every report file.

Params read (and tracked by the `report` stage): seed, datasets, attacks,
semsim.held_out_attacks, semsim.held_out_backbones, report.bootstrap, report.confidence,
report.grid_images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import atomic, params as P
from ..errors import ConfigError
from . import artifacts, crowd_controls, page, render, study as S
from .headline import headline


@dataclass(frozen=True)
class ReportConfig:
    datasets: list[str]
    attacks: list[str]
    held_out_attacks: list[str] = field(default_factory=list)
    held_out_backbones: list[str] = field(default_factory=list)
    settings: S.Settings = S.Settings()
    grid_images: int = 8


def _names(params, key: str, default) -> list[str]:
    value = P.get(params, key, list, default)
    if not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"params: '{key}' must be a list of names, got {value!r}")
    return list(value)


def from_params(params: dict) -> ReportConfig:
    P.known(params, "report", ("bootstrap", "confidence", "grid_images"))
    reps = P.get(params, "report.bootstrap", int, 1000)
    if reps < 0:
        raise ConfigError(f"params: 'report.bootstrap' must be >= 0 (0 = no intervals), got {reps}")
    grid = P.get(params, "report.grid_images", int, 8)
    if grid < 0:
        raise ConfigError(f"params: 'report.grid_images' must be >= 0, got {grid}")
    confidence = P.fraction(params, "report.confidence", 0.95)
    return ReportConfig(
        datasets=_names(params, "datasets", None), attacks=_names(params, "attacks", None),
        held_out_attacks=_names(params, "semsim.held_out_attacks", []),
        held_out_backbones=_names(params, "semsim.held_out_backbones", []),
        settings=S.Settings(reps=reps, confidence=confidence, seed=P.get(params, "seed", int, 0)),
        grid_images=grid)


def _csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n", float_format="%.6g")
    return buf.getvalue()


def write(root: Path, out: Path, cfg: ReportConfig, metrics: Path | None = None) -> S.Study:
    """Compute everything, then write each file atomically (plots/, figures/, tables/ as swapped-in folders)."""
    study = S.build(root, cfg.datasets, cfg.held_out_attacks, cfg.held_out_backbones, cfg.settings)
    out = Path(out)
    art = artifacts.build(Path(root), study, cfg.datasets, cfg.attacks, cfg.settings.confidence)
    html = page.build_html(root, study, cfg.datasets, cfg.attacks, cfg.settings, cfg.grid_images, art)
    md = (render.markdown(study, cfg.datasets, cfg.settings) + "\n" + artifacts.markdown(study, art)
          + crowd_controls.markdown(Path(root), cfg.datasets))
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
    atomic.write_text(out / "correlations.csv", _csv(study.correlations))
    atomic.write_json(out / "provenance.json", {"datasets": render.provenance(study), "banner": render.banner(study),
                                                "held_out": study.held_out, "held_out_notes": study.notes})
    atomic.write_text(out / "report.md", md)
    atomic.write_text(out / "index.html", html)
    summary = S.summary(study)
    atomic.write_json(out / "summary.json", summary)
    if metrics is not None:
        atomic.write_json(metrics, headline(summary))
    return study
