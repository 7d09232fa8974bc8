"""Trained SemSim models one call away: fetch a model folder from the project's git repository
and its DVC remote, checked against dvc.lock, into a per-user cache.

    folder = pull("dataset-digits", repo="https://github.com/<owner>/<repo>", rev="v1.0")
    # -> ~/.cache/semsim-study/models/semsim/dataset-digits/<md5>/ (semsim.json, semsim.pt, MODEL_CARD.md)

``SemSim.from_pretrained`` and ``semsim pull`` call this, then load the folder. A fresh clone
has no models (they are DVC outputs); the pipeline records each one's md5 in dvc.lock, which
git versions, so a revision of the repository names exact bytes. Those bytes come from the
DVC remote (the repository's default one, or ``remote``) through ``dvc.api.DVCFileSystem``.

Why check again what DVC fetched: DVC does not re-hash what it downloads from a remote by
default, so a corrupt or tampered object would load silently. The stage writes every model as a
subfolder of one output (``models/semsim``); the remote's ``.dir`` manifest of that output must
hash to the ``md5`` that dvc.lock records for it at that revision (the value git vouches for),
and then every downloaded file's md5 must match that manifest. Only the one model's files are
downloaded.
A folder is assembled in a temporary sibling and renamed into place only once it passes, so a
failed or partial download leaves nothing behind. The cache is content-addressed (one folder
per output md5): another revision with the same model reuses it, a retrained model gets its own.

Only the files are fetched here; nothing imports the metric (``metric`` imports this module),
and DVC and PyYAML, of the ``study`` extra, are imported only when a model is pulled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, DataError, DownloadError

# The project's public git repository. It has none yet: put its URL here (or set SEMSIM_REPO)
# once it is published, and `SemSim.from_pretrained(name)` works without a repo argument.
DEFAULT_REPO: str | None = None
REPO_ENV = "SEMSIM_REPO"
CACHE_ENV = "SEMSIM_CACHE"  # where pulled models are kept (default ~/.cache/semsim-study/models)
FOLDERS = {False: "models/semsim", True: "models/ce_baseline"}  # baseline? -> where the pipeline writes models
REMOTE_NAME = "semsim-pull"  # the name a remote given as a URL or path gets for this one pull
STAGING = ".semsim-pull-"  # prefix of temporary folders (a sibling of the final one)
STALE_S = 24 * 3600  # a staging folder this old was left by a killed pull, not one in progress


@dataclass(frozen=True)
class Output:
    """One model folder: its path in the repository, the md5 DVC would give that folder (without
    the ".dir" suffix) and its files ({relpath: md5}), from the checked manifest of the stage's
    output that holds every model."""

    name: str
    path: str
    md5: str
    files: dict[str, str]


def default_cache() -> Path:
    """$SEMSIM_CACHE, else $XDG_CACHE_HOME/semsim-study/models, else ~/.cache/semsim-study/models."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "semsim-study" / "models"


def resolve_repo(repo: str | os.PathLike | None) -> str:
    """The repository to pull from: the argument, else $SEMSIM_REPO, else DEFAULT_REPO."""
    found = repo if repo not in (None, "") else os.environ.get(REPO_ENV) or DEFAULT_REPO
    if not found:
        raise ConfigError(f"no repository to pull SemSim models from: pass repo= (--repo), a git URL or a local "
                          f"clone, or set ${REPO_ENV} (the project's public URL goes in "
                          f"semsim_study/semsim/pretrained.py DEFAULT_REPO once it has one)")
    found = os.fspath(found)
    if not _is_local(found):
        return found
    path = os.path.abspath(os.path.expanduser(found))
    if not os.path.isdir(path):
        raise ConfigError(f"repository {found}: no such folder (give a git URL or a local clone of the study)")
    return path


def _is_local(location: str) -> bool:
    return "://" not in location and (os.path.exists(os.path.expanduser(location))
                                      or location.startswith((".", "/", "~")))


