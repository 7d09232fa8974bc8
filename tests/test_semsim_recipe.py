"""SemSim recipe additions: one crop/flip per triplet, colour jitter on every training image, model
selection on PSNR-matched pairs of held-back originals of the training domains (epoch 0 = the
untrained network included), held-out accuracy on PSNR-matched pairs; and the recipe learns: with
a synthetic crowd that follows one rule in every domain, trained SemSim beats its untrained
network on every held-out domain."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.support import semsim_fixture as F
from tests.conftest import ROOT, shrink
from semsim_study import augment
from semsim_study.torch_helpers import state_bytes
from semsim_study.errors import ConfigError, DataError
from semsim_study.semsim import colour, items as I, matched, selection, study, train, triplets

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
    cfg = train.from_params(F.params(colour={"greyscale": 1.0}, geometry="none"))
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
        assert cfg.geometry == ("per_triplet" if name == "embedded" else "per_image")  # paper: the official code
        assert cfg.matched_db == 2.0
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
    sel.accuracies = lambda net: (next(it),) * 2
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
    acc = m["selection_triplet_accuracy_by_epoch"]  # all pairs
    assert len(acc) == 3 and m["selection_pairs"] > 0 and m["selection_items"] > 0
    # the default fixture's reconstructions are far apart in PSNR: selection falls back to all pairs
    assert m["selection_matched_pairs"] == 0 and m["selection_criterion"] == "all_pairs"
    assert m["selection_triplet_accuracy_matched_by_epoch"] == [None] * 3
    assert "all pairs" in r.card["selection"]["rule"] and r.card["selection"]["criterion"] == "all_pairs"
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
    real = selection.Selector.accuracies
    calls = {"n": 0}

    def fake(self, net):
        calls["n"] += 1
        acc, every = real(self, net)
        return (1.0, every) if calls["n"] == 1 else (acc * 0.5, every)  # epoch 0 wins
    monkeypatch.setattr(selection.Selector, "accuracies", fake)
    p = F.params(epochs=1, selection_fraction=0.25)
    r = study.run_split(p, "dataset", "gamma", fx)
    assert r.metrics["selected_epoch"] == 0
    assert r.metrics["heldout_triplet_accuracy"] == r.metrics["heldout_triplet_accuracy_random_init"]
    assert r.metrics["trained_matches_random_init"] is True


# -- geometry: one crop and flip per triplet ---------------------------------------------------

def test_per_triplet_geometry_gives_a_triplet_one_crop_and_flip():
    x = (np.random.default_rng(0).random((5, 12, 12, 3)) * 255).astype(np.uint8)
    batch = np.concatenate([x, x, x])  # anchors, positives, negatives of 5 triplets, alike here
    out = augment.crop_flip_batch(batch, np.random.default_rng(1), groups=5)
    assert np.array_equal(out[:5], out[5:10]) and np.array_equal(out[:5], out[10:])
    assert not np.array_equal(out[:5], x)  # but they were moved
    again = augment.crop_flip_batch(batch, np.random.default_rng(1), groups=5)
    assert out.tobytes() == again.tobytes()
    per_image = augment.crop_flip_batch(batch, np.random.default_rng(1))
    assert not (np.array_equal(per_image[:5], per_image[5:10]) and np.array_equal(per_image[:5], per_image[10:]))
    with pytest.raises(ValueError, match="groups"):
        augment.crop_flip_batch(batch, np.random.default_rng(1), groups=4)


@pytest.mark.parametrize("geometry, expected", [("per_triplet", "n"), ("per_image", None), ("none", "never")])
def test_triplet_batches_follow_the_geometry_param(fx, monkeypatch, geometry, expected):
    seen = []
    real = augment.crop_flip_batch

    def spy(images, rng, padding=4, groups=None):
        seen.append((len(images), groups))
        return real(images, rng, padding, groups)

    monkeypatch.setattr(augment, "crop_flip_batch", spy)
    study.run_split(F.params(epochs=1, geometry=geometry), "dataset", "gamma", fx)
    if expected == "never":
        assert not seen
    else:
        assert seen and all(g == (n // 3 if expected == "n" else None) for n, g in seen)
    seen.clear()
    study.run_split(F.params(epochs=1, geometry=geometry), "dataset", "gamma", fx, model="ce_baseline")
    assert (not seen) if expected == "never" else (seen and all(g is None for _, g in seen))  # CE: per image


@pytest.mark.parametrize("training, match", [
    ({"crop_flip": True}, r"'semsim\.training\.crop_flip' was replaced by 'semsim\.training\.geometry'.*"
                          r"geometry: per_image"),
    ({"crop_flip": False}, r"'semsim\.training\.crop_flip' was replaced.*geometry: none"),
    ({"geometry": "per_batch"}, r"'semsim\.training\.geometry' is 'per_batch'; valid values: none, per_image, "
                                r"per_triplet"),
    ({"geometry": True}, r"'semsim\.training\.geometry' must be str"),
])
def test_geometry_params_name_the_key(training, match):
    with pytest.raises(ConfigError, match=match):
        train.from_params(F.params(**training))


@pytest.mark.parametrize("mode", ["batch", "frozen"])
def test_frozen_batch_norm_keeps_its_statistics_and_trains_its_scale(fx, mode):
    """Frozen: the running statistics stay at mean 0, variance 1 (nothing of the training domains'
    statistics reaches a new domain) while the weights, BN's scale and shift included, still learn."""
    p = F.params(epochs=1, batch_norm=mode, selection_fraction=0.0)
    result = study.run_split(p, "dataset", "gamma", fx)
    bns = [m for m in result.net.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and result.card["batch_norm"]["mode"] == mode
    stats_moved = any(not torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in bns)
    assert stats_moved == (mode == "batch")
    assert any(not torch.equal(m.weight, torch.ones_like(m.weight)) for m in bns)  # the scale trained


def test_geometry_is_required():
    p = F.params()
    del p["semsim"]["training"]["geometry"]
    with pytest.raises(ConfigError, match=r"missing key 'semsim\.training\.geometry'"):
        train.from_params(p)


@pytest.mark.parametrize("value", [-1, float("nan"), "2 dB", True])
def test_bad_matched_db_names_the_key(value):
    p = F.params()
    p["semsim"]["matched_db"] = value
    with pytest.raises(ConfigError, match=r"'semsim\.matched_db'"):
        train.from_params(p)


# -- PSNR-matched pairs and the pixel metrics as scorers -------------------------------------

def _one_original(fx):
    items = [i for i in I.collect(fx, ["alpha"], list(F.ATTACKS)) if i.image_id == "test-000000"]
    rec = [i for i in items if i.label.majority == "recognised"]
    unrec = [i for i in items if i.label.majority == "unrecognised"]
    assert len(rec) == 2 and len(unrec) == 2
    return rec + unrec


def test_matched_accuracy_counts_only_pairs_within_the_window(fx):
    items = _one_original(fx)  # recognised r0, r1; unrecognised u0, u1
    psnr = [20.0, 10.0, 21.5, 30.0]  # within 2 dB: (r0, u0) only
    ranking_accuracy = triplets.ranking_accuracy
    assert ranking_accuracy(items, [0.0] * 4) == (0.5, 4)
    assert ranking_accuracy(items, [0.1, 0.9, 0.5, 0.0], psnr, 2.0) == (1.0, 1)  # r0 closer than u0
    assert ranking_accuracy(items, [0.1, 0.9, 0.5, 0.0])[0] == 0.25  # over all four pairs
    assert ranking_accuracy(items, [0.5, 0.9, 0.5, 0.0], psnr, 2.0) == (0.5, 1)  # a tie counts one half
    assert ranking_accuracy(items, [0.1, 0.9, 0.5, 0.0], psnr, 1.5) == (1.0, 1)  # the window is inclusive
    assert ranking_accuracy(items, [0.1, 0.9, 0.5, 0.0], psnr, 1.0)[1] == 0  # no pair: nan, 0
    assert ranking_accuracy(items, [0.1, 0.9, 0.5, 0.0], psnr, 12.0) == (pytest.approx(1 / 3), 3)  # all but (r1,u1)
    ci = triplets.ranking_accuracy_interval(items, [0.1, 0.9, 0.5, 0.0], np.random.default_rng(0), 50, psnr=psnr,
                                            within_db=2.0)
    assert ci == [1.0, 1.0]


def test_paired_gain_interval_is_the_bootstrap_of_the_difference(fx):
    """The gain's interval resamples originals once for both scorers: brute force over the same draws."""
    items = [i for i in I.collect(fx, ["alpha"], list(F.ATTACKS)) if i.label.majority in ("recognised", "unrecognised")]
    rng = np.random.default_rng(3)
    a, b = rng.random(len(items)).tolist(), rng.random(len(items)).tolist()
    ci = triplets.ranking_gain_interval(items, a, b, np.random.default_rng(7), 200)
    keys = sorted({i.original_key for i in items}, key=[i.original_key for i in items].index)
    # per_original keeps only originals with both verdicts; here that is every one, so draws index keys
    assert all({i.label.majority for i in items if i.original_key == k} == {"recognised", "unrecognised"} for k in keys)
    draws = np.random.default_rng(7).integers(0, len(keys), size=(200, len(keys)))
    gains = []
    for draw in draws:  # each resample: the drawn originals' pairs, an original as often as drawn
        wins_a = wins_b = pairs = 0
        for k in draw:
            group = [n for n, i in enumerate(items) if i.original_key == keys[k]]
            pos = [n for n in group if items[n].label.majority == "recognised"]
            neg = [n for n in group if items[n].label.majority == "unrecognised"]
            for x in pos:
                for y in neg:
                    pairs += 1
                    wins_a += (a[x] < a[y]) + 0.5 * (a[x] == a[y])
                    wins_b += (b[x] < b[y]) + 0.5 * (b[x] == b[y])
        gains.append((wins_a - wins_b) / pairs)
    assert ci == pytest.approx([float(np.quantile(gains, 0.025)), float(np.quantile(gains, 0.975))])
    gain = triplets.ranking_accuracy(items, a)[0] - triplets.ranking_accuracy(items, b)[0]
    assert ci[0] <= gain <= ci[1]
    assert triplets.ranking_gain_interval(items, a, a, np.random.default_rng(0), 50) == [0.0, 0.0]
    # the same draws as the accuracy's own interval: against a constant (every pair a tie, 0.5 in
    # every resample) the gain interval is that interval less one half
    acc_ci = triplets.ranking_accuracy_interval(items, a, np.random.default_rng(7), 200)
    ci_const = triplets.ranking_gain_interval(items, a, [0.0] * len(items), np.random.default_rng(7), 200)
    assert ci_const == pytest.approx([acc_ci[0] - 0.5, acc_ci[1] - 0.5])
    psnr = [0.0] * len(items)  # every pair within the window: the same as all pairs
    assert triplets.ranking_gain_interval(items, a, b, rng, 10, psnr=[100.0 * n for n in range(len(items))],
                                          within_db=1.0) is None  # no matched pair
    assert triplets.ranking_gain_interval(items, a, b, np.random.default_rng(7), 200, psnr=psnr, within_db=1.0) == ci


def test_pixel_metrics_score_with_their_direction(fx):
    items = _one_original(fx)
    psnr, ssim, lpips = [30.0, 25.0, 12.0, 11.0], [0.9, 0.8, 0.1, 0.2], [0.1, 0.2, 0.6, 0.7]
    for name, values in (("psnr", psnr), ("ssim", ssim), ("lpips", lpips)):
        assert triplets.ranking_accuracy(items, matched.as_scores(name, values))[0] == 1.0, name
    assert matched.as_scores("psnr", [30.0]) == [-30.0] and matched.as_scores("lpips", [0.1]) == [0.1]


def test_the_metrics_table_is_read_and_checked(fx, tmp_path):
    shutil.copytree(fx / "data", tmp_path / "data")
    table = matched.read_pixel_metrics(tmp_path, ["alpha", "beta"])
    items = I.collect(tmp_path, ["alpha", "beta"], list(F.ATTACKS))
    values = matched.pixel_values(items, table)
    assert set(values) == {"psnr", "ssim", "lpips"} and len(values["psnr"]) == len(items)
    assert all(v > 0 for v in values["psnr"])
    path = tmp_path / "data" / "metrics" / "beta" / "images.csv"
    lines = path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[lines[0].split(",").index("psnr")] = ""
    path.write_text("\n".join(lines[:2] + [",".join(cells)] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=r"beta/images\.csv:3: psnr '' is not a number"):
        matched.read_pixel_metrics(tmp_path, ["alpha", "beta"])
    path.write_text("\n".join(lines[:2]) + "\n")  # one row left
    with pytest.raises(DataError, match=r"no metrics row for 15 reconstruction\(s\), e\.g\. 'beta/"):
        matched.pixel_values(items, matched.read_pixel_metrics(tmp_path, ["alpha", "beta"]))
    path.unlink()
    with pytest.raises(DataError, match=r"beta/images\.csv: file not found \(run the metrics stage\)"):
        study.run_split(F.params(epochs=1), "dataset", "gamma", tmp_path)


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory):
    """The default rule, with reconstructions whose PSNRs overlap (PSNR-matched pairs exist)."""
    return F.make_study(tmp_path_factory.mktemp("overlap"), images=8, noise=(5.0, 60.0), spread=(0.0, 1.0))


def test_selection_uses_the_matched_pairs_of_held_back_training_originals(overlapping):
    p = F.params(epochs=3, selection_fraction=0.5)
    r = study.run_split(p, "dataset", "gamma", overlapping)
    m = r.metrics
    assert m["selection_criterion"] == "matched" and 0 < m["selection_matched_pairs"] < m["selection_pairs"]
    curve = m["selection_triplet_accuracy_matched_by_epoch"]
    assert len(curve) == 4 and m["selected_epoch"] == int(np.argmax(curve))  # the earliest of ties
    assert r.card["selection"]["criterion"] == "matched" and "PSNR-matched" in r.card["selection"]["rule"]
    assert [h["selection_triplet_accuracy_matched"] for h in r.history] == pytest.approx(curve[1:], abs=1e-6)
    # recompute: the returned net on the matched pairs of the held-back (training) originals
    all_items = I.collect(overlapping, ["alpha", "beta", "gamma"], list(F.ATTACKS))
    _, sel_items = selection.hold_back(I.split(all_items, "dataset", "gamma")[0], 0.5, seed=0)
    assert sel_items and all(it.dataset != "gamma" for it in sel_items)
    psnr = matched.pixel_values(sel_items, matched.read_pixel_metrics(overlapping, ["alpha", "beta"]))["psnr"]
    mean, std = train.from_params(p).mean_std
    tables = [train.image_table([getattr(it, k) for it in sel_items], 32) for k in ("original", "reconstruction")]
    check = selection.Selector(sel_items, *tables, mean, std, psnr=psnr, within_db=2.0)
    assert check.criterion == "matched" and check.matched_pairs == m["selection_matched_pairs"]
    assert check.accuracy(r.net.net) == pytest.approx(curve[m["selected_epoch"]], abs=1e-6)
    # the held-out pairs within 2 dB: every scorer on the same pairs
    assert m["heldout_matched_pairs"] > 0
    for key in ("", "_random_init", "_psnr", "_ssim", "_lpips"):
        assert m[f"heldout_triplet_accuracy{key}_matched"] is not None
    assert study.run_split(p, "dataset", "gamma", overlapping).metrics == m  # deterministic


# -- the recipe learns: a crowd with one rule for every domain ---------------------------------

@pytest.fixture(scope="module")
def one_rule(tmp_path_factory):
    """Four synthetic domains (blocks, stripes, discs, checks), 16 originals of 16 px each; in every
    one a recognised reconstruction keeps the layout under a colour gain/offset and noise, an
    unrecognised one keeps only the colour statistics. Their PSNRs overlap."""
    return F.make_study(tmp_path_factory.mktemp("one_rule"), datasets=tuple(F.DOMAINS), images=16, size=16,
                        domains=True, noise=(5.0, 60.0), spread=(0.0, 1.0))


def test_trained_semsim_beats_its_untrained_network_on_every_held_out_domain(one_rule):
    """Leave one domain out, per-triplet geometry, selection on the training domains' matched pairs
    (nothing here looks at the held-out domain before scoring it)."""
    p = F.params(datasets=tuple(F.DOMAINS), epochs=6, selection_fraction=0.25)
    p["semsim"]["model"]["input_size"] = 16
    assert train.from_params(p).geometry == "per_triplet"
    for ds in F.DOMAINS:
        m = study.run_split(p, "dataset", ds, one_rule).metrics
        assert m["selection_criterion"] == "matched" and m["heldout_matched_pairs"] >= 10, ds
        assert m["heldout_triplet_accuracy"] > m["heldout_triplet_accuracy_random_init"], (ds, m)
        assert m["heldout_triplet_accuracy_matched"] > m["heldout_triplet_accuracy_random_init_matched"], (ds, m)
        assert m["trained_matches_random_init"] and m["trained_matches_random_init_matched"]


# -- recipe search (nested leave-one-dataset-out) ----------------------------------------------

def test_recipe_search_never_reads_the_outer_held_out_dataset(fx, monkeypatch):
    from semsim_study.semsim import recipe_search

    p = recipe_search.apply_overrides(F.params(epochs=1), ["semsim.training.lr=0.01", "semsim.training.batch_norm=frozen"])
    assert p["semsim"]["training"]["lr"] == 0.01 and p["semsim"]["training"]["batch_norm"] == "frozen"
    read = []
    real = I.collect

    def spy(root, datasets, attacks):
        read.append(tuple(datasets))
        return real(root, datasets, attacks)

    monkeypatch.setattr(I, "collect", spy)
    rows = recipe_search.run(p, root=str(fx), workers=1)
    assert [(r["outer"], r["inner"]) for r in rows] == recipe_search.inner_splits(["alpha", "beta", "gamma"])
    for r, datasets in zip(rows, read):
        assert r["outer"] not in datasets and r["inner"] in datasets, (r, datasets)
    s = recipe_search.summarise(rows)
    assert s["splits"] == 6 and 0 <= s["splits_not_worse"] <= 6 and isinstance(s["gain"], float)
    assert sorted(s["by_held_out"]) == ["alpha", "beta", "gamma"]
    assert sum(h["splits"] for h in s["by_held_out"].values()) == 6
    assert sum(h["splits_not_worse"] for h in s["by_held_out"].values()) == s["splits_not_worse"]


def test_recipe_summary_breaks_the_gain_down_by_inner_held_out_dataset():
    """The per-dataset rows are the overall summary's arithmetic on each inner held-out dataset's splits."""
    from semsim_study.semsim import recipe_search

    def row(outer, inner, gain, gain_matched):
        return {"outer": outer, "inner": inner, "heldout_triplet_accuracy": 0.8 + gain,
                "heldout_triplet_accuracy_random_init": 0.8,
                "heldout_triplet_accuracy_matched": None if gain_matched is None else 0.6 + gain_matched,
                "heldout_triplet_accuracy_random_init_matched": 0.6}

    # the last split has no matched pair: it counts in "splits" but not in the matched figures
    rows = [row("a", "b", 0.01, 0.02), row("c", "b", 0.03, 0.0), row("a", "c", -0.01, -0.02), row("b", "c", 0.0, None)]
    s = recipe_search.summarise(rows)
    assert s["by_held_out"]["b"] == {"splits": 2, "gain": 0.02, "gain_matched": 0.01, "splits_not_worse": 2,
                                     "splits_above_matched": 1}
    assert s["by_held_out"]["c"] == {"splits": 2, "gain": -0.005, "gain_matched": -0.02, "splits_not_worse": 1,
                                     "splits_above_matched": 0}
    assert s["splits_not_worse"] == 3 and s["splits_above_matched"] == 1 and "by_held_out" not in s["by_held_out"]["b"]
    for bad, match in ((["semsim.training.lrr=0.01"], "'semsim.training.lrr' is not a known key"), (["semsim.training.lr"], "expected dotted.key=value"),
                       (["semsim.training.lr=-1"], "semsim.training.lr"),
                       (["nope.lr=1"], "no section 'nope'")):
        with pytest.raises(ConfigError, match=match):
            recipe_search.apply_overrides(F.params(), bad)


def test_channel_weights_start_from_the_untrained_net_and_learn_only_the_weights(fx, tmp_path):
    """trainable: channel_weights re-weights the untrained body's features: the body's weights and
    batch-norm statistics stay as initialised, only the per-feature weights move, and the saved
    model (its card says so) loads and scores like the trained one."""
    import json

    from semsim_study.semsim import embedding_nets, metric

    p = F.params(epochs=2, trainable="channel_weights", selection_fraction=0.0)
    r = study.run_split(p, "dataset", "gamma", fx)
    assert r.card["trainable"]["mode"] == "channel_weights"
    net = r.net.net
    torch.manual_seed(train.seeds(0, "dataset", "gamma", "semsim")[0])
    fresh = embedding_nets.build(net.backbone)
    assert all(torch.equal(a, b) for a, b in zip(net.body.state_dict().values(), fresh.body.state_dict().values()))
    assert not torch.equal(net.log_channel_weights, torch.zeros_like(net.log_channel_weights))
    assert train.from_params(F.params()).trainable == "all"  # the official recipe stays the default
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / metric.WEIGHTS["semsim"]).write_bytes(state_bytes(net))
    (folder / metric.CARD_NAME).write_text(json.dumps(r.card))
    with pytest.warns(UserWarning, match="simulated annotators"):
        loaded = metric.SemSim.load(folder)
    x, y = _images(4, 1).repeat(1, 1, 4, 4), _images(4, 2).repeat(1, 1, 4, 4)
    assert torch.allclose(loaded.score(x, y), r.net.score(x, y))
    # the public embedding goes through the weights too: its distances are the scores
    assert torch.allclose((loaded.embed(x) - loaded.embed(y)).norm(dim=1), loaded.score(x, y), atol=1e-5)
    bad = dict(r.card, trainable={"mode": "all"})
    (folder / metric.CARD_NAME).write_text(json.dumps(bad))
    with pytest.raises(DataError, match="weights do not fit"):
        metric.SemSim.load(folder)


