"""Shared entry-point wrapper: user-fixable errors print one clear line instead of a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from semsim_study.errors import StudyError


def arguments(doc: str, *, dataset: bool = True, raw: bool = False) -> argparse.ArgumentParser:
    """A stage's command line: ``--dataset`` (a stage run per dataset) and ``--params``; the stage
    adds its own options. ``raw`` keeps the docstring's line breaks in ``--help``."""
    formatter = argparse.RawDescriptionHelpFormatter if raw else argparse.HelpFormatter
    parser = argparse.ArgumentParser(description=doc, formatter_class=formatter)
    if dataset:
        parser.add_argument("--dataset", required=True)
    parser.add_argument("--params", default="params.yaml")
    return parser


def _option(name: str) -> str | None:
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def dvc_stage() -> str:
    """The DVC stage name of this run (``attack@digits-dlg``), from the module and its options."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    module = (spec.name if spec else "").rsplit(".", 1)[-1]
    name = module.replace("_", "-")
    if module == "attack":
        return f"attack@{_option('--dataset')}-{_option('--attack')}"
    if module == "semsim":
        split = _option("--split")
        family = "ce-baseline" if _option("--model") == "ce_baseline" else "semsim"
        return f"{family if split == 'dataset' else family + '-' + str(split)}@{_option('--held-out')}"
    dataset = _option("--dataset")
    return f"{name}@{dataset}" if dataset else name


def run(main: Callable[[], None]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        main()
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        # DVC removes a stage's outputs before running it; say how to get the last good ones back
        print(f"note: `dvc repro` removed this stage's previous outputs before it ran; `dvc checkout {dvc_stage()}` "
              "restores the cached ones (reports kept in git: `git checkout -- reports/`)", file=sys.stderr)
        sys.exit(2)
