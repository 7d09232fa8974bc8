"""The simulated crowd's controls: its own training images, and planted class cues it must not read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from semsim_study.torch_helpers import state_bytes
from semsim_study.annotation import observer, simulated
from semsim_study.annotation import planted_cues as oc
from semsim_study.classifiers import checkpoints
from semsim_study.annotation.tasks import Task
from semsim_study.datasets import build, halves
from semsim_study.datasets.standard import PreparedDataset
from semsim_study.errors import ConfigError
from semsim_study.metrics import featurenet


def test_training_halves_are_disjoint_and_keep_every_class():
    labels = np.array([0, 1, 1, 2, 0, 1, 2, 2, 0, 0, 1])
    fn, ob = halves.training_half(labels, "feature_net"), halves.training_half(labels, "observer")
    assert set(fn).isdisjoint(ob) and sorted(set(fn) | set(ob)) == list(range(len(labels)))
    assert set(labels[fn]) == set(labels[ob]) == {0, 1, 2}
    assert list(fn) == sorted(fn)


def test_feature_network_learns_only_from_its_half():
    rng = np.random.default_rng(0)
    ds = PreparedDataset("d", ["a", "b"], rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8),
                         np.array([0, 1] * 5), rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), np.array([0, 1] * 2))
    x, y, _ = featurenet.union([ds], "train", 8)
    keep = halves.training_half(ds.train_labels, "feature_net")
    assert np.array_equal(x, ds.train_images[keep]) and len(x) == 6  # 3 of each class's 5
    observer_half = ds.train_images[halves.training_half(ds.train_labels, "observer")]
    assert not any((observer_half == img).all(axis=(1, 2, 3)).any() for img in x)
    xt, _, _ = featurenet.union([ds], "test", 8)
    assert len(xt) == 4  # the test split is whole


def _linear(classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16 * 16 * 3, classes)).eval()


NORM = {"mean": [0.5] * 3, "std": [0.5] * 3}


def _predict(model: nn.Module, images: np.ndarray) -> np.ndarray:
    return checkpoints.predict(model, {"normalization": NORM}, images)


def test_planted_copies_flip_the_classifier_within_epsilon():
    model = _linear(4)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    targets = rng.integers(0, 4, 40)
    cfg = oc.ControlConfig(epsilon=8 / 255, steps=10)
    copies = oc.plant(model, NORM, images, targets, cfg)
    assert copies.dtype == np.uint8 and copies.shape == images.shape
    assert np.abs(copies.astype(int) - images.astype(int)).max() <= 8
    assert (_predict(model, copies) == targets).mean() > 0.9


@pytest.fixture(scope="module")
def digits_observer(tiny_params):
    
    ds, _, _ = build.prepare(tiny_params, "digits")
    cfg = observer.ObserverConfig(width=16, epochs=15, noise=0.6, noise_spread=True, blur=1.0, cue_steps=2)
    return ds, observer.train_observer(ds.train_images, ds.train_labels, ds.num_classes, cfg, 0)


def test_a_planted_class_cue_does_not_change_the_crowds_verdict(digits_observer):
    """Noise in two copies, one a classifier reads as the truth and one as another class: the
    crowd (same people, same draws) gives both the same verdict, and recognises neither; a
    clean copy of the original it does recognise."""
    ds, net = digits_observer
    rng = np.random.default_rng(2)
    n = 60
    originals = ds.test_images[:n]
    truth = ds.test_labels[:n]
    noise = (np.clip(rng.normal(0.5, 0.5, originals.shape), 0, 1) * 255).round().astype(np.uint8)
    clf = _linear(ds.num_classes, 3)
    other = (truth + 1 + rng.integers(0, ds.num_classes - 1, n)) % ds.num_classes
    cfg = oc.ControlConfig(epsilon=8 / 255, steps=20)
    true_copy, other_copy = oc.plant(clf, NORM, noise, truth, cfg), oc.plant(clf, NORM, noise, other, cfg)
    took = (_predict(clf, true_copy) == truth) & (_predict(clf, other_copy) != truth)
    assert took.sum() >= 30  # pairs the cue flipped, as the stage keeps
    tasks = {f"i{k}": Task(f"i{k}", "digits", "m", "a", f"x{k}", "A", ds.class_names[truth[k]],
                           tuple(ds.class_names), "o.png", "r.png", "ok") for k in range(n)}
    p_orig = net.posterior(originals)

    def majority(images):
        p = net.posterior(images)
        rows = simulated.annotate(tasks, {f"i{k}": (p_orig[k], p[k]) for k in range(n)}, ds.class_names,
                                  simulated.PoolConfig(), 0, "digits#test")
        votes = simulated.recognised_votes(rows, tasks)
        return np.array([sum(votes[f"i{k}"]) * 2 > len(votes[f"i{k}"]) for k in range(n)])

    a, b = majority(true_copy)[took], majority(other_copy)[took]
    assert abs(a.mean() - b.mean()) <= 0.05
    assert a.mean() < 0.25 and b.mean() < 0.25  # noise stays noise (chance is 0.1 plus lapses)
    assert majority(originals).mean() > 0.8  # a clean copy is recognised


def test_observer_weights_round_trip_and_a_wrong_file_is_named(tmp_path):
    cfg = observer.ObserverConfig(width=8, blur=1.0)
    torch.manual_seed(0)
    net = observer.Observer(5, 8, 1.0)
    (tmp_path / "observer.pt").write_bytes(state_bytes(net))
    again = observer.load(tmp_path / "observer.pt", 5, cfg)
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(again(x), net.eval()(x))
    assert state_bytes(net) == state_bytes(again)
    with pytest.raises(Exception, match="observer.pt: weights do not fit the observer these params describe"):
        observer.load(tmp_path / "observer.pt", 7, cfg)
    with pytest.raises(Exception, match="missing; rerun the annotate stage"):
        observer.load(tmp_path / "nope.pt", 5, cfg)


@pytest.mark.parametrize("key,value", [("epsilon", 0), ("epsilon", 2.0), ("steps", 0), ("min_images", 1.5),
                                       ("confidence", 1.0), ("bootstrap", True)])
def test_bad_control_params_are_named(key, value):
    with pytest.raises(ConfigError, match=f"observer_controls.{key}"):
        oc.from_params({"observer_controls": {key: value}})
    with pytest.raises(ConfigError, match="not a known key"):
        oc.from_params({"observer_controls": {"epsilom": 0.1}})


def test_a_fraction_written_as_text_is_named_not_a_traceback():
    # params.yaml's comment writes the default as 8/255; YAML reads that as text
    with pytest.raises(ConfigError, match=r"observer_controls.epsilon must be a number, got '8/255'.*0.0313725"):
        oc.from_params({"observer_controls": {"epsilon": "8/255"}})
    with pytest.raises(ConfigError, match="observer_controls.steps must be a number, got 'ten'"):
        oc.from_params({"observer_controls": {"steps": "ten"}})


def test_paired_interval_covers_the_mean_difference():
    a = np.array([1, 0, 1, 1, 0, 0, 1, 0] * 10, dtype=bool)
    b = np.array([0, 0, 1, 1, 0, 0, 1, 1] * 10, dtype=bool)
    lo, hi = oc.paired_interval(a, b, oc.ControlConfig(bootstrap=500), 0)
    assert lo <= (a.mean() - b.mean()) <= hi and hi - lo < 0.4
    assert oc.paired_interval(a, b, oc.ControlConfig(bootstrap=0), 0) is None


def test_people_need_no_planted_cue_control():
    nowhere = oc.Inputs(*(Path("nowhere") / name for name in ("tasks.csv", "prepared", "annotations", "images.csv",
                                                               "models")))
    summary, table = oc.run({"seed": 0, "annotate": {"source": "csv"}, "observer_controls": {}}, "digits", nowhere,
                            psnr=None)
    assert summary["simulated"] is False and table.empty
