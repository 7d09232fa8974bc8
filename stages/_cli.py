"""Every stage's preamble, once: the command line, params, torch's thread count, and the wrapper
that prints a user-fixable error as one clear line instead of a traceback.

A stage reads::

    parser = arguments(__doc__)              # --dataset (per-dataset stages) and --params
    args, params = begin(parser, threads="train.threads")
    ...
    if __name__ == "__main__":
        run(main)

The process environment (one BLAS/OpenMP thread, the pinned CPU kernels) is set before any
library loads, by ``stages/__init__.py``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Mapping

from semsim_study import atomic, cpu_kernels, params as P
from semsim_study.errors import StudyError

#: Where each stage says which CPU kernels it ran with: beside the workspace, never a tracked
#: output (it names the machine, and a tracked output must have the same bytes on every one).
PROVENANCE = Path("logs") / "provenance"


def arguments(doc: str, *, dataset: bool = True, raw: bool = False) -> argparse.ArgumentParser:
    """A stage's command line: ``--dataset`` (a stage run per dataset) and ``--params``; the stage
    adds its own options. ``raw`` keeps the docstring's line breaks in ``--help``."""
    formatter = argparse.RawDescriptionHelpFormatter if raw else argparse.HelpFormatter
    parser = argparse.ArgumentParser(description=doc, formatter_class=formatter)
    if dataset:
        parser.add_argument("--dataset", required=True)
    parser.add_argument("--params", default="params.yaml")
    return parser


def begin(parser: argparse.ArgumentParser, *, threads: str | int | None = None) -> tuple[argparse.Namespace, dict]:
    """The parsed command line and the params it names; with ``threads``, torch runs on that many
    CPU threads (a number, or the params key that holds it, default 1). Float sums depend on
    the thread count, so a fixed one gives the same bytes on any machine."""
    args = parser.parse_args()
    params = P.load(args.params)
    if threads is not None:
        set_threads(params, threads)
    return args, params


def set_threads(params: Mapping, threads: str | int) -> int:
    """torch's CPU thread count from ``threads`` (a number or a params key, default 1)."""
    import torch

    n = threads if isinstance(threads, int) else P.positive_int(params, threads, 1)
    torch.set_num_threads(n)
    return n


def _option(name: str) -> str | None:
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


#: Stages that take ``--dataset`` only to run a subset by hand: one DVC stage covers every dataset.
WHOLE = ("prepare",)


def dvc_stage() -> str:
    """The DVC stage name of this run (``attack@digits``), from the module and its options."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    module = (spec.name if spec else "").rsplit(".", 1)[-1]
    name = module.replace("_", "-")
    if module == "semsim":
        return "ce-baseline" if _option("--model") == "ce_baseline" else "semsim"
    if module in WHOLE:
        return name
    dataset = _option("--dataset")
    return f"{name}@{dataset}" if dataset else name


def run(main: Callable[[], None]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        main()
        _record_kernels()
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        # DVC removes a stage's outputs before running it; say how to get the last good ones back
        print(f"note: `dvc repro` removed this stage's previous outputs before it ran; `dvc checkout {dvc_stage()}` "
              "restores the cached ones (reports kept in git: `git checkout -- reports/`)", file=sys.stderr)
        sys.exit(2)


def _record_kernels() -> None:
    """Log the CPU kernels the stage ran with and keep them in logs/provenance/<stage>.json."""
    info = cpu_kernels.describe()
    logging.getLogger("kernels").info(cpu_kernels.summary(info))
    try:
        atomic.write_json(PROVENANCE / f"{dvc_stage()}.json", info)
    except OSError as exc:  # a read-only workspace still gets the log line
        logging.getLogger("kernels").warning("could not write %s: %s", PROVENANCE, exc)
