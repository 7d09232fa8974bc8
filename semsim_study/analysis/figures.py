"""Inline SVG figures for the HTML page (matplotlib, Agg-free SVG backend, deterministic ids).

SVG keeps the page self-contained and sharp; ``svg.hashsalt`` and no date metadata make the
same data give the same bytes, so DVC sees no change when nothing changed.
"""

from __future__ import annotations

import html
import io
import math

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

matplotlib.rcParams.update({"svg.hashsalt": "semsim-study", "svg.fonttype": "none", "font.size": 8,
                            "axes.titlesize": 9})


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG goes inline


def _ticks(lo: float, hi: float) -> tuple[float, float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.05 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.06
    return lo - pad, hi + pad


def _num(v: float) -> str:
    return f"{v:.3g}"


def scatter_grid(panels: list[dict], *, xlabel: str, columns: int = 4) -> str:
    """Small scatter plots as hand-written SVG: each panel {title, x, y, note}; x is the human rate.

    Written by hand (not matplotlib) because a page holds dozens of panels and matplotlib's
    layout pass costs about a second per figure; this takes milliseconds and is deterministic.
    """
    w, h, left, bottom, top, right = 230, 180, 44, 32, 22, 10
    rows = max(1, math.ceil(len(panels) / columns))
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w * columns}' height='{h * rows}' "
           f"viewBox='0 0 {w * columns} {h * rows}' font-family='sans-serif' font-size='10'>"]
    for i, panel in enumerate(panels):
        ox, oy = (i % columns) * w, (i // columns) * h
        pw, ph = w - left - right, h - top - bottom
        xs = [float(v) for v in panel["x"]]
        ys = [float(v) for v in panel["y"]]
        pts = [(x, y) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
        x0, x1 = _ticks(min((p[0] for p in pts), default=0.0), max((p[0] for p in pts), default=1.0))
        y0, y1 = _ticks(min((p[1] for p in pts), default=0.0), max((p[1] for p in pts), default=1.0))
        out.append(f"<g transform='translate({ox},{oy})'>")
        out.append(f"<text x='{left + pw / 2}' y='14' text-anchor='middle' font-weight='bold'>"
                   f"{html.escape(panel['title'])}</text>")
        out.append(f"<rect x='{left}' y='{top}' width='{pw}' height='{ph}' fill='none' stroke='#999'/>")
        for x, y in pts:
            cx = left + (x - x0) / (x1 - x0) * pw
            cy = top + ph - (y - y0) / (y1 - y0) * ph
            out.append(f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='2.6' fill='#33658a' fill-opacity='0.75'/>")
        out.append(f"<text x='{left}' y='{top + ph + 12}' text-anchor='start'>{_num(x0)}</text>"
                   f"<text x='{left + pw}' y='{top + ph + 12}' text-anchor='end'>{_num(x1)}</text>"
                   f"<text x='{left + pw / 2}' y='{top + ph + 25}' text-anchor='middle'>{html.escape(xlabel)}</text>"
                   f"<text x='{left - 3}' y='{top + ph}' text-anchor='end'>{_num(y0)}</text>"
                   f"<text x='{left - 3}' y='{top + 8}' text-anchor='end'>{_num(y1)}</text>")
        if panel.get("note"):
            out.append(f"<text x='{left + 4}' y='{top + 12}' fill='#333'>{html.escape(panel['note'])}</text>")
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def grouped_bars(groups: list[str], series: dict[str, list[float]], *, ylabel: str, title: str = "") -> str:
    """Bars of one value per (group, series); NaN bars are left out (shown as gaps)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) + 2), 2.8))
    k = max(1, len(series))
    width = 0.8 / k
    cmap = plt.get_cmap("tab10")
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (k - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [0 if not math.isfinite(v) else v for v in values], width, label=name, color=cmap(i % 10))
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(-1, 1)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, ncol=min(k, 6), loc="lower left", frameon=False)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.12, top=0.92)
    return _svg(fig)


def lines(x: list[float], series: dict[str, list[float]], *, xlabel: str, ylabel: str, title: str = "") -> str:
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    for name, ys in series.items():
        ax.plot(x, ys, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.16, top=0.9)
    return _svg(fig)
