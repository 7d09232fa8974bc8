"""A fresh clone of the project in a temporary folder, and the commands run in it (the end-to-end
and Ray cluster tests share them)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def env() -> dict:
    """This process's environment for a command in the clone: this venv first, no PYTHONPATH."""
    out = dict(os.environ)
    out["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{out.get('PATH', '')}"
    out["DVC_NO_ANALYTICS"] = "1"
    out.pop("PYTHONPATH", None)
    return out


def run(args, cwd, check=True, **extra) -> subprocess.CompletedProcess:
    """``args`` in ``cwd`` with ``env()`` plus ``extra`` variables; AssertionError with the output on failure."""
    res = subprocess.run(args, cwd=cwd, env={**env(), **extra}, capture_output=True, text=True, timeout=1200)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def dvc(*args, cwd, check=True, **extra):
    return run([str(Path(sys.executable).parent / "dvc"), *args], cwd, check, **extra)


def digest(folder: Path) -> str:
    """One hash of every file's name and bytes under ``folder``."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and ".gitignore" not in p.name:
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The project's files (tracked or not ignored), as a fresh clone would have them."""
    dest = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    run(["git", "init", "-q"], dest)
    run(git + ["add", "-A"], dest)
    run(git + ["commit", "-q", "-m", "clone"], dest)
    return dest
