"""What the annotation app may show: the tasks of its datasets and the image files behind them.

Every image path is resolved once, at start-up, from tasks.csv and must lie inside the
project's reconstruction folders (``<root>/data/attacks`` by default, symlinks resolved);
requests name items by an opaque ref, never by a path, so a client cannot reach any other file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import DataError
from .tasks import Task, dataset_question, question, read_tasks

IMAGE_KINDS = ("reconstruction", "original")


@dataclass(frozen=True)
class Entry:
    task: Task
    ref: str
    images: dict  # kind -> resolved Path (or PNG bytes, gold noise); protocol A has no original (it would give the answer away)


class Catalog:
    def __init__(self, entries: Sequence[Entry], questions: dict[tuple[str, str], str] | None = None,
                 root: Path | None = None, allowed: Path | None = None):
        self.root, self.allowed = root, allowed  # where task paths start, the folder images must lie in
        self.entries = list(entries)
        self.questions = dict(questions or {})  # (dataset, protocol) -> the dataset's own question
        self.by_ref = {e.ref: e for e in self.entries}
        self.by_item = {e.task.item_id: e for e in self.entries}
        if len(self.by_ref) != len(self.entries):
            raise DataError("two items got the same ref; regenerate the database secret")

    def question(self, task: Task) -> str:
        return self.questions.get((task.dataset, task.protocol)) or question(task.protocol)

    def original_path(self, task: Task) -> Path:
        """The original of a task, resolved and checked like its images (protocol A items do not
        show it; gold items do)."""
        entry = self.by_item[task.item_id]
        if "original" in entry.images:
            return entry.images["original"]
        if self.root is None or self.allowed is None:
            raise DataError(f"item {task.item_id}: this catalog was not loaded from files, so its original is unknown")
        return _resolve(self.root, self.allowed, task, "original", f"tasks of {task.dataset}")

    @property
    def item_ids(self) -> list[str]:
        return [e.task.item_id for e in self.entries]

    @classmethod
    def load(cls, root: str | Path, datasets: Sequence[str], ref: Callable[[str], str],
             image_root: str | Path | None = None) -> "Catalog":
        """Read ``<root>/data/tasks/<dataset>/tasks.csv`` for each dataset and check every image."""
        root = Path(root).resolve()
        allowed = Path(image_root).resolve() if image_root else root / "data" / "attacks"
        if not datasets:
            raise DataError("no datasets to serve")
        entries, questions = [], {}
        for ds in datasets:
            path = root / "data" / "tasks" / ds / "tasks.csv"
            tasks = read_tasks(path)
            for task in tasks.values():
                questions.setdefault((ds, task.protocol), dataset_question(path.parent, task.protocol))
                if task.dataset != ds:
                    raise DataError(f"{path}: item {task.item_id} belongs to dataset {task.dataset!r}")
                kinds = IMAGE_KINDS if task.protocol == "B" else ("reconstruction",)
                images = {}
                for kind in kinds:
                    images[kind] = _resolve(root, allowed, task, kind, path)
                entries.append(Entry(task, ref(task.item_id), images))
        return cls(entries, questions, root, allowed)


def _resolve(root: Path, allowed: Path, task: Task, kind: str, where: str | Path) -> Path:
    """A task's image file, symlinks resolved, refused unless it is a file inside ``allowed``."""
    rel = getattr(task, kind)
    resolved = (root / rel).resolve()
    if not resolved.is_relative_to(allowed):
        raise DataError(f"{where}: item {task.item_id}: {kind} {rel} lies outside {allowed}")
    if not resolved.is_file():
        raise DataError(f"{where}: item {task.item_id}: {kind} image {rel} is missing")
    return resolved
