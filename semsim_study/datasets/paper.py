"""The paper's five datasets: download (resumable, checksummed) and conversion to the standard form.

Choices the paper's code leaves open, made here and listed in the README:

- image sizes follow the paper's code (CIFAR-100 32, Caltech-101 64, CelebA 64, Imagenette
  112, Stanford Dogs 64); images are scaled on the shorter side and centre-cropped;
- Caltech-101 has no official split and the paper's split script is empty: a seeded,
  class-stratified split with ``test_fraction``;
- CelebA identities: the ``identities`` most frequent identities of ``identity_CelebA.txt``
  (ties by id), split per identity; CelebA's own partition keeps identities disjoint, which
  an identity classifier cannot use;
- Imagenette uses the 320 px release (the 112 px images are smaller than it) and its
  train/val split; Stanford Dogs uses the official ``train_list.mat``/``test_list.mat``.

Archive URLs and MD5s come from torchvision's dataset classes where they exist, so they stay
in step with torchvision; Caltech-101 and Imagenette are then read through torchvision's
``Caltech101`` and ``Imagenette`` classes. CIFAR-100 and CelebA are parsed here, because
torchvision's classes re-check every extracted file against the real release's MD5s, which
would make them untestable on the small stand-in archives the tests build.
"""

from __future__ import annotations

import io
import pickle
import zipfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Mapping

import numpy as np
from tqdm import tqdm

from .. import params as P
from ..errors import DataError
from .download import RemoteFile, extract, fetch, open_tar, read_tar_member, with_overrides
from .imaging import decode, resize_center_crop, to_rgb_array
from .standard import PreparedDataset, Source, stratified_split


def _celeba_file(filename: str) -> RemoteFile:
    from torchvision.datasets import CelebA

    for file_id, md5, name in CelebA.file_list:
        if name == filename:
            return RemoteFile(filename, f"gdrive:{file_id}", md5)
    raise KeyError(filename)


def default_files(source: str) -> list[RemoteFile]:
    """The official archives for a paper dataset, as torchvision (or the dataset's site) names them."""
    from torchvision.datasets import CIFAR100, Imagenette

    if source == "cifar100":
        return [RemoteFile(CIFAR100.filename, CIFAR100.url, CIFAR100.tgz_md5)]
    if source == "caltech101":
        return [RemoteFile("caltech-101.zip", "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",
                           "3138e1922a9193bfa496528edbbc45d0")]
    if source == "imagenette":
        url, md5 = Imagenette._ARCHIVES["320px"]
        return [RemoteFile(url.rsplit("/", 1)[1], url, md5)]
    if source == "stanford_dogs":
        base = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
        return [RemoteFile("images.tar", base + "images.tar", "1bb1f2a596ae7057f99d7d75860002ef"),
                RemoteFile("lists.tar", base + "lists.tar", "edbb9f16854ec66506b5f09b583e0656")]
    if source == "celeba":
        return [_celeba_file("img_align_celeba.zip"), _celeba_file("identity_CelebA.txt")]
    raise KeyError(source)


def _fetch_all(name: str, cfg: Mapping, source: str) -> tuple[Path, dict[str, Path]]:
    raw = Path(P.get(cfg, "raw_dir", str, f"data/raw/{name}"))
    files = with_overrides(default_files(source), cfg.get("mirror"), cfg.get("md5"))
    return raw, {f.filename: fetch(f, raw) for f in files}


def _source(kind: str, files: dict[str, Path]) -> dict:
    return {"kind": kind, "offline_stand_in": False, "files": sorted(files)}


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles; allow only what a dict of numpy arrays needs, nothing callable."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(data: bytes, what: str) -> dict:
    try:
        return _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{what}: not a valid CIFAR batch ({exc})") from None


def _resize_all(images: list, size: int, what: str) -> np.ndarray:
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(tqdm(images, desc=f"resize {what}", leave=False, disable=None)):
        out[i] = to_rgb_array(resize_center_crop(img, size))
    return out


