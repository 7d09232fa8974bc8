"""dvc.yaml's code dependencies cannot drift from the imports.

A stage whose code imports a library file it does not list as a dependency keeps its cached
outputs when that file changes: a silent stale result. Each stage's command names the module
it runs; this test follows that module's imports statically (every ``import`` anywhere in a
file, function-level ones included, and the ``__init__`` of every package on the way, which
Python runs too) and fails when a project file reached that way is not covered by the stage's
deps (the file itself, or a folder above it). It also fails when a stage lists a project
``.py`` file that its imports never reach, which only costs needless reruns.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PACKAGES = ("semsim_study", "stages")


def _module_file(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


# package __init__ -> the names its module-level __getattr__ exports (imported on first use)
LAZY = {ROOT / "semsim_study" / "__init__.py": ("SemSim", "SemSimMetric"),
        ROOT / "semsim_study" / "semsim" / "__init__.py": ("SemSimMetric",)}


def _lazy_exports(tree: ast.Module) -> set[ast.AST]:
    """The nodes inside a package's module-level ``__getattr__`` (PEP 562): its imports run only
    when that attribute is read (``semsim_study.SemSim``, ``semsim_study.semsim.SemSimMetric``),
    which no stage does (checked below)."""
    return {node for fn in tree.body if isinstance(fn, ast.FunctionDef) and fn.name == "__getattr__"
            for node in ast.walk(fn)}


def from_module(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` reads, relative ones resolved against ``package``."""
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` in ``path`` names (``from a import b`` yields a and a.b)."""
    package = ".".join(path.relative_to(ROOT).parent.parts)  # what a relative import starts from
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lazy = _lazy_exports(tree) if path in LAZY else set()
    for node in ast.walk(tree):
        if node in lazy:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = from_module(node, package)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return {m for m in found if m.split(".")[0] in PACKAGES}


def import_closure(module: str) -> set[Path]:
    parts = module.split(".")
    todo = [f for k in range(1, len(parts) + 1) if (f := _module_file(".".join(parts[:k]))) is not None]
    assert todo and todo[-1].with_suffix("").name in (parts[-1], "__init__"), f"no file for module {module}"
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_modules(path):
            parts = name.split(".")
            for k in range(1, len(parts) + 1):  # the package __init__s on the way run as well
                target = _module_file(".".join(parts[:k]))
                if target is not None and target not in seen:
                    todo.append(target)
    return seen


def _stages() -> dict[str, dict]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", list(_stages()))
def test_stage_deps_cover_every_imported_project_file(name):
    stage = _stages()[name]
    module = stage["cmd"].split("python -m ", 1)[1].split()[0]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]
    reached = {str(p.relative_to(ROOT)) for p in import_closure(module)}
    missing = sorted(p for p in reached if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage {name!r} imports but does not depend on: {', '.join(missing)}"
    listed = [d for d in deps if d.endswith(".py") and d.split("/")[0] in PACKAGES]
    unused = sorted(d for d in listed if d not in reached)
    assert not unused, f"dvc.yaml stage {name!r} depends on files its code never imports: {', '.join(unused)}"


def test_the_closure_sees_function_level_and_package_imports():
    """The walker itself: a function-level import and a parent package's __init__ are both reached."""
    reached = {str(p.relative_to(ROOT)) for p in import_closure("semsim_study.annotation.tasks")}
    assert "semsim_study/classifiers/checkpoints.py" in reached  # imported inside load_classifier
    assert "semsim_study/annotation/__init__.py" in reached and "semsim_study/__init__.py" in reached


def test_no_stage_reads_the_lazy_package_export():
    """The closure skips the packages' ``__getattr__`` (the lazy ``SemSim`` and ``SemSimMetric``
    exports, LAZY); that is sound only while no stage's code reads those names from those packages."""
    lazy = {".".join(p.relative_to(ROOT).parent.parts): set(names) for p, names in LAZY.items()}
    for name, stage in _stages().items():
        module = stage["cmd"].split("python -m ", 1)[1].split()[0]
        for path in import_closure(module):
            package = ".".join(path.relative_to(ROOT).parent.parts)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom):
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
                    target = ".".join(base + ([node.module] if node.module else []))
                    read = lazy.get(target, set()) & {a.name for a in node.names}
                    assert not read, f"{path}: stage {name!r} imports {', '.join(sorted(read))} from {target}"
                    assert not (target in lazy and "*" in {a.name for a in node.names}), \
                        f"{path}: a star import reads the lazy export of {target}"
                if isinstance(node, ast.Attribute) and any(node.attr in names for names in lazy.values()):
                    assert ast.unparse(node.value) not in lazy, f"{path}: stage {name!r} reads {ast.unparse(node)}"
            text = path.read_text(encoding="utf-8")
            assert "importlib" not in text, f"{path}: dynamic imports escape the walker"


def test_package_folder_deps_ignore_bytecode():
    """A stage that lists a package folder would see the __pycache__ a Python run writes into it
    (its .pyc files carry the source's mtime, so every clone hashes them differently) and rerun:
    .dvcignore keeps bytecode out of every dependency hash."""
    folders = {d for stage in _stages().values() for d in stage.get("deps", [])
               if isinstance(d, str) and d.split("/")[0] in PACKAGES and not d.endswith(".py")}
    assert folders, "no stage lists a package folder"
    ignored = (ROOT / ".dvcignore").read_text(encoding="utf-8").split()
    assert "__pycache__/" in ignored and "*.pyc" in ignored


def test_the_training_loop_is_a_dependency_of_the_train_stages_only():
    """Editing the classifiers' training loop (a log line, a comment) leaves `dvc status` showing
    only the train stages: no other stage depends on it, by its deps or by its imports."""
    loop = "semsim_study/classifiers/training.py"
    by_deps, by_imports = set(), set()
    for name, stage in _stages().items():
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]
        if _covered(loop, deps):
            by_deps.add(name)
        module = stage["cmd"].split("python -m ", 1)[1].split()[0]
        if loop in {str(p.relative_to(ROOT)) for p in import_closure(module)}:
            by_imports.add(name)
    assert by_deps == by_imports == {"train"}, (by_deps, by_imports)
