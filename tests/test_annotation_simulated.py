"""Simulated annotators: decision rules, realistic disagreement, independence from the metrics,
and the annotate stage end to end on a small project (copies are recognised, noise is not)."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from semsim_study.annotation import agreement, collect, crowd_checks, observer, observer_curve, simulated
from semsim_study.annotation.tasks import Task, read_tasks, tasks_csv
from semsim_study.datasets import build, standard
from semsim_study.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CLASSES = [f"c{i}" for i in range(8)]


def _task(i: int, protocol: str, truth: str = "c0") -> Task:
    cands = tuple(CLASSES) if protocol == "A" else ("same", "different")
    return Task(f"d/m/a/test-{i:06d}", "d", "m", "a", f"test-{i:06d}", protocol, truth, cands, "o.png", "r.png", "ok")


def _answers(protocol: str, posterior_rec: np.ndarray, n_items: int = 300, per_item: int = 3, pool: int = 8):
    tasks = {t.item_id: t for t in (_task(i, protocol) for i in range(n_items))}
    p_orig = np.eye(len(CLASSES))[0] * 0.9 + 0.1 / len(CLASSES)
    posts = {i: (p_orig, posterior_rec) for i in tasks}
    cfg = simulated.PoolConfig(pool=pool, per_item=per_item)
    return tasks, simulated.annotate(tasks, posts, CLASSES, cfg, seed=0, dataset="d")


def _recognised_share(tasks, rows):
    expected = {i: (t.truth if t.protocol == "A" else "same") for i, t in tasks.items()}
    return np.mean([r["answer"] == expected[r["item_id"]] for r in rows])


@pytest.mark.parametrize("protocol", ["A", "B"])
def test_clear_reconstructions_are_recognised_and_blank_ones_are_not(protocol):
    clear = np.eye(len(CLASSES))[0] * 0.9 + 0.1 / len(CLASSES)
    blank = np.full(len(CLASSES), 1 / len(CLASSES))
    tasks, rows = _answers(protocol, clear)
    assert _recognised_share(tasks, rows) > 0.8
    tasks, rows = _answers(protocol, blank)
    chance = 1 / len(CLASSES) if protocol == "A" else 0.0
    assert _recognised_share(tasks, rows) < chance + 0.1


def test_every_item_gets_k_distinct_annotators_and_answers_are_seeded():
    tasks, rows = _answers("A", np.full(len(CLASSES), 1 / len(CLASSES)), n_items=40, per_item=3, pool=5)
    by_item = {}
    for r in rows:
        by_item.setdefault(r["item_id"], []).append(r["annotator_id"])
    assert all(len(v) == 3 == len(set(v)) for v in by_item.values()) and len(by_item) == 40
    assert len({a for v in by_item.values() for a in v}) == 5
    assert _answers("A", np.full(len(CLASSES), 1 / len(CLASSES)), n_items=40, per_item=3, pool=5)[1] == rows
    assert all(r["answer"] in CLASSES for r in rows)


def test_people_disagree_realistically_on_ambiguous_reconstructions():
    """Half the items clear, half ambiguous: agreement is well above chance but not perfect."""
    rng = np.random.default_rng(0)
    tasks = {t.item_id: t for t in (_task(i, "B") for i in range(200))}
    p_orig = np.eye(len(CLASSES))[0] * 0.9 + 0.1 / len(CLASSES)
    posts = {}
    for k, item in enumerate(sorted(tasks)):
        w = rng.uniform(0, 1)  # how much of the original survives
        posts[item] = (p_orig, w * p_orig + (1 - w) / len(CLASSES))
    rows = simulated.annotate(tasks, posts, CLASSES, simulated.PoolConfig(), seed=0, dataset="d")
    units = {}
    for r in rows:
        units.setdefault(r["item_id"], []).append(int(r["answer"] == "same"))
    kappa = agreement.binary_agreement(units)["fleiss_kappa"]["value"]
    assert 0.3 < kappa < 0.95


def test_an_identical_pair_is_same_and_a_blank_one_different_for_everyone_but_lapses():
    """Protocol B on the evidence's log-odds: even the strictest, least acute person says "same"
    to a copy (the raw-evidence logistic left 3-12% of them saying "different"); at their own
    criterion a person is undecided."""
    cfg = simulated.PoolConfig(pool=16, lapse_min=0.0, lapse_max=0.0)  # the shipped spreads, no lapses
    people = simulated.make_pool(cfg, CLASSES, seed=0, dataset="d")
    assert max(p.criterion for p in people) > 0.65 and max(p.temperature for p in people) > 1.3  # strict, slow ones
    for person in people:
        draws = [simulated.answer_b(person, e, cfg, np.random.default_rng(i)) for i in range(300) for e in (1.0, 0.0)]
        assert draws[0::2].count("same") == 300 and draws[1::2].count("same") <= 3, person
        at_criterion = [simulated.answer_b(person, person.criterion, cfg, np.random.default_rng(i)) for i in range(400)]
        assert 140 < at_criterion.count("same") < 260, person


def test_agreement_evidence_runs_from_blank_to_copy():
    p = np.array([0.7, 0.2, 0.1])
    assert simulated.agreement_evidence(p, p) == pytest.approx(1.0)
    assert simulated.agreement_evidence(p, np.full(3, 1 / 3)) == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------- independence from the metrics

FORBIDDEN = ("semsim_study.metrics", "semsim_study.semsim", "semsim_study.classifiers",
             "semsim_study.attacks", "lpips", "pytorch_fid", "torchvision")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "semsim_study." + (node.module or "") if node.level == 2 else (
                "semsim_study.annotation." + (node.module or "") if node.level == 1 else node.module)
            names.add(base)
            names |= {f"{base}.{a.name}" if node.level else base for a in node.names}
    return names


def test_simulated_annotators_share_no_network_with_any_metric():
    """By construction: the annotate stage's code imports no metric, SemSim, classifier or
    feature-network module, and its DVC deps include no model folder or metric output."""
    folder = ROOT / "semsim_study" / "annotation"
    for name in ("observer.py", "simulated.py", "collect.py", "importers.py", "aggregate.py",
                 "agreement.py", "longformat.py"):
        bad = [m for m in _imports(folder / name) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
        assert not bad, f"{name} imports {bad}"
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["annotate"]["do"]
    assert not [d for d in stage["deps"] if d.startswith("models") or d.startswith("data/metrics")
                or d.startswith("data/semsim")]


# ---------------------------------------------------------------- observer and the stage


@pytest.fixture(scope="module")
def shapes(tiny_params):
    """The digits domain at 16 px (named for what the stage sees: one small prepared dataset)."""
    ds, split, idx = build.prepare(tiny_params, "digits")
    return ds, split, idx


def test_observer_reads_clean_images_and_shrugs_at_noise(shapes):
    ds, _, _ = shapes
    net = observer.train_observer(ds.train_images, ds.train_labels, ds.num_classes, observer.ObserverConfig(epochs=10), 0)
    assert observer.accuracy(net, ds.test_images, ds.test_labels) > 0.8
    noise = np.random.default_rng(0).integers(0, 256, (50, *ds.train_images.shape[1:]), dtype=np.uint8)
    assert net.posterior(noise).max(1).mean() < 2.5 / ds.num_classes


def test_observer_with_a_nothing_answer_reads_copies_and_sees_nothing_in_noise(shapes):
    ds, _, _ = shapes
    cfg = observer.ObserverConfig(epochs=10, nothing_class=True, junk_signal=0.12, colour_jitter=0.3, blur=1.0,
                                  tinted_noise=True)
    net = observer.train_observer(ds.train_images, ds.train_labels, ds.num_classes, cfg, 0)
    assert net.head.out_features == ds.num_classes + 1
    assert observer.accuracy(net, ds.test_images, ds.test_labels) > 0.7
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (50, *ds.train_images.shape[1:]), dtype=np.uint8)
    saturated = np.where(rng.random(noise.shape) < 0.5, 0, 255).astype(np.uint8)  # an early inversion iterate
    # a later iterate: the originals' colours without their shapes (noise about each test image's mean colour)
    tint = ds.test_images[:50].reshape(50, -1, 3).mean(1)[:, None, None, :]
    tinted = np.clip(tint + rng.normal(0, 60, noise.shape), 0, 255).astype(np.uint8)
    for junk in (noise, saturated, tinted):
        assert net.seen(junk).mean() < 0.3 and net.posterior(junk).max(1).mean() < 2.5 / ds.num_classes
    assert net.seen(ds.test_images).mean() > 0.7
    p = net.posterior(ds.test_images[:5])
    assert p.shape == (5, ds.num_classes) and np.allclose(p.sum(1), 1, atol=1e-5)  # a person's reading: classes only
    default = observer.train_observer(ds.train_images[:64], ds.train_labels[:64], ds.num_classes,
                                      observer.ObserverConfig(epochs=1), 0)
    assert default.head.out_features == ds.num_classes and np.all(default.seen(noise) == 1)


def test_observer_low_pass_keeps_shapes_and_drops_pixel_noise():
    import torch

    net = observer.Observer(4, 8, blur=1.0)
    flat = torch.full((1, 3, 16, 16), 0.7)
    assert torch.allclose(net.low_pass(flat), flat, atol=1e-6)  # a normalised kernel, replicate edges
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2.0 - 1.0
    x = checker.expand(1, 3, 16, 16).clone()
    assert net.low_pass(x)[..., 2:-2, 2:-2].abs().max() < 0.05  # the finest pattern is gone (away from edges)
    block = torch.zeros(1, 3, 16, 16)
    block[..., 4:12, 4:12] = 1.0
    assert net.low_pass(block)[..., 8, 8].min() > 0.9  # a coarse shape survives
    assert torch.equal(observer.Observer(4, 8).low_pass(x), x)  # blur 0: untouched


def test_observer_trained_with_heavy_noise_still_reads_noisy_copies(shapes):
    ds, _, _ = shapes
    cfg = observer.ObserverConfig(epochs=10, noise=0.6, noise_spread=True, blur=1.0)
    net = observer.train_observer(ds.train_images, ds.train_labels, ds.num_classes, cfg, 0)
    assert observer.accuracy(net, ds.test_images, ds.test_labels) > 0.8
    rng = np.random.default_rng(3)
    noisy = np.clip(ds.test_images + rng.normal(0, 60, ds.test_images.shape), 0, 255).astype(np.uint8)
    assert observer.accuracy(net, noisy, ds.test_labels) > 0.6
    noise = rng.integers(0, 256, (50, *ds.train_images.shape[1:]), dtype=np.uint8)
    assert net.posterior(noise).max(1).mean() < 2.5 / ds.num_classes


def _project(root: Path, ds, split, idx, params: dict) -> dict[str, Task]:
    """A prepared dataset, and tasks whose reconstructions are copies (model 'good') or noise ('bad')."""
    standard.save(ds, root / "data" / "prepared" / ds.name, split, idx)
    rng = np.random.default_rng(1)
    tasks = []
    for model in ("good", "bad"):
        for k in idx[:8]:
            image_id = standard.image_id(split, int(k))
            folder = root / "data" / "attacks" / ds.name / "invgrad" / "images" / model
            folder.mkdir(parents=True, exist_ok=True)
            original = ds.images(split)[k]
            rec = original if model == "good" else rng.integers(0, 256, original.shape, dtype=np.uint8)
            Image.fromarray(original).save(folder / f"{image_id}_original.png")
            Image.fromarray(rec).save(folder / f"{image_id}_reconstruction.png")
            rel = f"data/attacks/{ds.name}/invgrad/images/{model}/{image_id}"
            truth = ds.class_names[int(ds.labels(split)[k])]
            cands = tuple(ds.class_names) if ds.protocol == "A" else ("same", "different")
            tasks.append(Task(f"{ds.name}/{model}/invgrad/{image_id}", ds.name, model, "invgrad", image_id,
                              ds.protocol, truth, cands, f"{rel}_original.png", f"{rel}_reconstruction.png", "ok"))
    out = root / "data" / "tasks" / ds.name
    out.mkdir(parents=True)
    (out / "tasks.csv").write_text(tasks_csv(tasks), encoding="utf-8")
    return read_tasks(out / "tasks.csv")


@pytest.mark.parametrize("protocol", ["A", "B"])
def test_annotate_stage_recognises_copies_not_noise(shapes, tiny_params, embedded_params, tmp_path, monkeypatch,
                                                    protocol):
    ds, split, idx = shapes
    ds = copy.copy(ds)
    ds.protocol = protocol
    params = copy.deepcopy(tiny_params)
    params["annotate"]["simulated"] = copy.deepcopy(embedded_params["annotate"]["simulated"])  # the shipped crowd
    params["annotate"]["simulated"]["observer"]["epochs"] = 10
    _project(tmp_path, ds, split, idx, params)
    monkeypatch.chdir(tmp_path)
    result = collect.run(params, "digits", "data/tasks/digits/tasks.csv", "data/prepared/digits")
    sets = result.sets.set_index("model")
    assert sets.loc["good", "recognised_rate"] > 0.7 and sets.loc["bad", "unrecognised_rate"] > 0.7
    assert set(result.answers["source"]) == {"simulated"} and set(result.items["source"]) == {"simulated"}
    assert result.summary["simulated"] is True and result.info["source"] == "simulated"
    assert (result.items["annotators"] == params["annotate"]["simulated"]["per_item"]).all()
    # the controls on the study's own images: clean originals recognised, copies recognised, and the
    # uniform-noise control (the observer's own "no idea" training data) gone
    assert "crowd_checks" not in result.info and "observer_noise_recognised_rate" not in result.summary
    assert result.summary["crowd_clean_original_rate"] >= 0.8 and result.summary["crowd_originals"] > 0
    assert result.summary["crowd_near_copy_items"] > 0 and result.summary["crowd_near_copy_rate"] >= 0.8
    assert result.summary["crowd_invisible_items"] >= 3 and result.summary["crowd_invisible_rate"] <= 0.25  # the noise
    assert set(result.summary["crowd_invariance_by_change"]) == set(crowd_checks.INVARIANCES)
    out = tmp_path / "out"
    out.mkdir()
    result.write(out)
    assert json.loads((out / "annotators.json").read_text())["observer"]["test_accuracy"] > 0
    again = collect.run(params, "digits", "data/tasks/digits/tasks.csv", "data/prepared/digits")
    assert again.answers.equals(result.answers)


def test_annotate_stage_names_missing_answer_files(shapes, tiny_params, tmp_path, monkeypatch):
    ds, split, idx = shapes
    params = copy.deepcopy(tiny_params)
    params["annotate"]["source"] = "csv"
    _project(tmp_path, ds, split, idx, params)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="annotate.paths.digits"):
        collect.run(params, "digits", "data/tasks/digits/tasks.csv", "data/prepared/digits")
    params["annotate"]["paths"] = {"digits": ["annotations/digits.csv"]}
    with pytest.raises(Exception, match="annotations/digits.csv"):
        collect.run(params, "digits", "data/tasks/digits/tasks.csv", "data/prepared/digits")


def test_annotation_source_per_dataset(tiny_params):
    """People on one dataset, simulated annotators on the others; each dataset's source is named."""
    params = copy.deepcopy(tiny_params)
    others = {d: "simulated" for d in params["datasets"] if d != "digits"}
    params["annotate"]["source"] = {"digits": "csv", **others}
    assert collect.source_of(params, "digits") == "csv"
    assert collect.source_of(params, "faces") == "simulated"
    params["annotate"]["source"] = {"digits": "csv"}
    with pytest.raises(ConfigError, match="missing key 'annotate.source.faces'"):
        collect.source_of(params, "faces")
    params["annotate"]["source"] = {"digitz": "csv", "digits": "csv", **others}
    with pytest.raises(ConfigError, match=r"'annotate.source.digitz' is not a known key \(did you mean 'digits'\?\)"):
        collect.source_of(params, "digits")
    params["annotate"]["source"] = {"digits": "excel", **others}
    with pytest.raises(ConfigError, match="'annotate.source.digits' is 'excel'; valid values"):
        collect.source_of(params, "digits")