def remote_options(remote: str | os.PathLike | None) -> dict:
    """DVCFileSystem arguments for ``remote``: a remote named in the repository's .dvc/config,
    or a URL / local folder used as an unnamed remote for this pull (None: the default remote)."""
    if remote in (None, ""):
        return {}
    remote = os.fspath(remote)
    if "://" in remote or _is_local(remote):
        url = os.path.abspath(os.path.expanduser(remote)) if "://" not in remote else remote
        return {"remote": REMOTE_NAME, "remote_config": {"url": url}}
    return {"remote": remote}


def folder_md5(lock_text: str, folder: str, where: str) -> str | None:
    """The md5 (without ".dir") a dvc.lock records for the output ``folder`` (the stage writes
    every model as a subfolder of it), or None when it records none."""
    import yaml

    try:
        lock = yaml.safe_load(lock_text) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{where}: not valid YAML ({exc})") from None
    for stage in (lock.get("stages") or {}).values():
        for out in (stage or {}).get("outs") or []:
            if PurePosixPath(str(out.get("path", ""))) != PurePosixPath(folder):
                continue
            md5 = str(out.get("md5") or "")
            if out.get("hash") != "md5" or not md5.endswith(".dir"):
                raise DataError(f"{where}: output {folder} has no DVC 3 directory md5 (hash: md5, md5: <...>.dir) "
                                f"to check a download against, got hash {out.get('hash')!r}, md5 {md5!r}")
            return md5[: -len(".dir")]
    return None


def _file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_md5(files: dict[str, str]) -> str:
    """The md5 DVC gives a directory: of its ``.dir`` manifest, the JSON list of
    {"md5", "relpath"} sorted by relpath (dvc_data's Tree.as_bytes)."""
    manifest = [{"md5": md5, "relpath": rel} for rel, md5 in sorted(files.items())]
    return hashlib.md5(json.dumps(manifest, sort_keys=True).encode("utf-8")).hexdigest()


