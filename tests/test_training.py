"""Training: determinism, the schedule, defences in the loop, checkpoints and cards, config errors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from semsim_study.torch_helpers import state_bytes
from semsim_study import defenses
from semsim_study.classifiers import backbones, checkpoints, grid, training
from semsim_study.datasets import build
from semsim_study.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def digits(tiny_params):
    """400 training digits: enough to learn, small enough for a fast suite."""
    ds, _, _ = build.prepare(tiny_params, "digits")
    ds.train_images, ds.train_labels = ds.train_images[:400], ds.train_labels[:400]
    ds.test_images, ds.test_labels = ds.test_images[:200], ds.test_labels[:200]
    return ds


@pytest.fixture(scope="module")
def settings(embedded_params):
    return grid.settings(embedded_params)


def _spec(settings, backbone="resnet8", setting="crop"):
    return grid.ModelSpec("digits", backbone, settings[setting])


def test_short_run_is_deterministic(digits, settings):
    cfg = training.ClassifierTrainConfig(epochs=2, batch_size=32, lr=0.1)
    spec = _spec(settings, setting="ats-3-1-7")
    a = training.train(digits, spec, cfg, seed=0)
    b = training.train(digits, spec, cfg, seed=0)
    assert state_bytes(a.model) == state_bytes(b.model)
    assert a.history == b.history
    c = training.train(digits, spec, cfg, seed=1)
    assert state_bytes(a.model) != state_bytes(c.model)


def test_milestones_follow_the_reference():
    # floor division by floats, as the reference: 8000 iterations drop at 2999, 4999, 7005
    assert training.ClassifierTrainConfig(epochs=8000, batch_size=64).milestones == [2999, 4999, 7005]
    assert training.ClassifierTrainConfig(epochs=200, batch_size=64).milestones == [74, 124, 175]
    assert training.ClassifierTrainConfig(epochs=8, batch_size=64).milestones == [2, 4, 7]


def test_learns_digits_above_chance(digits, settings):
    cfg = training.ClassifierTrainConfig(epochs=4, batch_size=16)
    result = training.train(digits, _spec(settings, setting="none"), cfg, seed=0)
    assert result.test_accuracy > 3 * (1 / digits.num_classes)
    assert [h["lr"] for h in result.history] == pytest.approx([0.1, 0.01, 0.001, 0.0001])


def test_training_defence_is_applied_each_step(digits, settings, monkeypatch):
    calls = []
    real = defenses.Defense.apply_
    monkeypatch.setattr(defenses.Defense, "apply_", lambda self, grads, gen=None: calls.append(self.kind) or real(self, grads, gen))
    cfg = training.ClassifierTrainConfig(epochs=1, batch_size=64)
    steps = -(-len(digits.train_labels) // 64)
    training.train(digits, _spec(settings, setting="crop-prune70"), cfg, seed=0)
    assert calls == ["prune"] * steps
    calls.clear()
    cfg.defense_at = "attack"  # then training runs clean
    training.train(digits, _spec(settings, setting="crop-prune70"), cfg, seed=0)
    assert calls == ["none"] * steps


def test_checkpoint_and_card_round_trip(tmp_path, digits, settings):
    spec = _spec(settings, backbone="lenet", setting="crop-noise1e-3")
    cfg = training.ClassifierTrainConfig(epochs=1, batch_size=64, lr=0.02)
    result = training.train(digits, spec, cfg, seed=0)
    info = training.card(digits, spec, cfg, 0, result)
    (tmp_path / "m.pt").write_bytes(state_bytes(result.model))
    (tmp_path / "m.json").write_text(json.dumps(info))
    model, back = checkpoints.load(tmp_path / "m.pt")
    x = torch.randn(3, 3, digits.image_size, digits.image_size)
    with torch.no_grad():
        assert torch.equal(model(x), result.model.eval()(x))
    assert back["defense"]["kind"] == "gaussian" and back["defense_in_training"] is True
    assert back["offline_stand_in"] is True and back["parameters"] > 0
    assert back["optimizer"]["lr"] == 0.02


def test_load_errors_name_the_file(tmp_path, digits, settings):
    spec = _spec(settings, backbone="resnet8", setting="none")
    cfg = training.ClassifierTrainConfig(epochs=1, batch_size=64)
    result = training.train(digits, spec, cfg, seed=0)
    info = training.card(digits, spec, cfg, 0, result)
    (tmp_path / "m.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="m.pt: checkpoint missing"):
        checkpoints.load(tmp_path / "m.pt")
    (tmp_path / "m.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="m.pt: not a loadable weights-only checkpoint"):
        checkpoints.load(tmp_path / "m.pt")
    wrong = dict(info, backbone="lenet")
    (tmp_path / "m.pt").write_bytes(state_bytes(result.model))
    (tmp_path / "m.json").write_text(json.dumps(wrong))
    with pytest.raises(DataError, match="weights do not fit backbone 'lenet'"):
        checkpoints.load(tmp_path / "m.pt")


def test_pickled_code_in_a_checkpoint_is_refused(tmp_path, digits, settings):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    spec = _spec(settings, backbone="resnet8", setting="none")
    cfg = training.ClassifierTrainConfig(epochs=1, batch_size=64)
    result = training.train(digits, spec, cfg, seed=0)
    (tmp_path / "m.json").write_text(json.dumps(training.card(digits, spec, cfg, 0, result)))
    torch.save({"x": Evil()}, tmp_path / "m.pt")
    with pytest.raises(DataError, match="not a loadable weights-only checkpoint"):
        checkpoints.load(tmp_path / "m.pt")


def test_grid_config_errors(embedded_params):
    p = copy.deepcopy(embedded_params)
    p["train"]["datasets"]["digits"]["models"]["vgg11"] = ["none"]
    with pytest.raises(ConfigError, match="unknown backbone 'vgg11'"):
        grid.model_grid(p, "digits")
    p = copy.deepcopy(embedded_params)
    p["train"]["datasets"]["digits"]["models"]["resnet8"] = ["none", "mixup"]
    with pytest.raises(ConfigError, match="unknown setting 'mixup'; valid settings: ats-3-1-7"):
        grid.model_grid(p, "digits")
    p = copy.deepcopy(embedded_params)
    p["train"]["defense_at"] = "server"
    with pytest.raises(ConfigError, match="'train.defense_at' is 'server'; valid values: attack, both, training"):
        training.from_params(p, "digits", "resnet8")


def test_embedded_grid_covers_every_setting_and_four_models_per_dataset(embedded_params):
    used = set()
    for name in embedded_params["datasets"]:
        specs = grid.model_grid(embedded_params, name)
        assert len(specs) >= 4
        used |= {s.setting.name for s in specs}
        assert any(s.setting.epochs is None for s in specs)  # trained models in every dataset
    paper_settings = {n for n, cfg in embedded_params["train"]["settings"].items() if "epochs" not in cfg}
    assert len(paper_settings) == 7 and paper_settings <= used
    assert used - paper_settings == {"untrained"}


def test_a_setting_with_zero_epochs_is_the_model_at_initialisation(digits, embedded_params):
    settings = grid.settings(embedded_params)
    assert settings["untrained"].epochs == 0 and settings["none"].epochs is None
    cfg = training.from_params(embedded_params, "digits", "resnet8", settings["untrained"])
    assert cfg.epochs == 0
    assert training.from_params(embedded_params, "digits", "resnet8", settings["none"]).epochs == \
        embedded_params["train"]["datasets"]["digits"]["epochs"]
    spec = grid.ModelSpec("digits", "resnet8", settings["untrained"])
    result = training.train(digits, spec, cfg, seed=0)
    torch_seed, _, _ = training.seeds(0, "digits", spec.model_id)
    torch.manual_seed(torch_seed)
    fresh = backbones.build("resnet8", digits.num_classes, digits.image_size)
    assert state_bytes(result.model) == state_bytes(fresh.eval())
    assert result.history == [] and 0 <= result.test_accuracy <= 1
    assert training.card(digits, spec, cfg, 0, result)["epochs"] == 0


@pytest.mark.parametrize("bad,match", [({"epochs": -1}, "epochs' must be a non-negative integer, got -1"),
                                       ({"epochs": "one"}, "must be a non-negative integer, got 'one'"),
                                       ({"epoch": 1}, "not a known key")])
def test_setting_keys_are_checked(embedded_params, bad, match):
    p = copy.deepcopy(embedded_params)
    p["train"]["settings"]["early"] = {"augment": "none", **bad}
    with pytest.raises(ConfigError, match=match):
        grid.settings(p)


def test_backbone_lr_override(embedded_params):
    params = copy.deepcopy(embedded_params)
    params["train"]["optimizer"]["backbone_lr"] = {"convnet4": 0.02}
    assert training.from_params(params, "digits", "convnet4").lr == 0.02
    assert training.from_params(params, "digits", "resnet8").lr == 0.1


def test_paper_profile_grid_is_the_papers_table_1():
    import yaml

    from tests.conftest import ROOT

    paper = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    backbones = {"cifar100": {"resnet20-4", "convnet"}, "caltech101": {"resnet20-4", "densenet121"},
                 "celeba": {"resnet20-4", "densenet121"}, "imagenette": {"resnet50", "resnet152"},
                 "stanford_dogs": {"resnet50", "resnet152"}}
    for name, expected in backbones.items():
        specs = grid.model_grid(paper, name)
        assert len(specs) == 14 and {s.backbone for s in specs} == expected
        assert len({s.setting.name for s in specs}) == 7
    assert training.from_params(paper, "cifar100", "convnet").epochs == 200
    assert training.from_params(paper, "imagenette", "resnet50").batch_size == 8