def test_the_shipped_crowd_ignores_changes_people_ignore(shapes, embedded_params):
    """Global brightness, contrast and colour changes and 1-2 pixel shifts of clean originals are
    still recognised (>= 0.9), as people do: the shipped crowd on digits (fewer epochs)."""
    ds, _, _ = shapes
    cfg = collect.from_params(embedded_params)
    obs = observer.ObserverConfig(**{**cfg[0].__dict__, "epochs": 40})
    net = observer.train_observer(ds.train_images, ds.train_labels, ds.num_classes, obs, 0)
    originals = ds.test_images[:40]
    tasks = [Task(f"digits/m/a/{k}", "digits", "m", "a", str(k), "A", ds.class_names[int(ds.test_labels[k])],
                  tuple(ds.class_names), "o.png", "r.png", "ok") for k in range(len(originals))]
    p = net.posterior(originals)
    clean = crowd_checks.crowd_on(originals, tasks, p, net.posterior, ds.class_names, cfg[1], 0, "clean")
    assert clean >= 0.9
    for name, change in crowd_checks.INVARIANCES.items():
        changed = np.clip(np.round(change(originals)), 0, 255).astype(np.uint8)
        assert crowd_checks.crowd_on(changed, tasks, p, net.posterior, ds.class_names, cfg[1], 0, name) >= 0.9, name


