"""SemSim: triplet sampling, splits without leakage, the loss, training, scoring, the stage and CLI."""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from tests.support import semsim_fixture as F
from semsim_study.torch_helpers import state_bytes
from semsim_study.errors import ConfigError, DataError
from semsim_study.semsim import SemSim, cli, distance, items as I, metric, study, train, triplet_loss
from semsim_study.semsim.triplets import TripletSampler, ranking_accuracy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Path:
    """Three datasets x 2 models x 2 attacks x 4 originals, half recognised."""
    return F.make_study(tmp_path_factory.mktemp("semsim"))


def _stage_params(workers: int = 1) -> dict:
    p = F.params(epochs=2)
    p["semsim"].update(held_out_attacks=[], held_out_backbones=["resnet8"], workers=workers)
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Both stages run in a copy of the fixture (SemSim and the CE baseline), one process: every
    dataset held out in turn, and the resnet8 backbone."""
    work = tmp_path_factory.mktemp("stage")
    # reconstructions whose PSNRs overlap, so the held-out set has PSNR-matched pairs
    F.make_study(work, noise=(5.0, 60.0), spread=(0.0, 1.0))
    (work / "params.yaml").write_text(yaml.safe_dump(_stage_params()))
    from stages import semsim as stage

    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    try:
        for model in ("semsim", "ce_baseline"):
            mp.setattr(sys, "argv", ["semsim", "--model", model])
            stage.main()
    finally:
        mp.undo()
    return work


def _items(root, datasets=("alpha", "beta", "gamma")):
    return I.collect(root, list(datasets), list(F.ATTACKS))


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- triplet sampling ----------------------------------------------------------------------------

def _labels_with_ties(ds, model, attack, k):
    if k == 0 and model == "resnet8_none" and attack == "invgrad":
        return "tie"
    if k == 1 and attack == "invgrad":
        return None  # unannotated
    if k == 2:  # an original whose reconstructions were all recognised: fallback negatives
        return "recognised"
    if k == 3 and ds == "beta":  # none recognised: no anchor
        return "unrecognised"
    return F._rule(ds, model, attack, k)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return F.make_study(tmp_path_factory.mktemp("mixed"), labels=_labels_with_ties)


def test_triplets_pair_an_original_with_recognised_and_unrecognised(mixed):
    train_items, _ = I.split(_items(mixed), "dataset", "gamma")
    sampler = TripletSampler(train_items)
    trip = sampler.epoch(np.random.default_rng(0))
    assert len(trip) == sampler.stats.triplets_per_epoch > 0
    for a, p, n in trip:
        key = sampler.originals[a]
        pos, neg = train_items[p], train_items[n]
        assert pos.original_key == key and pos.label.majority == "recognised"
        # the anchor is the original image, never its own positive: the positive is a reconstruction
        assert pos.reconstruction != pos.original and pos.reconstruction.name.endswith("_reconstruction.png")
        if len(sampler.unrecognised_of(key)):
            assert neg.original_key == key and neg.label.majority == "unrecognised"
        else:  # the others/ pool: a reconstruction of another original of the same dataset
            assert neg.original_key != key and neg.dataset == key[0]
    # every positive and every negative of every anchor is drawn each epoch
    for key in sampler.anchors:
        mine = trip[trip[:, 0] == sampler.originals.index(key)]
        assert set(mine[:, 1]) == set(sampler.positives_of(key))
        if len(sampler.unrecognised_of(key)):
            assert set(mine[:, 2]) == set(sampler.unrecognised_of(key))


def test_ties_unannotated_and_anchorless_originals(mixed):
    train_items, _ = I.split(_items(mixed), "dataset", "gamma")
    assert all(i.annotated for i in train_items)
    assert not any(i.item_id.endswith("test-000001") and i.attack == "invgrad" for i in train_items)
    sampler = TripletSampler(train_items)
    s = sampler.stats
    assert s.ties == 2  # alpha and beta each have one tie; it is neither positive nor negative
    tie_idx = {n for n, i in enumerate(train_items) if i.label.majority == "tie"}
    trip = sampler.epoch(np.random.default_rng(1))
    assert not tie_idx & set(trip[:, 1])
    assert ("beta", "test-000003") not in sampler.anchors  # no recognised reconstruction: no triplet
    assert s.fallback_anchors == 2  # test-000002 of alpha and beta


def test_sampling_is_seeded_and_resampled_each_epoch(fx):
    train_items, _ = I.split(_items(fx), "dataset", "gamma")
    sampler = TripletSampler(train_items)
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    e1, e1b = sampler.epoch(rng_a), sampler.epoch(rng_b)
    assert np.array_equal(e1, e1b)
    assert not np.array_equal(e1, sampler.epoch(rng_a))


def test_held_out_dataset_absent_from_training(fx):
    all_items = _items(fx)
    for split, held in (("dataset", "beta"), ("attack", "dlg"), ("backbone", "convnet4")):
        train_items, test_items = I.split(all_items, split, held)
        assert train_items and all(i.key(split) != held for i in train_items)
        assert test_items and all(i.key(split) == held for i in test_items)
        assert len(test_items) == sum(1 for i in all_items if i.key(split) == held)
    train_items, _ = I.split(all_items, "dataset", "beta")
    sampler = TripletSampler(train_items)
    assert all(k[0] != "beta" for k in sampler.originals)
    with pytest.raises(ConfigError, match="'delta' has no reconstructions"):
        I.split(all_items, "dataset", "delta")


def test_held_out_data_cannot_change_the_trained_model(fx, tmp_path):
    """Relabel and redraw every held-out image: the trained weights stay byte-identical."""
    p = F.params(epochs=1)
    a = study.run_split(p, "dataset", "gamma", fx)
    other = F.make_study(tmp_path, seed=99, labels=lambda ds, m, at, k: "unrecognised" if ds == "gamma" else F._rule(ds, m, at, k))
    for ds in ("alpha", "beta"):  # same training data as fx
        shutil.rmtree(other / "data" / "attacks" / ds)
        shutil.copytree(fx / "data" / "attacks" / ds, other / "data" / "attacks" / ds)
        shutil.copy(fx / "data" / "annotations" / ds / "items.csv", other / "data" / "annotations" / ds / "items.csv")
        shutil.copy(fx / "data" / "metrics" / ds / "images.csv", other / "data" / "metrics" / ds / "images.csv")
    b = study.run_split(p, "dataset", "gamma", other)

    def without_results(card):  # the card less its held-out results, which do change
        return {k: v for k, v in card.items() if k != "heldout_results"}

    assert state_bytes(a.net.net) == state_bytes(b.net.net)
    assert without_results(a.card) == without_results(b.card) and a.card["heldout_results"] != b.card["heldout_results"]
    ce_a = study.run_split(p, "dataset", "gamma", fx, model="ce_baseline")
    ce_b = study.run_split(p, "dataset", "gamma", other, model="ce_baseline")
    assert state_bytes(ce_a.net.net) == state_bytes(ce_b.net.net) and without_results(ce_a.card) == without_results(ce_b.card)
    assert [r["semsim"] for r in a.rows] != [r["semsim"] for r in b.rows]  # the held-out images did change


# -- loss, margin, optimiser ----------------------------------------------------------------------

def test_triplet_loss_on_hand_made_embeddings():
    a, p, n = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 0.5]]), torch.tensor([[-2.0, 0.0]])
    # normalised: a=(1,0), p=(0,1), n=(-1,0): d(a,p)=sqrt(2), d(a,n)=2
    assert triplet_loss(a, p, n, alpha=1.0).item() == pytest.approx(np.sqrt(2) - 2 + 1, abs=1e-5)
    assert triplet_loss(a, p, n, alpha=0.5).item() == pytest.approx(0.0, abs=1e-6)
    assert triplet_loss(a, p, n, alpha=2.0).item() == pytest.approx(np.sqrt(2), abs=1e-5)
    assert distance(a, n).item() == pytest.approx(2.0, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    x, y, z = (torch.randn(16, 8, generator=g) * 5 for _ in range(3))
    ref = nn.TripletMarginLoss(margin=0.7, p=2)(*(nn.functional.normalize(t, dim=1) for t in (x, y, z)))
    assert triplet_loss(x, y, z, 0.7).item() == pytest.approx(ref.item(), abs=1e-6)
    with pytest.raises(ValueError):
        triplet_loss(x, y, z, 0.0)


def test_margin_comes_from_params_alpha(fx, monkeypatch):
    seen = []
    real = train.triplet_loss

    def spy(a, p, n, alpha, **kw):
        seen.append(alpha)
        return real(a, p, n, alpha, **kw)

    monkeypatch.setattr(train, "triplet_loss", spy)
    r = study.run_split(F.params(epochs=1, alpha=0.37), "dataset", "gamma", fx)
    assert seen and set(seen) == {0.37}
    assert r.card["alpha"] == 0.37 and r.card["weights"] == {"semsim": "semsim.pt"}
    # the CE baseline never reads the margin: its card and weights are the same for any alpha
    # (which is why its stages do not depend on alpha)
    seen.clear()
    ce = [study.run_split(F.params(epochs=1, alpha=a), "dataset", "gamma", fx, model="ce_baseline") for a in (0.37, 2)]
    assert not seen and "alpha" not in ce[0].card and ce[0].card == ce[1].card
    assert state_bytes(ce[0].net.net) == state_bytes(ce[1].net.net)
    assert train.from_params(F.params(alpha=2)).alpha == 2.0
    with pytest.raises(ConfigError, match="alpha"):
        train.from_params(F.params(alpha=-1))
    p = F.params()
    del p["alpha"]
    with pytest.raises(ConfigError, match="missing key 'alpha'"):
        train.from_params(p)


@pytest.mark.parametrize("nesterov, weight_decay, momentum", [(True, 5e-4, 0.9), (False, 0.0, 0.9), (False, 1e-3, 0.0)])
def test_sgd_is_torch_sgd_bit_for_bit(nesterov, weight_decay, momentum):
    torch.manual_seed(0)
    net_a = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    net_b = copy.deepcopy(net_a)
    ours = train.NesterovSGD(net_a.parameters(), lr=0.05, momentum=momentum, nesterov=nesterov,
                             weight_decay=weight_decay)
    ref = torch.optim.SGD(net_b.parameters(), lr=0.05, momentum=momentum, nesterov=nesterov,
                          weight_decay=weight_decay)
    x = torch.randn(16, 3, 8, 8)
    for step in range(6):
        if step == 3:  # the schedule lowers the rate mid-run
            ours.lr = 0.005
            ref.param_groups[0]["lr"] = 0.005
        for net, opt in ((net_a, ours), (net_b, ref)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for pa, pb in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(pa, pb)


def test_trainer_uses_its_sgd_and_schedule_matches_multisteplr(fx):
    cfg = train.SemSimTrainConfig("tinyconv16", 32, "cifar100", 1.0, epochs=100, batch_size=64)
    sched = torch.optim.lr_scheduler.MultiStepLR(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.05),
                                                 milestones=[37, 62, 87], gamma=0.1)
    for epoch in range(100):
        assert train.lr_at(cfg, epoch) == pytest.approx(sched.get_last_lr()[0])
        sched.optimizer.step()
        sched.step()
    sampler = TripletSampler(_items(fx))
    images = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    trainer = train.TripletTrainer(cfg, sampler, images, images, 0, np.random.default_rng(0))
    assert isinstance(trainer.opt, train.NesterovSGD)
    assert (trainer.opt.momentum, trainer.opt.nesterov, trainer.opt.weight_decay) == (0.9, True, 5e-4)
    assert trainer.start_epoch(37) == trainer.opt.lr == train.lr_at(cfg, 37)


def _digests(root: Path) -> dict[str, str]:
    import hashlib

    folders = ("models/semsim", "data/semsim", "reports/semsim", "reports/semsim_curves")
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for f in folders for p in sorted((root / f).rglob("*")) if p.is_file()}


def test_stage_on_two_workers_gives_the_same_bytes_without_torch_dynamo(trained, tmp_path):
    """The splits on two processes write what one process wrote, byte for byte (each split seeds
    itself from its name); and the reason NesterovSGD exists: the stage never imports torch._dynamo."""
    shutil.copytree(trained / "data" / "attacks", tmp_path / "data" / "attacks")
    for sub in ("annotations", "metrics", "prepared"):
        shutil.copytree(trained / "data" / sub, tmp_path / "data" / sub)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_stage_params(workers=2)))
    code = ("import runpy, sys\n"
            "sys.argv = ['semsim', '--model', 'semsim']\n"
            "try:\n"
            "    runpy.run_module('stages.semsim', run_name='__main__')\n"
            "finally:\n"
            "    print('dynamo imported:', 'torch._dynamo' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "4 splits on 2 worker(s)" in out.stderr
    assert "dynamo imported: False" in out.stdout
    ours, serial = _digests(tmp_path), _digests(trained)
    assert len(ours) == len(serial) > 4 * 4 and ours == serial


# -- training ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def separable(tmp_path_factory):
    return F.make_study(tmp_path_factory.mktemp("separable"), images=8)


def test_recognised_reconstructions_score_closer_after_training(separable):
    untrained = study.run_split(F.params(epochs=1, lr=1e-12), "dataset", "gamma", separable)
    assert untrained.metrics["heldout_triplet_accuracy"] < 0.75  # the fixture is not solved by chance
    r = study.run_split(F.params(epochs=8), "dataset", "gamma", separable)
    m = r.metrics
    assert m["heldout_triplet_accuracy"] >= 0.9
    assert m["heldout_mean_semsim_recognised"] < m["heldout_mean_semsim_unrecognised"]
    assert r.history[-1]["triplet_loss"] < r.history[0]["triplet_loss"]


def test_training_is_deterministic(fx):
    a = study.run_split(F.params(epochs=1), "attack", "dlg", fx)
    b = study.run_split(F.params(epochs=1), "attack", "dlg", fx)
    assert state_bytes(a.net.net) == state_bytes(b.net.net)
    assert a.rows == b.rows and a.metrics == b.metrics
    c = study.run_split(F.params(epochs=1) | {"seed": 1}, "attack", "dlg", fx)
    assert state_bytes(a.net.net) != state_bytes(c.net.net)


def test_images_decoded_once_for_every_split_give_the_same_bytes(fx):
    """The stage decodes the PNGs once and hands them to every split, pickled to its worker:
    weights, scores and record are those of a split that reads its own files."""
    import pickle

    p = F.params(epochs=1)
    decoded = study.decode_images(p, fx)
    items = _items(fx)
    assert set(decoded) == {path for it in items for path in (it.original, it.reconstruction)}
    a = study.run_split(p, "attack", "dlg", fx)
    b = study.run_split(p, "attack", "dlg", fx, decoded=pickle.loads(pickle.dumps(decoded)))
    assert state_bytes(a.net.net) == state_bytes(b.net.net)
    assert a.rows == b.rows and a.metrics == b.metrics
    assert study.decode_images(p, fx, limit_bytes=100) == {}  # too large: each split reads its files


def test_ce_baseline_uses_the_official_annotation_classes(fx):
    train_items, _ = I.split(_items(fx), "dataset", "gamma")
    sampler = TripletSampler(train_items)
    n = len(sampler.originals)
    imgs = np.zeros((n, 32, 32, 3), np.uint8)
    data = train.ce_data(sampler, imgs, np.zeros((len(train_items), 32, 32, 3), np.uint8))
    assert data.classes == 2 * n  # <id> and -<id> per original
    assert len(data.labels) == n + len(train_items)
    assert data.class_names[:2] == ["alpha/test-000000", "-alpha/test-000000"]


def test_ranking_accuracy_counts_pairs_of_one_original(fx):
    items = [i for i in _items(fx) if i.dataset == "alpha" and i.image_id == "test-000000"]
    rec = [i.label.majority == "recognised" for i in items]
    perfect = [0.1 if r else 0.9 for r in rec]
    assert ranking_accuracy(items, perfect) == (1.0, sum(rec) * (len(rec) - sum(rec)))
    assert ranking_accuracy(items, [0.5] * len(items))[0] == 0.5
    assert ranking_accuracy(items, [0.9 if r else 0.1 for r in rec])[0] == 0.0


# -- the stage's outputs --------------------------------------------------------------------------

def test_stage_outputs(trained):
    name = "dataset-gamma"
    rows = _read_csv(trained / "data" / "semsim" / name / "scores.csv")
    assert list(rows[0]) == ["item_id", "dataset", "model", "attack", "image_id", "split", "held_out", "semsim",
                             "semsim_untrained"]
    assert len(rows) == 2 * 2 * 4 and {r["dataset"] for r in rows} == {"gamma"}
    assert all(r["split"] == "dataset" and r["held_out"] == "gamma" for r in rows)
    assert all(0.0 <= float(r["semsim"]) <= 2.0 for r in rows)
    ce_rows = _read_csv(trained / "data" / "ce_baseline" / name / "scores.csv")
    assert list(ce_rows[0]) == ["item_id", "dataset", "model", "attack", "image_id", "split", "held_out", "ce_distance"]
    assert [r["item_id"] for r in ce_rows] == [r["item_id"] for r in rows]
    assert all(0.0 <= float(r["ce_distance"]) <= 2.0 for r in ce_rows)
    card = json.loads((trained / "models" / "semsim" / name / "semsim.json").read_text())
    assert card["training_datasets"] == ["alpha", "beta"] and card["held_out"] == "gamma"
    assert card["backbone"] == "tinyconv16" and card["input_size"] == 32 and card["alpha"] == 1.0
    assert card["normalization"]["name"] == "cifar100" and card["embedding_normalized"] is True
    assert card["simulated_annotations"] is True and card["annotation_sources"] == ["simulated"]
    assert card["offline_stand_in"] is True
    assert (trained / "models" / "semsim" / name / "semsim.pt").is_file()
    assert (trained / "models" / "ce_baseline" / name / "ce_baseline.pt").is_file()
    assert not (trained / "models" / "semsim" / name / "ce_baseline.pt").exists()
    m = json.loads((trained / "reports" / "semsim" / f"{name}.json").read_text())
    assert m["heldout_pairs"] == 16 and 0 <= m["heldout_triplet_accuracy"] <= 1 and m["final_triplet_loss"] >= 0
    assert 0 <= m["heldout_triplet_accuracy_random_init"] <= 1
    assert m["trained_matches_random_init"] == (m["heldout_triplet_accuracy"] >= m["heldout_triplet_accuracy_random_init"])
    assert sorted(p.name for p in (trained / "models" / "semsim").iterdir()) == [
        "backbone-resnet8", "dataset-alpha", "dataset-beta", "dataset-gamma"]  # every planned split
    # PSNR-matched pairs: the model, its untrained network and the pixel metrics as scorers
    assert 0 < m["heldout_matched_pairs"] < m["heldout_pairs"] and m["matched_db"] == 2.0
    for key in ("", "_random_init", "_psnr", "_ssim", "_lpips"):
        for tag in ("", "_matched"):
            value, (lo, hi) = m[f"heldout_triplet_accuracy{key}{tag}"], m[f"heldout_triplet_accuracy{key}{tag}_ci"]
            assert 0 <= lo <= value <= hi <= 1
    assert m["trained_matches_random_init_matched"] == (
        m["heldout_triplet_accuracy_matched"] >= m["heldout_triplet_accuracy_random_init_matched"])
    assert card["heldout_results"]["heldout_triplet_accuracy_matched"] == m["heldout_triplet_accuracy_matched"]
    for tag in ("", "_matched"):  # what training changed, with its paired interval
        gain, (lo, hi) = m[f"heldout_gain_over_random_init{tag}"], m[f"heldout_gain_over_random_init{tag}_ci"]
        assert gain == pytest.approx(m[f"heldout_triplet_accuracy{tag}"] - m[f"heldout_triplet_accuracy_random_init{tag}"],
                                     abs=1e-6)
        assert lo <= gain + 1e-6 and gain - 1e-6 <= hi
        assert card["heldout_results"][f"heldout_gain_over_random_init{tag}_ci"] == [lo, hi]
    assert card["augmentation"]["geometry"] == "per_triplet"
    ce = json.loads((trained / "reports" / "ce_baseline" / f"{name}.json").read_text())
    assert 0 <= ce["heldout_triplet_accuracy_ce"] <= 1 and ce["final_ce_loss"] >= 0 and ce["model"] == "ce_baseline"
    assert 0 <= ce["heldout_triplet_accuracy_ce_matched"] <= 1 and len(ce["heldout_triplet_accuracy_ce_matched_ci"]) == 2
    assert ce["heldout_matched_pairs"] == m["heldout_matched_pairs"] and "heldout_triplet_accuracy_psnr" not in ce
    assert not (trained / "reports" / "metrics").exists()
    curve = (trained / "reports" / "semsim_curves" / name / "curves.csv").read_text().splitlines()
    assert curve[0] == "step,series,value" and {line.split(",")[1] for line in curve[1:]} == {
        "triplet_loss", "triplet_accuracy"}  # no selection set in this fixture; lr left out
    assert "ce_loss" in (trained / "reports" / "ce_baseline_curves" / name / "curves.csv").read_text()
    assert not (trained / "dvc.yaml").exists()


def test_untrained_control_is_the_same_network_at_initialisation(trained):
    """semsim_untrained = the stage's network before any step: rebuilt from the split's seed, it
    gives the same distances; training changed them."""
    from semsim_study.semsim import embedding_nets, metric, train as T

    rows = _read_csv(trained / "data" / "semsim" / "dataset-gamma" / "scores.csv")
    card = json.loads((trained / "models" / "semsim" / "dataset-gamma" / "semsim.json").read_text())
    torch_seed, _ = T.seeds(card["seed"], "dataset", "gamma", "semsim")
    torch.manual_seed(torch_seed)
    fresh = metric.SemSim(embedding_nets.build(card["backbone"]), card)
    _, o, x = _pairs(trained)
    got = fresh.score(o, x).numpy()
    assert got == pytest.approx([float(r["semsim_untrained"]) for r in rows], abs=2e-6)
    assert not np.allclose(got, [float(r["semsim"]) for r in rows], atol=1e-3)


# -- scoring from Python and the command line ------------------------------------------------------

def _pairs(trained, n=None):
    rows = _read_csv(trained / "data" / "semsim" / "dataset-gamma" / "scores.csv")[:n]
    base = trained / "data" / "attacks" / "gamma"
    o = [base / r["attack"] / "images" / r["model"] / f"{r['image_id']}_original.png" for r in rows]
    x = [base / r["attack"] / "images" / r["model"] / f"{r['image_id']}_reconstruction.png" for r in rows]
    return rows, o, x


def test_python_scoring_files_and_tensors_match_the_stage(trained):
    model = trained / "models" / "semsim" / "dataset-gamma"
    rows, o, x = _pairs(trained)
    m = SemSim.load(model, batch_size=3)
    from_files = m.score(o, x)
    assert from_files.shape == (len(rows),)
    assert from_files.numpy() == pytest.approx([float(r["semsim"]) for r in rows], abs=2e-6)

    def to_t(paths):  # files -> float (N, 3, H, W) in [0, 1], independently of the library's loader
        return torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() / 255
                            for p in paths])

    tens = SemSim.load(model / "semsim.pt").score(to_t(o), to_t(x))
    assert torch.allclose(tens, from_files, atol=1e-5)
    assert SemSim.load(model).score(to_t(o[:2]), to_t(o[:2])).abs().max() < 1e-5  # same image: distance 0
    ce_model = trained / "models" / "ce_baseline" / "dataset-gamma"
    base = SemSim.load(ce_model, baseline=True).score(o, x)
    ce_rows = _read_csv(trained / "data" / "ce_baseline" / "dataset-gamma" / "scores.csv")
    assert base.numpy() == pytest.approx([float(r["ce_distance"]) for r in ce_rows], abs=2e-6)
    with pytest.raises(DataError, match="has no semsim weights"):
        SemSim.load(ce_model)
    # a different input size is resized to the card's 32 px
    big = torch.nn.functional.interpolate(to_t(o[:2]), size=(64, 64), mode="nearest")
    assert torch.allclose(m.score(big, to_t(x[:2])), from_files[:2], atol=0.2)
    e = m.embed(o[:3])
    assert e.shape == (3, m.card["embedding_dim"]) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)


def test_python_scoring_rejects_bad_tensors(trained):
    m = SemSim.load(trained / "models" / "semsim" / "dataset-gamma")
    ok = torch.rand(2, 3, 32, 32)
    with pytest.raises(DataError, match="2 original"):
        m.score(ok, torch.rand(3, 3, 32, 32))
    with pytest.raises(DataError, match=r"shape \(N, 3, H, W\)"):
        m.score(ok, torch.rand(2, 2, 32, 32))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        m.score(ok, ok * 255)
    with pytest.raises(DataError, match="NaN"):
        m.score(ok, torch.full((2, 3, 32, 32), float("nan")))


def test_cli_scores_a_folder_pair(trained, tmp_path):
    rows, o, x = _pairs(trained)
    model = trained / "models" / "semsim" / "dataset-gamma"
    orig_dir, rec_dir = tmp_path / "o", tmp_path / "r"
    orig_dir.mkdir(), rec_dir.mkdir()
    for r, a, b in zip(rows, o, x):
        name = f"{r['model']}-{r['attack']}-{r['image_id']}"
        shutil.copy(a, orig_dir / f"{name}.png")
        shutil.copy(b, rec_dir / f"{name}.png")
    (rec_dir / "notes.txt").write_text("not an image, ignored")
    out = tmp_path / "scores.csv"
    assert cli.main(["score", "--model", str(model), "--originals", str(orig_dir), "--reconstructions", str(rec_dir),
                     "--out", str(out)]) == 0
    got = {r["name"]: float(r["semsim"]) for r in _read_csv(out)}
    want = {f"{r['model']}-{r['attack']}-{r['image_id']}": float(r["semsim"]) for r in rows}
    assert list(_read_csv(out)[0]) == ["name", "original", "reconstruction", "semsim"]
    assert got == pytest.approx(want, abs=2e-6)
    # one attack folder, matched by suffix, through the real entry point
    folder = trained / "data" / "attacks" / "gamma" / "dlg" / "images" / "resnet8_none"
    out2 = tmp_path / "suffix.csv"
    proc = subprocess.run([sys.executable, "-m", "semsim_study.semsim", "score", "--model", str(model),
                           "--originals", str(folder), "--reconstructions", str(folder),
                           "--original-suffix", "_original", "--reconstruction-suffix", "_reconstruction",
                           "--out", str(out2)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got2 = {r["name"]: float(r["semsim"]) for r in _read_csv(out2)}
    assert got2 == pytest.approx({r["image_id"]: float(r["semsim"]) for r in rows
                                  if r["attack"] == "dlg" and r["model"] == "resnet8_none"}, abs=2e-6)


def test_cli_out_dash_prints_the_csv(trained, tmp_path, capsys, monkeypatch):
    rows, o, x = _pairs(trained)
    orig_dir, rec_dir = tmp_path / "o", tmp_path / "r"
    orig_dir.mkdir(), rec_dir.mkdir()
    for i, (a, b) in enumerate(zip(o[:3], x[:3])):
        shutil.copy(a, orig_dir / f"p{i}.png")
        shutil.copy(b, rec_dir / f"p{i}.png")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["score", "--model", str(trained / "models" / "semsim" / "dataset-gamma"),
                     "--originals", str(orig_dir), "--reconstructions", str(rec_dir), "--out", "-"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "name,original,reconstruction,semsim" and len(out.splitlines()) == 4
    assert "scored 3 pair(s) -> standard output" in err
    assert not (tmp_path / "-").exists()


def test_a_parent_in_training_mode_does_not_change_the_metric(trained):
    """Inside a model that calls .train(), SemSim's BatchNorm statistics stay frozen (as lpips')."""
    m = SemSim.load(trained / "models" / "semsim" / "dataset-gamma")
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(4, 3, 32, 32, generator=g), torch.rand(4, 3, 32, 32, generator=g)
    before = m(x, y, normalize=True)
    buffers = {k: v.clone() for k, v in m.named_buffers()}
    assert any(isinstance(layer, nn.modules.batchnorm._BatchNorm) for layer in m.modules())

    class Parent(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(2, 2)
            self.metric = m

    parent = Parent()
    parent.train()
    assert parent.metric.training and not m.net.training  # the flag follows, the layers do not
    m(torch.rand(4, 3, 32, 32, generator=g), torch.rand(4, 3, 32, 32, generator=g), normalize=True)
    assert all(torch.equal(v, buffers[k]) for k, v in m.named_buffers())
    parent.eval()
    assert torch.equal(m(x, y, normalize=True), before)


# -- bad input ----------------------------------------------------------------------------------

def test_missing_or_corrupt_weights_and_cards(trained, tmp_path):
    src = trained / "models" / "semsim" / "dataset-gamma"
    model = tmp_path / "m"
    shutil.copytree(src, model)
    (model / "semsim.pt").unlink()
    with pytest.raises(DataError, match=r"semsim\.pt: SemSim weight file missing"):
        SemSim.load(model)
    (model / "semsim.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"semsim\.pt: not a loadable weights-only checkpoint"):
        SemSim.load(model)
    (model / "semsim.pt").write_bytes((src / "semsim.pt").read_bytes()[:300])  # truncated
    with pytest.raises(DataError, match="not a loadable"):
        SemSim.load(model)
    shutil.copy(src.parent.parent / "ce_baseline" / src.name / "ce_baseline.pt", model / "semsim.pt")  # right format, same shapes: loads
    SemSim.load(model)
    card = json.loads((src / "semsim.json").read_text())
    (model / "semsim.json").write_text(json.dumps(card | {"backbone": "resnet8"}))
    with pytest.raises(DataError, match="do not fit backbone 'resnet8'"):
        SemSim.load(model)
    (model / "semsim.json").write_text(json.dumps(card | {"backbone": "vgg"}))
    with pytest.raises(DataError, match="card key 'backbone'"):
        SemSim.load(model)
    (model / "semsim.json").write_text(json.dumps({k: v for k, v in card.items() if k != "normalization"}))
    with pytest.raises(DataError, match="card key 'normalization'"):
        SemSim.load(model)
    (model / "semsim.json").write_text("{broken")
    with pytest.raises(DataError, match="not valid JSON"):
        SemSim.load(model)
    (model / "semsim.json").unlink()
    with pytest.raises(DataError, match="SemSim card missing"):
        SemSim.load(model)
    with pytest.raises(DataError, match="SemSim model not found"):
        SemSim.load(tmp_path / "nowhere")


def test_cli_reports_unmatched_names_and_unreadable_images(trained, tmp_path, capsys):
    _, o, x = _pairs(trained, 3)
    model = trained / "models" / "semsim" / "dataset-gamma"
    od, rd = tmp_path / "o", tmp_path / "r"
    od.mkdir(), rd.mkdir()
    for n, (a, b) in enumerate(zip(o, x)):
        shutil.copy(a, od / f"img{n}.png")
        shutil.copy(b, rd / f"img{n}.jpg.png" if n == 2 else rd / f"img{n}.png")
    args = ["score", "--model", str(model), "--originals", str(od), "--reconstructions", str(rd),
            "--out", str(tmp_path / "s.csv")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "unmatched names" in err and "img2" in err and "img2.jpg" in err
    assert not (tmp_path / "s.csv").exists()
    (rd / "img2.jpg.png").rename(rd / "img2.png")
    (rd / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "img1.png: unreadable or corrupt image" in err
    assert not (tmp_path / "s.csv").exists()
    shutil.copy(x[1], rd / "img1.png")
    assert cli.main(args) == 0 and len(_read_csv(tmp_path / "s.csv")) == 3
    with pytest.raises(DataError, match="two images named 'img0'"):
        shutil.copy(x[0], rd / "img0.jpg")
        cli.image_files(rd)


def test_bad_annotation_files_name_file_and_line(fx, tmp_path):
    shutil.copytree(fx / "data", tmp_path / "data")
    items = tmp_path / "data" / "annotations" / "beta" / "items.csv"
    text = items.read_text().splitlines()
    items.write_text("\n".join(text[:3] + [text[3].replace(",recognised,", ",maybe,").replace(",unrecognised,", ",maybe,")] + text[4:]) + "\n")
    with pytest.raises(DataError, match=r"beta/items\.csv:4: majority 'maybe'"):
        _items(tmp_path)
    items.write_text("item_id,dataset\n")
    with pytest.raises(DataError, match="missing column"):
        _items(tmp_path)
    items.unlink()
    with pytest.raises(DataError, match=r"items\.csv: file not found \(run the annotate stage\)"):
        _items(tmp_path)


# -- SemSim as a torch module, its model card ---------------------------------------------------

def test_semsim_is_a_differentiable_module_like_lpips(trained, monkeypatch):
    import warnings

    import semsim_study

    monkeypatch.setattr(metric, "_WARNED", set())  # earlier tests loaded (and warned about) this model
    model = trained / "models" / "semsim" / "dataset-gamma"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = semsim_study.SemSim.load(model)
        semsim_study.SemSim.load(model)  # once per model, not per load
    said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(said) == 1 and "simulated annotators (not people)" in said[0] and "offline stand-in data" in said[0]
    assert isinstance(m, torch.nn.Module)
    assert not any(p.requires_grad for p in m.parameters())  # a metric: gradients reach the inputs only
    rows, o, x = _pairs(trained, 4)

    def to_t(paths):
        return torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() / 255
                            for p in paths])

    a, b = to_t(o).requires_grad_(), to_t(x).requires_grad_()
    d = m(a, b, normalize=True)  # [0, 1] inputs, as lpips' and torchmetrics' flag
    assert d.shape == (4,) and d.requires_grad
    assert d.detach().numpy() == pytest.approx([float(r["semsim"]) for r in rows], abs=2e-6)
    d.sum().backward()
    assert a.grad is not None and b.grad is not None and a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
    signed = m(a.detach() * 2 - 1, b.detach() * 2 - 1)  # [-1, 1] inputs: lpips' default
    assert torch.allclose(signed, d.detach(), atol=1e-5)
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\] \(normalize=True"):
        m(a.detach() * 2 - 1, b.detach(), normalize=True)
    assert m.to("cpu").device.type == "cpu" and m.mean.device.type == "cpu"


def test_stage_writes_a_model_card_from_its_own_numbers(trained):
    name = "dataset-gamma"
    text = (trained / "models" / "semsim" / name / "MODEL_CARD.md").read_text()
    m = json.loads((trained / "reports" / "semsim" / f"{name}.json").read_text())
    lo, hi = m["heldout_triplet_accuracy_ci"]
    assert lo <= m["heldout_triplet_accuracy"] <= hi
    assert f"{m['heldout_triplet_accuracy']:.3f} [{lo:.3f}, {hi:.3f}]" in text
    assert "held out: **gamma**" in text and "alpha, beta" in text
    assert "simulated annotators" in text and "32x32 px" in text and 'SemSim.load("models/semsim/dataset-gamma")' in text
    assert "models/ce_baseline/dataset-gamma/" in text  # the baseline: its own stage, named
    for key in ("heldout_triplet_accuracy_matched", "heldout_triplet_accuracy_random_init_matched",
                "heldout_triplet_accuracy_psnr_matched", "heldout_triplet_accuracy_lpips"):
        lo, hi = m[f"{key}_ci"]
        assert f"{m[key]:.3f} [{lo:.3f}, {hi:.3f}]" in text
    assert f"the {m['heldout_matched_pairs']} pairs whose two" in text and "PSNR-matched" in text
    lo, hi = m["heldout_gain_over_random_init_matched_ci"]
    assert f"{m['heldout_gain_over_random_init_matched']:+.4f} [{lo:+.4f}, {hi:+.4f}]" in text
    ce = json.loads((trained / "reports" / "ce_baseline" / f"{name}.json").read_text())
    for rec, key in ((ce, "heldout_triplet_accuracy_ce_ci"), (m, "heldout_triplet_accuracy_random_init_ci")):
        assert len(rec[key]) == 2 and rec[key][0] <= rec[key][1]
    # the CE baseline's folder has its own card, with its own numbers and how to load it
    ce_text = (trained / "models" / "ce_baseline" / name / "MODEL_CARD.md").read_text()
    lo, hi = ce["heldout_triplet_accuracy_ce_ci"]
    assert ce_text.startswith(f"# CE-baseline model `{name}`") and "cross-entropy" in ce_text
    assert f"| this CE baseline | {ce['heldout_triplet_accuracy_ce']:.3f} [{lo:.3f}, {hi:.3f}] |" in ce_text
    assert 'SemSim.load("models/ce_baseline/dataset-gamma", baseline=True)' in ce_text and "--baseline" in ce_text
    assert "models/semsim/dataset-gamma/MODEL_CARD.md" in ce_text and "margin alpha" not in ce_text
    assert "this SemSim" not in ce_text and "simulated annotators" in ce_text


def test_the_stage_plans_every_split_and_refuses_repeats():
    from semsim_study.semsim import runs

    p = F.params()
    assert runs.planned(p) == [("dataset", "alpha"), ("dataset", "beta"), ("dataset", "gamma"), ("attack", "dlg"),
                               ("attack", "invgrad"), ("backbone", "resnet8"), ("backbone", "convnet4")]
    p["semsim"]["held_out_attacks"] = ["dlg", "dlg"]
    with pytest.raises(ConfigError, match="'semsim.held_out_attacks' must be a list of distinct names"):
        runs.planned(p)
