"""Reading params.yaml with errors that name the key at fault.

Stages read the whole file with ``yaml.safe_load`` (as DVC's example projects do) and then
pull typed values out of it through ``get``, so a missing or mistyped key is reported as
``prepare.glyphs.image_size`` rather than as a KeyError deep inside a builder.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import ConfigError

_MISSING = object()

# params.yaml's top-level names; each section's own names are checked by the code that reads it
# (``known``), so a misspelt key fails the stage instead of being silently ignored.
TOP_LEVEL = ("alpha", "seed", "datasets", "prepare", "attacks", "train", "attack", "metrics", "features",
             "annotate", "observer_controls", "semsim", "report", "executor")


class Section(dict):
    """A sub-mapping of params that remembers its dotted path, so errors name the full key."""

    def __init__(self, data: Mapping, prefix: str):
        super().__init__(data)
        self.prefix = prefix


def _full(params: Mapping, key: str) -> str:
    prefix = getattr(params, "prefix", "")
    return f"{prefix}.{key}" if prefix else key


def load(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (run from the project root)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    known(data, "", TOP_LEVEL, where=str(path))
    return data


def get(params: Mapping, key: str, kind: type | tuple[type, ...] | None = None, default: Any = _MISSING) -> Any:
    """Return the value at dotted ``key``, checking its type; ``default`` if given and absent."""
    node: Any = params
    walked = []
    for part in key.split("."):
        walked.append(part)
        if not isinstance(node, Mapping) or part not in node:
            if default is not _MISSING:
                return default
            raise ConfigError(f"params: missing key '{_full(params, '.'.join(walked))}'")
        node = node[part]
    if kind is not None:
        ok = isinstance(node, kind) and not (isinstance(node, bool) and kind in (int, float, (int, float)))
        if not ok:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ConfigError(f"params: '{_full(params, key)}' must be {names}, got {node!r}")
    return node


def choice(params: Mapping, key: str, options: Iterable[str], default: Any = _MISSING) -> str:
    value = get(params, key, str, default)
    options = sorted(options)
    if value not in options:
        raise ConfigError(f"params: '{_full(params, key)}' is {value!r}; valid values: {', '.join(options)}")
    return value


def positive_int(params: Mapping, key: str, default: Any = _MISSING) -> int:
    value = get(params, key, int, default)
    if value <= 0:
        raise ConfigError(f"params: '{_full(params, key)}' must be a positive integer, got {value!r}")
    return value


def number(params: Mapping, key: str, *, above: float | None = None, at_least: float | None = None,
           below: float | None = None, at_most: float | None = None, default: Any = _MISSING) -> float:
    """A finite int or float at ``key`` within the given bounds (NaN, inf, booleans and text refused)."""
    value = get(params, key, (int, float), default)
    value = float(value)
    bounds = [(above, lambda v, b: v > b, "> {}"), (at_least, lambda v, b: v >= b, ">= {}"),
              (below, lambda v, b: v < b, "< {}"), (at_most, lambda v, b: v <= b, "<= {}")]
    wanted = [text.format(b) for b, _, text in bounds if b is not None]
    if not math.isfinite(value) or any(b is not None and not ok(value, b) for b, ok, _ in bounds):
        raise ConfigError(f"params: '{_full(params, key)}' must be a finite number"
                          + (f" {' and '.join(wanted)}" if wanted else "") + f", got {get(params, key, None, default)!r}")
    return value


def fraction(params: Mapping, key: str, default: Any = _MISSING) -> float:
    value = float(get(params, key, (int, float), default))
    if not 0.0 < value < 1.0:
        raise ConfigError(f"params: '{_full(params, key)}' must lie strictly between 0 and 1, got {value!r}")
    return value


def known(params: Mapping, key: str, names: Iterable[str], where: str = "params") -> Mapping:
    """The mapping at dotted ``key`` ('' = ``params`` itself; absent = {}), refusing names outside ``names``:
    a misspelt key (``lrr`` for ``lr``) would otherwise leave the default in force without a word."""
    node = (get(params, key, None, None) if key else params)
    if node is None:  # absent or empty: nothing to check (readers apply their defaults)
        return {}
    if not isinstance(node, Mapping):
        raise ConfigError(f"{where}: '{_full(params, key)}' must be a mapping, got {node!r}")
    names = sorted(map(str, names))
    for name in node:
        if str(name) not in names:
            full = _full(params, f"{key}.{name}" if key else str(name))
            close = difflib.get_close_matches(str(name), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: '{full}' is not a known key{hint}; known keys here: {', '.join(names)}")
    return node
