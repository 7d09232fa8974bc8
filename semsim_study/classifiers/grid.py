"""The models params name for a dataset: backbones x training settings, as plain data.

``train.settings.<name>`` is a training setting (augmentation, defence, epochs); the grid keeps
its options as read and checks their keys and epochs; the training loop (``training.py``) turns
them into an augmentation and a defence. No torch here: the stages that only read trained
models (tasks, annotate, metrics, attack) take model ids and the default classifier from this
module without importing the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .. import params as P
from ..errors import ConfigError

#: Every backbone ``backbones.build`` knows (tests/test_classifiers.py checks the two agree).
BACKBONES = ("resnet20-4", "resnet20-2", "resnet20", "resnet8", "convnet", "convnet32", "convnet16", "convnet8",
             "convnet4", "lenet", "resnet18", "resnet50", "resnet152", "densenet121")
SETTING_KEYS = ("augment", "policy", "defense", "prune_ratio", "noise_sigma", "epochs")


@dataclass(frozen=True)
class Setting:
    """One training setting of ``train.settings``: its name, its options as params give them
    (``augment``, ``policy``, ``defense``, ...) and its epochs."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()
    # Epochs of training before the model is attacked; None = the dataset's epochs. 0 attacks
    # the model at initialisation, as in the first round of federated training, when the
    # gradients leak most: a point of training is a threat factor, like a defence.
    epochs: int | None = None

    @property
    def where(self) -> str:
        return f"train.settings.{self.name}"

    def config(self) -> dict:
        return dict(self.options)


@dataclass(frozen=True)
class ModelSpec:
    dataset: str
    backbone: str
    setting: Setting

    @property
    def model_id(self) -> str:
        return f"{self.backbone}_{self.setting.name}"


def settings(params: Mapping) -> dict[str, Setting]:
    """The training settings ``train.settings`` names, by name."""
    raw = P.get(params, "train.settings", dict)
    out = {}
    for name, cfg in raw.items():
        where = f"train.settings.{name}"
        if "_" in str(name) or "/" in str(name):
            raise ConfigError(f"params: setting name {name!r} may not contain '_' or '/' (it is part of model ids)")
        if not isinstance(cfg, dict):
            raise ConfigError(f"params: '{where}' must be a mapping")
        P.known(P.Section(cfg, where), "", SETTING_KEYS)
        epochs = cfg.get("epochs")
        if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0):
            raise ConfigError(f"params: '{where}.epochs' must be a non-negative integer, got {epochs!r}")
        out[str(name)] = Setting(str(name), tuple((str(k), v) for k, v in cfg.items()), epochs)
    return out


def model_grid(params: Mapping, dataset: str) -> list[ModelSpec]:
    """The models params name for ``dataset``: ``train.datasets.<dataset>.models.<backbone>: [settings]``."""
    named = settings(params)
    grid = P.get(params, f"train.datasets.{dataset}.models", dict)
    specs = []
    for backbone, names in grid.items():
        if backbone not in BACKBONES:
            raise ConfigError(f"params: 'train.datasets.{dataset}.models' names unknown backbone {backbone!r}; "
                              f"valid backbones: {', '.join(sorted(BACKBONES))}")
        if "_" in backbone:
            raise ConfigError(f"params: backbone name {backbone!r} may not contain '_'")
        if not isinstance(names, list) or not names:
            raise ConfigError(f"params: 'train.datasets.{dataset}.models.{backbone}' must be a non-empty list of settings")
        for name in names:
            if name not in named:
                raise ConfigError(f"params: 'train.datasets.{dataset}.models.{backbone}' names unknown setting {name!r}; "
                                  f"valid settings: {', '.join(sorted(named))}")
            specs.append(ModelSpec(dataset, backbone, named[name]))
    ids = [s.model_id for s in specs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"params: 'train.datasets.{dataset}.models' lists a model twice")
    return specs


def model_ids(params: Mapping, dataset: str) -> list[str]:
    """The ids of ``model_grid(params, dataset)``, in its order."""
    return [spec.model_id for spec in model_grid(params, dataset)]


def default_classifier(params: Mapping, dataset: str) -> str:
    """The dataset's first listed *trained* model (a setting with epochs 0 is no classifier):
    the default for the classification baseline and for protocol A's candidate classes."""
    grid = model_grid(params, dataset)
    trained = [spec for spec in grid if spec.setting.epochs != 0]
    return (trained or grid)[0].model_id
