"""Attacks on tiny models: DLG/iDLG on DLG's sigmoid LeNet, Inverting Gradients, GradInversion,
label inference, divergence, and the resumable parallel job runner."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from semsim_study.torch_helpers import state_bytes
from semsim_study.classifiers import backbones, checkpoints, grid, training
from semsim_study.attacks import configs, engine, jobs
from semsim_study.datasets import build, standard
from semsim_study.errors import ConfigError, DataError
from tests.conftest import ROOT

SIZE = 16  # DLG's LeNet at 16 px converges in a few L-BFGS steps, which keeps the suite fast


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / max(((a - b) ** 2).mean().item(), 1e-12))


@pytest.fixture(scope="module")
def photos(tiny_params):
    ds, _, _ = build.prepare(tiny_params, "photos")
    return ds


@pytest.fixture(scope="module")
def cases(photos):
    """Four seeded real photo patches at 16 px, in [0, 1], with labels."""
    rng = np.random.default_rng(7)
    idx = rng.choice(len(photos.test_labels), 4, replace=False)
    x = torch.from_numpy(photos.test_images[idx]).permute(0, 3, 1, 2).float().div(255)
    x = torch.nn.functional.interpolate(x, size=(SIZE, SIZE), mode="area")
    return [(x[i : i + 1], int(photos.test_labels[j])) for i, j in enumerate(idx)]


def lenet() -> torch.nn.Module:
    torch.manual_seed(1234)
    return backbones.build("lenet", 100, SIZE)


def _attack(name, model, x, label, seed, **overrides):
    cfg = configs.build(name, overrides)
    target = engine.observed_gradient(model, x, label, cfg.loss_scale)
    return engine.reconstruct(model, target, (3, SIZE, SIZE), [0.0] * 3, [1.0] * 3, cfg,
                              torch.Generator().manual_seed(seed), label=label, num_classes=100)


def test_idlg_reconstructs_most_images_and_every_label(cases):
    model = lenet()
    results = [_attack("idlg", model, x, y, i, iterations=20) for i, (x, y) in enumerate(cases)]
    assert [r.label for r in results] == [y for _, y in cases]
    scores = [psnr(r.image, x) for r, (x, _) in zip(results, cases)]
    assert sum(s > 25 for s in scores) >= 3, scores


def test_dlg_reconstructs_some_images(cases):
    model = lenet()
    scores = [psnr(_attack("dlg", model, x, y, i, iterations=20).image, x) for i, (x, y) in enumerate(cases[:3])]
    assert sum(s > 25 for s in scores) >= 1, scores


@pytest.mark.parametrize("name", ["invgrad", "gradinversion"])
def test_adam_attacks_improve_well_over_the_random_start(cases, name):
    model = lenet()
    x, y = cases[0]
    start = torch.clamp(torch.randn((1, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(0)), 0, 1)
    r = _attack(name, model, x, y, 0, iterations=200)
    assert r.status == "ok"
    assert psnr(r.image, x) > psnr(start, x) + 6


def test_gradinversion_bn_prior_is_measured_per_image():
    torch.manual_seed(0)
    model = backbones.build("resnet8", 10, 16).eval()
    x = torch.randn(2, 3, 16, 16)
    targets = [engine.observed_gradient(model, x[i : i + 1], i, 0.5) for i in range(2)]
    base = configs.build("gradinversion", {"bn_prior": 0.0, "tv": 0.0, "l2_prior": 0.0})
    with_bn = configs.build("gradinversion", {"bn_prior": 1.0, "tv": 0.0, "l2_prior": 0.0})
    y = torch.tensor([0, 1])
    prior = engine._Objective(model, with_bn, targets)(x, y) - engine._Objective(model, base, targets)(x, y)
    for i in range(2):  # the prior of image i alone, from hooks on a plain forward pass
        stats = []
        hooks = [m.register_forward_hook(lambda mod, inp, out: stats.append(
            torch.norm(inp[0].mean(dim=(0, 2, 3)) - mod.running_mean)
            + torch.norm(inp[0].var(dim=(0, 2, 3), unbiased=False) - mod.running_var)))
            for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        model(x[i : i + 1])
        for h in hooks:
            h.remove()
        assert len(stats) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        assert float(prior[i].detach()) == pytest.approx(float(sum(stats).detach()), rel=1e-4)


@pytest.mark.parametrize("backbone,size", [("lenet", 16), ("resnet8", 16), ("convnet", 32)])
@pytest.mark.parametrize("name", ["dlg", "gradinversion"])
def test_rows_and_vmap_give_the_same_objective_and_pixel_gradient(backbone, size, name):
    """The two per-image gradient routes compute one objective: values, pixel gradients and
    DLG's soft-label gradient agree to float rounding (L2 with soft labels; cosine with the BN
    prior, TV and the L2 prior), with and without a graph through them."""
    torch.manual_seed(0)
    model = backbones.build(backbone, 10, size).eval()
    cfg = configs.build(name, {"l2_prior": 1e-3} if name == "gradinversion" else {})
    x0 = torch.rand(3, 3, size, size)
    targets = [engine.observed_gradient(model, x0[i : i + 1], i, cfg.loss_scale) for i in range(3)]
    got = {}
    for route in ("vmap", "rows"):
        objective = engine._Objective(model, cfg, targets, route)
        x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        soft = torch.randn(3, 10, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
        y = torch.softmax(soft, -1) if name == "dlg" else torch.tensor([0, 1, 2])
        value = objective(x, y)
        value.sum().backward(inputs=[x, soft] if name == "dlg" else [x])
        with torch.no_grad():
            plain = objective(x, y)
        objective.close()
        got[route] = [value.detach(), x.grad, plain] + ([soft.grad] if name == "dlg" else [])
    for a, b in zip(got["vmap"], got["rows"]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(a.abs().max())), float((a - b).abs().max())


def test_rows_leaves_the_model_as_it_was_and_refuses_layers_it_cannot_split():
    torch.manual_seed(0)
    model = backbones.build("resnet8", 10, 16).eval()
    x = torch.rand(2, 3, 16, 16)
    before = model(x)
    targets = [engine.observed_gradient(model, x[i : i + 1], i, 0.5) for i in range(2)]
    objective = engine._Objective(model, configs.build("invgrad", {}), targets, "rows")
    objective(x, torch.tensor([0, 1]))
    objective.close()
    assert not any("forward" in vars(m) for m in model.modules())
    assert torch.equal(model(x), before)
    odd = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 14 * 14, 10)).eval()
    odd_targets = [engine.observed_gradient(odd, x[:1], 0, 0.5)] * 2
    with pytest.raises(ConfigError, match=r"'rows' cannot run 1 \(layer type GroupNorm\); use 'vmap'"):
        engine._Objective(odd, configs.build("invgrad", {}), odd_targets, "rows")
    assert not any("forward" in vars(m) for m in odd.modules())  # the conv patched before the refusal is restored
    model.train()
    with pytest.raises(ConfigError, match="training mode"):
        engine._Objective(model, configs.build("invgrad", {}), targets, "rows")


def test_every_backbone_has_only_layers_the_rows_route_can_split():
    from semsim_study.attacks.rowwise import ROWWISE

    for name in backbones.BACKBONES:
        model = backbones.build(name, 10, 32)
        kinds = {type(m) for m in model.modules() if any(True for _ in m.parameters(recurse=False))}
        assert kinds <= set(ROWWISE), (name, kinds - set(ROWWISE))


def test_auto_takes_rows_for_one_image_and_vmap_for_a_batch():
    assert engine.per_sample_path("auto", 1) == "rows" and engine.per_sample_path("auto", 2) == "vmap"
    assert engine.per_sample_path("vmap", 1) == "vmap" and engine.per_sample_path("rows", 8) == "rows"
    with pytest.raises(ConfigError, match="per_sample_gradients must be one of auto, vmap, rows, got 'grouped'"):
        engine.per_sample_path("grouped", 1)


@pytest.mark.parametrize("name", ["idlg", "invgrad"])
def test_a_batch_along_rows_equals_the_attacks_one_by_one(cases, name):
    """Rows stay independent on the rows route too: each row of a batch is its single attack."""
    torch.manual_seed(5)
    model = lenet()
    cfg = configs.build(name, {"iterations": 1, "lbfgs_inner": 4} if name == "idlg" else {"iterations": 5})
    targets = [engine.observed_gradient(model, x, y, cfg.loss_scale) for x, y in cases[:3]]
    labels = [y for _, y in cases[:3]]
    args = ((3, SIZE, SIZE), [0.0] * 3, [1.0] * 3, cfg)
    batch = engine.reconstruct_batch(model, targets, *args, [torch.Generator().manual_seed(i) for i in range(3)],
                                     labels, 100, per_sample="rows")
    for i in range(3):
        one = engine.reconstruct_batch(model, targets[i : i + 1], *args, [torch.Generator().manual_seed(i)],
                                       labels[i : i + 1], 100, per_sample="rows")[0]
        assert batch[i].label == one.label and batch[i].iterations == one.iterations
        assert torch.allclose(batch[i].image, one.image, atol=2e-3), (batch[i].image - one.image).abs().max()
        assert batch[i].loss == pytest.approx(one.loss, rel=1e-2, abs=1e-5)


@pytest.mark.parametrize("name", ["idlg", "dlg", "invgrad", "gradinversion"])
def test_a_batch_of_attacks_equals_the_attacks_one_by_one(cases, name):
    torch.manual_seed(5)
    model = backbones.build("resnet8", 100, SIZE).eval() if name == "gradinversion" else lenet()
    # few steps: L-BFGS on a non-convex objective amplifies float rounding, and batched kernels round differently
    cfg = configs.build(name, {"iterations": 1, "lbfgs_inner": 4} if name in ("dlg", "idlg") else {"iterations": 5})
    targets = [engine.observed_gradient(model, x, y, cfg.loss_scale) for x, y in cases[:3]]
    labels = [y for _, y in cases[:3]]
    batch = engine.reconstruct_batch(model, targets, (3, SIZE, SIZE), [0.0] * 3, [1.0] * 3, cfg,
                                     [torch.Generator().manual_seed(i) for i in range(3)], labels, 100)
    for i in range(3):
        one = engine.reconstruct(model, targets[i], (3, SIZE, SIZE), [0.0] * 3, [1.0] * 3, cfg,
                                 torch.Generator().manual_seed(i), label=labels[i], num_classes=100)
        assert batch[i].label == one.label and batch[i].iterations == one.iterations
        assert torch.allclose(batch[i].image, one.image, atol=2e-3), (batch[i].image - one.image).abs().max()
        assert batch[i].loss == pytest.approx(one.loss, rel=1e-2, abs=1e-5)


def _quartic_rows(rows: int, size: int = 10):
    """Independent smooth problems, one per row: (f(x, row), starting points (rows, size))."""
    torch.manual_seed(0)
    a = torch.randn(rows, size, size)
    a = a @ a.transpose(1, 2) + 0.1 * torch.eye(size)
    c = torch.randn(rows, size)

    def f(x, b):
        return 0.5 * x @ a[b] @ x - c[b] @ x + 0.1 * (x**4).sum()

    return f, torch.randn(rows, size)


def _batched_lbfgs(f, x0, which, frozen, **kw) -> torch.Tensor:
    """Rows ``which`` of the problems optimised together, one ``step`` per entry of ``frozen``
    (per problem, whether it stands still in that step); returns the final points."""
    from semsim_study.attacks.lbfgs import BatchedLBFGS

    xb = x0[which].clone().requires_grad_(True)
    opt = BatchedLBFGS(len(which), x0.shape[1], lr=1.0, **kw)

    def closure():
        xb.grad = None
        v = torch.stack([f(xb[i], b) for i, b in enumerate(which)])
        v.sum().backward()
        return v.detach(), xb.grad.clone()

    for still in frozen:
        opt.step(closure, lambda d: xb.data.add_(d), torch.tensor([still[b] for b in which]))
    return xb.detach()


def test_batched_lbfgs_follows_torch_lbfgs_row_by_row():
    rows = 3
    f, x0 = _quartic_rows(rows)
    xb = _batched_lbfgs(f, x0, list(range(rows)), [[False] * rows] * 4, max_iter=20)
    for b in range(rows):
        x = x0[b].clone().requires_grad_(True)
        ref = torch.optim.LBFGS([x], lr=1.0, max_iter=20)

        def one():
            ref.zero_grad()
            value = f(x, b)
            value.backward()
            return value

        for _ in range(4):
            ref.step(one)
        assert torch.allclose(xb[b], x.detach(), atol=1e-5)


@pytest.mark.parametrize("history", [3, 100])
def test_batched_lbfgs_row_is_the_row_run_alone_bit_for_bit(history):
    # 3 of 4 rows, then 1 of 4, stand still in turn: the rows' histories fill and wrap at
    # different times, so the history ring shared by the rows both moves on and stays put
    frozen = [[True, True, True, False], [False, True, False, False], [True, False, True, True],
              [False, False, False, True], [False, False, False, False], [False, True, True, True]]
    f, x0 = _quartic_rows(4)
    together = _batched_lbfgs(f, x0, [0, 1, 2, 3], frozen, max_iter=5, history_size=history)
    for b in range(4):
        assert torch.equal(together[b], _batched_lbfgs(f, x0, [b], frozen, max_iter=5, history_size=history)[0])


@pytest.mark.parametrize("backbone", ["lenet", "resnet8", "convnet4"])
def test_label_rules_recover_the_true_label(backbone):
    torch.manual_seed(3)
    model = backbones.build(backbone, 10, 32).eval()
    for label in (0, 4, 9):
        g = engine.observed_gradient(model, torch.randn(1, 3, 32, 32), label, 0.5)
        assert engine.infer_label(model, g, "idlg") == label
        assert engine.infer_label(model, g, "yin") == label


def test_nan_gradient_gives_a_diverged_result_not_an_error(cases):
    model = lenet()
    x, y = cases[0]
    target = engine.observed_gradient(model, x, y, 1.0)
    target[0] = target[0] * float("nan")
    for name in ("idlg", "invgrad"):
        cfg = configs.build(name, {"iterations": 3})
        r = engine.reconstruct(model, target, (3, SIZE, SIZE), [0.0] * 3, [1.0] * 3, cfg, torch.Generator().manual_seed(0), label=y)
        assert r.status == "diverged" and torch.isfinite(r.image).all()


def test_a_diverging_row_does_not_disturb_its_batch(cases):
    model = lenet()
    for name in ("idlg", "invgrad"):
        cfg = configs.build(name, {"iterations": 2, "lbfgs_inner": 4})
        targets = [engine.observed_gradient(model, x, y, cfg.loss_scale) for x, y in cases[:2]]
        broken = [t * float("nan") for t in targets[0]]
        gens = lambda: [torch.Generator().manual_seed(i) for i in range(2)]  # noqa: E731
        args = ((3, SIZE, SIZE), [0.0] * 3, [1.0] * 3, cfg)
        labels = [y for _, y in cases[:2]]
        mixed = engine.reconstruct_batch(model, [broken, targets[1]], *args, gens(), labels, 100)
        clean = engine.reconstruct_batch(model, targets, *args, gens(), labels, 100)
        assert mixed[0].status == "diverged" and torch.isfinite(mixed[0].image).all()
        assert mixed[1].status == "ok" and torch.equal(mixed[1].image, clean[1].image)


def test_reference_configs_and_overrides():
    assert configs.build("invgrad").iterations == 8000 and configs.build("invgrad").distance == "cosine"
    assert configs.build("dlg").labels == "joint" and configs.build("idlg").labels == "idlg"
    assert configs.build("gradinversion").bn_prior > 0 and configs.build("gradinversion").labels == "yin"
    assert configs.build("invgrad", {"iterations": 5}).iterations == 5
    with pytest.raises(ConfigError, match="unknown attack 'ggl'"):
        configs.build("ggl")
    with pytest.raises(ConfigError, match="'attack.methods.dlg.steps' is not a known key"):
        configs.build("dlg", {"steps": 3})
    with pytest.raises(ConfigError, match="attack.methods.dlg.distance must be one of l2, cosine, got 'l1'"):
        configs.build("dlg", {"distance": "l1"})


def test_dataset_overrides_apply_on_top_of_the_attack_and_to_their_dataset_only():
    params = {"datasets": ["digits", "faces"],
              "attack": {"methods": {"dlg": {"iterations": 8, "budgets": [2, 4]}},
                         "datasets": {"digits": {}, "faces": {"dlg": {"iterations": 32, "budgets": [2, 4, 8, 16]}}}}}
    faces, digits = configs.from_params(params, "dlg", "faces"), configs.from_params(params, "dlg", "digits")
    assert (faces.iterations, faces.snapshots) == (32, (2, 4, 8, 16, 32))
    assert (digits.iterations, digits.snapshots) == (8, (2, 4, 8))
    assert configs.from_params(params, "idlg", "faces") == configs.from_params(params, "idlg")
    bad = {**params, "attack": {**params["attack"], "datasets": {"faces": {"dlg": {"iterations": 0}}}}}
    with pytest.raises(ConfigError, match="no entry for dataset 'digits'"):
        configs.from_params(bad, "dlg", "digits")
    with pytest.raises(ConfigError, match=r"attack\.datasets\.faces\.dlg\.iterations must be a positive integer"):
        configs.from_params(bad, "dlg", "faces")
    with pytest.raises(ConfigError, match="'attack.datasets.faces.dlg.steps' is not a known key"):
        configs.from_params({**params, "attack": {"datasets": {"digits": {}, "faces": {"dlg": {"steps": 3}}}}},
                            "dlg", "faces")
    with pytest.raises(ConfigError, match="'attack.datasets.faces.ggl' is not a known key"):
        configs.from_params({**params, "attack": {"datasets": {"digits": {}, "faces": {"ggl": {}}}}}, "dlg", "faces")


@pytest.mark.parametrize("key,value,expected", [
    ("iterations", "ten", "a positive integer"), ("iterations", 2.5, "a positive integer"),
    ("iterations", True, "a positive integer"), ("iterations", -3, "a positive integer"),
    ("lr", -1, "a positive finite number"), ("lr", float("nan"), "a positive finite number"),
    ("tv", float("inf"), "a non-negative finite number"), ("signed", "yes", "true or false"),
    ("budgets", [60, 20], "strictly increasing"), ("budgets", [20, 20], "strictly increasing"),
    ("budgets", [0], "strictly increasing"), ("budgets", [500], "up to iterations"),
    ("budgets", ["20"], "strictly increasing"), ("budgets", 20, "strictly increasing"),
])
def test_attack_params_are_rejected_with_their_dotted_key(key, value, expected):
    with pytest.raises(ConfigError) as err:
        configs.build("invgrad", {"iterations": 100, key: value} if key != "iterations" else {key: value})
    message = str(err.value)
    assert message.startswith(f"params.yaml: attack.methods.invgrad.{key} must be") and expected in message
    assert repr(value) in message


def test_budget_snapshots_are_the_optimisation_state_at_that_iteration(cases):
    """A run with budgets keeps, at each budget, exactly what a run stopped there would return
    (same schedule: the lr decay points follow the full run's iteration count)."""
    model = lenet()
    x, label = cases[0]
    full = configs.build("invgrad", {"iterations": 12, "budgets": [3, 7]})
    assert full.snapshots == (3, 7, 12)
    target = engine.observed_gradient(model, x, label, full.loss_scale)
    args = (model, [target], (3, SIZE, SIZE), [0.0] * 3, [1.0] * 3)
    per_budget = engine.reconstruct_budgets(*args, full, [torch.Generator().manual_seed(5)], [label], 100)[0]
    assert [r.budget for r in per_budget] == [3, 7, 12] and [r.iterations for r in per_budget] == [3, 7, 12]
    final_only = engine.reconstruct_batch(*args, configs.build("invgrad", {"iterations": 12}),
                                          [torch.Generator().manual_seed(5)], [label], 100)[0]
    assert torch.equal(per_budget[-1].image, final_only.image) and per_budget[-1].loss == final_only.loss
    # without lr decay the schedule does not depend on the run's length, so the state at 7 of
    # 12 iterations is exactly a 7-iteration run
    seven = engine.reconstruct_batch(*args, configs.build("invgrad", {"iterations": 7, "lr_decay": False}),
                                     [torch.Generator().manual_seed(5)], [label], 100)[0]
    no_decay = engine.reconstruct_budgets(*args, configs.build("invgrad", {"iterations": 12, "budgets": [7],
                                                                            "lr_decay": False}),
                                          [torch.Generator().manual_seed(5)], [label], 100)[0]
    assert torch.equal(no_decay[0].image, seven.image) and no_decay[0].loss == seven.loss
    assert not torch.equal(per_budget[0].image, per_budget[-1].image)
    assert psnr(per_budget[-1].image, x) > psnr(per_budget[0].image, x)


def test_lbfgs_budgets_are_the_state_after_that_many_steps(cases):
    model = lenet()
    x, label = cases[1]
    cfg = configs.build("idlg", {"iterations": 3, "budgets": [1]})
    target = engine.observed_gradient(model, x, label, cfg.loss_scale)
    args = (model, [target], (3, SIZE, SIZE), [0.0] * 3, [1.0] * 3)
    snaps = engine.reconstruct_budgets(*args, cfg, [torch.Generator().manual_seed(2)], [label], 100)[0]
    one = engine.reconstruct_batch(*args, configs.build("idlg", {"iterations": 1}), [torch.Generator().manual_seed(2)],
                                   [label], 100)[0]
    assert torch.equal(snaps[0].image, one.image) and snaps[0].label == one.label


# --------------------------------------------------------------------------- the job runner
@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory, tiny_params):
    """A prepared dataset and two briefly trained models, laid out as the stages expect."""
    root = tmp_path_factory.mktemp("attack_stage")
    ds, split, idx = build.prepare(tiny_params, "shapes")
    standard.save(ds, root / "prepared", split, idx[:3])
    ds.train_images, ds.train_labels = ds.train_images[:128], ds.train_labels[:128]
    settings = grid.settings(tiny_params)
    for backbone, setting in (("resnet8", "crop"), ("lenet", "crop-prune70")):
        spec = grid.ModelSpec("shapes", backbone, settings[setting])
        cfg = training.ClassifierTrainConfig(epochs=1, batch_size=64, lr=0.02, defense_at="both")
        result = training.train(ds, spec, cfg, seed=0)
        (root / "models").mkdir(exist_ok=True)
        (root / "models" / f"{spec.model_id}.pt").write_bytes(state_bytes(result.model))
        (root / "models" / f"{spec.model_id}.json").write_text(json.dumps(training.card(ds, spec, cfg, 0, result)))
    return root, ["resnet8_crop", "lenet_crop-prune70"]