def test_standardised_input_ignores_brightness_and_contrast():
    """standardise: each image to zero mean and unit spread before the body, so a darker or washed
    out copy embeds (almost) like the original; the plain net moves it."""
    from semsim_study.semsim import embedding_nets

    torch.manual_seed(0)
    std_net = embedding_nets.build("tinyconv16", standardise=True).eval()
    torch.manual_seed(0)
    plain = embedding_nets.build("tinyconv16").eval()
    x = (_images(4, 3).repeat(1, 1, 4, 4) - 0.5) / 0.27  # as normalised for the net
    darker = 0.7 * x - 0.5
    with torch.no_grad():
        moved = {name: (net.embed(x) - net.embed(darker)).norm(dim=1).max().item()
                 for name, net in (("standardised", std_net), ("plain", plain))}
    assert moved["standardised"] < 0.05 < moved["plain"], moved
    assert train.from_params(F.params()).standardise is False
    p = F.params()
    p["semsim"]["model"]["standardise"] = "yes"
    with pytest.raises(ConfigError, match=r"semsim\.model\.standardise"):
        train.from_params(p)


# -- the selection gain test (semsim.training.selection_confidence) ---------------------------

def _pair_items(originals: int) -> list[I.Item]:
    """Per original one recognised and one unrecognised reconstruction: one pair each."""
    out = []
    for o in range(originals):
        for majority in ("recognised", "unrecognised"):
            out.append(I.Item(f"d/m/a/{o}-{majority}", "d", "m", "a", f"img-{o}", "ok", Path("o.png"), Path("r.png"),
                              I.Label(3, 1.0 if majority == "recognised" else 0.0, majority, "simulated")))
    return out


