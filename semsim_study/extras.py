"""Console commands that need the ``study`` extra say so instead of failing on an import.

``pip install .`` installs the SemSim metric alone (torch, torchvision, numpy, pillow); the
annotation app needs PyYAML, Flask and waitress from ``pip install "semsim-study[study]"``. A
console script imports its module before ``main`` runs, so the check has to sit in front of it.
"""

from __future__ import annotations

import importlib
import sys

INSTALL = "pip install 'semsim-study[study]'"


def run(module: str, command: str, argv: list[str] | None = None) -> int:
    """Import ``module`` and call its ``main``; a module of the extra that is not installed gives
    one line naming it and the install command, and exit status 2."""
    try:
        entry = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "semsim_study":
            raise
        print(f"error: {command} needs the 'study' extra (module {exc.name!r} is not installed): {INSTALL}",
              file=sys.stderr)
        return 2
    return entry.main(argv)


def annotation_cli() -> int:
    """``semsim-annotation``: the annotation app's commands (semsim_study/annotation/cli.py)."""
    return run("semsim_study.annotation.cli", "semsim-annotation", sys.argv[1:])
