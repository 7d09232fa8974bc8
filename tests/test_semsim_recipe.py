"""SemSim recipe additions: colour jitter on every training image, model selection on held-back
originals of the training domains (epoch 0 = the untrained network included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from tests import semsim_fixture as F
from tests.conftest import ROOT, shrink
from semsim_study.torch_helpers import state_bytes
from semsim_study.errors import ConfigError
from semsim_study.semsim import colour, items as I, selection, study, train

COLOUR = {"greyscale": 0.3, "hue": 0.2, "saturation": 0.5}


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return F.make_study(tmp_path_factory.mktemp("recipe"))


def _images(n=6, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g)


# -- colour jitter -----------------------------------------------------------------------------

def test_colour_jitter_is_deterministic_per_seed():
    jitter = colour.ColourJitter(**COLOUR)
    x = _images()
    a = jitter(x, np.random.default_rng(3))
    b = jitter(x, np.random.default_rng(3))
    assert a.numpy().tobytes() == b.numpy().tobytes()
    assert not torch.equal(a, jitter(x, np.random.default_rng(4)))
    assert torch.equal(x, _images())  # the input is left untouched


def test_colour_jitter_changes_colour_not_geometry():
    x = _images(16)
    out = colour.ColourJitter(**COLOUR)(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)
    # per-pixel maps only: permuting the pixels before or after gives the same image
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    shuffled = x.flatten(2)[:, :, perm].view_as(x)
    out_shuffled = colour.ColourJitter(**COLOUR)(shuffled, np.random.default_rng(0))
    assert torch.allclose(out_shuffled, out.flatten(2)[:, :, perm].view_as(x), atol=1e-6)


def test_greyscale_makes_channels_equal():
    x = _images(4)
    grey = colour.ColourJitter(greyscale=1.0)(x, np.random.default_rng(0))
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    assert torch.allclose(grey[:, :1], colour.luminance(x))


def test_hue_and_saturation_match_torchvision():
    tf = pytest.importorskip("torchvision.transforms.v2.functional")
    x = _images(3)
    for shift in (-0.4, 0.1, 0.5):
        assert torch.allclose(colour.adjust_hue(x, torch.full((3,), shift)), tf.adjust_hue(x, shift), atol=1e-5)
    assert torch.allclose(colour.adjust_saturation(x, torch.full((3,), 1.5)), tf.adjust_saturation(x, 1.5), atol=1e-3)


def test_zero_colour_params_leave_images_and_draws_alone():
    x = _images()
    rng = np.random.default_rng(0)
    assert colour.ColourJitter()(x, rng) is x
    assert rng.random() == np.random.default_rng(0).random()


def test_colour_jitter_reaches_every_training_batch():
    cfg = train.from_params(F.params(colour={"greyscale": 1.0}, crop_flip=False))
    trainer = train._Trainer(cfg, 0, np.random.default_rng(0))
    images = (np.random.default_rng(1).random((4, 32, 32, 3)) * 255).astype(np.uint8)
    x = trainer.batch(images)
    mean, std = cfg.mean_std
    raw = x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    assert torch.allclose(raw[:, 0], raw[:, 1], atol=1e-5) and torch.allclose(raw[:, 1], raw[:, 2], atol=1e-5)


@pytest.mark.parametrize("key,value,match", [
    ("hue", 0.7, r"'semsim\.training\.colour\.hue'.*\[0, 0\.5\]"),
    ("saturation", -0.1, r"'semsim\.training\.colour\.saturation'"),
    ("greyscale", 1.5, r"'semsim\.training\.colour\.greyscale'"),
    ("greyscale", "lots", r"'semsim\.training\.colour\.greyscale' must be"),
    ("greyscale", True, r"'semsim\.training\.colour\.greyscale' must be"),
    ("brightness", 0.2, r"'semsim\.training\.colour\.brightness' is not a known key"),
])
def test_bad_colour_params_name_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        train.from_params(F.params(colour={key: value}))


@pytest.mark.parametrize("value", [1.0, -0.2, 2, "half", float("nan")])
def test_bad_selection_fraction_names_the_key(value):
    with pytest.raises(ConfigError, match=r"'semsim\.training\.selection_fraction'"):
        train.from_params(F.params(selection_fraction=value))


def test_colour_must_be_a_mapping():
    with pytest.raises(ConfigError, match=r"'semsim\.training\.colour' must be a mapping"):
        train.from_params(F.params(colour=0.3))


def test_profiles_carry_the_recipe():
    for name in ("embedded", "paper"):
        p = yaml.safe_load((ROOT / "profiles" / f"{name}.yaml").read_text())
        cfg = train.from_params(p)
        assert cfg.colour.enabled == (name == "embedded")
        assert (cfg.selection_fraction > 0) == (name == "embedded")
        if name == "embedded":
            assert train.from_params(shrink(p)).colour == cfg.colour


# -- model selection ---------------------------------------------------------------------------

def test_selection_set_is_training_originals_only(fx):
    all_items = I.collect(fx, ["alpha", "beta", "gamma"], list(F.ATTACKS))
    for split, held in (("dataset", "gamma"), ("attack", "dlg"), ("backbone", "convnet4")):
        train_items, test_items = I.split(all_items, split, held)
        fit, sel = selection.hold_back(train_items, 0.25, seed=0)
        assert sel and fit and len(fit) + len(sel) == len(train_items)
        assert all(it.key(split) != held for it in sel)
        assert not {it.item_id for it in sel} & {it.item_id for it in test_items}
        # whole originals: every training reconstruction of a held-back original is held back
        keys = {it.original_key for it in sel}
        assert not keys & {it.original_key for it in fit}
        assert {it.dataset for it in sel} == {it.dataset for it in train_items}  # per training dataset
    a = selection.hold_back(train_items, 0.25, seed=0)[1]
    assert [i.item_id for i in a] == [i.item_id for i in selection.hold_back(train_items, 0.25, seed=0)[1]]
    assert selection.hold_back(train_items, 0.0, seed=0) == (train_items, [])


def _selector_with(accuracies):
    sel = selection.Selector([], np.zeros((0, 2, 2, 3), np.uint8), np.zeros((0, 2, 2, 3), np.uint8), [0] * 3, [1] * 3)
    sel.pairs = 1
    it = iter(accuracies)
    sel.accuracy = lambda net: next(it)
    return sel


def test_selection_keeps_the_best_epoch_and_the_earliest_tie():
    net = torch.nn.Linear(1, 1, bias=False)
    sel = _selector_with([0.5, 0.7, 0.9, 0.9, 0.6])
    for epoch in range(5):
        with torch.no_grad():
            net.weight.fill_(epoch)
        sel.observe(epoch, net)
    assert sel.restore(net, 4) == 2 and net.weight.item() == 2.0
    assert sel.by_epoch == [0.5, 0.7, 0.9, 0.9, 0.6]


def test_selection_can_return_the_untrained_network():
    net = torch.nn.Linear(1, 1, bias=False)
    sel = _selector_with([0.8, 0.7, 0.8])
    for epoch in range(3):
        with torch.no_grad():
            net.weight.fill_(epoch + 10)
        sel.observe(epoch, net)
    assert sel.restore(net, 2) == 0 and net.weight.item() == 10.0


def test_run_split_reports_selection_and_keeps_the_chosen_weights(fx):
    p = F.params(epochs=2, colour=COLOUR, selection_fraction=0.25)
    r = study.run_split(p, "dataset", "gamma", fx)
    m = r.metrics
    acc = m["selection_triplet_accuracy_by_epoch"]
    assert len(acc) == 3 and m["selection_pairs"] > 0 and m["selection_items"] > 0
    assert m["selected_epoch"] == int(np.argmax(acc))  # argmax: the earliest of ties
    for key in ("heldout_triplet_accuracy", "heldout_triplet_accuracy_random_init", "trained_matches_random_init"):
        assert key in m
    ce = study.run_split(p, "dataset", "gamma", fx, model="ce_baseline").metrics
    assert len(ce["selection_triplet_accuracy_ce_by_epoch"]) == 3 and ce["selected_epoch_ce"] in (0, 1, 2)
    assert "heldout_triplet_accuracy_ce" in ce and ce["selection_pairs"] == m["selection_pairs"]
    # the returned net scores the selection set as recorded for its epoch
    all_items = I.collect(fx, ["alpha", "beta", "gamma"], list(F.ATTACKS))
    _, sel_items = selection.hold_back(I.split(all_items, "dataset", "gamma")[0], 0.25, seed=0)
    assert all(it.dataset != "gamma" for it in sel_items)
    assert m["selection_items"] == len(sel_items)
    cfg = train.from_params(p)
    mean, std = cfg.mean_std
    tables = [train.image_table([getattr(it, k) for it in sel_items], 32) for k in ("original", "reconstruction")]
    check = selection.Selector(sel_items, *tables, mean, std)
    assert check.accuracy(r.net.net) == pytest.approx(acc[m["selected_epoch"]], abs=1e-6)
    assert r.card["selection"]["selected_epoch"] == m["selected_epoch"]
    # deterministic: the same params give the same bytes
    r2 = study.run_split(p, "dataset", "gamma", fx)
    assert r2.metrics == m
    from semsim_study.semsim import metric
    assert state_bytes(r.net.net) == state_bytes(r2.net.net)


def test_a_forced_epoch_zero_returns_the_untrained_weights(fx, monkeypatch):
    """When the untrained network scores best on the selection set, the stage returns it."""
    real = selection.Selector.accuracy
    calls = {"n": 0}

    def fake(self, net):
        calls["n"] += 1
        return 1.0 if calls["n"] == 1 else real(self, net) * 0.5  # epoch 0 wins
    monkeypatch.setattr(selection.Selector, "accuracy", fake)
    p = F.params(epochs=1, selection_fraction=0.25)
    r = study.run_split(p, "dataset", "gamma", fx)
    assert r.metrics["selected_epoch"] == 0
    assert r.metrics["heldout_triplet_accuracy"] == r.metrics["heldout_triplet_accuracy_random_init"]
    assert r.metrics["trained_matches_random_init"] is True
