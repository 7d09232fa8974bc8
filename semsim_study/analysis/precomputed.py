"""Correlations computed upstream of the report (stage `correlate`), reused where their data match.

Most of the report's time is the bootstrap behind every interval, and an alpha experiment
changes only the triplet SemSim's scores: every other metric's intervals would be recomputed
to the same numbers. Stage ``correlate`` computes those metrics' rows before SemSim exists
(it reads no SemSim output) and writes each with the fingerprint of the data and settings it
came from (``correlate.fingerprint``). The report takes a row only when its own fingerprint
for that metric and scope is the same, and computes it otherwise: a stale or foreign file can
cost time, never change a number.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from .. import metric_table as T
from ..atomic import write_text
from ..errors import DataError
from . import study as S
from .correlate import COEFFICIENTS
from .inputs import read_table
from .orientation import SET_METRICS

#: the score stages stage ``correlate`` reads; the triplet SemSim's ('semsim') is left to the report
SCORE_STAGES = ("ce_baseline",)
#: every metric whose values exist before the triplet SemSim runs (SemSim's own columns excluded)
METRICS = tuple(m for m in SET_METRICS if m not in T.names(stage="semsim"))
COLUMNS = (*S.CORR_COLUMNS, S.FINGERPRINT)
DEFAULT_PATH = Path("data/correlations/correlations.csv")  # relative to the project root
_TEXT = ("level", "scope", "metric", "coefficient", "reason", S.FINGERPRINT)


def compute(root: Path, datasets: list[str], held_out_attacks: list[str], held_out_backbones: list[str],
            settings: S.Settings) -> pd.DataFrame:
    """The rows of every metric in ``METRICS``, with fingerprints, as the report would compute them."""
    study = S.build(root, datasets, held_out_attacks, held_out_backbones, settings, metrics=METRICS,
                    score_stages=SCORE_STAGES)
    return study.correlations[list(COLUMNS)]


def write(path: Path, rows: pd.DataFrame) -> None:
    """Floats as Python writes them (shortest exact form): read back, they are the same numbers."""
    buf = io.StringIO()
    rows[list(COLUMNS)].to_csv(buf, index=False, lineterminator="\n")
    write_text(path, buf.getvalue())


def read(path: Path) -> S.Reuse:
    """(level, scope, metric, fingerprint) -> that metric's rows; rows without data are not offered."""
    path = Path(path)
    # pandas' default float parser reads back what it wrote exactly (a test checks the bytes)
    df = read_table(path, COLUMNS, "precomputed correlations (stage correlate)", text=_TEXT, keep_default_na=False,
                    na_values={c: ["", "NaN", "nan"] for c in COLUMNS if c not in _TEXT})
    try:
        for c in ("n", "expected_sign"):
            df[c] = df[c].astype(int)
        for c in COLUMNS:
            if c not in _TEXT and c not in ("n", "expected_sign"):
                df[c] = df[c].astype(float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: a number column holds something else ({exc}); rerun stage correlate") from None
    out: dict = {}
    for row in df[list(COLUMNS)].to_dict("records"):
        if row[S.FINGERPRINT]:
            out.setdefault((row["level"], row["scope"], row["metric"], row[S.FINGERPRINT]), []).append(row)
    incomplete = [k for k, rows in out.items() if len(rows) != len(COEFFICIENTS)]
    if incomplete:
        raise DataError(f"{path}: {len(incomplete)} metric(s) without one row per coefficient, "
                        f"e.g. {'/'.join(incomplete[0][:3])}; rerun stage correlate")
    return out
