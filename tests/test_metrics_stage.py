"""The metrics@<dataset> stage on attack folders made here: tables, contract columns, bad input."""

from __future__ import annotations

import csv
import json
import math
import sys

import numpy as np
import pytest
import yaml

from semsim_study.errors import ConfigError, DataError
from semsim_study.metrics import classification, compute, pairs, pixel
from stages import metrics as stage
from tests.support import metrics_helpers as H

IMAGES_CONTRACT = ["item_id", "dataset", "model", "attack", "image_id", "status", "mse", "psnr", "ssim", "lpips",
                   "classification"]
SETS_CONTRACT = ["dataset", "model", "attack", "images", "fid", "mse", "psnr", "ssim", "lpips", "classification"]
MODELS = ["resnet8_none", "resnet8_crop"]


def _params(**metrics) -> dict:
    return {"seed": 0, "datasets": ["toy"], "attacks": ["dlg", "invgrad"],
            "train": {"settings": {"none": {"augment": "none"}, "crop": {"augment": "crop"}},
                      "datasets": {"toy": {"epochs": 1, "batch_size": 8, "models": {"resnet8": ["none", "crop"]}}}},
            "metrics": {"features": "pipeline", "weights_dir": None,
                        "lpips": {"net": "alex", "paper_input_scale": False, "resize": None},
                        "fid": {"method": "exact"}, "classifier": None, "batch_size": 5, "device": "cpu", **metrics}}