def _ctx(root: Path, work: str, attack="invgrad", **overrides) -> jobs.Context:
    return jobs.Context("shapes", attack, str(root / "prepared"), str(root / "models"), str(root / work),
                        configs.build(attack, {"iterations": 4, **overrides}), seed=0)


def _without_seconds(rows):  # timings stay out of the index; kept as a guard
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_killed_then_resumed_stage_equals_a_clean_parallel_run(stage_inputs):
    root, model_ids = stage_inputs
    clean = _ctx(root, "work_clean")
    plan = jobs.plan(clean, model_ids, batch_size=2)
    assert len(plan) == 6 and [j.batch for j in plan] == [0, 0, 1, 2, 2, 3]
    jobs.run_all([(clean, plan)], workers=2)
    clean_rows = jobs.assemble(clean, plan, root / "out_clean")

    resumed = _ctx(root, "work_resumed")
    jobs.run_all([(resumed, plan[:2])], workers=1)  # the run that was killed after one batch
    first = (root / "work_resumed" / plan[0].model_id / plan[0].image_id / "result.json").stat().st_mtime_ns
    jobs.run_all([(resumed, plan)], workers=1)
    assert (root / "work_resumed" / plan[0].model_id / plan[0].image_id / "result.json").stat().st_mtime_ns == first
    resumed_rows = jobs.assemble(resumed, plan, root / "out_resumed")

    assert _without_seconds(clean_rows) == _without_seconds(resumed_rows)
    assert _tree(root / "out_clean") == _tree(root / "out_resumed")
    index = jobs.read_index(root / "out_clean")
    assert [r["item_id"] for r in index] == [f"shapes/{j.model_id}/invgrad/{j.image_id}" for j in plan]
    assert list(index[0]) == list(jobs.INDEX_COLUMNS) and "seconds" not in index[0]