def _scores_winning(originals: int, wins: int) -> list[float]:
    """Scores under which the recognised reconstruction is closer for the first ``wins`` originals."""
    return [v for o in range(originals) for v in ((0.1, 0.9) if o < wins else (0.9, 0.1))]


def _selector_over(items, epochs_scores, confidence):
    sel = selection.Selector(items, np.zeros((len(items), 2, 2, 3), np.uint8), np.zeros((len(items), 2, 2, 3), np.uint8),
                             [0] * 3, [1] * 3, confidence=confidence, rng=np.random.default_rng(0))
    it = iter(epochs_scores)
    sel.distances = lambda net: next(it)
    net = torch.nn.Linear(1, 1, bias=False)
    for epoch in range(len(epochs_scores)):
        with torch.no_grad():
            net.weight.fill_(epoch + 10)
        sel.observe(epoch, net)
    return sel, net, sel.restore(net, len(epochs_scores) - 1)


def test_a_gain_within_chance_keeps_the_untrained_network():
    items = _pair_items(40)
    # epoch 2 wins one original more than the untrained network: best, but within resampling noise
    scores = [_scores_winning(40, 20), _scores_winning(40, 19), _scores_winning(40, 21)]
    sel, net, kept = _selector_over(items, scores, confidence=0.9)
    assert kept == 0 and net.weight.item() == 10.0
    assert sel.test["best_epoch"] == 2 and not sel.test["passed"] and sel.test["gain"] == pytest.approx(1 / 40)
    assert sel.test["lower_bound"] <= 0
    # without the test the same accuracies keep epoch 2
    sel, net, kept = _selector_over(items, scores, confidence=0.0)
    assert kept == 2 and net.weight.item() == 12.0 and sel.test is None


