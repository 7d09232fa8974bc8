"""The attack manifest: what the readers of reconstructions depend on instead of the folders."""

from __future__ import annotations

import json

import pytest
import yaml

from semsim_study import manifests
from semsim_study.errors import DataError
from tests.conftest import ROOT


def _attacks(root, dataset="digits"):
    folder = root / "data" / "attacks" / dataset
    (folder / "dlg" / "images" / "m").mkdir(parents=True)
    (folder / "dlg" / "index.csv").write_text("item_id\n")
    (folder / "dlg" / "images" / "m" / "a.png").write_bytes(b"\x89PNG one")
    return folder


def test_manifest_lists_every_file_with_its_md5(tmp_path):
    folder = _attacks(tmp_path)
    m = manifests.write(tmp_path, "digits")
    assert m["dataset"] == "digits" and m["format"] == manifests.FORMAT
    assert sorted(m["files"]) == ["dlg/images/m/a.png", "dlg/index.csv"]
    assert json.loads(manifests.path(tmp_path, "digits").read_text()) == m
    before = manifests.path(tmp_path, "digits").read_bytes()
    # the same bytes again: the same manifest (consumers stay cached); a changed image changes it
    assert manifests.write(tmp_path, "digits") == m and manifests.path(tmp_path, "digits").read_bytes() == before
    (folder / "dlg" / "images" / "m" / "a.png").write_bytes(b"\x89PNG two")
    assert manifests.write(tmp_path, "digits")["files"]["dlg/images/m/a.png"] != m["files"]["dlg/images/m/a.png"]


def test_missing_or_empty_attack_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no reconstructions of 'faces'"):
        manifests.write(tmp_path, "faces")
    (tmp_path / "data" / "attacks" / "faces").mkdir(parents=True)
    with pytest.raises(DataError, match="wrote no file"):
        manifests.write(tmp_path, "faces")
    assert not manifests.path(tmp_path, "faces").exists()


def test_only_the_manifest_stage_walks_the_attack_folders():
    """Every other reader of reconstructions depends on the manifests (one walk per no-op, not eight)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    walkers = sorted(name for name, stage in stages.items()
                     for dep in (stage.get("do", stage).get("deps") or [])
                     if isinstance(dep, str) and dep.startswith("data/attacks"))
    assert walkers == ["attack-manifest"]
    readers = sorted(name for name, stage in stages.items()
                     for dep in (stage.get("do", stage).get("deps") or [])
                     if isinstance(dep, str) and dep.startswith(str(manifests.FOLDER)))
    assert readers == ["annotate", "ce-baseline", "metrics", "observer-controls", "report", "semsim", "tasks"]
