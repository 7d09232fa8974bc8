"""The four named attacks with their reference settings; params override any field.

- ``dlg`` (Zhu et al. 2019, mit-han-lab/dlg): squared L2 over layers, L-BFGS lr 1, 300
  steps, dummy label optimised jointly, plain cross-entropy, no box, no sign, no prior.
- ``idlg`` (Zhao et al. 2020): DLG with the label read off the last layer's gradient.
- ``invgrad`` (Geiping et al. 2020) as the paper's code runs it (SemSim ``inversed``):
  1 - cosine, Adam lr 0.1 on the signed gradient, boxed, TV 1e-4, 8000 iterations with x0.1
  at 3/8, 5/8, 7/8, one restart, true labels, 0.5 x cross-entropy.
- ``gradinversion`` (Yin et al. 2021; no official code): Inverting Gradients plus the BN
  statistics prior (1e-3, GradAttack's example) and an L2 image prior (1e-6, breaching),
  with Yin's label rule. Group consistency across seeds is not implemented (neither
  reimplementation has it).

Any attack may list ``budgets``: iteration counts below ``iterations`` at which the running
optimisation's reconstruction is also kept, each a set of its own (``invgrad@400``).

``attack.datasets.<dataset>.<attack>`` overrides ``attack.methods.<attack>`` for one dataset:
the budget an attacker needs to reach a recognisable image differs between domains (an
untrained ResNet8's faces only emerge after 16-32 L-BFGS steps, digits after 4), and the
study needs the spread from noise to recognisable within every backbone of every dataset.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Mapping

from .. import params as P
from ..errors import ConfigError
from .engine import AttackConfig

REFERENCE: dict[str, dict] = {
    "dlg": dict(distance="l2", optimizer="lbfgs", lr=1.0, iterations=300, signed=False, boxed=False, lr_decay=False,
                tv=0.0, restarts=1, labels="joint", loss_scale=1.0),
    "idlg": dict(distance="l2", optimizer="lbfgs", lr=1.0, iterations=300, signed=False, boxed=False, lr_decay=False,
                 tv=0.0, restarts=1, labels="idlg", loss_scale=1.0),
    "invgrad": dict(distance="cosine", optimizer="adam", lr=0.1, iterations=8000, signed=True, boxed=True,
                    lr_decay=True, tv=1e-4, restarts=1, labels="given", loss_scale=0.5),
    "gradinversion": dict(distance="cosine", optimizer="adam", lr=0.1, iterations=8000, signed=True, boxed=True,
                          lr_decay=True, tv=1e-4, bn_prior=1e-3, l2_prior=1e-6, restarts=1, labels="yin",
                          loss_scale=0.5),
}
FIELDS = tuple(f.name for f in fields(AttackConfig))


def build(name: str, overrides: Mapping | None = None, where: Mapping[str, str] | None = None) -> AttackConfig:
    """The reference config of attack ``name`` with ``overrides`` (e.g. fewer iterations) applied;
    ``where`` maps an override to the params section it came from (default attack.methods.<name>)."""
    if name not in REFERENCE:
        raise ConfigError(f"params: unknown attack {name!r}; valid attacks: {', '.join(sorted(REFERENCE))}")
    overrides = dict(P.known(P.Section(overrides or {}, f"attack.methods.{name}"), "", FIELDS))
    try:
        return AttackConfig(**{**REFERENCE[name], **overrides})
    except ConfigError as exc:
        if not hasattr(exc, "key"):
            raise
        value = overrides.get(exc.key, REFERENCE[name].get(exc.key))
        section = (where or {}).get(exc.key, f"attack.methods.{name}")
        raise ConfigError(f"params.yaml: {section}.{exc.key} must be {exc.expected}, got {value!r}") from None


def dataset_overrides(params: Mapping, dataset: str) -> Mapping:
    """``attack.datasets.<dataset>``: per-attack overrides for one dataset ({} when absent).

    When ``attack.datasets`` is given, every dataset needs an entry (``{}`` for none): each
    attack stage tracks its own dataset's entry, and DVC refuses a tracked key that is missing."""
    table = P.get(params, "attack.datasets", None, None)
    if table is None:
        return {}
    # any dataset the profile defines (a run may list fewer in `datasets`), no misspelt one
    P.known(params, "attack.datasets", {*P.get(params, "datasets", list), *(P.get(params, "prepare", dict, {}) or {})})
    if dataset not in table:
        raise ConfigError(f"params: attack.datasets has no entry for dataset {dataset!r}; give it {{}} for none "
                          "(each attack stage tracks attack.datasets.<dataset>)")
    return P.known(params, f"attack.datasets.{dataset}", REFERENCE)


def from_params(params: Mapping, name: str, dataset: str | None = None) -> AttackConfig:
    """Attack ``name``'s config as params.yaml's ``attack`` section sets it for ``dataset``
    (``attack.methods.<name>``, then ``attack.datasets.<dataset>.<name>`` on top), every name checked."""
    P.known(params, "attack", ("device", "workers", "images_per_model", "batch_size", "per_sample_gradients", "methods",
                               "datasets"))
    if P.get(params, "attack.methods", None, None) is not None:
        P.known(params, "attack.methods", REFERENCE)
    overrides = dict(P.get(params, f"attack.methods.{name}", dict, {}) or {})
    extra = {}
    if dataset is not None and dataset_overrides(params, dataset).get(name) is not None:
        extra = P.known(params, f"attack.datasets.{dataset}.{name}", FIELDS)
    return build(name, {**overrides, **extra}, {k: f"attack.datasets.{dataset}.{name}" for k in extra})
