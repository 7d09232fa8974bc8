"""Entry point: ``python -m semsim_study.annotation serve|tokens|export`` (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
