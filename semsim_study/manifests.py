"""One manifest per dataset of every file the attacks wrote: its path and md5.

Why: eight stages read a dataset's reconstructions (metrics, tasks, annotate, observer-controls,
then SemSim, its baseline and the report over all of them). Listed as a dependency, each of
those folders makes ``dvc repro`` visit every one of its ~8,000 files again, even with nothing
to do: most of a no-op's time. The consumers depend on this manifest instead: DVC checks the
attack folders once (as this stage's dependency) and then only a few small files. A
reconstruction that changes changes its md5 here, so every consumer of that dataset still
reruns; an attack that rewrites the same bytes leaves the manifest, and the consumers, alone.
"""

from __future__ import annotations

from pathlib import Path

from . import atomic
from .datasets.download import md5sum
from .errors import DataError

FORMAT = "attack-manifest"
FOLDER = Path("data") / "attack-manifests"


def path(root: str | Path, dataset: str) -> Path:
    """Where the manifest of ``dataset`` lives."""
    return Path(root) / FOLDER / f"{dataset}.json"


def build(attacks_dir: str | Path, dataset: str) -> dict:
    """The manifest of ``attacks_dir/<dataset>``: every file (sorted, POSIX paths under it) and its md5."""
    folder = Path(attacks_dir) / dataset
    if not folder.is_dir():
        raise DataError(f"{folder}: no reconstructions of {dataset!r} (run the attack stages first)")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise DataError(f"{folder}: the attacks wrote no file for {dataset!r}")
    return {"format": FORMAT, "dataset": dataset,
            "files": {p.relative_to(folder).as_posix(): md5sum(p) for p in files}}


def write(root: str | Path, dataset: str) -> dict:
    """Build and write (atomically) the manifest of one dataset; returns it."""
    manifest = build(Path(root) / "data" / "attacks", dataset)
    atomic.write_json(path(root, dataset), manifest)
    return manifest
