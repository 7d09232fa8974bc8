"""The raw-answer long format (contract 2) and the one validator every importer goes through.

Every source of answers (CSV files, the web app's database, the paper's released folders, a
Label Studio export) is first turned into ``Record`` objects that remember where they came
from (file and line, database row, folder, JSON task index). ``validate`` then applies the
same checks to all of them and returns the long-format DataFrame, or raises one DataError
that lists each problem with its location. Importers are pure: they read, never write.

Tasks are taken as a mapping ``item_id -> task`` where a task is any object with the
attributes of contract 1 (``TaskLike``), so this module does not depend on how tasks.csv is
read. Whether an answer counts as recognised is derived from the task (``expected``), never
read from the answer file.

Binary-verdict sources. The paper's released annotations say only "recognisable" or not for
each reconstruction. For protocol B that is exactly the answer (``same`` / ``different``);
for protocol A a recognisable image means the annotator picked the true class, but for an
unrecognisable one the class picked is not in the release. Such rows carry the extra column
``verdict`` (``recognised`` / ``unrecognised``) and, for protocol A unrecognised, an empty
``answer``: no class name is invented. Rows from answer-giving sources have an empty
``verdict`` and a non-empty answer. ``recognised_flags`` reads both.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Mapping, Protocol

import pandas as pd

from ..errors import DataError

#: Contract 2 columns, in this order.
COLUMNS = ("item_id", "annotator_id", "protocol", "answer", "submitted_at")
#: Extra column added after the contract columns (see the module docstring).
VERDICT = "verdict"
OUTPUT_COLUMNS = COLUMNS + (VERDICT,)
VERDICTS = ("recognised", "unrecognised")
PROTOCOLS = ("A", "B")
#: How many problems one error message lists before it says "and N more".
MAX_LISTED = 20


class TaskLike(Protocol):
    """What importers and aggregation need from a task (contract 1, tasks.csv)."""

    item_id: str
    dataset: str
    model: str
    attack: str
    image_id: str
    protocol: str
    truth: str
    candidates: tuple[str, ...]


Expected = Callable[[TaskLike], str]


def default_expected(task: TaskLike) -> str:
    """The answer that counts as recognised: the true class (A) or ``same`` (B)."""
    if task.protocol == "A":
        return task.truth
    if task.protocol == "B":
        return "same"
    raise DataError(f"task {task.item_id}: unknown protocol {task.protocol!r} (expected A or B)")


@dataclass(frozen=True, slots=True)
class Record:
    """One answer as read from a source, before validation; ``where`` locates it for errors."""

    where: str
    item_id: object
    annotator_id: object
    protocol: object
    answer: object
    submitted_at: object
    verdict: str = ""
    timestamp_required: bool = True


#: Who may be named as an annotator, in every source and in the app: 1-128 letters, digits,
#: '_', '.', '-', '@', '+' (so e-mail addresses from Label Studio fit), starting with a letter
#: or digit. No spaces, so " ann1" and "ann1" cannot be two people; no control characters.
ANNOTATOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")
ANNOTATOR_RULE = "1-128 letters, digits, '_', '.', '-', '@', '+', starting with a letter or digit"


def check_annotator(value: str) -> str | None:
    if ANNOTATOR_ID.fullmatch(value):
        return None
    return f"annotator id {value!r} is not valid ({ANNOTATOR_RULE})"


def _check_timestamp(value: str) -> str | None:
    """ISO 8601 date and time with a zone ('Z' or an offset): a time without one is ambiguous."""
    try:
        when = _dt.datetime.fromisoformat(value)
    except ValueError:
        return f"submitted_at {value!r} is not an ISO 8601 date-time"
    if "T" not in value and " " not in value.strip():
        return f"submitted_at {value!r} is a date without a time (write e.g. 2026-05-01T14:03:00Z)"
    if when.tzinfo is None:
        return f"submitted_at {value!r} has no time zone (end it with Z for UTC, or an offset such as +02:00)"
    return None


def dataset_of(item_id: str) -> str:
    return item_id.split("/", 1)[0]


def validate(
    records: Iterable[Record],
    tasks: Mapping[str, TaskLike],
    *,
    source: str,
    expected: Expected = default_expected,
    skip_datasets: Collection[str] = (),
    problems: list[str] | None = None,
) -> pd.DataFrame:
    """Check every record against the tasks and each other; return the long-format table.

    ``source`` names the input as a whole (for the message header); ``problems`` holds
    what the reader already found (bad structure), reported together with these. Records whose item id
    belongs to a dataset in ``skip_datasets`` are left out: a shared answer file (the web
    app's database) holds every dataset, and each ``annotate@<ds>`` stage takes its own.
    Rows come out sorted by (item_id, annotator_id), so the same answers give the same table
    whatever order the source stored them in.
    """
    problems = list(problems or [])
    seen: dict[tuple[str, str], Record] = {}
    kept: list[Record] = []
    skip = tuple(f"{d}/" for d in skip_datasets)
    candidate_sets: dict[str, frozenset[str]] = {}  # membership tests at paper scale (10^5 rows)
    for rec in records:
        values = (rec.item_id, rec.annotator_id, rec.protocol, rec.answer, rec.submitted_at)
        if not all(type(v) is str for v in values):
            problems += [f"{rec.where}: {n} is {v!r}, expected text" for n, v in zip(COLUMNS, values)
                         if not isinstance(v, str)]
            continue
        item_id, annotator_id, protocol, answer, submitted_at = values
        if skip and item_id.startswith(skip):
            continue
        empty = [n for n, v in zip(COLUMNS[:3], values[:3]) if not v]
        if not answer and not rec.verdict:
            empty.append("answer")
        if not submitted_at and rec.timestamp_required:
            empty.append("submitted_at")
        if empty:
            problems.append(f"{rec.where}: empty {', '.join(empty)}")
            continue
        bad_id = check_annotator(annotator_id)
        if bad_id:
            problems.append(f"{rec.where}: {bad_id}")
            continue
        task = tasks.get(item_id)
        if task is None:
            problems.append(f"{rec.where}: unknown item id {item_id!r} (not in the tasks)")
            continue
        if protocol not in PROTOCOLS:
            problems.append(f"{rec.where}: protocol {protocol!r} is neither A nor B")
            continue
        if protocol != task.protocol:
            problems.append(f"{rec.where}: protocol {protocol} but item {item_id} is a protocol {task.protocol} task")
            continue
        if answer:
            cands = candidate_sets.get(item_id)
            if cands is None:
                cands = candidate_sets[item_id] = frozenset(task.candidates)
            if answer not in cands:
                shown = "|".join(task.candidates)
                problems.append(f"{rec.where}: answer {answer!r} is not among the item's candidates ({shown})")
                continue
        if rec.verdict:
            if rec.verdict not in VERDICTS:
                problems.append(f"{rec.where}: verdict {rec.verdict!r} is neither recognised nor unrecognised")
                continue
            if answer and (answer == expected(task)) != (rec.verdict == "recognised"):
                problems.append(f"{rec.where}: answer {answer!r} contradicts verdict {rec.verdict!r}")
                continue
        if submitted_at:
            msg = _check_timestamp(submitted_at)
            if msg:
                problems.append(f"{rec.where}: {msg}")
                continue
        key = (item_id, annotator_id)
        first = seen.get(key)
        if first is not None:
            if (first.answer, first.verdict) == (answer, rec.verdict):
                problems.append(f"{rec.where}: duplicate row: annotator {annotator_id!r} already answered "
                                f"item {item_id} the same way at {first.where}")
            else:
                a = first.verdict or first.answer
                b = rec.verdict or answer
                problems.append(f"{rec.where}: two different answers from annotator {annotator_id!r} for item "
                                f"{item_id}: {a!r} ({first.where}) and {b!r} (here)")
            continue
        seen[key] = rec
        kept.append(rec)
    if problems:
        raise DataError(format_problems(source, problems))
    kept.sort(key=lambda r: (r.item_id, r.annotator_id))
    rows = {name: [getattr(r, name) for r in kept] for name in OUTPUT_COLUMNS}
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS), dtype=object)


def format_problems(source: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    shown = problems[:MAX_LISTED]
    more = len(problems) - len(shown)
    tail = f"\n  ... and {more} more" if more else ""
    return f"{len(problems)} problems in {source}:\n  " + "\n  ".join(shown) + tail


def recognised_flags(answers: pd.DataFrame, tasks: Mapping[str, TaskLike],
                     expected: Expected = default_expected) -> pd.Series:
    """Per row: did the annotator recognise the reconstruction? (bool Series, same index)

    Derived from the answer and the task (answer == expected answer); a row from a
    binary-verdict source (non-empty ``verdict``) uses its verdict instead.
    """
    verdicts = answers[VERDICT] if VERDICT in answers.columns else pd.Series("", index=answers.index)
    flags = []
    for item_id, answer, verdict in zip(answers["item_id"], answers["answer"], verdicts):
        task = tasks.get(item_id)
        if task is None:
            raise DataError(f"answers: unknown item id {item_id!r} (not in the tasks)")
        if isinstance(verdict, str) and verdict:
            flags.append(verdict == "recognised")
        else:
            flags.append(answer == expected(task))
    return pd.Series(flags, index=answers.index, dtype=bool)
