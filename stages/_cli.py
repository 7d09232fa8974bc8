"""Shared entry-point wrapper: user-fixable errors print one clear line instead of a traceback."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from semsim_study.errors import StudyError


def run(main: Callable[[], None]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        main()
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
