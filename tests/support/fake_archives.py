"""Small archives with the folder structure and file formats of the paper's real downloads.

Every image of class k is a flat colour that encodes k, so a test can check after the whole
download-extract-decode-resize path that each label still sits on the right pixels.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def class_colour(k: int) -> tuple[int, int, int]:
    return (20 + 37 * k % 230, 200 - 23 * k % 190, 60 + 53 * k % 190)


def colour_to_class(pixel: np.ndarray, n: int) -> int:
    dists = [np.abs(np.asarray(class_colour(k)) - pixel.astype(int)).sum() for k in range(n)]
    return int(np.argmin(dists))


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _jpeg(k: int, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, class_colour(k)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def cifar100(folder: Path, n_classes: int = 5, per_class: tuple[int, int] = (4, 2)) -> Path:
    path = folder / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        _add(tf, "cifar-100-python/meta", pickle.dumps({"fine_label_names": [f"class{k}" for k in range(n_classes)]}))
        for split, n in zip(("train", "test"), per_class):
            labels = [k for k in range(n_classes) for _ in range(n)]
            data = np.stack([np.tile(np.asarray(class_colour(k), np.uint8)[:, None], (1, 1024)).reshape(-1) for k in labels])
            _add(tf, f"cifar-100-python/{split}", pickle.dumps({"data": data, "fine_labels": labels}))
    return path


def caltech101(folder: Path, classes=("Faces", "accordion", "airplanes"), per_class: int = 5) -> Path:
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tf:
        for k, name in enumerate(("BACKGROUND_Google",) + tuple(classes)):
            for i in range(1, per_class + 1):
                _add(tf, f"101_ObjectCategories/{name}/image_{i:04d}.jpg", _jpeg(max(k - 1, 0), (80, 60)))
    path = folder / "caltech-101.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("caltech-101/101_ObjectCategories.tar.gz", inner.getvalue())
        zf.writestr("caltech-101/Annotations.tar", b"")
    return path


IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n02979186")


def imagenette(folder: Path, per_class: tuple[int, int] = (3, 2)) -> Path:
    path = folder / "imagenette2-320.tgz"
    with tarfile.open(path, "w:gz") as tf:
        for split, n in zip(("train", "val"), per_class):
            for k, wnid in enumerate(IMAGENETTE_WNIDS):
                for i in range(n):
                    _add(tf, f"imagenette2-320/{split}/{wnid}/{wnid}_{split}{i}.JPEG", _jpeg(k, (427, 320)))
    return path


DOG_FOLDERS = ("n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02086240-Shih-Tzu")


def stanford_dogs(folder: Path, per_class: tuple[int, int] = (3, 2), drop_test_list: bool = False) -> tuple[Path, Path]:
    import scipy.io

    lists = {"train": [], "test": []}
    images = folder / "images.tar"
    with tarfile.open(images, "w") as tf:
        for k, dog in enumerate(DOG_FOLDERS):
            for split, n in zip(("train", "test"), per_class):
                for i in range(n):
                    rel = f"{dog}/{dog.split('-')[0]}_{split}{i}.jpg"
                    lists[split].append((rel, k + 1))
                    _add(tf, f"Images/{rel}", _jpeg(k, (500, 375)))
    lists_tar = folder / "lists.tar"
    with tarfile.open(lists_tar, "w") as tf:
        for split, rows in lists.items():
            if drop_test_list and split == "test":
                continue
            buf = io.BytesIO()
            files = np.empty((len(rows), 1), dtype=object)
            for i, (rel, _) in enumerate(rows):
                files[i, 0] = np.array([rel])
            scipy.io.savemat(buf, {"file_list": files, "labels": np.array([[lab] for _, lab in rows])})
            _add(tf, f"{split}_list.mat", buf.getvalue())
    return images, lists_tar


def celeba(folder: Path, ids_counts=((7, 6), (3, 4), (11, 5), (5, 2))) -> tuple[Path, Path]:
    """Identities with the given image counts; colour encodes the identity's rank by count."""
    ranked = sorted(ids_counts, key=lambda t: -t[1])
    lines, n = [], 0
    zpath = folder / "img_align_celeba.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for ident, count in ids_counts:
            k = sorted(i for i, _ in ranked[:3]).index(ident) if ident in [i for i, _ in ranked[:3]] else 9
            for _ in range(count):
                n += 1
                fname = f"{n:06d}.jpg"
                zf.writestr(f"img_align_celeba/{fname}", _jpeg(k, (178, 218)))
                lines.append(f"{fname} {ident}")
    id_path = folder / "identity_CelebA.txt"
    id_path.write_text("\n".join(lines) + "\n")
    return zpath, id_path
