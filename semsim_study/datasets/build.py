"""Build a dataset from its ``prepare.<name>`` section: pick the source's builder, check the
section's keys, and choose the seeded attack subset (the `prepare` stage's logic)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .. import seeding
from .. import params as P
from ..errors import ConfigError
from . import embedded, paper, standard
from .standard import PreparedDataset, stratified_subset

BUILDERS = {**embedded.BUILDERS, **paper.BUILDERS}


def dataset_rng(seed: int, name: str, purpose: str) -> np.random.Generator:
    """A generator per (seed, dataset, purpose): one dataset's draws never shift another's."""
    return seeding.rng(seed, name, purpose)


def from_params(params: Mapping, name: str) -> Mapping:
    """``prepare.<name>``: the section of a dataset that ``datasets`` lists."""
    names = P.get(params, "datasets", list)
    if name not in names:
        raise ConfigError(f"params: dataset {name!r} is not listed in 'datasets' ({', '.join(map(str, names))})")
    sections = P.get(params, "prepare", dict)
    if name not in sections:
        raise ConfigError(f"params: dataset {name!r} has no section 'prepare.{name}'; "
                          f"sections present: {', '.join(sorted(sections))}")
    cfg = sections[name]
    if not isinstance(cfg, dict):
        raise ConfigError(f"params: 'prepare.{name}' must be a mapping")
    return P.Section(cfg, f"prepare.{name}")


def validate_all(params: Mapping) -> None:
    """Check every listed dataset's section and source name before any work starts."""
    for name in P.get(params, "datasets", list):
        cfg = from_params(params, name)
        source = cfg.get("source")
        if source not in BUILDERS:
            raise ConfigError(f"params: 'prepare.{name}.source' is {source!r}; valid sources: {', '.join(sorted(BUILDERS))}")
        P.known(cfg, "", (*standard.COMMON_KEYS, *BUILDERS[source].keys))
        if "protocol" in cfg:
            P.choice(cfg, "protocol", standard.PROTOCOLS)


def prepare(params: Mapping, name: str) -> tuple[PreparedDataset, str, np.ndarray]:
    """Build dataset ``name`` and pick its attack subset; returns (dataset, subset split, indices)."""
    validate_all(params)
    cfg = from_params(params, name)
    seed = P.get(params, "seed", int)
    source = BUILDERS[cfg["source"]]
    ds = source.build(name, cfg, dataset_rng(seed, name, "build"))
    ds.source = {**ds.source, "subject": source.subject}
    ds.validate()
    split = P.choice(cfg, "attack_split", standard.SPLITS, "test")
    n = P.positive_int(cfg, "attack_images")
    indices = stratified_subset(ds.labels(split), n, dataset_rng(seed, name, "attack_subset"))
    return ds, split, indices
