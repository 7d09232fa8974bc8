"""`pip install .`: the package builds, carries the app's files and the commands, and the SemSim
metric works with only its four dependencies (torch, torchvision, numpy, pillow) importable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

HEAVY = ("yaml", "pandas", "dvc", "flask", "waitress", "scipy", "skimage", "sklearn", "matplotlib",
         "lpips", "pytorch_fid", "ray", "tqdm", "requests", "playwright")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "semsim_study", src / "semsim_study", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                          "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    (found,) = out.glob("semsim_study-*.whl")
    return found


def test_wheel_has_the_library_app_files_and_commands(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = next(zf.read(n).decode() for n in names if n.endswith("METADATA"))
        entry = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "semsim_study/semsim/metric.py" in names and "semsim_study/annotation/templates/index.html" in names
    assert "semsim_study/annotation/static/app.js" in names
    assert not any(n.startswith(("tests/", "stages/")) for n in names)
    required = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    core = sorted(r.split(">")[0].split("=")[0].split(";")[0].strip().lower() for r in required if "extra ==" not in r)
    assert core == ["numpy", "pillow", "torch", "torchvision"]
    assert any("extra == \"study\"" in r and r.lower().startswith("dvc") for r in required)
    assert "semsim = semsim_study.semsim.cli:main" in entry
    assert "semsim-annotation = semsim_study.extras:annotation_cli" in entry


def _model(folder: Path) -> Path:
    from semsim_study.semsim import embedding_nets, metric
    from semsim_study.torch_helpers import state_bytes

    torch.manual_seed(0)
    net = embedding_nets.build("tinyconv16")
    folder.mkdir()
    (folder / "semsim.pt").write_bytes(state_bytes(net))
    card = {"format": metric.CARD_FORMAT, "format_version": metric.CARD_VERSION, "backbone": "tinyconv16",
            "input_size": 32, "embedding_dim": net.out_dim, "embedding_normalized": True,
            "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}, "weights": {"semsim": "semsim.pt"}}
    (folder / "semsim.json").write_text(json.dumps(card))
    return folder


def test_installed_metric_needs_only_its_four_dependencies(wheel, tmp_path):
    prefix = tmp_path / "prefix"  # pip install --no-deps --prefix DIR, as a user installs beside a system torch
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--prefix",
                          str(prefix), str(wheel)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    target = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    assert (target / "semsim_study" / "__init__.py").is_file(), sorted(str(p) for p in prefix.rglob("__init__.py"))[:3]
    model = _model(tmp_path / "model")
    script = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ModuleNotFoundError(f"{{name}} is not a dependency of the SemSim metric", name=name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(target)!r})
import torch
from semsim_study import SemSim
import semsim_study
assert semsim_study.__file__.startswith({str(target)!r}), semsim_study.__file__
m = SemSim.load({str(model)!r})
x = torch.rand(2, 3, 24, 24, requires_grad=True)
d = m(x, torch.rand(2, 3, 24, 24), normalize=True)  # [0, 1] inputs
d.sum().backward()
print("ok", tuple(d.shape), bool(x.grad.abs().sum() > 0))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and "ok (2,) True" in res.stdout, res.stdout + res.stderr
    cli = subprocess.run([str(prefix / "bin" / "semsim"), "--help"], cwd=tmp_path,
                         env={**env, "PYTHONPATH": str(target)}, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and "score" in cli.stdout, cli.stdout + cli.stderr

    # the annotation command needs the study extra: without it, one line that names it (exit 2)
    head = script.split("import torch")[0]
    annotation = subprocess.run([sys.executable, "-c", head + "from semsim_study.extras import annotation_cli\n"
                                 "sys.argv = ['semsim-annotation', 'tokens', '--list']\nsys.exit(annotation_cli())"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert annotation.returncode == 2, annotation.stdout + annotation.stderr
    assert annotation.stderr.count("\n") == 1 and "Traceback" not in annotation.stderr
    assert "semsim-annotation needs the 'study' extra (module 'yaml' is not installed)" in annotation.stderr
    assert "pip install 'semsim-study[study]'" in annotation.stderr


from tests.test_semsim_pretrained import _dvc_stays_in_tmp, study  # noqa: E402,F401  (the DVC repo + remote)


def test_installed_package_drops_into_lpips_and_torchmetrics_code(wheel, tmp_path, study):
    """Outside the repository, after `pip install`: lpips' convention (normalize=True for [0, 1]
    inputs), one original broadcast against N reconstructions, SemSimMetric over three batches
    equal to the module's mean, and a trained model fetched by name from a local DVC remote."""
    prefix = tmp_path / "prefix"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--prefix",
                          str(prefix), str(wheel)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    target = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    script = f"""
import sys, warnings
sys.path.insert(0, {str(target)!r})
warnings.simplefilter("ignore")
import torch
import semsim_study
from semsim_study import SemSim, SemSimMetric
assert semsim_study.__file__.startswith({str(target)!r}), semsim_study.__file__
m = SemSim.from_pretrained("dataset-tiny", repo={str(study["repo"])!r}, cache_dir={str(tmp_path / "models")!r})
same = SemSim.load({str(study["originals"] / "dataset-tiny")!r})
torch.manual_seed(0)
x, y = torch.rand(6, 3, 24, 24), torch.rand(6, 3, 24, 24)
d = m(x, y, normalize=True)                               # [0, 1] inputs, lpips' flag
assert torch.allclose(d, m(x * 2 - 1, y * 2 - 1), atol=1e-6)   # the default: [-1, 1], as lpips
assert torch.equal(d, same(x, y, normalize=True))          # fetched = the folder it was pushed from
one = m(x[:1], y, normalize=True)                          # one original against six reconstructions
assert one.shape == (6,) and torch.allclose(one, m(x[:1].expand(6, -1, -1, -1), y, normalize=True), atol=1e-6)
metric = SemSimMetric(m, normalize=True)
for k in range(3):
    metric.update(x[2 * k: 2 * k + 2], y[2 * k: 2 * k + 2])
assert torch.allclose(metric.compute(), d.mean(), atol=1e-6), (metric.compute(), d.mean())
metric.reset()
try:
    m(x * 3, y)
except ValueError as e:
    assert "must lie in" in str(e) and "shape (6, 3, 24, 24)" in str(e) and "float32" in str(e)
else:
    raise AssertionError("out-of-range input accepted")
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stdout + res.stderr
