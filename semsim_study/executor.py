"""Where a stage's independent jobs run: here (local) or as tasks on a Ray cluster.

The train stage (one job per model) and the attack stage (one job per batch of images) hand
their jobs to ``run_ray`` (or run them here). Results never depend on where a job ran: every
job seeds itself from its own key and runs torch on one thread, so the ``executor`` section is
deliberately not a stage param in dvc.yaml (moving work to a cluster must not invalidate cached
results). That holds for CPU nodes of one kind (same torch build and instruction set); float
kernels may round differently on another CPU type or on GPUs.

On Ray, the stage process is the driver: inputs travel as Ray objects (``shared`` is put once
and every task receives it), so workers need the project's Python environment but no shared
filesystem; the library itself is shipped with the job (``runtime_env.py_modules``). Each task
asks for one CPU, or a share of a GPU (``jobs_per_gpu``) when its device is CUDA. Results come
back to the driver, which writes every file itself, atomically, as the local path does.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from tqdm import tqdm

from . import params as P
from .errors import ConfigError, StudyError

log = logging.getLogger(__name__)

KINDS = ("local", "ray")


def process_pool(workers: int, **kwargs) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes on this machine, forked where the system can: fork starts
    them at once, and the stages fork before any torch op, so no thread pool is copied; spawn
    (elsewhere) costs a fresh interpreter and its imports per worker."""
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context(method), **kwargs)


@dataclass(frozen=True)
class ExecutorConfig:
    kind: str = "local"
    address: str | None = None  # a running Ray cluster; None: RAY_ADDRESS, else a runtime started here
    jobs_per_gpu: int = 1  # Ray tasks sharing one GPU when the job's device is CUDA

    @property
    def ray_address(self) -> str | None:
        return self.address or os.environ.get("RAY_ADDRESS") or None


def from_params(params: Mapping) -> ExecutorConfig:
    P.known(params, "executor", ("kind", "address", "jobs_per_gpu"))
    address = P.get(params, "executor.address", (str, type(None)), None)
    return ExecutorConfig(kind=P.choice(params, "executor.kind", KINDS, "local"), address=address or None,
                          jobs_per_gpu=P.positive_int(params, "executor.jobs_per_gpu", 1))


def _init_ray(cfg: ExecutorConfig):
    try:
        import ray
    except ImportError:
        raise ConfigError("params: 'executor.kind' is ray, but Ray is not installed (pip install -r requirements.txt)") \
            from None
    package = str(Path(__file__).resolve().parent)
    address = cfg.ray_address
    try:
        ray.init(address=address, runtime_env={"py_modules": [package]}, include_dashboard=False,
                 log_to_driver=True, logging_level=logging.WARNING, configure_logging=True)
    except ConnectionError as exc:
        raise StudyError(f"executor: cannot reach the Ray cluster at {address!r} ({exc}); is `ray start --head` "
                         f"running there?") from None
    log.info("executor: Ray %s at %s, %s CPU(s) and %s GPU(s) in the cluster", ray.__version__, address or "a local runtime",
             ray.cluster_resources().get("CPU", 0), ray.cluster_resources().get("GPU", 0))
    return ray


def run_ray(cfg: ExecutorConfig, fn: Callable[..., Any], jobs: Sequence[Any], shared: Mapping[str, Any],
            gpu: bool = False, desc: str = "jobs", by_key: Mapping[str, Mapping[Any, Any]] | None = None
            ) -> Iterator[tuple[int, Any]]:
    """Run ``fn(job, **shared, **by_key)`` for every job as Ray tasks; yield (job index, result) as
    each finishes.

    ``shared`` values are put in the object store once and reach every task resolved.
    ``by_key`` mappings (e.g. model id -> checkpoint) are put value by value and reach tasks as
    {key: ObjectRef}, so a task fetches only what it needs (``ray.get``) instead of every
    checkpoint of the stage. A task's study error (bad input) is re-raised here as it is;
    progress (jobs done, ETA) counts finished tasks across the cluster.
    """
    ray = _init_ray(cfg)
    bar = tqdm(total=len(jobs), unit="job", desc=f"{desc} on Ray", disable=None, dynamic_ncols=True)
    try:
        refs = {name: ray.put(value) for name, value in shared.items()}
        refs.update({name: {k: ray.put(v) for k, v in values.items()} for name, values in (by_key or {}).items()})
        task = ray.remote(fn).options(num_cpus=1, num_gpus=(1.0 / cfg.jobs_per_gpu) if gpu else 0, max_retries=2)
        pending = {task.remote(job, **refs): i for i, job in enumerate(jobs)}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, StudyError):  # bad input found on a worker: the same message as locally
                    raise cause from None
                raise StudyError(f"executor: job {index} failed on the Ray cluster: {cause or exc}") from None
            except ray.exceptions.RayError as exc:  # a worker or node died, out of memory, ...
                raise StudyError(f"executor: job {index} was lost on the Ray cluster "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                                 "rerun the stage: finished jobs are kept") from None
            bar.update(1)
            yield index, result
        log.info("executor: %d Ray tasks ran on the cluster (%s)", len(jobs), desc)
    finally:
        bar.close()
        ray.shutdown()