def test_a_datasets_attacks_in_one_pool_give_each_attacks_own_bytes(stage_inputs):
    """Stage attack@<dataset> runs every attack's batches in one pool: the same bytes as each
    attack alone, one after another in one process."""
    root, model_ids = stage_inputs
    alone, pooled = {}, []
    for attack in ("dlg", "invgrad"):
        ctx = _ctx(root, f"work_alone_{attack}", attack=attack)
        plan = jobs.plan(ctx, model_ids, batch_size=2)
        jobs.run_all([(ctx, plan)], workers=1)
        jobs.assemble(ctx, plan, root / f"out_alone_{attack}")
        alone[attack] = root / f"out_alone_{attack}"
        pooled_ctx = _ctx(root, f"work_pooled_{attack}", attack=attack)
        pooled.append((pooled_ctx, jobs.plan(pooled_ctx, model_ids, batch_size=2)))
    jobs.run_all(pooled, workers=2)
    for ctx, plan in pooled:
        jobs.assemble(ctx, plan, root / f"out_pooled_{ctx.attack}")
        out = root / f"out_pooled_{ctx.attack}"
        assert (out / "index.csv").read_bytes() == (alone[ctx.attack] / "index.csv").read_bytes()
        assert _tree(out) == _tree(alone[ctx.attack])


