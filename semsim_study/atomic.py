"""Atomic writes, so that a killed stage never leaves a half-written output for DVC to cache.

Files are written to a temporary sibling and renamed into place; folders are built beside
their final path and swapped in only once complete. Rename is atomic on one filesystem,
which a sibling guarantees.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence


def _tmp_sibling(path: Path, suffix: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = _tmp_sibling(path, ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, fixed indent, trailing newline): same object, same bytes."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=True) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, dumps_json(obj))


def write_metrics(path: str | os.PathLike, record: Mapping[str, Any], keys: Sequence[str]) -> dict:
    """A DVC metrics file: only the listed keys of a stage's full record that hold a number (or a
    list of numbers: an interval). `dvc metrics show` and `dvc exp show` print every value of every
    metrics file, so the full records stay plain outputs and this keeps those tables readable."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    out = {k: record[k] for k in keys if number(record.get(k))
           or (isinstance(record.get(k), list) and record[k] and all(number(v) for v in record[k]))}
    write_json(path, out)
    return out


def read_json(path: str | os.PathLike, missing: str) -> Any:
    """Read a JSON file this project wrote; ``missing`` says what to do when it is absent."""
    from .errors import DataError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: {missing}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


@contextlib.contextmanager
def build_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside ``path``; on success it replaces ``path`` whole.

    On any exception the partial folder is removed and ``path`` keeps what it held before.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.building"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".building", dir=path.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
