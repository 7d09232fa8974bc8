"""Training curves written the way `dvc plots show` reads them best.

DVCLive (used here before) writes one file per run and quantity, and DVC draws one chart per
file: 80 charts for the embedded train stage alone, each titled with a path. A reader compares
the models of a dataset, so each quantity is one long-format CSV here (``step``, ``series``,
then a column named after the quantity, which DVC takes as the y axis), and the
``lines_by_series`` template in .dvc/plots/ draws one line per series in one chart.

Ground floor: the standard library only; rows are written in a fixed order with fixed
formatting, so the same history gives the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

History = Sequence[Mapping[str, float]]  # one mapping per epoch: quantity -> value


def _fmt(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else ""


def _quantities(histories: Mapping[str, History], skip: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for history in histories.values():
        for epoch in history:
            for key in epoch:
                if key not in skip:
                    seen.setdefault(key)
    return list(seen)


def by_quantity(folder: str | Path, histories: Mapping[str, History], skip: Sequence[str] = ()) -> list[Path]:
    """One chart per quantity, one line per series (e.g. the models of a dataset):
    ``folder/<quantity>.csv`` with columns step, series, <quantity>. Steps count from 1 (epochs)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for quantity in _quantities(histories, skip):
        lines = [f"step,series,{quantity}"]
        for series, history in histories.items():
            lines += [f"{step},{series},{_fmt(float(epoch[quantity]))}"
                      for step, epoch in enumerate(history, start=1) if quantity in epoch]
        path = folder / f"{quantity}.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
    return written


def one_chart(path: str | Path, history: History, skip: Sequence[str] = ()) -> Path:
    """One chart for one run, one line per quantity: ``path`` with columns step, series, value
    (for runs whose quantities share a scale, such as a loss and accuracies)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["step,series,value"]
    for quantity in _quantities({"": history}, skip):
        lines += [f"{step},{quantity},{_fmt(float(epoch[quantity]))}"
                  for step, epoch in enumerate(history, start=1) if quantity in epoch]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
