"""The report's settings from params, shared by stages ``correlate`` and ``report``.

Params read: seed, datasets, attacks, semsim.held_out_attacks, semsim.held_out_backbones,
report.bootstrap, report.confidence (both stages), report.grid_images (the report's page only).
A module of its own so that ``correlate`` does not import, and depend on, the figure code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import params as P
from ..errors import ConfigError
from . import study as S


@dataclass(frozen=True)
class ReportConfig:
    datasets: list[str]
    attacks: list[str]
    held_out_attacks: list[str] = field(default_factory=list)
    held_out_backbones: list[str] = field(default_factory=list)
    bootstrap: S.BootstrapConfig = S.BootstrapConfig()
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
        bootstrap=S.BootstrapConfig(reps=reps, confidence=confidence, seed=P.get(params, "seed", int, 0)),
        grid_images=grid)
