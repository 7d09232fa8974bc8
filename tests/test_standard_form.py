"""The prepared-dataset contract: round trip, byte-identical writes, atomicity, bad files."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsim_study import atomic
from semsim_study.datasets import build, standard
from semsim_study.errors import DataError


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def shapes(tiny_params):
    return build.prepare(tiny_params, "shapes")


def test_round_trip_and_subset_files(tmp_path, shapes):
    ds, split, idx = shapes
    standard.save(ds, tmp_path / "shapes", split, idx)
    back = standard.load(tmp_path / "shapes")
    assert np.array_equal(back.train_images, ds.train_images)
    assert np.array_equal(back.test_labels, ds.test_labels)
    assert back.class_names == ds.class_names and back.protocol == ds.protocol
    rows = standard.load_attack_subset(tmp_path / "shapes")
    assert [r["index"] for r in rows] == idx.tolist()
    for r in rows:
        png = np.asarray(Image.open(tmp_path / "shapes" / "attack_subset" / f"{r['image_id']}.png"))
        assert np.array_equal(png, ds.images(split)[r["index"]])
        assert r["class_name"] == ds.class_names[r["label"]]
        assert "/" not in r["image_id"]


def test_same_seed_gives_byte_identical_folders(tmp_path, tiny_params, shapes):
    ds, split, idx = shapes
    standard.save(ds, tmp_path / "a", split, idx)
    again, split2, idx2 = build.prepare(tiny_params, "shapes")
    standard.save(again, tmp_path / "b", split2, idx2)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")


def test_meta_has_normalisation_stats(tmp_path, shapes):
    import json

    ds, split, idx = shapes
    standard.save(ds, tmp_path / "s", split, idx)
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    x = ds.train_images.astype(np.float64) / 255
    assert np.allclose(meta["mean"], x.mean((0, 1, 2)), atol=1e-5)
    assert np.allclose(meta["std"], x.std((0, 1, 2)), atol=1e-5)
    assert meta["counts"] == {"train": len(ds.train_labels), "test": len(ds.test_labels)}


def test_failed_write_keeps_previous_output(tmp_path, shapes):
    ds, split, idx = shapes
    out = tmp_path / "out"
    standard.save(ds, out, split, idx)
    before = _tree_digest(out)
    broken = standard.PreparedDataset(ds.name, ds.class_names, ds.train_images, ds.train_labels,
                                      ds.test_images, ds.test_labels, ds.protocol, ds.source)
    with pytest.raises(RuntimeError):
        with atomic.build_dir(out) as tmp:
            (tmp / "partial.npy").write_bytes(b"half")
            raise RuntimeError("killed")
    assert _tree_digest(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no leftovers beside it
    broken.train_labels = ds.train_labels.copy()
    broken.train_labels[0] = 999
    with pytest.raises(DataError, match="labels outside"):
        standard.save(broken, out, split, idx)
    assert _tree_digest(out) == before


def test_validate_rejects_empty_class_and_bad_dtype(shapes):
    ds, _, _ = shapes
    bad = standard.PreparedDataset(ds.name, ds.class_names + ["extra"], ds.train_images, ds.train_labels,
                                   ds.test_images, ds.test_labels)
    with pytest.raises(DataError, match="1 classes have no image"):
        bad.validate()
    bad = standard.PreparedDataset(ds.name, ds.class_names, ds.train_images.astype(np.float32), ds.train_labels,
                                   ds.test_images, ds.test_labels)
    with pytest.raises(DataError, match="must be uint8"):
        bad.validate()


def test_load_names_missing_or_corrupt_files(tmp_path, shapes):
    ds, split, idx = shapes
    standard.save(ds, tmp_path / "s", split, idx)
    (tmp_path / "s" / "test_labels.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="test_labels.npy: not a valid .npy"):
        standard.load(tmp_path / "s")
    (tmp_path / "s" / "test_labels.npy").unlink()
    with pytest.raises(DataError, match="test_labels.npy: missing"):
        standard.load(tmp_path / "s")
    with pytest.raises(DataError, match="meta.json: missing"):
        standard.load(tmp_path / "nothing")


def test_stratified_subset_round_robin():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), [10, 3, 7, 1, 9])
    idx = standard.stratified_subset(labels, 12, rng)
    counts = np.bincount(labels[idx], minlength=5)
    assert counts.sum() == 12 and counts[3] == 1  # a class with one image gives one
    assert counts.max() - counts[[0, 2, 4]].min() <= 1
    with pytest.raises(DataError, match="attack subset of 31 images"):
        standard.stratified_subset(labels, 31, rng)


def test_stratified_split_keeps_each_class_on_both_sides():
    labels = np.repeat(np.arange(4), [2, 5, 9, 40])
    tr, te = standard.stratified_split(labels, 0.25, np.random.default_rng(1))
    assert len(set(tr) & set(te)) == 0 and len(tr) + len(te) == len(labels)
    for c in range(4):
        assert (labels[tr] == c).any() and (labels[te] == c).any()


def test_build_dir_clears_what_a_killed_run_left(tmp_path):
    stale = tmp_path / ".out.abc123.building"
    stale.mkdir()
    (stale / "half.npy").write_bytes(b"x")
    with atomic.build_dir(tmp_path / "out") as tmp:
        (tmp / "done.txt").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
