"""Names of attack sets: an attack at a budget is a threat of its own.

An attacker who stops Inverting Gradients after 100 iterations is a weaker threat than one
who runs 1600, so the study treats each (attack, budget) as a set of reconstructions of its
own, labelled ``<attack>@<budget>`` (e.g. ``invgrad@400``) in the ``attack`` column and the
item ids of every table. An attack run without budgets keeps its plain name. This module is
the one place that spells or parses such a label; it imports nothing of the project.
"""

from __future__ import annotations

SEPARATOR = "@"


def label(attack: str, budget: int | None = None) -> str:
    """The set label of ``attack`` stopped at ``budget`` iterations (plain name when None)."""
    return attack if budget is None else f"{attack}{SEPARATOR}{int(budget)}"


def method(attack_label: str) -> str:
    """The attack a set label names: ``invgrad@400`` -> ``invgrad``."""
    return attack_label.split(SEPARATOR, 1)[0]


def budget(attack_label: str) -> int | None:
    """The budget of a set label (``invgrad@400`` -> 400), None for a plain attack name."""
    _, sep, rest = attack_label.partition(SEPARATOR)
    if not sep:
        return None
    try:
        return int(rest)
    except ValueError:
        raise ValueError(f"attack label {attack_label!r}: budget {rest!r} is not an integer") from None