# --------------------------------------------------------------------------- CIFAR-100
def build_cifar100(name: str, cfg: Mapping, rng: np.random.Generator) -> PreparedDataset:
    from PIL import Image

    size = P.positive_int(cfg, "image_size")
    _, files = _fetch_all(name, cfg, "cifar100")
    archive = next(iter(files.values()))
    with open_tar(archive) as tf:
        meta = _unpickle(read_tar_member(tf, "cifar-100-python/meta", archive), f"{archive}:meta")
        splits = {}
        for split in ("train", "test"):
            batch = _unpickle(read_tar_member(tf, f"cifar-100-python/{split}", archive), f"{archive}:{split}")
            try:
                x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                y = np.asarray(batch["fine_labels"], dtype=np.int64)
            except (KeyError, ValueError) as exc:
                raise DataError(f"{archive}:cifar-100-python/{split}: unexpected layout ({exc})") from None
            if size != 32:
                x = _resize_all([Image.fromarray(im) for im in x], size, split)
            splits[split] = (np.ascontiguousarray(x), y)
    classes = list(meta["fine_label_names"])
    return PreparedDataset(name, classes, *splits["train"], *splits["test"], cfg.get("protocol", "A"),
                           _source("cifar100", files))


# --------------------------------------------------------------------------- Caltech-101
def build_caltech101(name: str, cfg: Mapping, rng: np.random.Generator) -> PreparedDataset:
    from torchvision.datasets import Caltech101

    size = P.positive_int(cfg, "image_size")
    raw, files = _fetch_all(name, cfg, "caltech101")
    outer = extract(files["caltech-101.zip"], raw / "caltech-101.zip.d")
    inner = outer / "caltech-101" / "101_ObjectCategories.tar.gz"
    if not inner.exists():
        raise DataError(f"{files['caltech-101.zip']}: has no caltech-101/101_ObjectCategories.tar.gz")
    extract(inner, raw / "caltech101")
    ds = Caltech101(str(raw), target_type="category", download=False)
    paths = [Path(ds.root) / "101_ObjectCategories" / ds.categories[y] / f"image_{i:04d}.jpg" for i, y in zip(ds.index, ds.y)]
    images = _resize_all([decode(p) for p in tqdm(paths, desc="decode", leave=False, disable=None)], size, name)
    labels = np.asarray(ds.y, dtype=np.int64)
    tr, te = stratified_split(labels, P.fraction(cfg, "test_fraction"), rng)
    return PreparedDataset(name, list(ds.categories), images[tr], labels[tr], images[te], labels[te],
                           cfg.get("protocol", "A"), _source("caltech101", files))


# --------------------------------------------------------------------------- Imagenette
def build_imagenette(name: str, cfg: Mapping, rng: np.random.Generator) -> PreparedDataset:
    from torchvision.datasets import Imagenette

    size = P.positive_int(cfg, "image_size")
    raw, files = _fetch_all(name, cfg, "imagenette")
    archive = next(iter(files.values()))
    root = extract(archive, raw / (archive.name + ".d"))
    out, classes = {}, None
    for split, ours in (("train", "train"), ("val", "test")):
        try:
            ds = Imagenette(str(root), split=split, size="320px", download=False)
        except (RuntimeError, FileNotFoundError) as exc:
            raise DataError(f"{archive}: no imagenette2-320/{split} folder after extraction ({exc})") from None
        names = [c[0] for c in ds.classes]
        if classes is not None and names != classes:
            raise DataError(f"{archive}: train and val folders hold different classes")
        classes = names
        imgs = [decode(p) for p, _ in tqdm(ds._samples, desc=f"decode {split}", leave=False, disable=None)]
        out[ours] = (_resize_all(imgs, size, split), np.asarray([y for _, y in ds._samples], dtype=np.int64))
    return PreparedDataset(name, classes, *out["train"], *out["test"], cfg.get("protocol", "A"), _source("imagenette", files))


# --------------------------------------------------------------------------- Stanford Dogs
def _mat_list(data: bytes, what: str) -> list[str]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(io.BytesIO(data))
        return [str(np.asarray(entry).ravel()[0]) for entry in np.asarray(mat["file_list"]).ravel()]
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise DataError(f"{what}: not a Stanford Dogs split file with a 'file_list' ({exc})") from None