def _noise(img: np.ndarray, i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return np.clip(img.astype(int) + rng.integers(-40, 41, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder: two attacks (dlg reconstructs perfectly, invgrad adds noise), 2 models x 6 images."""
    x, y = H.blobs(6, 3)
    H.attack_dir(tmp_path, "toy", "dlg", MODELS, x, y, lambda img, i: img.copy())
    H.attack_dir(tmp_path, "toy", "invgrad", MODELS, x, y, _noise, status="diverged")
    for model_id in MODELS:
        H.classifier(tmp_path / "models" / "toy", model_id, 3)
    H.feature_dir(tmp_path / "models" / "features")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params()))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run_stage(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["metrics", "--dataset", "toy"])
    stage.main()


def _read(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def test_stage_writes_the_contract_tables(project, monkeypatch):
    _run_stage(monkeypatch)
    out = project / "data" / "metrics" / "toy"
    image_cols, rows = _read(out / "images.csv")
    assert image_cols[: len(IMAGES_CONTRACT)] == IMAGES_CONTRACT and image_cols[-1] == "features"
    assert len(rows) == 2 * 2 * 6
    assert [r["item_id"] for r in rows[:2]] == ["toy/resnet8_none/dlg/test-000000", "toy/resnet8_none/dlg/test-000001"]
    cap = pixel.psnr_identical(32, 32, 3)
    for r in rows:
        assert r["features"] == "pipeline" and r["classification"] in ("0", "1")
        if r["attack"] == "dlg":  # perfect reconstructions
            assert r["status"] == "ok"
            assert float(r["mse"]) == 0 and float(r["ssim"]) == pytest.approx(1.0)
            assert float(r["lpips"]) == pytest.approx(0.0, abs=1e-6) and float(r["psnr"]) == pytest.approx(cap)
            assert r["classification"] == r["classification_original"]
        else:
            assert r["status"] == "diverged"
            assert float(r["mse"]) > 0 and float(r["ssim"]) < 1 and float(r["lpips"]) > 0 and float(r["psnr"]) < cap

    cols, sets = _read(out / "sets.csv")
    assert cols[: len(SETS_CONTRACT)] == SETS_CONTRACT and cols[-1] == "features"
    assert [(s["model"], s["attack"]) for s in sets] == [(m, a) for a in ("dlg", "invgrad") for m in MODELS]
    for s in sets:
        assert s["images"] == "6" and s["dataset"] == "toy"
        mine = [r for r in rows if (r["model"], r["attack"]) == (s["model"], s["attack"])]
        for k in ("mse", "psnr", "ssim", "lpips", "classification"):
            assert float(s[k]) == pytest.approx(np.mean([float(r[k]) for r in mine]), rel=1e-8, abs=1e-12)
        if s["attack"] == "dlg":
            assert float(s["fid"]) < 1e-9 and s["diverged"] == "0"
        else:
            assert float(s["fid"]) > 1e-5 and s["diverged"] == "6"  # a briefly trained network: small but clearly > 0

    meta = json.loads((out / "meta.json").read_text())
    assert meta["features"] == "pipeline" and meta["offline_stand_in"] is True
    assert meta["classification"]["model"] == "resnet8_none"  # the first listed model
    assert meta["images"] == 24 and meta["sets"] == 4 and meta["columns"]["images.csv"] == image_cols
    assert meta["definitions"]["psnr_identical"]["value"] == pytest.approx(cap, abs=1e-5)


def test_same_inputs_give_the_same_bytes_whatever_the_batch_size(project, monkeypatch):
    _run_stage(monkeypatch)
    out = project / "data" / "metrics" / "toy"
    first = {f: (out / f).read_bytes() for f in ("images.csv", "sets.csv", "meta.json")}
    _run_stage(monkeypatch)
    assert first == {f: (out / f).read_bytes() for f in first}
    params = _params(batch_size=64)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    _run_stage(monkeypatch)
    _, a = _read(out / "images.csv")
    b = list(csv.DictReader(first["images.csv"].decode().splitlines()))
    for x, y in zip(a, b):
        for k in ("mse", "psnr", "ssim", "classification"):
            assert x[k] == y[k]
        assert float(x["lpips"]) == pytest.approx(float(y["lpips"]), rel=1e-5, abs=1e-7)


def test_missing_image_is_named_and_nothing_is_written(project, monkeypatch):
    victim = "data/attacks/toy/invgrad/images/resnet8_crop/test-000003_reconstruction.png"
    (project / victim).unlink()
    with pytest.raises(DataError, match=f"{victim}.*image file not found") as err:
        _run_stage(monkeypatch)
    assert "index.csv:" in str(err.value)  # and the index line that lists it
    assert not (project / "data" / "metrics" / "toy").exists()


def test_unreadable_png_is_named(project, monkeypatch):
    victim = "data/attacks/toy/dlg/images/resnet8_none/test-000002_original.png"
    (project / victim).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=f"{victim}.*unreadable or corrupt"):
        _run_stage(monkeypatch)


def test_a_corrupt_image_of_the_last_attack_fails_before_any_metric(project, monkeypatch):
    """Every listed image is decoded first: no backbone is built, no set computed, nothing written."""
    victim = "data/attacks/toy/invgrad/images/resnet8_none/test-000001_reconstruction.png"
    (project / victim).write_bytes((project / victim).read_bytes()[:40])

    def never(*args, **kwargs):
        raise AssertionError("the metrics' networks were built before the images were checked")

    monkeypatch.setattr(stage.feature_extractors, "build", never)
    with pytest.raises(DataError, match=f"{victim} \\(listed at .*invgrad/index.csv:\\d+\\).*unreadable or corrupt"):
        _run_stage(monkeypatch)
    assert not (project / "data/metrics/toy").exists()


def test_size_mismatch_is_named(project, monkeypatch):
    from semsim_study.datasets.imaging import save_png

    victim = "data/attacks/toy/invgrad/images/resnet8_none/test-000001_reconstruction.png"
    save_png(np.zeros((28, 28, 3), np.uint8), project / victim)
    with pytest.raises(DataError, match=f"{victim}: size 28x28 differs from its original .*32x32"):
        _run_stage(monkeypatch)


def test_bad_index_files_are_named(project, monkeypatch):
    index = "data/attacks/toy/dlg/index.csv"
    lines = (project / index).read_text().splitlines()
    lines[3] = lines[3].replace(",ok,", ",lost,")
    (project / index).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"{index}:4: status 'lost'"):
        _run_stage(monkeypatch)
    (project / index).unlink()
    with pytest.raises(DataError, match=f"{index}: attack index missing"):
        _run_stage(monkeypatch)


def test_missing_feature_network_says_which_stage_to_run(project, monkeypatch):
    (project / "models/features/feature_net.json").unlink()
    with pytest.raises(DataError, match="dvc repro features"):
        _run_stage(monkeypatch)


def test_classifier_choice(project):
    params = _params()
    assert classification.classifier_id(params, "toy") == "resnet8_none"
    params["metrics"]["classifier"] = "resnet8_crop"
    assert classification.classifier_id(params, "toy") == "resnet8_crop"
    params["metrics"]["classifier"] = "convnet4_none"
    with pytest.raises(ConfigError, match="'metrics.classifier' is 'convnet4_none'.*resnet8_none, resnet8_crop"):
        classification.classifier_id(params, "toy")


def test_bad_metrics_params_are_named(project, monkeypatch):
    (project / "params.yaml").write_text(yaml.safe_dump(_params(features="inception")))
    with pytest.raises(ConfigError, match="'metrics.features' is 'inception'; valid values: imagenet, pipeline"):
        _run_stage(monkeypatch)


def test_sets_of_one_image_have_an_empty_fid(tmp_path):
    x, y = H.blobs(1, 3)
    H.attack_dir(tmp_path, "toy", "dlg", ["resnet8_none"], x, y, _noise)
    ps = pairs.read_pairs(tmp_path / "data/attacks/toy", ["dlg"])

    class Stub:
        name, dim = "stub", 4

        def __call__(self, a, b):
            return np.ones(len(a)), np.ones((len(a), 4)), np.zeros((len(a), 4))

    class Always:
        def predict(self, x):
            return np.zeros(len(x), int)

    result = compute.evaluate(ps, Stub(), Always(), progress=False)
    assert math.isnan(result.sets[0]["fid"]) and compute.fmt(result.sets[0]["fid"]) == ""
    assert result.sets[0]["classification_ratio"] == 1.0 and result.image_shape == (32, 32, 3)


def test_stage_columns_are_the_metric_tables(project, monkeypatch):
    """Every metric the table assigns to this stage is a column of images.csv / sets.csv, in table order."""
    from semsim_study import metric_table as T

    _run_stage(monkeypatch)
    header, rows = _read(project / "data/metrics/toy/images.csv")
    measured = [c for c in header if c in T.BY_NAME]
    assert measured == list(T.names(stage="metrics", level="image"))
    assert rows and all(r[m] != "" for r in rows for m in measured)
    header, _ = _read(project / "data/metrics/toy/sets.csv")
    assert [c for c in header if c in T.BY_NAME] == list(T.names(stage="metrics", level="set")
                                                         + T.names(stage="metrics", level="image"))
