"""What the pipeline pays around the work: DVC's no-op, and each stage process's start-up.

Two tables, measured side by side in one run on the project as it stands (run the pipeline
once first, so that `dvc repro` has nothing to do):

1. **No-op**: `dvc repro` and `dvc status` with nothing to do, against `dvc version` (DVC's own
   start, the floor) and `scripts/repro --dry` (what `make repro` adds to plan its lanes).
2. **Start-up per stage family**: the seconds a stage's process spends before its first useful
   step (Python, torch and the stage's imports: `python -c "import stages.<module>"`), times the
   family's stage count in dvc.yaml: what every full run pays per family just to start.

Each figure is the median of --repeat runs. Run: `python -m benchmarks.pipeline_overhead` (also
in `make bench`); results go to benchmarks/results/pipeline_overhead.json and tables on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1"}


def _seconds(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=ENV, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _param(params: dict, ref: str):
    """The params value a dvc.yaml reference (``${semsim.held_out_attacks}``) names."""
    node = params
    for part in ref.strip("${}").split("."):
        node = node[part]
    return node


def families() -> dict[str, tuple[str, int]]:
    """Stage family -> (module it runs, number of stages) from dvc.yaml and params.yaml."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    out = {}
    for name, stage in stages.items():
        module = stage.get("do", stage)["cmd"].split("python -m ", 1)[1].split()[0]
        count = len(_param(params, stage["foreach"])) if "foreach" in stage else 1
        for values in stage.get("matrix", {}).values():
            count *= len(_param(params, values) if isinstance(values, str) else values)
        out[name] = (module, count)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/pipeline_overhead.json")
    args = parser.parse_args()
    dvc = str(Path(sys.executable).with_name("dvc"))
    floor = _seconds([dvc, "version"], args.repeat)
    noop = {"dvc repro": _seconds([dvc, "repro"], args.repeat), "dvc status": _seconds([dvc, "status"], args.repeat),
            "scripts/repro --dry": _seconds([sys.executable, "scripts/repro", "--dry"], args.repeat)}
    print("No-op (nothing to do), against DVC's own start")
    print(f"{'command':22} {'seconds':>8} {'x dvc version':>14}")
    print(f"{'dvc version':22} {floor:8.2f} {1.0:14.1f}")
    for name, s in noop.items():
        print(f"{name:22} {s:8.2f} {s / floor:14.1f}")

    fams = families()
    starts = {}
    for module in sorted({m for m, _ in fams.values()}):
        starts[module] = _seconds([sys.executable, "-c", f"import {module}"], args.repeat)
    print("\nStart-up per stage family (a process's imports before its first step)")
    print(f"{'family':18} {'stages':>6} {'start s':>8} {'total s':>8}")
    total = 0.0
    rows = []
    for name, (module, count) in fams.items():
        total += starts[module] * count
        rows.append({"family": name, "stages": count, "start_seconds": starts[module],
                     "total_seconds": starts[module] * count})
        print(f"{name:18} {count:6d} {starts[module]:8.2f} {starts[module] * count:8.1f}")
    print(f"{'all':18} {sum(c for _, c in fams.values()):6d} {'':8} {total:8.1f}")
    result = {"dvc_version_seconds": floor, "noop_seconds": noop, "start_up": rows, "start_up_total_seconds": total}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
