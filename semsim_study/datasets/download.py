"""Fetching the paper's dataset archives: resumable, checksummed, safe to extract.

Why not torchvision's ``download_url``: it cannot resume a broken multi-gigabyte download,
and its offline failure is a bare URLError. Here a ``.part`` file grows with HTTP Range
requests until complete, the MD5 is checked before the file takes its final name, and an
offline failure says which file to fetch by hand and where to put it.

URLs may be ``http(s)://``, ``file://`` or a plain local path (a mirror folder), or
``gdrive:<id>`` for CelebA's Google Drive files (delegated to torchvision, no resume).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from tqdm import tqdm

from ..errors import DataError, DownloadError

CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    url: str
    md5: str | None


def md5sum(path: str | Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def with_overrides(files: list[RemoteFile], mirror: str | None, md5: Mapping[str, str] | None) -> list[RemoteFile]:
    """Point files at a mirror (URL prefix or folder) and replace checksums by filename."""
    out = []
    for f in files:
        if mirror:
            base = str(mirror)
            url = base.rstrip("/") + "/" + f.filename if "://" in base else str(Path(base) / f.filename)
            f = replace(f, url=url)
        if md5 and f.filename in md5:
            f = replace(f, md5=md5[f.filename])
        out.append(f)
    return out


def _offline_help(f: RemoteFile, target: Path, reason: object) -> DownloadError:
    return DownloadError(
        f"could not download {f.url} ({reason}). If this machine is offline, fetch {f.filename} by other "
        f"means and place it at {target}" + (f" (md5 {f.md5})" if f.md5 else "") +
        ", or set the dataset's 'mirror' param to a folder or URL that holds it."
    )


def _copy_stream(src, part: Path, offset: int, total: int | None, label: str) -> None:
    with open(part, "ab" if offset else "wb") as out, tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, desc=label, leave=False, disable=None
    ) as bar:
        for block in iter(lambda: src.read(CHUNK), b""):
            out.write(block)
            bar.update(len(block))


def _fetch_http(f: RemoteFile, part: Path, target: Path) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "semsim-study/0.1"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with urllib.request.urlopen(urllib.request.Request(f.url, headers=headers), timeout=60) as resp:
            if offset and resp.status != 206:  # server ignored the range: start over
                offset = 0
            length = resp.headers.get("Content-Length")
            total = offset + int(length) if length else None
            _copy_stream(resp, part, offset, total, f.filename)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part is already whole
            return
        raise _offline_help(f, target, f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise _offline_help(f, target, getattr(exc, "reason", exc)) from None


def _fetch_local(f: RemoteFile, part: Path, target: Path) -> None:
    src_path = Path(urllib.parse.urlparse(f.url).path) if f.url.startswith("file://") else Path(f.url)
    if not src_path.is_file():
        raise _offline_help(f, target, f"{src_path} does not exist")
    offset = part.stat().st_size if part.exists() else 0
    if offset > src_path.stat().st_size:
        offset = 0
    with open(src_path, "rb") as src:
        src.seek(offset)
        _copy_stream(src, part, offset, src_path.stat().st_size, f.filename)


def _fetch_gdrive(f: RemoteFile, part: Path, target: Path) -> None:
    from torchvision.datasets.utils import download_file_from_google_drive

    part.unlink(missing_ok=True)
    try:
        download_file_from_google_drive(f.url.split(":", 1)[1], str(part.parent), part.name)
    except Exception as exc:  # torchvision raises a variety of errors offline
        part.unlink(missing_ok=True)
        raise _offline_help(f, target, exc) from None


def fetch(f: RemoteFile, folder: str | Path) -> Path:
    """Return the verified local copy of ``f`` in ``folder``, downloading or resuming as needed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f.filename
    if target.exists():
        if f.md5 and (got := md5sum(target)) != f.md5:
            raise DownloadError(f"{target}: md5 is {got}, expected {f.md5}; the file is corrupt or a different "
                                f"version. Delete it to download it again.")
        return target
    part = folder / (f.filename + ".part")
    resumed = part.exists() and part.stat().st_size > 0
    for attempt in (1, 2):
        if f.url.startswith(("http://", "https://")):
            _fetch_http(f, part, target)
        elif f.url.startswith("gdrive:"):
            _fetch_gdrive(f, part, target)
        else:
            _fetch_local(f, part, target)
        got = md5sum(part)
        if not f.md5 or got == f.md5:
            os.replace(part, target)
            return target
        part.unlink(missing_ok=True)
        if not resumed or attempt == 2:  # a fresh download that is wrong will stay wrong
            break
    raise DownloadError(f"{f.url}: downloaded {f.filename} has md5 {got}, expected {f.md5}; "
                        f"the partial file was removed so the next run starts clean.")


def _safe_zip_names(zf: zipfile.ZipFile, archive: Path) -> None:
    for name in zf.namelist():
        p = Path(name)
        if p.is_absolute() or ".." in p.parts:
            raise DataError(f"{archive}: member {name!r} would be written outside the extraction folder")


def extract(archive: str | Path, dest: str | Path) -> Path:
    """Extract ``archive`` into ``dest`` once; a folder appears only when extraction completed.

    Truncated or corrupt archives raise DataError naming the archive; members that would
    escape ``dest`` (absolute paths, ``..``) are refused.
    """
    archive, dest = Path(archive), Path(dest)
    if (dest / ".complete").exists():
        return dest
    tmp = dest.with_name(dest.name + ".extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _safe_zip_names(zf, archive)
                bad = zf.testzip()
                if bad:
                    raise DataError(f"{archive}: member {bad} is corrupt (CRC mismatch)")
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
    except DataError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except tarfile.FilterError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive}: unsafe member refused ({exc})") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive}: corrupt or truncated archive ({type(exc).__name__}: {exc}); "
                        f"delete it to download it again") from None
    (tmp / ".complete").write_text("")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{archive}: corrupt or truncated archive ({exc})") from None


def read_tar_member(tf: tarfile.TarFile, name: str, archive: Path) -> bytes:
    try:
        fh = tf.extractfile(name)
        if fh is None:
            raise KeyError(name)
        return fh.read()
    except KeyError:
        raise DataError(f"{archive}: has no member {name!r}") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{archive}: corrupt or truncated while reading {name} ({exc})") from None
