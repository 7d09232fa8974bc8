"""Annotation tasks: what each reconstruction's annotators are shown, and the answer that counts.

``data/tasks/<dataset>/tasks.csv`` (stage ``tasks@<dataset>``) has one row per reconstruction
of every attack of the dataset (diverged ones included: people judge them too), with columns
``TASK_COLUMNS``:

- ``truth``: the class name of the original's label;
- ``candidates``: ``|``-joined. Protocol A (the paper's CIFAR-100, Caltech-101, Imagenette):
  the truth plus the classes a classifier finds most likely for the *original* image, up to
  ``annotate.max_candidates`` (the paper: 20), in a seeded shuffled order, so the truth's
  position tells nothing. Protocol B (faces, fine-grained): ``same|different``;
- ``original``, ``reconstruction``: PNG paths relative to the repository root.

Why a classifier's top classes: the supplementary offers "up to 20 candidate categories" and
the paper's code stores each image's top-20 softmax labels; plausible distractors make the
question harder than 20 random classes would. Datasets with at most ``max_candidates`` classes
offer every class.

This module imports torch only inside the functions that build, so the web app and the
annotate stage read tasks without it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import astuple, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from .. import atomic, seeding, threat
from .. import params as P
from ..errors import ConfigError, DataError

TASK_COLUMNS = ("item_id", "dataset", "model", "attack", "image_id", "protocol", "truth", "candidates",
                "original", "reconstruction", "attack_status")
PROTOCOLS = ("A", "B")
SAME, DIFFERENT = "same", "different"
PROTOCOL_B_CANDIDATES = (SAME, DIFFERENT)
ATTACK_STATUSES = ("ok", "diverged")
INDEX_COLUMNS = ("item_id", "dataset", "model", "attack", "image_id", "label", "status", "original", "reconstruction")
SEPARATOR = "|"


def question(protocol: str, subject: str = "class") -> str:
    """What annotators are asked, in the app and in Label Studio; ``subject`` is what one class of
    the dataset is (digit, person, letter, dog breed...), recorded by prepare in meta.json."""
    if protocol == "A":
        return f"Which {subject} does this image show?"
    return f"Do the two images show the same {subject}?"


def dataset_question(tasks_dir: str | Path, protocol: str) -> str:
    """The question of one dataset's tasks (its tasks meta.json), or the generic one."""
    try:
        meta = json.loads((Path(tasks_dir) / "meta.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        meta = {}
    return question(protocol, meta.get("subject") or "class")


@dataclass(frozen=True)
class Task:
    item_id: str
    dataset: str
    model: str
    attack: str
    image_id: str
    protocol: str
    truth: str
    candidates: tuple[str, ...]
    original: str
    reconstruction: str
    attack_status: str

    def row(self) -> list[str]:
        values = list(astuple(self))
        values[TASK_COLUMNS.index("candidates")] = SEPARATOR.join(self.candidates)
        return values


assert tuple(f.name for f in fields(Task)) == TASK_COLUMNS


def expected_answer(task: Task) -> str:
    """The answer that means "recognised": the true class (A), or ``same`` (B)."""
    return task.truth if task.protocol == "A" else SAME


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TaskConfig:
    dataset: str
    protocol: str
    protocol_source: str
    attacks: tuple[str, ...]
    max_candidates: int
    candidate_model: str | None
    seed: int


ANNOTATE_KEYS = ("max_candidates", "candidate_model", "protocols", "app", "source", "paths", "options", "simulated",
                 "quality")
APP_KEYS = ("annotators_per_item", "host", "port", "allowed_hosts", "max_views_per_original", "gold_rate")
QUALITY_KEYS = ("min_gold_accuracy",)


def check_section(params: Mapping) -> None:
    """Refuse unknown names in ``annotate``, ``annotate.app`` and ``annotate.quality`` (every reader
    of the section calls it)."""
    P.known(params, "annotate", ANNOTATE_KEYS)
    P.known(params, "annotate.app", APP_KEYS)
    P.known(params, "annotate.quality", QUALITY_KEYS)


def from_params(params: Mapping, dataset: str, meta: Mapping) -> TaskConfig:
    """Read ``annotate.*`` for one dataset; ``meta`` is its prepared meta.json.

    ``annotate.protocols.<dataset>`` overrides the protocol ``prepare`` recorded;
    ``annotate.candidate_model`` is a model id for every dataset or a mapping dataset -> id,
    by default the first model that ``train.datasets.<dataset>.models`` lists. A dataset with
    no more classes than ``annotate.max_candidates`` offers them all and needs no classifier
    (``candidate_model`` None), which keeps torch out of the stage.
    """
    if dataset not in P.get(params, "datasets", list):
        raise ConfigError(f"params: dataset {dataset!r} is not listed in 'datasets'")
    check_section(params)
    attacks = P.get(params, "attacks", list)
    protocols = P.get(params, "annotate.protocols", None, None) or {}
    if not isinstance(protocols, Mapping):
        raise ConfigError("params: 'annotate.protocols' must be a mapping dataset -> A|B")
    override = protocols.get(dataset)
    protocol = override if override is not None else meta.get("protocol")
    if protocol not in PROTOCOLS:
        where = f"params 'annotate.protocols.{dataset}'" if override is not None else f"data/prepared/{dataset}/meta.json 'protocol'"
        raise ConfigError(f"{where} is {protocol!r}; valid protocols: {', '.join(PROTOCOLS)}")
    max_candidates = P.positive_int(params, "annotate.max_candidates", 20)
    if max_candidates < 2:
        raise ConfigError(f"params: 'annotate.max_candidates' must be at least 2, got {max_candidates}")
    model = None
    if protocol == "A" and len(meta.get("class_names", ())) > max_candidates:
        raw = P.get(params, "annotate.candidate_model", None, None)
        if isinstance(raw, Mapping):
            raw = P.get(params, f"annotate.candidate_model.{dataset}", str, None)
        elif raw is not None and not isinstance(raw, str):
            raise ConfigError("params: 'annotate.candidate_model' must be a model id or a mapping dataset -> model id")
        if raw is None:
            from ..classifiers import grid

            raw = grid.default_classifier(params, dataset)
        model = raw
    return TaskConfig(dataset, protocol, "annotate.protocols" if override is not None else "prepare",
                        tuple(str(a) for a in attacks), max_candidates, model, P.get(params, "seed", int))


# ----------------------------------------------------------------------------- building


def _relative_path(value: str) -> PurePosixPath | None:
    """``value`` as a relative POSIX path with no ``..``, or None when it is anything else."""
    if not value or "\\" in value or "\x00" in value:
        return None
    path = PurePosixPath(value)
    if path.is_absolute() or any(part in ("..", "") for part in path.parts) or value.startswith("~"):
        return None
    return path


def read_attack_index(path: str | Path) -> list[dict]:
    """The rows of one attack's index.csv, checked for what tasks need."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
            header = tuple(rows[0].keys()) if rows else ()
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the attack stage first (dvc repro)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc})") from None
    if not rows:
        raise DataError(f"{path}: no reconstructions listed")
    missing = [c for c in INDEX_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path}: missing columns {', '.join(missing)}")
    for line, row in enumerate(rows, start=2):
        for col in ("original", "reconstruction"):
            if _relative_path(row[col] or "") is None:
                raise DataError(f"{path}, line {line}: {col} {row[col]!r} is not a relative path inside the attack folder")
        try:
            row["label"] = int(row["label"])
        except (TypeError, ValueError):
            raise DataError(f"{path}, line {line}: label {row['label']!r} is not an integer") from None
        if row["status"] not in ATTACK_STATUSES:
            raise DataError(f"{path}, line {line}: status {row['status']!r} is not one of {', '.join(ATTACK_STATUSES)}")
        row["_line"] = line
    return rows


def item_rng(seed: int, dataset: str, item_id: str) -> np.random.Generator:
    return seeding.rng(seed, dataset, item_id)


def top_candidates(probs: np.ndarray, truth: int, class_names: Sequence[str], limit: int) -> list[str]:
    """The truth plus the most likely other classes (ties by class index), ``limit`` in all."""
    order = [int(c) for c in np.argsort(-np.asarray(probs, dtype=np.float64), kind="stable") if int(c) != truth]
    return [class_names[truth]] + [class_names[c] for c in order[: limit - 1]]


Classifier = Callable[[np.ndarray], np.ndarray]


def load_classifier(checkpoint: str | Path, device: str = "cpu") -> tuple[Classifier, dict]:
    """A function uint8 NHWC images -> softmax probabilities, from a trained model and its card."""
    import torch

    from ..classifiers import checkpoints

    model, card = checkpoints.load(checkpoint)
    checkpoints.normalization(card, str(Path(checkpoint).with_suffix(".json")))
    model = model.to(device).eval()

    def predict(images: np.ndarray) -> np.ndarray:
        logits = checkpoints.logits(model, card, images, device, batch_size=256)
        return torch.softmax(logits.double(), dim=1).cpu().numpy()

    return predict, card


def build_tasks(settings: TaskConfig, class_names: Sequence[str], root: str | Path = ".",
                classifier: Classifier | None = None) -> list[Task]:
    """Tasks for every reconstruction of ``settings.attacks`` under ``root/data/attacks/<dataset>``.

    ``classifier`` (protocol A) maps originals to softmax probabilities; by default the model
    ``settings.candidate_model`` from ``root/models/<dataset>``.
    """
    root = Path(root)
    ds = settings.dataset
    bad = [c for c in class_names if SEPARATOR in c or not c.strip()]
    if bad:
        raise DataError(f"data/prepared/{ds}/meta.json: class name {bad[0]!r} is empty or contains {SEPARATOR!r}")
    rows = []
    for attack in settings.attacks:
        folder = PurePosixPath("data", "attacks", ds, attack)
        index = root / folder / "index.csv"
        for row in read_attack_index(index):
            where = f"{index}, line {row['_line']}"
            if row["dataset"] != ds or threat.method(row["attack"]) != attack:
                raise DataError(f"{where}: row is for {row['dataset']}/{row['attack']}, expected {ds}/{attack}")
            if row["item_id"] != f"{ds}/{row['model']}/{row['attack']}/{row['image_id']}":
                raise DataError(f"{where}: item_id {row['item_id']!r} is not <dataset>/<model>/<attack>/<image_id>")
            if not 0 <= row["label"] < len(class_names):
                raise DataError(f"{where}: label {row['label']} outside the {len(class_names)} classes")
            for col in ("original", "reconstruction"):
                row[col] = str(folder / row[col])
                if not (root / row[col]).is_file():
                    raise DataError(f"{where}: {col} image {row[col]} is missing")
            rows.append(row)
    seen: set[str] = set()
    for row in rows:
        if row["item_id"] in seen:
            raise DataError(f"data/attacks/{ds}/{row['attack']}/index.csv, line {row['_line']}: "
                            f"item {row['item_id']} listed twice")
        seen.add(row["item_id"])

    candidates: dict[str, list[str]] = {}
    if settings.protocol == "A" and len(class_names) <= settings.max_candidates:
        everything = list(class_names)
        candidates = {row["image_id"]: everything for row in rows}
    elif settings.protocol == "A":
        from ..datasets.imaging import decode, to_rgb_array

        if settings.candidate_model is None and classifier is None:
            raise ConfigError(f"{ds}: {len(class_names)} classes, more than annotate.max_candidates; "
                              "a candidate model is needed")
        first: dict[str, dict] = {}
        for row in rows:
            first.setdefault(row["image_id"], row)
        image_ids = sorted(first)
        if classifier is None:
            classifier, card = load_classifier(root / "models" / ds / f"{settings.candidate_model}.pt")
            if int(card["num_classes"]) != len(class_names):
                raise DataError(f"models/{ds}/{settings.candidate_model}.json: {card['num_classes']} classes, "
                                f"the dataset has {len(class_names)}")
        images = np.stack([to_rgb_array(decode(root / first[i]["original"])) for i in image_ids]) if image_ids else None
        probs = classifier(images) if image_ids else np.zeros((0, len(class_names)))
        for image_id, p in zip(image_ids, probs):
            candidates[image_id] = top_candidates(p, first[image_id]["label"], class_names, settings.max_candidates)

    tasks = []
    for row in rows:
        truth = class_names[row["label"]]
        if settings.protocol == "A":
            cands = candidates[row["image_id"]]
            order = item_rng(settings.seed, ds, row["item_id"]).permutation(len(cands))
            cands = tuple(cands[i] for i in order)
        else:
            cands = PROTOCOL_B_CANDIDATES
        tasks.append(Task(row["item_id"], ds, row["model"], row["attack"], row["image_id"], settings.protocol,
                          truth, cands, row["original"], row["reconstruction"], row["status"]))
    return tasks


def tasks_meta(settings: TaskConfig, class_names: Sequence[str], tasks: Sequence[Task], prepared_meta: Mapping) -> dict:
    """meta.json beside tasks.csv: how the tasks were made, so readers need not guess."""
    per_attack = {a: sum(t.attack == a for t in tasks) for a in settings.attacks}
    sizes = sorted({len(t.candidates) for t in tasks})
    return {
        "dataset": settings.dataset,
        "protocol": settings.protocol,
        "protocol_source": settings.protocol_source,
        "expected_answer": "truth" if settings.protocol == "A" else SAME,
        "classes": list(class_names),
        "candidate_model": settings.candidate_model,
        "candidates_rule": ("truth + the candidate model's most likely classes for the original"
                            if settings.candidate_model else "every class" if settings.protocol == "A"
                            else "same|different"),
        "max_candidates": settings.max_candidates if settings.protocol == "A" else None,
        "candidates_per_item": sizes,
        "items": len(tasks),
        "items_per_attack": per_attack,
        "diverged": sum(t.attack_status == "diverged" for t in tasks),
        "seed": settings.seed,
        "offline_stand_in": bool((prepared_meta.get("source") or {}).get("offline_stand_in", False)),
        "subject": (prepared_meta.get("source") or {}).get("subject") or "class",
        "question": question(settings.protocol, (prepared_meta.get("source") or {}).get("subject") or "class"),
        "columns": list(TASK_COLUMNS),
    }


# ----------------------------------------------------------------------------- file I/O


def tasks_csv(tasks: Iterable[Task]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TASK_COLUMNS)
    for task in tasks:
        writer.writerow(task.row())
    return buf.getvalue()


def write_tasks(path: str | Path, tasks: Iterable[Task]) -> None:
    """Write tasks.csv atomically (UTF-8, header, rows in the given order)."""
    atomic.write_text(path, tasks_csv(tasks))


def _check_task(task: Task) -> str | None:
    """What is wrong with one task, or None."""
    for name in TASK_COLUMNS:
        value = getattr(task, name)
        if value == "" or value == ():
            return f"{name} is empty"
    if task.protocol not in PROTOCOLS:
        return f"protocol {task.protocol!r} is not one of {', '.join(PROTOCOLS)}"
    if task.item_id != f"{task.dataset}/{task.model}/{task.attack}/{task.image_id}":
        return f"item_id {task.item_id!r} is not <dataset>/<model>/<attack>/<image_id>"
    if any(not c for c in task.candidates):
        return "candidates contain an empty name"
    if len(set(task.candidates)) != len(task.candidates):
        return "candidates contain a name twice"
    if task.protocol == "A" and task.truth not in task.candidates:
        return f"truth {task.truth!r} is not among the candidates"
    if task.protocol == "B" and task.candidates != PROTOCOL_B_CANDIDATES:
        return f"protocol B candidates must be {SEPARATOR.join(PROTOCOL_B_CANDIDATES)}"
    if task.attack_status not in ATTACK_STATUSES:
        return f"attack_status {task.attack_status!r} is not one of {', '.join(ATTACK_STATUSES)}"
    for col in ("original", "reconstruction"):
        if _relative_path(getattr(task, col)) is None:
            return f"{col} {getattr(task, col)!r} is not a relative path inside the repository"
    return None


def read_tasks(path: str | Path) -> dict[str, Task]:
    """Read and check tasks.csv; ``{item_id: Task}`` in file order. Errors name file and line."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the tasks stage first (dvc repro tasks@<dataset>)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: empty file (expected a header {','.join(TASK_COLUMNS)})") from None
    except csv.Error as exc:
        raise DataError(f"{path}, line 1: malformed CSV ({exc})") from None
    if tuple(header[: len(TASK_COLUMNS)]) != TASK_COLUMNS:
        raise DataError(f"{path}, line 1: header must start with {','.join(TASK_COLUMNS)}")
    tasks: dict[str, Task] = {}
    lines: dict[str, int] = {}
    try:
        for values in reader:
            line = reader.line_num
            if not values:
                continue
            if len(values) != len(header):
                raise DataError(f"{path}, line {line}: {len(values)} fields, the header has {len(header)}")
            data = dict(zip(TASK_COLUMNS, values))
            data["candidates"] = tuple(data["candidates"].split(SEPARATOR)) if data["candidates"] else ()
            task = Task(**data)
            problem = _check_task(task)
            if problem:
                raise DataError(f"{path}, line {line}: {problem}")
            if task.item_id in tasks:
                raise DataError(f"{path}, line {line}: item {task.item_id} already listed on line {lines[task.item_id]}")
            tasks[task.item_id] = task
            lines[task.item_id] = line
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None
    if not tasks:
        raise DataError(f"{path}: no tasks after the header")
    return tasks
