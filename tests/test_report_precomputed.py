"""Stage `correlate` and the report's reuse of its rows: same numbers, same bytes, fewer bootstraps."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from semsim_study.analysis import config, correlate as C, precomputed, study as S
from semsim_study.errors import DataError

from .support.report_fixtures import make_project

ROOT = Path(__file__).resolve().parents[1]


def _stage(module: str, root: Path, params: dict, *extra: str) -> subprocess.CompletedProcess:
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    done = subprocess.run([sys.executable, "-m", f"stages.{module}", "--params", str(root / "params.yaml"),
                           "--root", str(root), *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def _files(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("precomputed")
    params = make_project(root, datasets=("digits", "faces", "shapes"), images=3, annotated=("digits", "faces"))
    params["report"]["bootstrap"] = 200
    return root, params


def test_fingerprint_follows_the_data_and_settings_only():
    x, y = [0.1, 0.5, float("nan"), 0.9], [1.0, 0.0, 0.3, 0.5]
    base = C.fingerprint(x, y, reps=100, seed=0, key="model/digits")
    assert base == C.fingerprint(pd.Series(x), pd.Series(y), reps=100, seed=0, key="model/digits")
    assert base == C.fingerprint([0.1, 0.5, 7.0, 0.9], [1.0, 0.0, float("nan"), 0.5], reps=100, seed=0,
                                 key="model/digits")  # only finite pairs count, as in correlate
    for changed in (dict(x=[0.1, 0.5, 0.9, 0.9]), dict(reps=101), dict(seed=1), dict(key="model/faces"),
                    dict(confidence=0.9)):
        args = dict(x=x, y=y, reps=100, seed=0, key="model/digits") | changed
        assert C.fingerprint(args.pop("x"), args.pop("y"), **args) != base


def test_report_with_the_rows_of_correlate_gives_the_same_bytes(project, tmp_path):
    root, params = project
    out = tmp_path / "corr.csv"
    _stage("correlate", root, params, "--out", str(out))
    rows = pd.read_csv(out)
    assert set(rows.metric) == set(precomputed.METRICS) and not {"semsim", "semsim_untrained"} & set(rows.metric)
    assert "contradiction" not in set(rows.level)
    reused = _stage("report", root, params, "--precomputed", str(out), "--out", str(tmp_path / "a"),
                    "--metrics", str(tmp_path / "a.json"))
    alone = _stage("report", root, params, "--precomputed", "none", "--out", str(tmp_path / "b"),
                   "--metrics", str(tmp_path / "b.json"))
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    taken = int(reused.stderr.split(" metric results taken from")[0].rsplit("(", 1)[1])
    assert taken > 0 and "(0 metric results taken from nowhere" in alone.stderr
    # the noise ceiling too: every comparison with data taken from correlate's noise_ceiling.csv
    assert precomputed.ceiling_path(out).is_file() and "noise ceiling: 0 of 10 comparisons taken" in alone.stderr
    assert "noise ceiling: 10 of 10 comparisons taken" in reused.stderr


def test_correlate_on_two_processes_gives_the_rows_of_one(project):
    root, params = project
    cfg = config.from_params(params)
    args = (root, cfg.datasets, cfg.held_out_attacks, cfg.held_out_backbones, cfg.bootstrap)
    one, two = precomputed.compute(*args, workers=1), precomputed.compute(*args, workers=2)
    for a, b in zip(one, two, strict=True):
        assert len(a) and a.to_csv(index=False) == b.to_csv(index=False)


def test_a_row_whose_data_changed_is_computed_again(project, tmp_path):
    root, params = project
    out = tmp_path / "corr.csv"
    _stage("correlate", root, params, "--out", str(out))
    work = tmp_path / "changed"
    shutil.copytree(root, work)
    images = work / "data" / "metrics" / "digits" / "images.csv"
    table = pd.read_csv(images, dtype=str)
    table["psnr"] = (pd.to_numeric(table["psnr"]) * -1.0).map(repr)  # PSNR now runs the other way
    table.to_csv(images, index=False, lineterminator="\n")
    cfg = S.BootstrapConfig(reps=200, seed=params["seed"])
    reuse = precomputed.read(out)
    with_stale = S.build(work, ["digits", "faces", "shapes"], ["dlg"], ["lenet"], cfg, reuse=reuse)
    fresh = S.build(work, ["digits", "faces", "shapes"], ["dlg"], ["lenet"], cfg)
    pd.testing.assert_frame_equal(with_stale.correlations, fresh.correlations, check_exact=True)
    stale = S.build(root, ["digits", "faces", "shapes"], ["dlg"], ["lenet"], cfg)
    psnr = (fresh.correlations.metric == "psnr") & (fresh.correlations.scope == "digits")
    assert not fresh.correlations[psnr]["value"].equals(stale.correlations[psnr]["value"])


def test_correlate_reads_no_semsim_output(project, tmp_path):
    root, params = project
    _stage("correlate", root, params, "--out", str(tmp_path / "with.csv"))
    work = tmp_path / "nosemsim"
    shutil.copytree(root, work)
    shutil.rmtree(work / "data" / "semsim")
    _stage("correlate", work, params, "--out", str(tmp_path / "without.csv"))
    assert (tmp_path / "with.csv").read_bytes() == (tmp_path / "without.csv").read_bytes()


def test_bad_precomputed_file_is_named(project, tmp_path):
    root, params = project
    good = tmp_path / "corr.csv"
    _stage("correlate", root, params, "--out", str(good))
    text = good.read_text()
    cases = {"missing": None, "empty.csv": "", "cols.csv": text.replace("fingerprint", "fp", 1),
             "number.csv": text + "model,digits,psnr,spearman,x,1,1,1,1,three,,1,1,1,abc\n",
             "half.csv": "\n".join(text.splitlines()[:3]) + "\n"}
    for name, body in cases.items():
        path = tmp_path / name
        if body is not None:
            path.write_text(body)
        with pytest.raises(DataError, match=str(path).replace(".", r"\.")):
            precomputed.read(path)


def test_dvc_stages_correlate_before_the_report_without_alpha():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stage = dvc["stages"]["correlate"]
    assert not any(d.startswith("data/semsim") for d in stage["deps"])
    assert "alpha" not in stage["params"] and "semsim.training" not in stage["params"]
    assert "data/correlations" in dvc["stages"]["report"]["deps"]
    assert precomputed.DEFAULT_PATH.parts[:2] == ("data", "correlations")