def test_budgets_become_sets_of_their_own_and_reruns_give_the_same_bytes(stage_inputs):
    root, model_ids = stage_inputs
    runs = []
    for name in ("work_budget_a", "work_budget_b"):
        ctx = _ctx(root, name, iterations=4, budgets=[1, 2])
        plan = jobs.plan(ctx, model_ids, batch_size=3)
        jobs.run_all([(ctx, plan)], workers=1)
        jobs.assemble(ctx, plan, root / f"out_{name}")
        runs.append(root / f"out_{name}")
    assert (runs[0] / "index.csv").read_bytes() == (runs[1] / "index.csv").read_bytes()
    assert _tree(runs[0]) == _tree(runs[1])
    index = jobs.read_index(runs[0])
    assert len(index) == 3 * len(plan)
    assert {r["attack"] for r in index} == {"invgrad@1", "invgrad@2", "invgrad@4"}
    for r in index:
        budget = int(r["budget"])
        assert r["item_id"] == f"shapes/{r['model']}/invgrad@{budget}/{r['image_id']}"
        assert int(r["iterations"]) == budget and r["reconstruction"].endswith(f"_reconstruction_{budget}.png")
        assert (runs[0] / r["reconstruction"]).is_file()
    # each budget's picture is its own: the 1-iteration state differs from the final one
    first = {r["image_id"]: r for r in index if r["attack"] == "invgrad@1" and r["model"] == model_ids[0]}
    last = {r["image_id"]: r for r in index if r["attack"] == "invgrad@4" and r["model"] == model_ids[0]}
    some = next(iter(first))
    assert (runs[0] / first[some]["reconstruction"]).read_bytes() != (runs[0] / last[some]["reconstruction"]).read_bytes()


