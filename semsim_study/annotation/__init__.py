"""Human annotation of reconstructions: tasks, the web app, importers, aggregation.

- ``tasks``: builds, writes and reads ``data/tasks/<dataset>/tasks.csv`` (what each annotator
  is shown and what counts as recognised). Light to import: torch is loaded only to build.
- ``store``: the app's SQLite database (answers as they are given, tokens, allocation).
- ``app``: the Flask application; ``cli`` (``python -m semsim_study.annotation``): serve,
  tokens, status, export.
- ``gold``: gold items (clean originals, noise) mixed into the app's items; ``quality``: gold
  accuracy per annotator and the threshold that leaves annotators out; ``status``: where a
  campaign stands (the ``status`` command and the admin page).
- ``importers``: answers from CSV, the app's database, the paper's folders, Label Studio.
- ``aggregate``, ``agreement``: per-item and per-set tables, Fleiss' kappa, Krippendorff's alpha.
- ``simulated``: simulated annotators for the offline profile.
"""

from .tasks import PROTOCOLS, TASK_COLUMNS, Task, expected_answer, read_tasks, write_tasks

__all__ = ["PROTOCOLS", "TASK_COLUMNS", "Task", "expected_answer", "read_tasks", "write_tasks"]
