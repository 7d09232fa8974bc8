"""Round axis ticks for the report's figures (1, 2 or 5 x 10^k steps).

Matplotlib's default locator pads the data range (an axis from -0.06 or an FID axis from
-8.8) and picks steps a reader has to decode; a paper figure wants an axis that starts and ends
on a round number and rates that always span [0, 1], so panels compare at a glance.
"""

from __future__ import annotations

import math

#: the axis of every rate (share of annotators): the whole [0, 1], in quarters
RATE_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
_MANTISSAS = (1.0, 2.0, 5.0, 10.0)


def nice_step(span: float, target: int = 5) -> float:
    """The smallest 1/2/5 x 10^k step that cuts ``span`` into at most ``target`` intervals."""
    if not (span > 0 and math.isfinite(span)):
        raise ValueError(f"span must be positive and finite, got {span!r}")
    raw = span / max(1, target)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in _MANTISSAS if m * magnitude >= raw * (1 - 1e-9))
    return step


def _round(value: float, step: float) -> float:
    """``value`` without binary noise (0.30000000000000004 -> 0.3), at the step's precision."""
    digits = max(0, -math.floor(math.log10(step)) + 1)
    return round(value, digits) + 0.0  # + 0.0 turns -0.0 into 0.0


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Ticks from ``lo`` rounded down to ``hi`` rounded up, on a 1/2/5 x 10^k step.

    The first and last tick are the axis limits, so the data always sit inside round ends. A
    single value gets the round interval around it; no finite value gives [0, 1].
    """
    finite = [v for v in (lo, hi) if v is not None and math.isfinite(v)]
    if not finite:
        return [0.0, 0.5, 1.0]
    lo, hi = min(finite), max(finite)
    if hi - lo <= 1e-12 * max(1.0, abs(lo)):
        half = abs(lo) * 0.5 if lo else 0.5
        lo, hi = lo - half, hi + half
    step = nice_step(hi - lo, target)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    if last - first > 2 * target:           # never: nice_step bounds the count; guards rounding
        raise AssertionError((lo, hi, step))
    return [_round(k * step, step) for k in range(first, last + 1)]


def tick_label(value: float) -> str:
    """A tick's text: no trailing zeros, a true minus sign."""
    text = f"{value:.6g}"
    return text.replace("-", "\u2212")
