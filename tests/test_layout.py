"""The library's house rules: names that say one thing, no import cycle, no upward import.

- Params -> config has one verb: a module turns params into its config with ``from_params``
  (``featurenet.from_params(params)``, ``classifiers.training.from_params(params, dataset, backbone)``);
  no ``config_from_params``, ``settings_from_params``, ``<thing>_config(params)`` beside it.
- Modules are named for what they are, not for the stage that calls them (no ``*_stage.py``),
  and no two library modules share a name (entry points excepted).
- Floors: a module imports only from its own floor or below; the domain packages on the third
  floor (attacks, metrics, annotation, semsim) import none of each other; nothing in the library
  imports the stages, tests or benchmarks; and the module import graph has no cycle.
- One room per job: the classifiers' training loop (``classifiers/training.py``) is imported by
  no library module (the stages that only read trained models use ``grid`` and ``checkpoints``),
  and the crowd's controls live beside the crowd, in ``annotation/``.

Imports are read statically with test_dvc_deps' walker (function-level imports count too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_dvc_deps import LAZY, _lazy_exports, _module_file, from_module

LIBRARY = ROOT / "semsim_study"

VERB_EXCEPTIONS: set[tuple[str, str]] = set()  # (module, function) allowed another verb: none today
# Same basename in two places: entry points, and the two ``study`` modules (semsim/ runs one
# split end to end, analysis/ is the loaded study the report reads).
SHARED_NAMES = {"__init__", "__main__", "cli", "study"}

# Lowest floor first; a module's floor is that of its longest matching dotted prefix
# (``classifiers.training`` sits above the rest of ``classifiers``).
FLOORS = [
    ("errors", "params", "atomic", "torch_helpers", "metric_table", "threat", "curves", "cpu_kernels", "extras",
     "seeding", "decimals"),
    ("datasets", "augment", "defenses", "manifests", "classifiers", "executor"),
    ("classifiers.training",),
    ("attacks", "metrics", "annotation", "semsim"),
    ("analysis",),
]
TRAINING_LOOP = LIBRARY / "classifiers" / "training.py"
DOMAIN_FLOOR = 3


def _library_files() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(LIBRARY))


def _floor(path: Path) -> int | None:
    parts = path.relative_to(LIBRARY).with_suffix("").parts
    if parts == ("__init__",):
        return None  # the package root: its only import is the lazy SemSim export
    matches = [(len(name.split(".")), level) for level, names in enumerate(FLOORS) for name in names
               if tuple(name.split(".")) == parts[: len(name.split("."))]]
    if matches:
        return max(matches)[1]
    raise AssertionError(f"semsim_study/{_rel(path)} is on no floor: add it to FLOORS in {__file__}")


def _imports(path: Path) -> set[Path]:
    """Project files that ``path`` imports: ``from . import x`` is module x (not the package's
    ``__init__``); ``from a.b import c`` is a.b.c when that is a module, else a.b."""
    package = ".".join(path.relative_to(ROOT).parent.parts)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lazy = _lazy_exports(tree) if path in LAZY else set()
    found: set[Path] = set()

    def add(module: str) -> bool:
        ours = module.split(".")[0] in ("semsim_study", "stages", "tests", "benchmarks")
        target = _module_file(module) if ours else None
        if target is not None and target != path:
            found.add(target)
        return target is not None

    for node in ast.walk(tree):
        if node in lazy:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = from_module(node, package)
            names = [f"{module}.{a.name}" for a in node.names]
            if not all([add(n) for n in names]):
                add(module)
    return found


def test_one_verb_turns_params_into_config():
    bad = []
    for path in _library_files():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            if (_rel(path), node.name) in VERB_EXCEPTIONS:
                continue
            first = node.args.args[0].arg if node.args.args else None
            if "from_params" in node.name and node.name != "from_params":
                bad.append(f"{_rel(path)}: {node.name}")
            elif first == "params" and node.name.endswith(("_config", "_configs", "_settings")):
                bad.append(f"{_rel(path)}: {node.name}(params, ...)")
    assert not bad, "params -> config is spelled from_params: " + ", ".join(bad)


def test_modules_are_named_for_what_they_do():
    names: dict[str, list[str]] = {}
    for path in _library_files():
        assert not path.stem.endswith("_stage"), f"semsim_study/{_rel(path)} is named after a stage"
        names.setdefault(path.stem, []).append(_rel(path))
    shared = {k: v for k, v in names.items() if len(v) > 1 and k not in SHARED_NAMES}
    assert not shared, f"library modules that share a name: {shared}"


def test_no_upward_import():
    bad = []
    for path in _library_files():
        floor = _floor(path)
        for target in _imports(path):
            if LIBRARY not in target.parents:
                bad.append(f"{_rel(path)} imports {target.relative_to(ROOT)} (outside the library)")
                continue
            if target.name == "__init__.py" and target.parent == LIBRARY:
                continue
            other = _floor(target)
            top, other_top = path.relative_to(LIBRARY).parts[0], target.relative_to(LIBRARY).parts[0]
            if floor is not None and other is not None and other > floor:
                bad.append(f"{_rel(path)} (floor {floor}) imports {_rel(target)} (floor {other})")
            elif floor == other == DOMAIN_FLOOR and top != other_top:
                bad.append(f"{_rel(path)} imports {_rel(target)}: the domain packages stay apart")
    assert not bad, "upward imports: " + "; ".join(bad)


def test_no_import_cycle():
    graph = {path: _imports(path) for path in _library_files()}
    state: dict[Path, int] = {}  # 1 on the stack, 2 done
    cycles = []

    def visit(node: Path, stack: list[Path]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(_rel(p) for p in stack[stack.index(nxt):] + [nxt]))
            elif nxt in graph and nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles: " + "; ".join(cycles)


@pytest.mark.parametrize("rule", [test_no_upward_import, test_no_import_cycle])
def test_the_rules_catch_a_breach(rule, monkeypatch):
    """The walker sees what the rules forbid: a planted upward import and a planted cycle."""
    errors = LIBRARY / "errors.py"
    real = Path.read_text

    def planted(self, *args, **kwargs):
        text = real(self, *args, **kwargs)
        if self == errors:  # the ground floor importing training (which imports errors): both breaches
            text += "\n\ndef _planted():\n    from .classifiers import training\n"
        return text

    monkeypatch.setattr(Path, "read_text", planted)
    with pytest.raises(AssertionError, match="errors.py"):
        rule()


def test_only_the_train_stage_imports_the_training_loop():
    """Reading a trained model, the model grid and the default classifier need no training loop:
    no library module imports it (only stages/train.py and the tests do)."""
    importers = sorted(_rel(p) for p in _library_files() if TRAINING_LOOP in _imports(p))
    assert not importers, f"library modules that import classifiers/training.py: {importers}"
    assert not (LIBRARY / "observer_controls.py").exists() and (LIBRARY / "annotation" / "planted_cues.py").is_file()
