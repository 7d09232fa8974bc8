"""Bad params fail before any work, naming the key."""

from __future__ import annotations

import copy
import re

import pytest

from semsim_study import params as P
from semsim_study.datasets import build
from semsim_study.errors import ConfigError


def test_dataset_not_listed(tiny_params):
    with pytest.raises(ConfigError, match="'cifar10' is not listed in 'datasets'"):
        build.prepare(tiny_params, "cifar10")


def test_listed_dataset_without_section(tiny_params):
    p = copy.deepcopy(tiny_params)
    p["datasets"].append("mnist")
    with pytest.raises(ConfigError, match="no section 'prepare.mnist'"):
        build.prepare(p, "digits")


def test_unknown_source_lists_valid_ones(tiny_params):
    p = copy.deepcopy(tiny_params)
    p["prepare"]["faces"]["source"] = "lfw_people"
    with pytest.raises(ConfigError, match=r"'prepare.faces.source' is 'lfw_people'; valid sources: .*celeba.*sklearn_digits"):
        build.prepare(p, "digits")


def test_missing_and_mistyped_keys_are_named_in_full(tiny_params):
    p = copy.deepcopy(tiny_params)
    del p["prepare"]["glyphs"]["images_per_class"]
    with pytest.raises(ConfigError, match="missing key 'prepare.glyphs.images_per_class'"):
        build.prepare(p, "glyphs")
    p = copy.deepcopy(tiny_params)
    p["prepare"]["digits"]["test_fraction"] = 1.5
    with pytest.raises(ConfigError, match="'prepare.digits.test_fraction' must lie strictly between 0 and 1"):
        build.prepare(p, "digits")
    p = copy.deepcopy(tiny_params)
    p["prepare"]["digits"]["protocol"] = "C"
    with pytest.raises(ConfigError, match="'prepare.digits.protocol' is 'C'; valid values: A, B"):
        build.prepare(p, "digits")
    p = copy.deepcopy(tiny_params)
    p["prepare"]["digits"]["image_size"] = True
    with pytest.raises(ConfigError, match="'prepare.digits.image_size' must be int"):
        build.prepare(p, "digits")