def test_observer_curve_reads_every_budget_from_one_run(shapes, tiny_params, embedded_params, tmp_path, monkeypatch):
    """The budget curve's epoch-E row is what an E-epoch observer gives: the annotate stage's own
    crowd keys on the originals, from one training run."""
    ds, split, idx = shapes
    params = copy.deepcopy(tiny_params)
    params["annotate"]["simulated"] = copy.deepcopy(embedded_params["annotate"]["simulated"])
    params["annotate"]["simulated"]["observer"]["epochs"] = 4
    _project(tmp_path, ds, split, idx, params)
    monkeypatch.chdir(tmp_path)
    rows = observer_curve.curve(params, "digits", "data/tasks/digits/tasks.csv", "data/prepared/digits", every=2)
    assert [r["epoch"] for r in rows] == [2, 4]
    params["annotate"]["simulated"]["observer"]["epochs"] = 2
    summary = collect.run(params, "digits", "data/tasks/digits/tasks.csv", "data/prepared/digits").summary
    for key in ("crowd_clean_original_rate", "crowd_invariance_rate"):
        assert rows[0][key] == summary[key]
    assert rows[0]["test_accuracy"] == round(summary["observer_test_accuracy"], 6)
    assert all(0 <= r["crowd_random_start_rate"] <= 1 and 0 <= r["min_p_true"] <= 1 for r in rows)
    longer = observer_curve.curve(params, "digits", "data/tasks/digits/tasks.csv", "data/prepared/digits", every=3,
                                  epochs=3)
    assert [r["epoch"] for r in longer] == [3]
