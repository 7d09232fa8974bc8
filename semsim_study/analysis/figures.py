"""The report's figures (matplotlib), each exported as inline-able SVG and as PDF for a paper.

One drawing path serves both the HTML page (which inlines the SVG) and reports/report/figures/
(SVG + PDF), so the page and the paper never show different plots. Axes sit on round ticks
(``ticks.nice_ticks``; rates always on [0, 1]) and no layout engine runs (fixed margins): a
figure costs about a second, and the stage reruns on every alpha experiment. Same data, same
bytes: ``svg.hashsalt`` fixes SVG ids, and the date/creator metadata are left out of both formats.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from typing import Sequence

import matplotlib
import numpy as np

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

from .regression import ols_band  # noqa: E402
from .ticks import RATE_TICKS, nice_ticks, tick_label  # noqa: E402

matplotlib.rcParams.update({"svg.hashsalt": "semsim-study", "svg.fonttype": "none", "pdf.fonttype": 42,
                            "font.size": 8, "axes.titlesize": 8.5, "axes.spines.top": False,
                            "axes.spines.right": False})
# the PDF backend subsets fonts with fontTools, which logs every glyph at INFO into the stage's log
logging.getLogger("fontTools").setLevel(logging.WARNING)
SVG_META = {"Date": None, "Creator": None}
PDF_META = {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None}
POINT, LINE, BAND = "#33658a", "#c0392b", "#e8a39b"


@dataclass(frozen=True)
class Rendered:
    """One figure in both formats: ``svg`` without its XML prolog (ready to inline), ``pdf`` bytes."""
    svg: str
    pdf: bytes


def export(fig) -> Rendered:
    """Both formats from one drawn figure, which is then closed (pyplot keeps figures alive)."""
    text, data = io.StringIO(), io.BytesIO()
    try:
        fig.savefig(text, format="svg", metadata=SVG_META)
        fig.savefig(data, format="pdf", metadata=PDF_META)
    finally:
        plt.close(fig)
    svg = text.getvalue()
    return Rendered(svg[svg.index("<svg"):], data.getvalue())


def _axis(ax, which: str, ticks: Sequence[float]) -> None:
    """Limits exactly on the first and last tick, labels without float noise."""
    set_lim, set_ticks = (ax.set_xlim, ax.set_xticks) if which == "x" else (ax.set_ylim, ax.set_yticks)
    set_lim(ticks[0], ticks[-1])
    set_ticks(list(ticks), [tick_label(t) for t in ticks])


def _finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[np.isfinite(a)]


def _scatter_panel(ax, panel: dict, confidence: float) -> None:
    x = np.asarray(panel["x"], dtype=float)
    y = np.asarray(panel["y"], dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    ys = y[keep]
    _axis(ax, "x", RATE_TICKS)
    _axis(ax, "y", nice_ticks(float(ys.min()), float(ys.max()), 4) if len(ys) else nice_ticks(math.nan, math.nan))
    band = ols_band(x, y, x_range=(RATE_TICKS[0], RATE_TICKS[-1]), confidence=confidence)
    if band is not None:
        ax.fill_between(band.x, band.low, band.high, color=BAND, alpha=0.45, linewidth=0, zorder=1)
        ax.plot(band.x, band.fit, color=LINE, linewidth=1.1, zorder=2)
    # points on the axis ends (a rate of 0 or 1) are drawn whole, not cut by the frame
    ax.scatter(x[keep], ys, s=9, color=POINT, alpha=0.75, linewidths=0, zorder=3, clip_on=False)
    ax.set_title(panel["title"], loc="left")       # the rho text lives here, never over the points
    ax.set_ylabel(panel["ylabel"], labelpad=2)


def scatter_panels(panels: list[dict], *, xlabel: str, confidence: float = 0.95, columns: int = 3):
    """Panels {title, ylabel, x, y}: each metric against the unrecognised rate, OLS line and band.

    x is a rate, so every panel spans [0, 1]; y is fitted to the points on round ticks. The band
    is the OLS mean's ``confidence`` interval (analytic, no random draws).
    """
    rows = max(1, math.ceil(len(panels) / columns))
    height = 2.05 * rows + 0.35
    fig, axes = plt.subplots(rows, columns, figsize=(2.45 * columns, height), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        _scatter_panel(ax, panel, confidence)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    fig.supxlabel(xlabel, y=0.06 / height, va="bottom")
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.55 / height, top=1 - 0.4 / height, hspace=0.7,
                        wspace=0.42)
    return fig


def interval_bars(groups: list[str], series: dict[str, tuple[list[float], list[float], list[float]]], *,
                  ylabel: str, confidence: float = 0.95):
    """Grouped bars (one per series and group) with interval error bars; NaN bars are gaps.

    ``series``: name -> (values, interval lows, interval highs). The y axis runs from
    min(0, lowest bound) to max(0, highest bound), rounded out to round ticks: fitted to the
    data, not a fixed -1..1 that flattens the differences.
    """
    fig, ax = plt.subplots(figsize=(min(10.0, max(5.0, 0.13 * len(groups) * max(1, len(series)) + 1.5)), 3.4))
    k = max(1, len(series))
    width = 0.8 / k
    cmap = plt.get_cmap("tab10")
    bounds = [0.0]
    for i, (name, (values, lows, highs)) in enumerate(series.items()):
        xs = np.arange(len(groups)) + (i - (k - 1) / 2) * width
        v, lo, hi = (np.asarray(a, dtype=float) for a in (values, lows, highs))
        ax.bar(xs, np.where(np.isfinite(v), v, 0.0), width, label=name, color=cmap(i % 10), zorder=2)
        err = np.isfinite(v) & np.isfinite(lo) & np.isfinite(hi)
        if err.any():
            # centred on the interval, not the value: a percentile bootstrap interval need not
            # contain the estimate (few points, few resamples), and the bar must still show it
            mid, half = (lo[err] + hi[err]) / 2, (hi[err] - lo[err]) / 2
            ax.errorbar(xs[err], mid, yerr=half, fmt="none", ecolor="#222", elinewidth=0.7, capsize=1.5, zorder=3)
        bounds += list(_finite(np.where(err, lo, v))) + list(_finite(np.where(err, hi, v)))
    ax.axhline(0, color="black", linewidth=0.6, zorder=1)
    _axis(ax, "y", nice_ticks(min(bounds), max(bounds), 8))
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", color="#ddd", linewidth=0.5, zorder=0)
    ax.legend(fontsize=7, ncol=min(k, 6), loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False)
    ax.text(1.0, 1.02, f"error bars: {confidence:.0%} bootstrap intervals", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=7, color="#555")
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.3, top=0.86)
    return fig


def image_rows(rows: list[list[tuple[np.ndarray | None, str]]], *, row_titles: list[str], column_titles: list[str]):
    """A grid of images with a caption under each (the disagreement figure): rows x columns.

    Each cell is (H x W x 3 uint8 image or None, caption); pixels stay square and sharp.
    """
    columns = max((len(r) for r in rows), default=1)
    height = 2.15 * len(rows) + 0.45
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.1 * columns + 0.5, height), squeeze=False)
    for r, (cells, title) in enumerate(zip(rows, row_titles)):
        for c, (image, caption) in enumerate(cells):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color("#bbb")
            if image is not None:
                ax.imshow(image, interpolation="none")     # raw pixels, drawn sharp in SVG and PDF
            else:
                ax.text(0.5, 0.5, "no image", ha="center", va="center", transform=ax.transAxes, color="#888")
            ax.set_xlabel(caption, fontsize=6.5, labelpad=3)
            if r == 0:
                ax.set_title(column_titles[c], fontsize=8, fontweight="bold")
        axes[r][0].set_ylabel(title, fontsize=8, fontweight="bold")
    fig.subplots_adjust(left=0.5 / (2.1 * columns + 0.5), right=0.99, bottom=0.55 / height, top=1 - 0.45 / height,
                        hspace=0.55, wspace=0.12)
    return fig


def lines(x: list[float], series: dict[str, list[float]], *, xlabel: str, ylabel: str, title: str = ""):
    """One line per series over x (the alpha sweep); y on round ticks around the data and 0."""
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    values = [0.0]
    for name, ys in series.items():
        ax.plot(x, ys, marker="o", label=name)
        values += list(_finite(ys))
    _axis(ax, "y", nice_ticks(min(values), max(values), 5))
    if x:
        _axis(ax, "x", nice_ticks(0.0, max(x), 5))
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.16, top=0.9)
    return fig