def local_md5s(folder: Path) -> dict[str, str]:
    """{relpath: md5} of every file under ``folder`` (POSIX relpaths, as DVC's manifest)."""
    return {p.relative_to(folder).as_posix(): _file_md5(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def verified(folder: Path, out: Output) -> bool:
    """True when ``folder`` holds exactly the files dvc.lock records for ``out``."""
    return folder.is_dir() and tree_md5(local_md5s(folder)) == out.md5


class _Source:
    """One repository at one revision, read through dvc.api.DVCFileSystem."""

    def __init__(self, repo: str, rev: str | None, remote: str | os.PathLike | None):
        try:
            from dvc.api import DVCFileSystem
        except ModuleNotFoundError as exc:
            raise ConfigError(f"pulling a SemSim model needs DVC (module {exc.name!r} is not installed): "
                              "pip install 'semsim-study[study]'") from None
        self.repo, self.rev, self.remote = repo, rev, remote
        self.where = f"{repo}" + (f" at {rev}" if rev else "")
        self.fs = DVCFileSystem(repo, rev=rev, **remote_options(remote))

    def fail(self, what: str, exc: BaseException, remote: bool = False) -> DownloadError:
        via = (f" from DVC remote {self.remote}" if self.remote else " from its default DVC remote") if remote else ""
        detail = f"{type(exc).__name__}: {exc}"
        cause = exc.__cause__ or exc.__context__  # DVC wraps the useful message (a clone's, a remote's)
        if cause is not None and str(cause) and str(cause) not in detail:
            detail += f" ({type(cause).__name__}: {cause})"
        hint = " (was it pushed there with dvc push?)" if remote else ""
        return DownloadError(f"{self.where}: {what}{via}: {detail}{hint}")

    def lock(self) -> str:
        try:
            return self.fs.read_text("dvc.lock", encoding="utf-8")
        except FileNotFoundError:
            raise DataError(f"{self.where}: no dvc.lock (is this the SemSim study's repository, at a revision "
                            f"where the pipeline ran?)") from None
        except Exception as exc:  # DVC, scmrepo, dvc_data and fsspec each have their own types
            raise self.fail("cannot open the repository", exc) from None

    def listing(self, path: str) -> dict[str, str | None]:
        """{relpath: md5} of every file of the output ``path``, as the remote's manifest gives them."""
        try:
            found = self.fs.find(path, detail=True)
        except Exception as exc:  # the remote's filesystem's, dvc_data's: reported with their type
            raise self.fail(f"cannot list {path}", exc, remote=True) from None
        return {PurePosixPath(p.lstrip("/")).relative_to(path).as_posix(): (info.get("dvc_info") or {}).get("md5")
                for p, info in found.items()}

    def models(self, folder: str, md5: str) -> dict[str, Output]:
        """The model subfolders of the output ``folder``. Its manifest must hash to the md5 that
        dvc.lock records (what git vouches for); then each file's md5 in it is trusted."""
        files = self.listing(folder)
        if not files or any(v is None for v in files.values()) or tree_md5(files) != md5:
            raise DownloadError(f"{self.where}: the remote's manifest of {folder} does not match the md5 {md5}.dir "
                                "that dvc.lock records (was it pushed with dvc push?)")
        return _by_model(folder, files)

    def fetch(self, out: Output, into: Path) -> None:
        """Download ``out``'s files into the empty folder ``into``, each checked against the md5
        the (checked) manifest gives it."""
        expected = out.files
        try:
            for rel in sorted(expected):
                dest = into / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(f"{out.path}/{rel}", str(dest))
        except Exception as exc:  # the remote's filesystem's, dvc_data's: reported with their type
            raise self.fail(f"cannot download {out.path}", exc, remote=True) from None
        if not expected:
            raise DownloadError(f"{self.where}: {out.path} lists no files (is its .dir manifest on the remote?)")
        for rel, want in sorted(expected.items()):
            got = _file_md5(into / rel)
            if want and got != want:
                raise DownloadError(f"{self.where}: {out.path}/{rel} downloaded with md5 {got}, but DVC records "
                                    f"{want}: the remote's copy is corrupt")
        got = tree_md5(local_md5s(into))
        if got != out.md5:
            raise DownloadError(f"{self.where}: {out.path} downloaded as a folder with md5 {got}.dir, but dvc.lock "
                                f"records {out.md5}.dir: the remote's files or manifest do not match the lock")

    def close(self) -> None:
        self.fs.close()
        if "://" in self.repo or not os.path.isdir(self.repo):  # dvc cloned it: drop the temporary clone
            from dvc.repo.open_repo import clean_repos

            clean_repos()


def _place(staged: Path, target: Path) -> None:
    """Rename the checked folder into place; a stale (unverified) target is swapped out."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=STAGING, suffix=".old", dir=target.parent))
        os.rmdir(old)
        os.replace(target, old)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale(folder: Path) -> None:
    """Staging folders a killed pull left behind (old enough not to be another pull's)."""
    now = time.time()
    for stale in folder.glob(f"{STAGING}*"):
        try:
            if now - stale.stat().st_mtime > STALE_S:
                shutil.rmtree(stale, ignore_errors=True)
        except FileNotFoundError:
            continue


def model_name(name: str, folder: str) -> str:
    """``dataset-digits`` (or ``models/semsim/dataset-digits``) -> ``dataset-digits``."""
    name = str(name).strip().rstrip("/")
    if name.startswith(folder + "/"):
        name = name[len(folder) + 1:]
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(f"model name {name!r}: give one folder name under {folder}/, e.g. dataset-digits")
    return name


def _by_model(folder: str, files: dict[str, str]) -> dict[str, Output]:
    """The manifest of the output ``folder`` ({relpath: md5}) as one Output per model subfolder."""
    by_model: dict[str, dict[str, str]] = {}
    for rel, file_md5 in files.items():
        name, _, inner = rel.partition("/")
        if inner:
            by_model.setdefault(name, {})[inner] = file_md5
    return {name: Output(name, f"{folder}/{name}", tree_md5(inner), inner) for name, inner in by_model.items()}


def _record(root: Path, folder: str, md5: str) -> Path:
    """Where the cache keeps the checked manifest of the output ``folder`` at ``md5``, so a cached
    model loads without the remote."""
    return root / PurePosixPath(folder).name / ".manifests" / f"{md5}.json"


def _models(source: _Source, root: Path, folder: str, md5: str) -> tuple[dict[str, Output], bool]:
    """The models of the output ``folder`` at ``md5``, and whether they came from the remote (to
    be recorded once a pull succeeds): from the cache's record when there is one, else from the
    remote's manifest, checked against dvc.lock."""
    try:
        files = json.loads(_record(root, folder, md5).read_text(encoding="utf-8"))
        if isinstance(files, dict) and tree_md5(files) == md5:  # the record is the manifest itself: it checks
            return _by_model(folder, files), False
    except (OSError, ValueError, TypeError):
        pass
    return source.models(folder, md5), True  # none yet (or unreadable, or not this md5's): ask the remote


def _remember(root: Path, folder: str, md5: str, models: dict[str, Output]) -> None:
    record = _record(root, folder, md5)
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f"{STAGING}{os.getpid()}.json")
        manifest = {f"{n}/{rel}": md5 for n, o in models.items() for rel, md5 in o.files.items()}
        tmp.write_text(json.dumps(manifest, sort_keys=True), encoding="utf-8")
        os.replace(tmp, record)
    except OSError:
        pass  # a read-only cache still pulls, asking the remote each time


def pull(name: str, repo: str | os.PathLike | None = None, rev: str | None = None,
         remote: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
         baseline: bool = False, dest: str | os.PathLike | None = None) -> Path:
    """Fetch ``models/semsim/<name>`` (``models/ce_baseline/<name>`` with ``baseline``) as
    recorded in dvc.lock at ``rev`` and return its verified local folder.

    The folder is ``<cache_dir>/semsim/<name>/<md5>/`` (a copy already there that still
    verifies is reused), or exactly ``dest`` when given (an existing ``dest`` is never
    overwritten unless it already holds these files). ``rev``: any git revision; None is the
    default branch of a cloned URL, or the working tree of a local repository.
    """
    folder = FOLDERS[bool(baseline)]
    name = model_name(name, folder)
    source = _Source(resolve_repo(repo), rev, remote)
    try:
        root = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache()).absolute()
        md5 = folder_md5(source.lock(), folder, f"{source.where}: dvc.lock")
        available, fresh = _models(source, root, folder, md5) if md5 is not None else ({}, False)
        if name not in available:
            listed = ", ".join(sorted(available)) or "none"
            raise DataError(f"{source.where}: no model {name!r} under {folder}/ in dvc.lock; available: {listed}")
        out = available[name]
        if dest is not None:
            target = Path(dest).expanduser().absolute()
            staging_dir = target.parent
        else:
            target = root / PurePosixPath(folder).name / name / out.md5
            staging_dir = root
        if verified(target, out):
            if fresh:
                _remember(root, folder, md5, available)
            return target
        if dest is not None and target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise DataError(f"{target}: already exists and does not hold {out.path} at {source.where}; "
                            f"remove it or choose another destination")
        staging_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale(staging_dir)
        staged = Path(tempfile.mkdtemp(prefix=STAGING, suffix=".tmp", dir=staging_dir))
        try:
            source.fetch(out, staged)
            os.chmod(staged, 0o755)
            _place(staged, target)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        if fresh:
            _remember(root, folder, md5, available)
        return target
    finally:
        source.close()
