"""The alpha sweep (supplementary Fig. 2): SemSim's rho and tau against the triplet margin.

Run the experiments first (each reruns only SemSim and the report):
    dvc exp run --queue -S alpha=0.25
    dvc exp run --queue -S alpha=0.5 ...
    dvc queue start            # then wait: dvc queue status
    python -m semsim_study.analysis.alpha_sweep
It reads `dvc exp show --json` (or a saved copy: --json-file), takes each experiment's (and the
workspace's) params.yaml `alpha` and the oriented model-level SemSim rho / tau pooled over
datasets from the report's DVC metrics (reports/headline/<scope>.json; records made before
the headline folder existed carry it in reports/metrics/report.json), and writes
reports/alpha_sweep/alpha_sweep.csv and .svg, with a dvc.yaml there that declares the plot: the
sweep exists for `dvc plots show` only once it has been made.
The JSON layout differs between DVC versions, so it is walked generically: any record with a
`data` block holding params and metrics counts, wherever it sits.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from .. import atomic
from ..errors import DataError, StudyError

HEADLINE = "reports/headline/{scope}.json"  # the DVC metrics: semsim, semsim_kendall per scope
SUMMARY = "reports/metrics/report.json"  # older records: spearman.<scope>.semsim, kendall.<scope>.semsim
OUT = Path("reports") / "alpha_sweep"
CSV_NAME = "alpha_sweep.csv"
PLOT_DECLARATION = """# Written by python -m semsim_study.analysis.alpha_sweep: the sweep's plot for `dvc plots show`.
plots:
  - alpha_sweep.csv:
      x: alpha
      y: [semsim_spearman, semsim_kendall]
      y_label: oriented correlation (model level, pooled)
"""
COLUMNS = ("experiment", "rev", "alpha", "semsim_spearman", "semsim_kendall", "scope")


def _records(node: Any) -> Iterator[dict]:
    """Every dict that looks like one revision's record: {'rev'?, 'name'?, 'data': {...}}."""
    if isinstance(node, dict):
        data = node.get("data")
        if isinstance(data, dict) and ("params" in data or "metrics" in data):
            yield node
        for value in node.values():
            yield from _records(value)
    elif isinstance(node, list):
        for value in node:
            yield from _records(value)


def _file_data(block: Any, suffix: str) -> dict | None:
    """The parsed content of the file whose path ends with ``suffix`` in a params/metrics block."""
    if not isinstance(block, dict):
        return None
    for path, entry in block.items():
        if str(path).replace("\\", "/").endswith(suffix) and isinstance(entry, dict):
            data = entry.get("data", entry)
            return data if isinstance(data, dict) else None
    return None


def _dig(d: Any, *keys) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _float(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def parse(exp_show: Any, scope: str = "all", summary: str = SUMMARY) -> list[dict]:
    """One row per revision that has an alpha; sorted by alpha then experiment name."""
    rows, seen = [], set()
    for rec in _records(exp_show):
        data = rec["data"]
        rev = str(data.get("rev") or rec.get("rev") or "")
        name = str(rec.get("name") or data.get("name") or rev[:7] or "workspace")
        if rec.get("rev") == "workspace" or data.get("rev") == "workspace":
            name = "workspace"
        params = _file_data(data.get("params"), "params.yaml")
        alpha = _float(params.get("alpha")) if params else math.nan
        if not math.isfinite(alpha) or (name, rev) in seen:
            continue
        seen.add((name, rev))
        row = _file_data(data.get("metrics"), HEADLINE.format(scope=scope))
        if row is not None:
            rho, tau = row.get("semsim"), row.get("semsim_kendall")
        else:
            metrics = _file_data(data.get("metrics"), summary) or {}
            rho, tau = _dig(metrics, "spearman", scope, "semsim"), _dig(metrics, "kendall", scope, "semsim")
        rows.append({"experiment": name, "rev": rev, "alpha": alpha, "semsim_spearman": _float(rho),
                     "semsim_kendall": _float(tau), "scope": scope})
    rows.sort(key=lambda r: (r["alpha"], r["experiment"]))
    return rows


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()})
    return buf.getvalue()


def read_csv(path: Path) -> list[dict]:
    """The rows ``main`` wrote (alpha and the coefficients as floats, NaN where empty)."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return [{**r, **{k: _float(r[k]) for k in ("alpha", "semsim_spearman", "semsim_kendall")}} for r in rows]


def figure(rows: list[dict]):
    """SemSim's oriented rho and tau against alpha, one point per alpha (the last record wins)."""
    from . import figures

    usable = [r for r in rows if math.isfinite(r["semsim_spearman"]) or math.isfinite(r["semsim_kendall"])]
    by_alpha = {r["alpha"]: r for r in usable}
    alphas = sorted(by_alpha)
    return figures.lines(alphas, {"Spearman ρ": [by_alpha[a]["semsim_spearman"] for a in alphas],
                                  "Kendall τ": [by_alpha[a]["semsim_kendall"] for a in alphas]},
                         xlabel="alpha (triplet margin)", ylabel="oriented correlation (model level)",
                         title="SemSim vs alpha")


def plot(rows: list[dict]) -> str:
    from . import figures

    return figures.export(figure(rows)).svg


def exp_show_json() -> Any:
    try:
        done = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise StudyError("dvc is not on PATH (activate .venv)") from None
    if done.returncode != 0:
        raise StudyError(f"dvc exp show --json failed: {done.stderr.strip()[-500:]}")
    text = done.stdout
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    try:
        return json.loads(text[start:] if start >= 0 else text)
    except json.JSONDecodeError as exc:
        raise DataError(f"dvc exp show --json: output is not JSON ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json-file", help="a saved `dvc exp show --json` output instead of running dvc")
    parser.add_argument("--scope", default="all", help="dataset or 'all' (pooled; default)")
    parser.add_argument("--out", default=str(OUT), help="folder for alpha_sweep.csv, .svg and the plot's dvc.yaml")
    args = parser.parse_args(argv)
    try:
        if args.json_file:
            try:
                data = json.loads(Path(args.json_file).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise DataError(f"{args.json_file}: cannot read JSON ({exc})") from None
        else:
            data = exp_show_json()
        rows = parse(data, args.scope)
        if not rows:
            raise DataError("no experiment with an `alpha` param found in dvc exp show --json")
        out = Path(args.out)
        atomic.write_text(out / CSV_NAME, to_csv(rows))
        atomic.write_text(out / "alpha_sweep.svg", plot(rows))
        atomic.write_text(out / "dvc.yaml", PLOT_DECLARATION)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(rows)} runs -> {Path(args.out) / CSV_NAME}, alpha_sweep.svg (and a dvc.yaml declaring the plot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
