"""The paper's five downloaders against small archives of the real layout, served from loopback."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from semsim_study.datasets import build, paper, standard
from semsim_study.errors import DataError, DownloadError
from tests.support import fake_archives as fake
from tests.support.http_server import serve


def _params(name: str, source: str, cfg: dict) -> dict:
    return {"seed": 0, "datasets": [name], "prepare": {name: {"source": source, **cfg}}}


def _check_colours(ds, split="train"):
    """Each image's centre pixel must decode to its own label (flat class colours)."""
    x, y = ds.images(split), ds.labels(split)
    c = ds.image_size // 2
    decoded = [fake.colour_to_class(img[c, c], ds.num_classes) for img in x]
    assert decoded == y.tolist()


def _md5s(*paths):
    return {p.name: fake.md5(p) for p in paths}


def test_default_files_carry_checksums():
    for source in paper.BUILDERS:
        files = paper.default_files(source)
        assert files and all(f.md5 and len(f.md5) == 32 for f in files), source
    assert paper.default_files("celeba")[0].url.startswith("gdrive:")


def test_cifar100_over_http(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    arc = fake.cifar100(mirror)
    with serve(mirror) as (url, log):
        p = _params("cifar100", "cifar100", {"image_size": 32, "attack_images": 5, "mirror": url,
                                             "md5": _md5s(arc), "raw_dir": str(tmp_path / "raw")})
        ds, split, idx = build.prepare(p, "cifar100")
    assert log == [("/cifar-100-python.tar.gz", None)]
    assert ds.class_names == [f"class{k}" for k in range(5)]
    assert ds.train_images.shape == (20, 32, 32, 3) and ds.test_images.shape == (10, 32, 32, 3)
    _check_colours(ds)
    _check_colours(ds, "test")
    assert sorted(ds.labels(split)[idx].tolist()) == list(range(5))
    standard.save(ds, tmp_path / "out", split, idx)
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["source"]["offline_stand_in"] is False


def test_cifar100_resizes_when_asked(tmp_path):
    arc = fake.cifar100(tmp_path)
    p = _params("c", "cifar100", {"image_size": 48, "attack_images": 2, "mirror": str(tmp_path),
                                  "md5": _md5s(arc), "raw_dir": str(tmp_path / "raw")})
    ds, _, _ = build.prepare(p, "c")
    assert ds.image_size == 48
    _check_colours(ds)


def test_cifar100_refuses_pickled_code(tmp_path):
    import io
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    arc = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(arc, "w:gz") as tf:
        data = pickle.dumps(Evil())
        info = tarfile.TarInfo("cifar-100-python/meta")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    p = _params("c", "cifar100", {"image_size": 32, "attack_images": 1, "mirror": str(tmp_path),
                                  "md5": _md5s(arc), "raw_dir": str(tmp_path / "raw")})
    with pytest.raises(DataError, match="refusing to load posix.system|refusing to load os.system"):
        build.prepare(p, "c")


def test_caltech101_through_torchvision(tmp_path):
    arc = fake.caltech101(tmp_path)
    p = _params("caltech101", "caltech101", {"image_size": 64, "test_fraction": 0.2, "attack_images": 3,
                                             "mirror": str(tmp_path), "md5": _md5s(arc), "raw_dir": str(tmp_path / "raw")})
    ds, split, idx = build.prepare(p, "caltech101")
    assert ds.class_names == ["Faces", "accordion", "airplanes"]  # BACKGROUND_Google dropped
    assert ds.image_size == 64 and len(ds.train_labels) == 12 and len(ds.test_labels) == 3
    _check_colours(ds)


def test_imagenette_through_torchvision(tmp_path):
    arc = fake.imagenette(tmp_path)
    p = _params("imagenette", "imagenette", {"image_size": 112, "attack_images": 3, "mirror": str(tmp_path),
                                             "md5": _md5s(arc), "raw_dir": str(tmp_path / "raw")})
    ds, _, _ = build.prepare(p, "imagenette")
    assert ds.class_names == ["tench", "English springer", "cassette player"]
    assert ds.train_images.shape == (9, 112, 112, 3) and len(ds.test_labels) == 6
    _check_colours(ds)
    _check_colours(ds, "test")


def test_stanford_dogs_official_lists(tmp_path):
    images, lists = fake.stanford_dogs(tmp_path)
    p = _params("dogs", "stanford_dogs", {"image_size": 64, "attack_images": 3, "mirror": str(tmp_path),
                                          "md5": _md5s(images, lists), "raw_dir": str(tmp_path / "raw")})
    ds, _, _ = build.prepare(p, "dogs")
    assert ds.class_names == ["Chihuahua", "Japanese_spaniel", "Shih-Tzu"]
    assert len(ds.train_labels) == 9 and len(ds.test_labels) == 6 and ds.protocol == "B"
    _check_colours(ds)
    _check_colours(ds, "test")


def test_stanford_dogs_missing_split_file(tmp_path):
    images, lists = fake.stanford_dogs(tmp_path, drop_test_list=True)
    p = _params("dogs", "stanford_dogs", {"image_size": 64, "attack_images": 3, "mirror": str(tmp_path),
                                          "md5": _md5s(images, lists), "raw_dir": str(tmp_path / "raw")})
    with pytest.raises(DataError, match="lists.tar: has no member 'test_list.mat'"):
        build.prepare(p, "dogs")


def test_celeba_most_frequent_identities(tmp_path):
    zpath, id_path = fake.celeba(tmp_path)
    p = _params("celeba", "celeba", {"image_size": 64, "identities": 3, "test_fraction": 0.25, "attack_images": 3,
                                     "mirror": str(tmp_path), "md5": _md5s(zpath, id_path), "raw_dir": str(tmp_path / "raw")})
    ds, _, _ = build.prepare(p, "celeba")
    assert ds.class_names == ["identity-3", "identity-7", "identity-11"]  # the 3 largest, in id order
    assert len(ds.train_labels) + len(ds.test_labels) == 15
    _check_colours(ds)
    _check_colours(ds, "test")


def test_celeba_bad_identity_file(tmp_path):
    zpath, id_path = fake.celeba(tmp_path)
    id_path.write_text("000001.jpg 7\nthis line is wrong\n")
    p = _params("celeba", "celeba", {"image_size": 64, "identities": 1, "test_fraction": 0.25, "attack_images": 1,
                                     "mirror": str(tmp_path), "md5": _md5s(zpath, id_path), "raw_dir": str(tmp_path / "raw")})
    with pytest.raises(DataError, match=r"identity_CelebA.txt, line 2: expected"):
        build.prepare(p, "celeba")


def test_truncated_archive_is_named(tmp_path):
    arc = fake.imagenette(tmp_path)
    arc.write_bytes(arc.read_bytes()[: arc.stat().st_size // 3])
    p = _params("imagenette", "imagenette", {"image_size": 112, "attack_images": 3, "mirror": str(tmp_path),
                                             "md5": _md5s(arc), "raw_dir": str(tmp_path / "raw")})
    with pytest.raises(DataError, match="imagenette2-320.tgz: corrupt or truncated archive"):
        build.prepare(p, "imagenette")


def test_wrong_checksum_stops_before_any_output(tmp_path):
    arc = fake.cifar100(tmp_path / "m") if (tmp_path / "m").mkdir() is None else None
    p = _params("cifar100", "cifar100", {"image_size": 32, "attack_images": 5, "mirror": str(tmp_path / "m"),
                                         "md5": {arc.name: "f" * 32}, "raw_dir": str(tmp_path / "raw")})
    with pytest.raises(DownloadError, match="expected f{32}"):
        build.prepare(p, "cifar100")
    assert list((tmp_path / "raw").iterdir()) == []
