"""Importers: answers from every source annotators use, as one validated long-format table.

Each ``read_*`` function reads one kind of source (one or several paths), checks it, and
returns the long-format DataFrame of ``longformat.OUTPUT_COLUMNS``:
item_id, annotator_id, protocol, answer, submitted_at, verdict. They write nothing, and any
problem raises one ``DataError`` that lists every bad row with its file and line (CSV line,
database row key, folder/file, JSON task index). All paths of one call are validated
together, so a duplicate across two files is caught like one within a file.

Sources (``import_answers`` dispatches on these names, which are the values of the
``annotate.source`` parameter besides the lead's ``simulated``):

- ``csv``: long-format CSV files (contract 2), e.g. the web app's export.
- ``app``: the web app's SQLite database (contract 3), opened read-only.
- ``paper_folders``: the paper's released layout: ``<root>/<id>/`` holds ``*_ori.png`` and
  the reconstructions annotated recognisable, ``<root>/-<id>/`` the unrecognisable ones,
  ``others/`` a pool of negatives (ignored). Reconstruction files are mapped to item ids by
  their name, ``<item_id with '/' replaced by '__'>.png`` (``<id>`` must then be the item's
  image_id), or by a mapping CSV with columns ``path,item_id`` where path is
  ``<id>/<file name>`` (the folder without its '-', so one mapping serves both verdicts).
  The annotator is unknown (``paper-release``), the time too (empty ``submitted_at``); the
  verdict goes in ``verdict`` (see longformat's docstring).
- ``label_studio``: a Label Studio JSON export (the full "JSON" format: a list of tasks with
  ``data`` and ``annotations[].result[]``) of a choices task.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Collection, Iterable, Mapping, Sequence

import pandas as pd

from ..errors import ConfigError, DataError
from .label_studio import BLIND_KEY, MAP_NAME, read_map
from .longformat import (COLUMNS, Expected, Record, TaskLike, dataset_of, default_expected, format_problems,
                         validate)

log = logging.getLogger(__name__)

SOURCES = ("csv", "app", "paper_folders", "label_studio")
PAPER_ANNOTATOR = "paper-release"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ORIGINAL_MARK = "_ori"
OTHERS = "others"
PathLike = str | os.PathLike


def _as_paths(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise ConfigError("no answer files given (annotate.paths is empty)")
    return out


def _read_text(path: Path) -> str:
    """The file's text; an error for a missing, empty or non-UTF-8 file (a BOM is accepted)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a file") from None
    if not data.strip():
        raise DataError(f"{path}: empty file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path} line {line}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                        "save the file as UTF-8") from None


# ---------------------------------------------------------------------------- long CSV

def _csv_records(path: Path) -> tuple[list[Record], list[str]]:
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as exc:
        raise DataError(f"{path} line 1: not a readable CSV header ({exc})") from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path} line 1: missing column(s) {', '.join(missing)} "
                        f"(the header must start with {','.join(COLUMNS)})")
    if tuple(header[: len(COLUMNS)]) != COLUMNS:
        raise DataError(f"{path} line 1: columns must come first and in this order: {','.join(COLUMNS)} "
                        f"(found {','.join(header)})")
    records: list[Record] = []
    problems: list[str] = []
    start = reader.line_num + 1
    try:
        for row in reader:
            where = f"{path} line {start}"
            start = reader.line_num + 1
            if not row:
                continue  # a blank line
            if len(row) != len(header):
                problems.append(f"{where}: {len(row)} fields, the header has {len(header)}")
                continue
            records.append(Record(where, *row[: len(COLUMNS)]))
    except csv.Error as exc:
        problems.append(f"{path} line {reader.line_num}: bad CSV ({exc})")
    return records, problems


def read_csv_answers(paths: PathLike | Iterable[PathLike], tasks: Mapping[str, TaskLike], *,
                     expected: Expected = default_expected, skip_datasets: Collection[str] = ()) -> pd.DataFrame:
    """Long-format CSV files (contract 2: UTF-8, header starting with the five columns in order;
    extra columns are allowed and ignored). A header with no rows reads as no answers; the
    annotate stage and ``validate`` (through ``import_answers``) refuse that."""
    records: list[Record] = []
    problems: list[str] = []
    paths = _as_paths(paths)
    for path in paths:
        r, p = _csv_records(path)
        records += r
        problems += p
    return validate(records, tasks, source=", ".join(map(str, paths)), expected=expected,
                    skip_datasets=skip_datasets, problems=problems)


# ---------------------------------------------------------------------------- app SQLite

