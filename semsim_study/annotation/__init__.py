"""Human annotation of reconstructions: the tasks people answer and the web app that asks them.

- ``tasks``: builds, writes and reads ``data/tasks/<dataset>/tasks.csv`` (what each annotator
  is shown and what counts as recognised). Light to import: torch is loaded only to build.
- ``store``: the app's SQLite database (answers as they are given, tokens, allocation).
- ``app``: the Flask application; ``cli`` (``python -m semsim_study.annotation``): serve,
  tokens, export.
"""

from .tasks import PROTOCOLS, TASK_COLUMNS, Task, expected_answer, read_tasks, write_tasks

__all__ = ["PROTOCOLS", "TASK_COLUMNS", "Task", "expected_answer", "read_tasks", "write_tasks"]
