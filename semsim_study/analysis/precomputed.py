"""Correlations computed upstream of the report (stage `correlate`), reused where their data match.

Most of the report's time is the bootstrap behind every interval, and an alpha experiment
changes only the triplet SemSim's scores: every other metric's intervals would be recomputed
to the same numbers. Stage ``correlate`` computes those metrics' rows before SemSim exists
(it reads no SemSim output) and writes each with the fingerprint of the data and settings it
came from (``correlate.fingerprint``). The report takes a row only when its own fingerprint
for that metric and scope is the same, and computes it otherwise: a stale or foreign file can
cost time, never change a number. The noise ceiling (``noise_ceiling``: the crowd's split-half
agreement, which reads the answers and no score) goes the same way, in ``noise_ceiling.csv`` beside.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from .. import metric_table as T
from ..atomic import write_text
from ..errors import DataError
from ..executor import process_pool
from . import noise_ceiling, study as S
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
CEILING_COLUMNS = (*noise_ceiling.COLUMNS, S.FINGERPRINT)
_CEILING_TEXT = ("level", "scope", "coefficient", "reason", S.FINGERPRINT)


def ceiling_path(path: Path) -> Path:
    """Where the noise ceiling's rows sit: beside the correlations file."""
    return Path(path).with_name("noise_ceiling.csv")


@contextmanager
def _mapper(workers: int) -> Iterator[Callable]:
    """The builtin ``map``, or with ``workers`` > 1 the ``map`` of a pool of that many processes.

    Every bootstrap depends only on its own data, settings and seeded key (``correlate``), so
    the pool's results, which come back in the order of their jobs, are the same rows."""
    if workers <= 1:
        yield map
        return
    with process_pool(workers) as pool:  # the parent holds no torch or BLAS thread pool (one BLAS thread)
        yield pool.map


def compute(root: Path, datasets: list[str], held_out_attacks: list[str], held_out_backbones: list[str],
            bootstrap: S.BootstrapConfig, workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of every metric in ``METRICS``, and the noise ceiling of every comparison, with
    fingerprints, as the report would compute them; each comparison's bootstraps run side by
    side on ``workers`` processes (the same rows whatever their count)."""
    with _mapper(workers) as run:
        study = S.build(root, datasets, held_out_attacks, held_out_backbones, bootstrap, metrics=METRICS,
                        score_stages=SCORE_STAGES, run=run)
        return study.correlations[list(COLUMNS)], noise_ceiling.compute(root, study, bootstrap, run=run)


def _write(path: Path, rows: pd.DataFrame, columns) -> None:
    """Floats as Python writes them (shortest exact form): read back, they are the same numbers."""
    buf = io.StringIO()
    rows[list(columns)].to_csv(buf, index=False, lineterminator="\n")
    write_text(path, buf.getvalue())


def write(path: Path, rows: pd.DataFrame, ceiling: pd.DataFrame | None = None) -> None:
    """The correlations to ``path``, the noise ceiling (when given) to ``ceiling_path(path)``."""
    _write(path, rows, COLUMNS)
    if ceiling is not None:
        _write(ceiling_path(path), ceiling, CEILING_COLUMNS)


def _read(path: Path, columns, text, ints, key, what: str) -> dict:
    """``key(row)`` -> the rows with a fingerprint, read back exactly; one row per coefficient each."""
    # pandas' default float parser reads back what it wrote exactly (a test checks the bytes)
    df = read_table(path, columns, what, text=text, keep_default_na=False,
                    na_values={c: ["", "NaN", "nan"] for c in columns if c not in text})
    try:
        for c in ints:
            df[c] = df[c].astype(int)
        for c in columns:
            if c not in text and c not in ints:
                df[c] = df[c].astype(float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: a number column holds something else ({exc}); rerun stage correlate") from None
    out: dict = {}
    for row in df[list(columns)].to_dict("records"):
        if row[S.FINGERPRINT]:
            out.setdefault(key(row), []).append(row)
    incomplete = [k for k, rows in out.items() if len(rows) != len(COEFFICIENTS)]
    if incomplete:
        raise DataError(f"{path}: {len(incomplete)} result(s) without one row per coefficient, "
                        f"e.g. {'/'.join(incomplete[0][:-1])}; rerun stage correlate")
    return out


def read(path: Path) -> S.Reuse:
    """(level, scope, metric, fingerprint) -> that metric's rows; rows without data are not offered."""
    return _read(Path(path), COLUMNS, _TEXT, ("n", "expected_sign"),
                 lambda r: (r["level"], r["scope"], r["metric"], r[S.FINGERPRINT]),
                 "precomputed correlations (stage correlate)")


def read_ceiling(path: Path) -> noise_ceiling.Reuse | None:
    """(level, scope, fingerprint) -> that comparison's noise ceiling rows, from beside the
    correlations file ``path``; None when there is no such file."""
    path = ceiling_path(path)
    if not path.exists():
        return None
    return _read(path, CEILING_COLUMNS, _CEILING_TEXT, ("n",),
                 lambda r: (r["level"], r["scope"], r[S.FINGERPRINT]), "precomputed noise ceiling (stage correlate)")