def build_stanford_dogs(name: str, cfg: Mapping, rng: np.random.Generator) -> PreparedDataset:
    size = P.positive_int(cfg, "image_size")
    _, files = _fetch_all(name, cfg, "stanford_dogs")
    lists = files["lists.tar"]
    with open_tar(lists) as tf:
        split_of = {}
        for split in ("train", "test"):
            for rel in _mat_list(read_tar_member(tf, f"{split}_list.mat", lists), f"{lists}:{split}_list.mat"):
                split_of[rel] = split
    folders = sorted({rel.split("/")[0] for rel in split_of})
    label_of = {f: i for i, f in enumerate(folders)}
    found: dict[str, list] = {"train": [], "test": []}
    archive = files["images.tar"]
    with open_tar(archive) as tf:
        try:
            for member in tqdm(tf, desc="images.tar", leave=False, disable=None):
                rel = member.name[len("Images/"):] if member.name.startswith("Images/") else None
                if rel in split_of and member.isfile():
                    img = resize_center_crop(decode(tf.extractfile(member).read(), f"{archive}:{member.name}"), size)
                    found[split_of[rel]].append((rel, to_rgb_array(img), label_of[rel.split("/")[0]]))
        except (EOFError, OSError) as exc:
            raise DataError(f"{archive}: corrupt or truncated archive ({exc})") from None
    missing = len(split_of) - sum(len(v) for v in found.values())
    if missing:
        raise DataError(f"{archive}: {missing} images named in lists.tar are missing from it")
    splits = {}
    for split, rows in found.items():
        rows.sort(key=lambda r: r[0])
        splits[split] = (np.stack([r[1] for r in rows]), np.asarray([r[2] for r in rows], dtype=np.int64))
    classes = [f.split("-", 1)[1] if "-" in f else f for f in folders]
    return PreparedDataset(name, classes, *splits["train"], *splits["test"], cfg.get("protocol", "B"),
                           _source("stanford_dogs", files))


# --------------------------------------------------------------------------- CelebA identities
def build_celeba(name: str, cfg: Mapping, rng: np.random.Generator) -> PreparedDataset:
    size = P.positive_int(cfg, "image_size")
    n_ids = P.positive_int(cfg, "identities")
    _, files = _fetch_all(name, cfg, "celeba")
    id_file = files["identity_CelebA.txt"]
    identity = {}
    for line_no, line in enumerate(id_file.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise DataError(f"{id_file}, line {line_no}: expected '<image> <identity>', got {line!r}")
        identity[parts[0]] = int(parts[1])
    counts = Counter(identity.values())
    if len(counts) < n_ids:
        raise DataError(f"{id_file}: has {len(counts)} identities, params ask for {n_ids}")
    chosen = sorted(sorted(counts, key=lambda i: (-counts[i], i))[:n_ids])
    label_of = {ident: k for k, ident in enumerate(chosen)}
    wanted = sorted(f for f, i in identity.items() if i in label_of)
    archive = files["img_align_celeba.zip"]
    images = np.empty((len(wanted), size, size, 3), dtype=np.uint8)
    try:
        with zipfile.ZipFile(archive) as zf:
            for k, fname in enumerate(tqdm(wanted, desc="img_align_celeba", leave=False, disable=None)):
                try:
                    data = zf.read(f"img_align_celeba/{fname}")
                except KeyError:
                    raise DataError(f"{archive}: has no img_align_celeba/{fname} (named in {id_file.name})") from None
                images[k] = to_rgb_array(resize_center_crop(decode(data, f"{archive}:{fname}"), size))
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{archive}: corrupt or truncated archive ({exc})") from None
    labels = np.asarray([label_of[identity[f]] for f in wanted], dtype=np.int64)
    tr, te = stratified_split(labels, P.fraction(cfg, "test_fraction"), rng)
    return PreparedDataset(name, [f"identity-{i}" for i in chosen], images[tr], labels[tr], images[te], labels[te],
                           cfg.get("protocol", "B"), _source("celeba", files))


_FETCH = ("raw_dir", "mirror", "md5")  # where the archives are (_fetch_all)

# source -> its builder and the prepare.<dataset> keys it reads beyond the common ones
BUILDERS: dict[str, Source] = {
    "cifar100": Source(build_cifar100, _FETCH, "object"),
    "caltech101": Source(build_caltech101, (*_FETCH, "test_fraction"), "object"),
    "imagenette": Source(build_imagenette, _FETCH, "object"),
    "stanford_dogs": Source(build_stanford_dogs, _FETCH, "dog breed"),
    "celeba": Source(build_celeba, (*_FETCH, "test_fraction", "identities"), "person"),
}
