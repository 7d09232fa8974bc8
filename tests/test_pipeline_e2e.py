"""End to end: `dvc repro` in a temporary clone on a tiny profile, then the paper profile's DAG."""

from __future__ import annotations

import copy
import csv
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from semsim_study.annotation import read_tasks
from semsim_study.cpu_kernels import unpinnable_reason
from tests.conftest import ROOT
from tests.support.dvc_clone import clone, digest, dvc, run  # noqa: F401 (clone is a fixture)
from tests.test_cpu_kernels import OTHER_CPU

# Three domains (both protocols; two protocol-B ones keep every SemSim split trainable) and two
# attacks keep the whole-pipeline run short; every domain and attack has its own unit tests.
DOMAINS = ["digits", "faces", "glyphs"]
ATTACKS = ["idlg", "invgrad"]
PAPER = ["cifar100", "caltech101", "celeba", "imagenette", "stanford_dogs"]


@pytest.mark.slow
def test_repro_tiny_profile_is_cached_and_deterministic(clone, tiny_params):
    tiny = {**tiny_params, "datasets": DOMAINS, "attacks": ATTACKS}
    tiny["semsim"] = {**tiny["semsim"], "held_out_attacks": ["invgrad"], "held_out_backbones": ["lenet"]}
    (clone / "params.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    first = dvc("repro", cwd=clone)
    assert "Running stage 'prepare'" in first.stdout  # one stage builds every dataset
    for name in DOMAINS:
        out = clone / "data" / "prepared" / name
        for f in ("meta.json", "train_images.npy", "test_labels.npy", "attack_subset.csv"):
            assert (out / f).is_file(), f"{out / f} missing"
    for name in DOMAINS:
        assert f"train@{name}" in first.stdout
        cards = sorted((clone / "models" / name).glob("*.json"))
        assert len(cards) == len(tiny["train"]["datasets"][name]["models"])
        for card in cards:
            assert card.with_suffix(".pt").is_file()
            if json.loads(card.read_text())["epochs"] > 0:  # an untrained model has no curve
                curve = (clone / "reports" / "train_curves" / name / "test_acc.csv").read_text()
                assert f",{card.stem}," in curve  # one chart per quantity, a line per model
    for name in DOMAINS:
        n_models = len(tiny["train"]["datasets"][name]["models"])
        assert f"Running stage 'attack@{name}'" in first.stdout  # one stage runs every attack of a dataset
        for attack in tiny["attacks"]:
            out = clone / "data" / "attacks" / name / attack
            with open(out / "index.csv", newline="") as fh:
                rows = list(csv.DictReader(fh))
            snapshots = 1 + len(tiny["attack"]["methods"][attack].get("budgets", []))
            assert len(rows) == n_models * tiny["attack"]["images_per_model"] * snapshots
            for row in rows:
                label = f"{attack}@{row['budget']}" if snapshots > 1 else attack
                assert row["item_id"] == f"{name}/{row['model']}/{label}/{row['image_id']}"
                assert row["status"] in ("ok", "diverged")
                for col in ("original", "attacked", "reconstruction"):
                    assert (out / row[col]).is_file()
        assert f"tasks@{name}" in first.stdout
        tasks = read_tasks(clone / "data" / "tasks" / name / "tasks.csv")
        snapshots = sum(1 + len(tiny["attack"]["methods"][a].get("budgets", [])) for a in tiny["attacks"])
        assert len(tasks) == n_models * tiny["attack"]["images_per_model"] * snapshots
        assert all((clone / t.reconstruction).is_file() for t in tasks.values())
    for name in DOMAINS:
        for f in ("answers.csv", "items.csv", "sets.csv", "annotators.json", "observer.pt"):
            assert (clone / "data" / "annotations" / name / f).is_file()
        control = json.loads((clone / "reports" / "observer" / f"{name}.json").read_text())
        assert "observer_adversarial_gap" in control and "observer_adversarial_gap_ci" in control  # tiny: few pairs
        for f in ("images.csv", "sets.csv", "meta.json"):
            assert (clone / "data" / "metrics" / name / f).is_file()
        listed = json.loads((clone / "data" / "attack-manifests" / f"{name}.json").read_text())["files"]
        written = sorted(p.relative_to(clone / "data" / "attacks" / name).as_posix()
                         for p in (clone / "data" / "attacks" / name).rglob("*") if p.is_file())
        assert sorted(listed) == written
        assert (clone / "data" / "semsim" / f"dataset-{name}" / "scores.csv").is_file()
        assert (clone / "models" / "semsim" / f"dataset-{name}" / "semsim.pt").is_file()
        assert (clone / "data" / "ce_baseline" / f"dataset-{name}" / "scores.csv").is_file()
    for f in ("summary.json", "correlations.csv", "report.md", "index.html", "provenance.json"):
        assert (clone / "reports" / "report" / f).is_file()
    # the report took stage correlate's rows (every metric but SemSim's own) instead of recomputing them
    assert (clone / "data" / "correlations" / "correlations.csv").is_file()
    log = first.stdout + first.stderr
    taken = int(log.split(" metric results taken from data/correlations/correlations.csv")[0].rsplit("(", 1)[1])
    assert taken > 0, log[-2000:]
    assert "simulated" in (clone / "reports" / "report" / "report.md").read_text()
    # `dvc metrics show` prints the headline alone, a table that fits a terminal
    metrics = dvc("metrics", "show", cwd=clone)
    lines = metrics.stdout.rstrip("\n").splitlines()
    assert len(lines) <= 40 and max(map(len, lines)) <= 120, metrics.stdout
    assert "reports/headline/all.json" in metrics.stdout and "ceiling" in metrics.stdout  # tiny: too few
    # sets for a model-level rho, so the ceiling alone; the embedded run adds SemSim and the other columns
    assert "reports/metrics/report.json" not in metrics.stdout and "reports/train/digits.json" not in metrics.stdout
    assert json.loads((clone / "reports" / "metrics" / "report.json").read_text())["spearman"]  # still written
    digests = {n: digest(clone / "data" / "prepared" / n) for n in DOMAINS}

    again = dvc("repro", cwd=clone)
    assert "Running stage" not in again.stdout and "up to date" in again.stdout

    # a new SemSim margin invalidates only the triplet SemSim stages, not the CE baseline's (the
    # report follows from their outputs)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    (clone / "params.yaml").write_text(yaml.safe_dump({**params, "alpha": 0.5}, sort_keys=False))
    stale = {line.strip().rstrip(":") for line in dvc("status", cwd=clone).stdout.splitlines()
             if line and not line.startswith("\t") and not line.startswith(" ")}
    expected = {"semsim"}
    assert stale == expected, stale
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    model_digest = digest(clone / "models" / "faces")
    forced = dvc("repro", "--force", "--single-item", "prepare", "train@faces", cwd=clone)
    assert "Running stage 'prepare'" in forced.stdout and "Running stage 'train@faces'" in forced.stdout
    assert {n: digest(clone / "data" / "prepared" / n) for n in DOMAINS} == digests
    assert digest(clone / "models" / "faces") == model_digest  # same seed, same weights, same bytes
    # two OpenMP threads instead of the stages' default of one, and the kernel choices another
    # x86-64 CPU (or a user's environment) would make: the stages fix torch's threads and pin their
    # kernels (semsim_study/cpu_kernels.py), so the same bytes
    lock = (clone / "dvc.lock").read_text()
    one = dvc("repro", "--force", "--single-item", "train@faces", "attack@digits", "annotate@digits",
               "semsim", cwd=clone, OMP_NUM_THREADS="2", **OTHER_CPU)
    assert "Running stage 'semsim'" in one.stdout and "Running stage 'attack@digits'" in one.stdout
    assert digest(clone / "models" / "faces") == model_digest
    assert (clone / "dvc.lock").read_text() == lock  # every output hash as the default run wrote it
    ran = json.loads((clone / "logs" / "provenance" / "attack@digits.json").read_text())
    assert ran["pinned"] == (unpinnable_reason() is None), ran
    if ran["pinned"]:
        assert ran["aten_cpu_capability"] == "AVX2" and ran["onednn_max_isa"] == "AVX2", ran
    assert "CPU kernels" in one.stderr + one.stdout
    assert "logs" not in run(["git", "status", "--porcelain"], clone).stdout  # untracked and ignored

    # a stage that fails on bad input says how to get its previous outputs back, and that works
    annotated = digest(clone / "data" / "annotations" / "digits")
    params = yaml.safe_load((clone / "params.yaml").read_text())
    bad = copy.deepcopy(params)
    bad["annotate"]["source"] = "csv"
    (clone / "params.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    failed = dvc("repro", "--single-item", "annotate@digits", cwd=clone, check=False)
    assert failed.returncode != 0 and "dvc checkout annotate@digits" in failed.stderr + failed.stdout
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc("checkout", "annotate@digits", cwd=clone)
    assert digest(clone / "data" / "annotations" / "digits") == annotated

    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["prepare"]["faces"]["attack_images"] = 3
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    params["train"]["datasets"]["glyphs"]["epochs"] = 2
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = _stale(clone)  # (annotate@digits and the report too: checkout cannot restore uncached reports)
    assert {"prepare", "train@glyphs"} <= before, before
    assert not {s for s in before if s.startswith(("train@", "attack@"))} - {"train@glyphs"}, before
    # the one prepare stage rebuilds every dataset, the others byte for byte: only faces' stages
    # and the stages that read every dataset go stale
    dvc("repro", "--single-item", "prepare", cwd=clone)
    assert {n: digest(clone / "data" / "prepared" / n) for n in DOMAINS if n != "faces"} == \
        {n: d for n, d in digests.items() if n != "faces"}
    stale = _stale(clone)
    assert {"train@faces", "attack@faces"} <= stale, stale
    assert {s for s in stale - before if not s.endswith("@faces")} <= {"features", "semsim", "ce-baseline"}, stale

    _docs_semsim_examples_run(clone)


def _stale(clone: Path) -> set[str]:
    """The stages `dvc status` lists as changed."""
    return {line.strip().rstrip(":") for line in dvc("status", cwd=clone).stdout.splitlines()
            if line and not line.startswith("\t") and not line.startswith(" ")}


def _doc_blocks(path: Path, language: str) -> list[str]:
    """The fenced ``language`` blocks of a Markdown file, in order."""
    blocks, current = [], None
    for line in path.read_text().splitlines():
        if current is None and line.strip() == f"```{language}":
            current = []
        elif current is not None and line.strip() == "```":
            blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _docs_semsim_examples_run(clone: Path) -> None:
    """Every command and Python example of docs/semsim.md runs on the tiny run's outputs: the
    placeholders a reader replaces (their own folders, the project's public URL, a release tag)
    are replaced here by the tiny run's own, and nothing else is changed."""
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    docs = clone / "docs" / "semsim.md"
    images = sorted((clone / "data" / "attacks" / "digits").glob("*/images/*/*_reconstruction_*.png"))
    assert images, "the tiny run wrote no digits reconstructions"
    folder = images[0].parent
    suffix = "_reconstruction_" + images[0].stem.rsplit("_reconstruction_", 1)[1]
    my = {"originals": clone / "my" / "originals", "reconstructions": clone / "my" / "reconstructions"}
    for d in my.values():
        d.mkdir(parents=True, exist_ok=True)
    for rec in [p for p in images if p.parent == folder and p.stem.endswith(suffix)][:3]:
        key = rec.stem[: -len(suffix)]
        shutil.copy2(folder / f"{key}_original.png", my["originals"] / f"{key}.png")
        shutil.copy2(rec, my["reconstructions"] / f"{key}.png")
    # a release of the tiny run, pushed to a local remote, stands in for the project's public repository
    remote = clone.parent / f"{clone.name}-remote"
    dvc("remote", "add", "-f", "-d", "local", str(remote), cwd=clone)
    dvc("push", "semsim", cwd=clone)
    run(git + ["add", "dvc.lock", ".dvc/config"], clone)
    run(git + ["commit", "-q", "-m", "tiny release"], clone)
    run(git + ["tag", "-f", "v1.0"], clone)
    repo_url = "https://github.com/<owner>/<repo>"
    ran = 0
    for block in _doc_blocks(docs, "bash"):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            cmd = line.split("#", 1)[0].strip()
            if not cmd.startswith("semsim "):
                continue  # pip install, dvc exp run: covered elsewhere
            cmd = (cmd.replace(repo_url, str(clone)).replace("data/attacks/digits/dlg/images/lenet_none",
                                                              str(folder.relative_to(clone)))
                   .replace("_reconstruction_8", suffix))
            args = cmd.split()
            done = run([sys.executable, "-m", "semsim_study.semsim", *args[1:]], clone, check=False,
                        SEMSIM_CACHE=str(clone.parent / f"{clone.name}-models"))
            assert done.returncode == 0, f"docs/semsim.md: {line!r} failed:\n{done.stdout}\n{done.stderr}"
            ran += 1
    setup = (
        "import torch\n"
        "from pathlib import Path\n"
        "x = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_()\n"
        "y = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_()\n"
        "img0, img1 = x.detach(), y.detach()\n"
        "a, b = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)\n"
        "loader = [(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)) for _ in range(3)]\n"
        "originals = sorted(str(p) for p in Path('my/originals').glob('*.png'))\n"
        "reconstructions = sorted(str(p) for p in Path('my/reconstructions').glob('*.png'))\n"
    )
    for block in _doc_blocks(docs, "python"):
        code = block.replace(f'repo="{repo_url}"', f'repo={str(clone)!r}')
        done = run([sys.executable, "-c", setup + code], clone, check=False,
                    SEMSIM_CACHE=str(clone.parent / f"{clone.name}-models"))
        assert done.returncode == 0, f"docs/semsim.md example failed:\n{block}\n{done.stderr[-2000:]}"
        ran += 1
    assert ran >= 6, ran  # the command examples and the Python examples all ran
    assert (clone / "scores.csv").is_file() and (clone / "dlg-8.csv").is_file()


@pytest.mark.slow
def test_paper_profile_dag_without_data(clone):
    run(["scripts/use-profile", "--force", "paper"], clone)  # the clone holds the tiny profile
    dag = dvc("dag", cwd=clone)
    assert "prepare" in dag.stdout
    for name in PAPER:
        assert f"train@{name}" in dag.stdout and f"attack@{name}" in dag.stdout
    # --force: with no dvc.lock entry and no data, DVC cannot compare; it lists every stage
    dry = dvc("repro", "--dry", "--allow-missing", "--force", cwd=clone)
    assert "Running stage 'prepare'" in dry.stdout
    for name in PAPER:
        for stage in ("train", "attack", "tasks"):
            assert f"Running stage '{stage}@{name}'" in dry.stdout
    run(["scripts/use-profile", "embedded"], clone)
    assert (clone / "params.yaml").read_text() == (clone / "profiles" / "embedded.yaml").read_text()


def test_stage_reports_bad_params_without_traceback(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "datasets": ["x"], "prepare": {"x": {"source": "nope"}}}))
    res = run([sys.executable, "-m", "stages.prepare", "--dataset", "x", "--params", str(tmp_path / "params.yaml")],
               ROOT, check=False)
    assert res.returncode == 2
    assert "error: params: 'prepare.x.source' is 'nope'" in res.stderr and "Traceback" not in res.stderr
    assert "`dvc checkout prepare` restores the cached ones" in res.stderr


@pytest.mark.parametrize("argv, stage", [
    (["stages.attack", "--dataset", "digits"], "attack@digits"),
    (["stages.attack", "--dataset", "digits", "--attack", "dlg"], "attack@digits"),
    (["stages.prepare"], "prepare"),
    (["stages.prepare", "--dataset", "faces"], "prepare"),
    (["stages.semsim"], "semsim"),
    (["stages.semsim", "--model", "semsim"], "semsim"),
    (["stages.semsim", "--model=ce_baseline"], "ce-baseline"),
    (["stages.observer_controls", "--dataset", "shapes"], "observer-controls@shapes"),
    (["stages.report"], "report"),
])
def test_failure_note_names_the_dvc_stage(argv, stage, monkeypatch):
    import types

    from stages import _cli

    monkeypatch.setattr(sys, "argv", ["x"] + argv[1:])
    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__spec__=types.SimpleNamespace(name=argv[0])))
    assert _cli.dvc_stage() == stage
