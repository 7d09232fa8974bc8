"""``python -m semsim_study.semsim score ...``: the ``semsim`` command without installing (cli.py)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