def connect_readonly(path: Path) -> sqlite3.Connection:
    """The app's database opened through a ``file:...?mode=ro`` URI, so that reading it never
    changes it, even while the app runs; a missing or unopenable file is a DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path}: database not found")
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DataError(f"{path}: cannot open the database read-only ({exc})") from None


def _db_records(path: Path) -> list[Record]:
    con = connect_readonly(path)
    try:
        try:
            cols = [row[1] for row in con.execute("PRAGMA table_info(answers)")]
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{path}: not an SQLite database ({exc})") from None
        if not cols:
            raise DataError(f"{path}: no table 'answers' (is this the annotation app's database?)")
        missing = [c for c in COLUMNS if c not in cols]
        if missing:
            raise DataError(f"{path}: table answers lacks column(s) {', '.join(missing)}")
        query = f"SELECT {', '.join(COLUMNS)} FROM answers ORDER BY item_id, annotator_id"
        try:
            rows = con.execute(query).fetchall()
        except sqlite3.Error as exc:
            raise DataError(f"{path}: cannot read table answers ({exc})") from None
    finally:
        con.close()
    return [Record(f"{path} table answers row (item_id={row[0]!r}, annotator_id={row[1]!r})", *row) for row in rows]


def read_app_db(paths: PathLike | Iterable[PathLike], tasks: Mapping[str, TaskLike], *,
                expected: Expected = default_expected, skip_datasets: Collection[str] = ()) -> pd.DataFrame:
    """The web app's SQLite database(s) (contract 3), opened read-only through a
    ``file:...?mode=ro`` URI so that importing never changes it, even while the app runs."""
    paths = _as_paths(paths)
    records = [rec for path in paths for rec in _db_records(path)]
    return validate(records, tasks, source=", ".join(map(str, paths)), expected=expected,
                    skip_datasets=skip_datasets)


# ---------------------------------------------------------------------------- paper folders

def _read_mapping(path: Path) -> dict[str, tuple[str, str]]:
    """``<id>/<file name>`` -> (item_id, where) from a mapping CSV with columns path,item_id."""
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = reader.fieldnames or []
    missing = [c for c in ("path", "item_id") if c not in fields]
    if missing:
        raise DataError(f"{path} line 1: missing column(s) {', '.join(missing)} (a mapping needs path,item_id)")
    out: dict[str, tuple[str, str]] = {}
    problems = []
    start = reader.line_num + 1
    for row in reader:
        where = f"{path} line {start}"
        start = reader.line_num + 1
        key = (row.get("path") or "").strip().lstrip("-")
        item = row.get("item_id") or ""
        if not key or not item:
            problems.append(f"{where}: empty path or item_id")
        elif key in out:
            problems.append(f"{where}: path {key!r} mapped twice (first at {out[key][1]})")
        else:
            out[key] = (item, where)
    if problems:
        raise DataError(format_problems(str(path), problems))
    return out


def _folder_records(root: Path, tasks: Mapping[str, TaskLike], expected: Expected,
                    mapping: Mapping[str, tuple[str, str]] | None,
                    skip_datasets: Collection[str]) -> tuple[list[Record], list[str]]:
    if not root.is_dir():
        raise DataError(f"{root}: annotation folder not found")
    records: list[Record] = []
    problems: list[str] = []
    skip = tuple(f"{d}/" for d in skip_datasets)
    folders = 0
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.name == OTHERS:
            continue
        if not entry.is_dir():
            problems.append(f"{entry}: unexpected file at the top level (expected <id>/, -<id>/ and others/)")
            continue
        folders += 1
        unrecognised = entry.name.startswith("-")
        folder_id = entry.name[1:] if unrecognised else entry.name
        if not folder_id:
            problems.append(f"{entry}: folder name has no id")
            continue
        for f in sorted(entry.iterdir()):
            if f.name.startswith("."):
                continue
            if f.is_dir():
                problems.append(f"{f}: unexpected folder (an <id> folder holds images only)")
                continue
            stem, suffix = os.path.splitext(f.name)
            if suffix.lower() not in IMAGE_SUFFIXES:
                problems.append(f"{f}: not an image ({', '.join(IMAGE_SUFFIXES)})")
                continue
            if stem.endswith(ORIGINAL_MARK):
                continue  # the original this folder belongs to
            if mapping is not None:
                hit = mapping.get(f"{folder_id}/{f.name}")
                if hit is None:
                    problems.append(f"{f}: not in the mapping (no row with path {folder_id}/{f.name})")
                    continue
                item_id = hit[0]
            else:
                item_id = stem.replace("__", "/")
            if skip and item_id.startswith(skip):
                continue
            task = tasks.get(item_id)
            if task is None:
                problems.append(f"{f}: unknown item id {item_id!r} (not in the tasks)")
                continue
            if mapping is None and task.image_id != folder_id:
                problems.append(f"{f}: item {item_id} has image id {task.image_id!r} but lies in the folder "
                                f"of image {folder_id!r}")
                continue
            verdict = "unrecognised" if unrecognised else "recognised"
            if task.protocol == "B":
                answer = "different" if unrecognised else "same"
            else:
                answer = "" if unrecognised else expected(task)
            records.append(Record(str(f), item_id, PAPER_ANNOTATOR, task.protocol, answer, "",
                                  verdict=verdict, timestamp_required=False))
    if not folders and not problems:
        raise DataError(f"{root}: empty: no <id>/ or -<id>/ annotation folders")
    return records, problems


def read_paper_folders(roots: PathLike | Iterable[PathLike], tasks: Mapping[str, TaskLike], *,
                       mapping: PathLike | None = None, expected: Expected = default_expected,
                       skip_datasets: Collection[str] = ()) -> pd.DataFrame:
    """The paper's released annotation tree(s); see the module docstring for the layout and
    how files map to item ids. One row per reconstruction, annotator ``paper-release``."""
    roots = _as_paths(roots)
    table = _read_mapping(Path(mapping)) if mapping is not None else None
    records: list[Record] = []
    problems: list[str] = []
    for root in roots:
        r, p = _folder_records(root, tasks, expected, table, skip_datasets)
        records += r
        problems += p
    return validate(records, tasks, source=", ".join(map(str, roots)), expected=expected,
                    skip_datasets=skip_datasets, problems=problems)


# ---------------------------------------------------------------------------- Label Studio

def _annotator(value: object) -> object:
    """``completed_by`` is the user's id, or ``{id, email, ...}`` when exported expanded."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        if isinstance(value.get("email"), str) and value["email"]:
            return value["email"]
        if isinstance(value.get("id"), int) and not isinstance(value.get("id"), bool):
            return str(value["id"])
    return value


