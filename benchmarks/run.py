"""Run every benchmark in this folder (each writes benchmarks/results/<name>.json)."""

from __future__ import annotations

import runpy
import sys

BENCHMARKS = ["benchmarks.train_throughput", "benchmarks.attack_throughput", "benchmarks.metrics_throughput",
              "benchmarks.threads", "benchmarks.semsim_optimiser", "benchmarks.cpu_kernels",
              "benchmarks.pipeline_overhead"]

if __name__ == "__main__":
    for name in BENCHMARKS:
        print(f"== {name}")
        sys.argv = [name]
        runpy.run_module(name, run_name="__main__")