def test_a_clear_gain_keeps_the_trained_epoch():
    items = _pair_items(40)
    scores = [_scores_winning(40, 15), _scores_winning(40, 32), _scores_winning(40, 30)]
    sel, net, kept = _selector_over(items, scores, confidence=0.95)
    assert kept == 1 and net.weight.item() == 11.0
    assert sel.test["passed"] and sel.test["lower_bound"] > 0 and sel.test["gain"] == pytest.approx(17 / 40)


def test_gain_bound_is_paired_over_originals():
    rng = np.random.default_rng(0)
    wins, base, pairs = np.array([2.0, 1.0, 3.0]), np.array([1.0, 1.0, 1.0]), np.array([3, 2, 3])
    gain, lower = selection.gain_bound(wins, base, pairs, 0.9, rng)
    assert gain == pytest.approx(3 / 8) and 0 <= lower <= gain
    # identical scorings gain nothing, whatever the draws
    assert selection.gain_bound(base, base, pairs, 0.9, rng) == (0.0, 0.0)


@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan")])
def test_bad_selection_confidence_names_the_key(value):
    with pytest.raises(ConfigError, match=r"'semsim\.training\.selection_confidence'"):
        train.from_params(F.params(selection_confidence=value))


def test_run_split_records_the_gain_test_on_card_and_record(fx):
    p = F.params(epochs=2, colour=COLOUR, selection_fraction=0.25, selection_confidence=0.9)
    r = study.run_split(p, "dataset", "gamma", fx)
    sel, test = r.card["selection"], r.metrics["selection_gain_test"]
    assert sel["confidence"] == 0.9 and sel["gain_test"] == test and "gain over epoch 0" in sel["rule"]
    if test is None:  # the best epoch was the untrained network: nothing to test
        assert r.metrics["selected_epoch"] == 0
    else:
        assert r.metrics["selected_epoch"] == (test["best_epoch"] if test["passed"] else 0)
        assert r.metrics["selection_triplet_accuracy_by_epoch"][r.metrics["selected_epoch"]] is not None
    if r.metrics["selected_epoch"] == 0:  # the untrained network kept: it scores exactly as its control
        assert r.metrics["heldout_triplet_accuracy"] == r.metrics["heldout_triplet_accuracy_random_init"]