def test_load_reports_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        P.load(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        P.load(bad)


def test_params_yaml_is_the_embedded_profile():
    """params.yaml ships as the embedded profile; `scripts/use-profile embedded` restores it."""
    from tests.conftest import ROOT

    assert (ROOT / "params.yaml").read_text() == (ROOT / "profiles" / "embedded.yaml").read_text() or \
        pytest.skip("params.yaml holds another profile (scripts/use-profile was used)")


def _with(params, key, value):
    p = copy.deepcopy(params)
    node = p
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return p


@pytest.mark.parametrize("key, value, expected", [
    ("train.optimizer.lr", -1, "'train.optimizer.lr' must be a finite number > 0, got -1"),
    ("train.optimizer.lr", float("nan"), "'train.optimizer.lr' must be a finite number > 0, got nan"),
    ("train.optimizer.lr", "fast", "'train.optimizer.lr' must be int or float, got 'fast'"),
    ("train.optimizer.lr", True, "'train.optimizer.lr' must be int or float, got True"),
    ("train.optimizer.momentum", 1.0, "'train.optimizer.momentum' must be a finite number >= 0 and < 1, got 1.0"),
    ("train.optimizer.weight_decay", float("inf"), "'train.optimizer.weight_decay' must be a finite number >= 0"),
    ("train.optimizer.backbone_lr", {"lenet": 0}, "'train.optimizer.backbone_lr.lenet' must be a finite number > 0"),
    ("train.threads", 0, "'train.threads' must be a positive integer, got 0"),
    ("train.threads", "two", "'train.threads' must be int, got 'two'"),
])
def test_training_params_are_checked_with_their_dotted_key(tiny_params, key, value, expected):
    from semsim_study.classifiers import grid, training

    p = _with(tiny_params, key, value)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        training.from_params(p, "digits", "lenet", grid.settings(p)["none"])
        P.positive_int(p, "train.threads", 1)  # as stages/train.py reads it


@pytest.mark.parametrize("key, value, expected", [
    ("semsim.training.lr", -0.1, "'semsim.training.lr' must be a finite number > 0, got -0.1"),
    ("semsim.training.gamma", 2, "'semsim.training.gamma' must be a finite number > 0 and <= 1, got 2"),
    ("semsim.training.momentum", -0.5, "'semsim.training.momentum' must be a finite number >= 0 and < 1"),
    ("semsim.training.weight_decay", float("nan"), "'semsim.training.weight_decay' must be a finite number >= 0"),
    ("semsim.threads", -1, "'semsim.threads' must be a positive integer, got -1"),
])
def test_semsim_params_are_checked_with_their_dotted_key(embedded_params, key, value, expected):
    from semsim_study.semsim.train import from_params

    p = _with(embedded_params, key, value)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        from_params(p)
        P.positive_int(p, "semsim.threads", 1)  # as stages/semsim.py reads it


def _checkers():
    """Each section's reader, as the stage that owns it calls it before any work."""
    from semsim_study.analysis import config
    from semsim_study.annotation import collect, planted_cues, tasks
    from semsim_study.classifiers import grid, training
    from semsim_study.attacks import configs
    from semsim_study.metrics import featurenet, settings
    from semsim_study.semsim import train as semsim_train

    return {
        "": lambda p: P.known(p, "", P.TOP_LEVEL, where="params.yaml"),
        "prepare.glyphs": build.validate_all,
        "train": lambda p: training.from_params(p, "digits", "lenet"),
        "train.optimizer": lambda p: training.from_params(p, "digits", "lenet"),
        "train.datasets.digits": lambda p: training.from_params(p, "digits", "lenet"),
        "train.settings.crop": grid.settings,
        "attack": lambda p: configs.from_params(p, "invgrad"),
        "attack.methods": lambda p: configs.from_params(p, "invgrad"),
        "attack.methods.invgrad": lambda p: configs.from_params(p, "invgrad"),
        "attack.datasets": lambda p: configs.from_params(p, "dlg", "faces"),
        "attack.datasets.faces": lambda p: configs.from_params(p, "dlg", "faces"),
        "attack.datasets.faces.dlg": lambda p: configs.from_params(p, "dlg", "faces"),
        "metrics": settings.from_params,
        "metrics.lpips": settings.from_params,
        "metrics.fid": settings.from_params,
        "features": featurenet.from_params,
        "annotate": tasks.check_section,
        "annotate.app": tasks.check_section,
        "annotate.quality": tasks.check_section,
        "annotate.simulated": collect.from_params,
        "annotate.simulated.observer": collect.from_params,
        "observer_controls": planted_cues.from_params,
        "semsim": semsim_train.from_params,
        "semsim.model": semsim_train.from_params,
        "semsim.training": semsim_train.from_params,
        "semsim.training.colour": semsim_train.from_params,
        "report": config.from_params,
    }


@pytest.mark.parametrize("section", list(_checkers()))
def test_every_section_refuses_a_misspelt_key(embedded_params, section):
    """A typo (here 'lrr') anywhere in params.yaml fails the stage that reads the section, naming the dotted
    key, instead of leaving the default in force; the shipped profile passes every check."""
    check = _checkers()[section]
    check(embedded_params)
    p = copy.deepcopy(embedded_params)
    node = p
    for part in section.split(".") if section else []:
        node = node[part]
    node["lrr"] = 1
    full = f"{section}.lrr" if section else "lrr"
    with pytest.raises(ConfigError, match=re.escape(f"'{full}' is not a known key")):
        check(p)


def test_misspelt_key_suggests_the_near_name(tmp_path, embedded_params):
    from semsim_study.classifiers import training

    p = _with(embedded_params, "train.optimizer.lrr", 0.5)
    with pytest.raises(ConfigError, match=r"'train.optimizer.lrr' is not a known key \(did you mean 'lr'\?\)"):
        training.from_params(p, "digits", "lenet")
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: 0\nsemsimm: {}\n")
    with pytest.raises(ConfigError, match=r"params.yaml: 'semsimm' is not a known key \(did you mean 'semsim'\?\)"):
        P.load(bad)


def test_unknown_importer_option_is_named():
    from semsim_study.annotation import importers

    with pytest.raises(ConfigError, match="'annotate.options.label_studio.itemkey' is not a known option"):
        importers.import_answers("label_studio", ["x.json"], {}, itemkey="item_id")