def test_results_from_other_params_are_not_reused(stage_inputs):
    root, model_ids = stage_inputs
    a = _ctx(root, "work_keys")
    plan_a = jobs.plan(a, model_ids)
    jobs.run_all([(a, plan_a[:1])], workers=1)
    b = _ctx(root, "work_keys", iterations=5)
    plan_b = jobs.plan(b, model_ids)
    assert plan_a[0].key != plan_b[0].key
    assert jobs.is_done(a, plan_a[0]) and not jobs.is_done(b, plan_b[0])
    plan_c = jobs.plan(a, model_ids, batch_size=2)  # same params, other batch: rounding may differ
    assert plan_c[0].key != plan_a[0].key and not jobs.is_done(a, plan_c[0])
    # a result computed on the CPU is not reused for a CUDA run (GPU kernels round differently)
    gpu = dataclasses.replace(a, device="cuda:0")
    plan_d = jobs.plan(gpu, model_ids)
    assert plan_d[0].key != plan_a[0].key and not jobs.is_done(gpu, plan_d[0])
    assert jobs.plan(dataclasses.replace(a, device="cuda:1"), model_ids)[0].key == plan_d[0].key
    # nor one from the other per-image gradient route (batches of one take rows under auto)
    plan_e = jobs.plan(dataclasses.replace(a, per_sample="vmap"), model_ids)
    assert plan_e[0].key != plan_a[0].key
    assert jobs.plan(dataclasses.replace(a, per_sample="rows"), model_ids)[0].key == plan_a[0].key


