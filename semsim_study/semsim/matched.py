"""PSNR-matched pairs, and PSNR, SSIM and LPIPS as triplet scorers (our addition to the paper).

Triplet accuracy over every (recognised, unrecognised) pair of reconstructions of one original
rewards any score that follows pixel distance wherever the crowd does: a recognised
reconstruction is usually the one with the higher PSNR. It cannot tell a learned metric from
PSNR itself. The *matched* pairs are the pairs whose two reconstructions are about equally far
from the original in pixels: their PSNRs (vs the original) differ by at most
``semsim.matched_db`` dB (default 2). There, PSNR is near chance by construction, and a scorer
is right only if it sees what pixel distance misses.

The per-reconstruction PSNR, SSIM and LPIPS come from the metrics stage's table
(``data/metrics/<dataset>/images.csv``), so the SemSim stages depend on ``data/metrics``. Each
is oriented by ``metric_table``: PSNR and SSIM are higher for a closer reconstruction, LPIPS
lower; as scorers they are turned into "smaller = closer" (PSNR and SSIM negated), the way
SemSim's distance reads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

from .. import metric_table as T
from .. import params as P
from ..errors import ConfigError, DataError
from .items import Item, csv_rows

KEY = "semsim.matched_db"
DEFAULT_DB = 2.0
SCORERS = ("psnr", "ssim", "lpips")  # the metrics stage's per-image metrics used as scorers
MATCH_ON = "psnr"


def from_params(params: Mapping) -> float:
    """``semsim.matched_db``: the largest PSNR difference (dB) of a matched pair; finite, >= 0."""
    value = P.get(params, KEY, (int, float), DEFAULT_DB)
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"params: '{KEY}' (the largest PSNR difference, in dB, of a matched pair) must be a "
                          f"finite number >= 0, got {value!r}")
    return float(value)


def read_pixel_metrics(root: str | Path, datasets: Sequence[str]) -> dict[str, dict[str, float]]:
    """item_id -> {psnr, ssim, lpips} from every dataset's ``data/metrics/<ds>/images.csv``.
    A missing file, column or value is a DataError naming file and line."""
    out: dict[str, dict[str, float]] = {}
    for ds in datasets:
        path = Path(root) / "data" / "metrics" / ds / "images.csv"
        for n, row in csv_rows(path, ("item_id", *SCORERS), "run the metrics stage"):
            values = {}
            for col in SCORERS:
                try:
                    values[col] = float(row[col])
                except ValueError:
                    values[col] = math.nan
                if math.isnan(values[col]):
                    raise DataError(f"{path}:{n}: {col} {row[col]!r} is not a number")
            out[row["item_id"]] = values
    return out


def pixel_values(items: Sequence[Item], table: Mapping[str, Mapping[str, float]], where: str = "data/metrics"
                 ) -> dict[str, list[float]]:
    """Per metric of ``SCORERS``, one value per item (as read from the table); every item must have a row."""
    missing = [it.item_id for it in items if it.item_id not in table]
    if missing:
        raise DataError(f"{where}: no metrics row for {len(missing)} reconstruction(s), e.g. {missing[0]!r} "
                        "(rerun the metrics stage)")
    return {m: [table[it.item_id][m] for it in items] for m in SCORERS}


def as_scores(metric: str, values: Sequence[float]) -> list[float]:
    """Values of a pixel metric as a triplet scorer: smaller = closer to the original."""
    sign = -1.0 if T.BY_NAME[metric].higher_is_similar else 1.0
    return [sign * v for v in values]
