"""``python -m semsim_study.semsim score ...`` (see semsim_study/semsim/cli.py)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