def test_switching_the_attack_device_reruns_the_stage():
    """dvc.yaml tracks attack.device, so switching cpu and cuda does not keep stale results."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["attack"]["do"]
    assert "attack.device" in stage["params"] and "attack.per_sample_gradients" in stage["params"]


def test_attacked_image_is_the_training_transform_and_defence_reaches_the_observed_gradient(stage_inputs, monkeypatch):
    root, model_ids = stage_inputs
    ctx = _ctx(root, "work_threat")
    plan = jobs.plan(ctx, model_ids)
    applied = []
    real = jobs.defenses.Defense.apply_
    monkeypatch.setattr(jobs.defenses.Defense, "apply_", lambda self, g, gen=None: applied.append(self.kind) or real(self, g, gen))
    worker = jobs._Worker(ctx)
    worker.run([plan[0]])  # resnet8_crop: no defence
    worker.run([plan[3]])  # lenet_crop-prune70, trained with defense_at=both
    assert applied == ["prune"]
    out = root / "work_threat" / plan[0].model_id / plan[0].image_id
    from PIL import Image

    original = np.asarray(Image.open(out / "original.png"))
    attacked = np.asarray(Image.open(out / "attacked.png"))
    assert original.shape == attacked.shape and not np.array_equal(original, attacked)  # crop+flip was applied


def test_nan_model_gives_diverged_rows(stage_inputs, tmp_path):
    root, _ = stage_inputs
    model, card = checkpoints.load(root / "models" / "resnet8_crop.pt")
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "resnet8_crop.pt").write_bytes(state_bytes(model))
    (models_dir / "resnet8_crop.json").write_text(json.dumps(card))
    ctx = jobs.Context("shapes", "invgrad", str(root / "prepared"), str(models_dir), str(tmp_path / "work"),
                       configs.build("invgrad", {"iterations": 3}), seed=0)
    plan = jobs.plan(ctx, ["resnet8_crop"])
    jobs.run_all([(ctx, plan)], workers=1)
    rows = jobs.assemble(ctx, plan, tmp_path / "out")
    assert {r["status"] for r in rows} == {"diverged"} and {r["final_loss"] for r in rows} == {"nan"}
    assert all((tmp_path / "out" / r["reconstruction"]).is_file() for r in rows)


def test_a_truncated_checkpoint_fails_before_any_job_runs(stage_inputs, tmp_path):
    root, model_ids = stage_inputs
    models_dir = tmp_path / "models"
    shutil.copytree(root / "models", models_dir)
    data = (models_dir / "lenet_crop-prune70.pt").read_bytes()
    (models_dir / "lenet_crop-prune70.pt").write_bytes(data[: len(data) // 2])
    ctx = jobs.Context("shapes", "invgrad", str(root / "prepared"), str(models_dir), str(tmp_path / "work"),
                       configs.build("invgrad", {"iterations": 3}), seed=0)
    with pytest.raises(DataError, match=r"lenet_crop-prune70.pt: not a loadable weights-only checkpoint"):
        jobs.plan(ctx, model_ids)  # the second model is bad: nothing of the first has run
    assert not (tmp_path / "work").exists()


def test_stale_job_folders_are_pruned_and_this_plans_are_kept(stage_inputs):
    root, model_ids = stage_inputs
    old = _ctx(root, "work_prune", iterations=3)
    jobs.run_all([(old, jobs.plan(old, model_ids)[:2])], workers=1)
    new = _ctx(root, "work_prune")
    plan = jobs.plan(new, model_ids)
    jobs.run_all([(new, plan[2:3])], workers=1)
    (root / "work_prune" / "gone_model" / "test-000001").mkdir(parents=True)  # a model no longer planned
    assert jobs.prune_stale(new, plan) == 3
    left = sorted(p.parent.relative_to(root / "work_prune").as_posix() for p in (root / "work_prune").glob("*/*/result.json"))
    assert left == [f"{plan[2].model_id}/{plan[2].image_id}"] and jobs.is_done(new, plan[2])
    assert not (root / "work_prune" / "gone_model").exists()