def _label_studio_records(path: Path, item_key: str, from_name: str | None,
                          choice_map: Mapping[str, str] | None,
                          keys: Mapping[str, str] | None) -> tuple[list[Record], list[str]]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of tasks (Label Studio's JSON export), got {type(data).__name__}")
    if not data:
        raise DataError(f"{path}: empty export (no tasks)")
    records: list[Record] = []
    problems: list[str] = []
    for i, task in enumerate(data):
        at = f"{path} task #{i}"
        if not isinstance(task, dict):
            problems.append(f"{at}: not a JSON object")
            continue
        if "id" in task:
            at += f" (id {task['id']})"
        if "annotations" not in task:
            hint = " (this looks like the JSON-MIN or CSV export; export as JSON)" if "data" not in task else ""
            problems.append(f"{at}: no 'annotations'{hint}")
            continue
        payload = task.get("data")
        if isinstance(payload, dict) and BLIND_KEY in payload and item_key not in payload:
            if keys is None:  # a blinded export (label_studio.export) names its tasks by opaque keys
                problems.append(f"{at}: data.{BLIND_KEY} is a blinded task's key, and no task map was given "
                                f"(put the export's {MAP_NAME} beside {path.name}, or set task_map)")
                continue
            if payload[BLIND_KEY] not in keys:
                problems.append(f"{at}: data.{BLIND_KEY} {payload[BLIND_KEY]!r} is not in the task map")
                continue
            item_id = keys[payload[BLIND_KEY]]
        elif not isinstance(payload, dict) or item_key not in payload:
            problems.append(f"{at}: no data.{item_key} (the item id; set the key with item_key)")
            continue
        else:
            item_id = payload[item_key]
        annotations = task["annotations"]
        if not isinstance(annotations, list):
            problems.append(f"{at}: 'annotations' is not a list")
            continue
        for j, ann in enumerate(annotations):
            where = f"{at} annotation #{j}"
            if not isinstance(ann, dict):
                problems.append(f"{where}: not a JSON object")
                continue
            if "id" in ann:
                where += f" (id {ann['id']})"
            if ann.get("was_cancelled"):
                continue  # the annotator skipped the task: no answer
            result = ann.get("result")
            if not isinstance(result, list):
                problems.append(f"{where}: 'result' is not a list")
                continue
            choices = [r for r in result if isinstance(r, dict) and r.get("type") == "choices"
                       and (from_name is None or r.get("from_name") == from_name)]
            if len(choices) != 1:
                which = f" from '{from_name}'" if from_name else ""
                problems.append(f"{where}: {len(choices)} choices results{which}, expected exactly one"
                                + ("" if from_name or len(choices) < 2 else " (set from_name)"))
                continue
            value = choices[0].get("value")
            picked = value.get("choices") if isinstance(value, dict) else None
            if not isinstance(picked, list) or len(picked) != 1:
                problems.append(f"{where}: value.choices is {picked!r}, expected one choice")
                continue
            answer = picked[0]
            if choice_map is not None and isinstance(answer, str):
                answer = choice_map.get(answer, answer)
            when = ann.get("updated_at") or ann.get("created_at")
            if "completed_by" not in ann:
                problems.append(f"{where}: no completed_by (the annotator)")
                continue
            protocol = payload.get("protocol")
            records.append(Record(where, item_id, _annotator(ann["completed_by"]), protocol, answer, when))
    return records, problems


def read_label_studio(paths: PathLike | Iterable[PathLike], tasks: Mapping[str, TaskLike], *,
                      item_key: str = "item_id", from_name: str | None = None,
                      choice_map: Mapping[str, str] | None = None, task_map: PathLike | None = None,
                      expected: Expected = default_expected, skip_datasets: Collection[str] = ()) -> pd.DataFrame:
    """A Label Studio JSON export of a choices task.

    Each task's ``data[item_key]`` is the item id; each annotation (cancelled ones, i.e.
    skipped tasks, are left out) must hold exactly one ``choices`` result (of control
    ``from_name`` if given) with one choice, the answer. ``choice_map`` renames choice values
    to answers (e.g. ``{"yes": "same", "no": "different"}``). The annotator is
    ``completed_by`` (the user id, or its email when exported expanded); ``submitted_at`` is
    the annotation's ``updated_at`` (its last edit), else ``created_at``. The protocol is the
    task's (``data.protocol``, if the export has it, must agree).

    Tasks of a blinded export (``label_studio.export``) carry ``data.task_key`` instead: their
    item ids come from the export's task map, ``task_map`` if given, else the ``task_map.csv``
    beside each export file.
    """
    paths = _as_paths(paths)
    records: list[Record] = []
    problems: list[str] = []
    given = read_map(task_map) if task_map is not None else None
    for path in paths:
        beside = Path(path).parent / MAP_NAME
        keys = given if given is not None else (read_map(beside) if beside.is_file() else None)
        r, p = _label_studio_records(path, item_key, from_name, choice_map, keys)
        records += r
        problems += p
    fixed = []
    for rec in records:  # the protocol comes from the task unless the export states one
        if rec.protocol is None and isinstance(rec.item_id, str) and rec.item_id in tasks:
            rec = Record(rec.where, rec.item_id, rec.annotator_id, tasks[rec.item_id].protocol, rec.answer,
                         rec.submitted_at)
        elif rec.protocol is None:
            rec = Record(rec.where, rec.item_id, rec.annotator_id, "?", rec.answer, rec.submitted_at)
        fixed.append(rec)
    return validate(fixed, tasks, source=", ".join(map(str, paths)), expected=expected,
                    skip_datasets=skip_datasets, problems=problems)


# ---------------------------------------------------------------------------- dispatch

def import_answers(source: str, paths: Sequence[PathLike], tasks: Mapping[str, TaskLike], *,
                   expected: Expected = default_expected, skip_datasets: Collection[str] = (),
                   **options) -> pd.DataFrame:
    """Read ``paths`` as ``source`` (one of SOURCES); ``options`` go to that reader
    (paper_folders: ``mapping``; label_studio: ``item_key``, ``from_name``, ``choice_map``, ``task_map``)."""
    readers = {"csv": read_csv_answers, "app": read_app_db, "paper_folders": read_paper_folders,
               "label_studio": read_label_studio}
    if source not in readers:
        raise ConfigError(f"params: 'annotate.source' is {source!r}; importable sources: {', '.join(SOURCES)}")
    own = [name for name, p in inspect.signature(readers[source]).parameters.items()
           if p.kind is p.KEYWORD_ONLY and name not in ("expected", "skip_datasets")]
    if set(options) - set(own):  # a misspelt reader option would otherwise be a TypeError traceback
        bad = sorted(set(options) - set(own))[0]
        raise ConfigError(f"params: 'annotate.options.{source}.{bad}' is not a known option of the {source} "
                          f"reader; known: {', '.join(own) or 'none'}")
    table = readers[source](paths, tasks, expected=expected, skip_datasets=skip_datasets, **options)
    if table.empty:  # a header with no rows, or only other datasets' answers: nothing to aggregate
        datasets = sorted({dataset_of(str(i)) for i in tasks})
        raise DataError(f"{', '.join(map(str, _as_paths(paths)))}: no answers for {', '.join(datasets) or 'these tasks'} "
                        f"({source} source); a file with a header and no rows is not a set of answers")
    log.info("imported %d answers from %s (%s) for %d items", len(table), source,
             ", ".join(map(str, _as_paths(paths))), table["item_id"].nunique())
    return table
