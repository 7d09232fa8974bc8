"""Two numbers printed so that a sentence calling one smaller can be read off them.

The report, its controls table and a loaded SemSim's warning compare trained SemSim with its
untrained network where the two often differ by a few pairs in thousands; at two or three decimals
both would print the same, and "worse: +0.84 vs +0.84" reads as a bug.
"""

from __future__ import annotations


def distinct_pair(a: float, b: float, digits: int = 2, most: int = 4, signed: bool = True) -> tuple[str, str]:
    """``a`` and ``b`` at the fewest decimals, from ``digits`` up to ``most``, that tell them apart
    (at ``most`` decimals if none does: a difference that small is not worth more digits)."""
    sign = "+" if signed else ""
    for d in range(digits, max(digits, most) + 1):
        x, y = f"{a:{sign}.{d}f}", f"{b:{sign}.{d}f}"
        if x != y:
            break
    return x, y
