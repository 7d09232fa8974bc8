"""The shipped profiles (profiles/embedded.yaml, profiles/paper.yaml): they parse, and
scripts/use-profile switches params.yaml between them, keeping local edits unless told otherwise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT


def test_shipped_profiles_parse(embedded_params):
    from semsim_study.metrics import featurenet, settings

    emb = settings.from_params(embedded_params)
    assert emb.features == "pipeline" and emb.lpips.paper_input_scale is False and emb.fid_method == "exact"
    featurenet.from_params(embedded_params)
    paper = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    cfg = settings.from_params(paper)
    assert cfg.features == "imagenet" and cfg.lpips.net == "alex" and cfg.lpips.resize == 256


# --- scripts/use-profile ----------------------------------------------------------------

@pytest.fixture
def sandbox(tmp_path) -> Path:
    """A copy of what use-profile touches: scripts/use-profile, profiles/, params.yaml."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "use-profile", tmp_path / "scripts" / "use-profile")
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    shutil.copy2(ROOT / "profiles" / "embedded.yaml", tmp_path / "params.yaml")
    return tmp_path


def use_profile(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(root / "scripts" / "use-profile"), *args], cwd=root,
                          capture_output=True, text=True, timeout=60)


def test_use_profile_switches_and_says_what_it_replaced(sandbox):
    done = use_profile(sandbox, "paper")
    assert done.returncode == 0, done.stderr
    assert (sandbox / "params.yaml").read_bytes() == (sandbox / "profiles" / "paper.yaml").read_bytes()
    assert "'embedded'" in done.stdout and "'paper'" in done.stdout
    done = use_profile(sandbox, "embedded")
    assert done.returncode == 0, done.stderr
    assert "was the 'paper' profile" in done.stdout
    assert (sandbox / "params.yaml").read_bytes() == (sandbox / "profiles" / "embedded.yaml").read_bytes()
    assert not (sandbox / "params.yaml.bak").exists()


def test_use_profile_refuses_to_overwrite_local_edits(sandbox):
    edited = (sandbox / "params.yaml").read_text() + "# my local change\n"
    (sandbox / "params.yaml").write_text(edited)
    done = use_profile(sandbox, "paper")
    assert done.returncode == 1
    assert "local edits" in done.stderr and "--force" in done.stderr
    assert (sandbox / "params.yaml").read_text() == edited
    assert not (sandbox / "params.yaml.bak").exists()


def test_use_profile_force_overwrites_and_keeps_a_backup(sandbox):
    edited = (sandbox / "params.yaml").read_text().replace("alpha: 1.0", "alpha: 0.5")
    assert edited != (sandbox / "params.yaml").read_text()
    (sandbox / "params.yaml").write_text(edited)
    done = use_profile(sandbox, "--force", "paper")
    assert done.returncode == 0, done.stderr
    assert (sandbox / "params.yaml").read_bytes() == (sandbox / "profiles" / "paper.yaml").read_bytes()
    assert (sandbox / "params.yaml.bak").read_text() == edited
    assert "local edits" in done.stdout and "params.yaml.bak" in done.stdout


def test_use_profile_rejects_unknown_names(sandbox):
    done = use_profile(sandbox, "nonsense")
    assert done.returncode == 2
    assert "embedded" in done.stderr and "paper" in done.stderr
    assert (sandbox / "params.yaml").read_bytes() == (sandbox / "profiles" / "embedded.yaml").read_bytes()
