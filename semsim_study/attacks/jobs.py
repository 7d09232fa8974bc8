"""Attack jobs (one model x one image), run in parallel processes and resumable.

Each job is independent and seeded by (seed, dataset, model, attack, image id), so its
result does not depend on which worker ran it or in which order. A finished job leaves its
three PNGs and a ``result.json`` (written last, atomically) in a work folder; a killed stage,
rerun, skips every job whose ``result.json`` carries the same job key (a hash of the attack
config, the checkpoint's bytes, the image's pixels and the seed), so stale results from other
params are never reused. The stage output is then assembled from the work folder in one
atomic step. Every job runs torch on one thread, in workers and in-process alike, which is
what makes a resumed run give the same pixels as an uninterrupted one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import shutil
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import atomic, augment, defenses, executor, seeding, threat
from ..classifiers import checkpoints
from ..datasets import standard
from ..datasets.imaging import png_bytes
from ..torch_helpers import load_state, to_tensor
from . import engine
from .engine import AttackConfig

log = logging.getLogger(__name__)

# ``attack`` is the set label (``invgrad@400`` when the attack has budgets); ``budget`` the
# iteration count the reconstruction is the state at. No timing: a rerun that gives the same
# images must give the same bytes (timings go to the stage's log).
INDEX_COLUMNS = ("item_id", "dataset", "model", "attack", "image_id", "label", "recovered_label", "final_loss",
                 "iterations", "budget", "status", "original", "attacked", "reconstruction")


@dataclass(frozen=True)
class Context:
    """What every job of one (dataset, attack) stage shares; plain paths so it pickles cheaply."""

    dataset: str
    attack: str
    prepared_dir: str
    model_dir: str
    work_dir: str
    config: AttackConfig
    seed: int
    device: str = "cpu"
    per_sample: str = "auto"  # attack.per_sample_gradients: auto | vmap | rows (engine.per_sample_path)


@dataclass(frozen=True)
class Job:
    model_id: str
    image_id: str
    split: str
    index: int
    label: int
    key: str
    batch: int = 0  # jobs of one batch run as one optimisation (same model, fixed membership)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plan(ctx: Context, model_ids: list[str], images_per_model: int | None = None, batch_size: int = 1) -> list[Job]:
    """All (model, image) jobs of the stage, in output order, with their job keys and batches.

    ``images_per_model`` takes the first N images of the attack subset (a stratified prefix).
    Each model's images are cut into batches of ``batch_size`` in that order; a batch is one
    vectorised optimisation. Rows of a batch are independent attacks, but batched kernels
    round differently from single ones, so the key names the batch's members: a result is
    reused only for the same batch, which keeps reruns and resumed runs byte-identical. The key
    also names the device kind (cpu or cuda) and the batch's per-image gradient route (vmap or
    rows), for the same reason.
    """
    ds = standard.load(ctx.prepared_dir)
    subset = standard.load_attack_subset(ctx.prepared_dir)[:images_per_model]
    cfg = json.dumps(ctx.config.as_dict(), sort_keys=True)
    # GPU kernels round differently from CPU ones: a result is reused only on the kind it ran on
    device_kind = ctx.device.split(":")[0]
    jobs = []
    batch = 0
    for model_id in model_ids:  # every checkpoint is opened before the first job: a bad one fails now
        ckpt = Path(ctx.model_dir) / f"{model_id}.pt"
        card = Path(ctx.model_dir) / f"{model_id}.json"
        checkpoints.load(ckpt)
        model_hash = _sha(ckpt.read_bytes() + card.read_bytes())
        for start in range(0, len(subset), batch_size):
            members = subset[start : start + batch_size]
            names = ",".join(r["image_id"] for r in members)
            route = engine.per_sample_path(ctx.per_sample, len(members))
            for row in members:
                pixels = ds.images(row["split"])[row["index"]].tobytes()
                key = _sha("|".join([cfg, model_hash, _sha(pixels), str(ctx.seed), ctx.attack, row["image_id"],
                                     names, device_kind, route]).encode())
                jobs.append(Job(model_id, row["image_id"], row["split"], row["index"], row["label"], key, batch))
            batch += 1
    return jobs


def batches(jobs: list[Job]) -> list[list[Job]]:
    groups: dict[int, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.batch, []).append(job)
    return list(groups.values())


def job_seeds(ctx: Context, job: Job) -> tuple[np.random.Generator, torch.Generator]:
    key = seeding.key(ctx.seed, ctx.dataset, job.model_id, ctx.attack, job.image_id)
    return np.random.default_rng(key), torch.Generator().manual_seed(seeding.torch_seed(key))


def _job_dir(ctx: Context, job: Job) -> Path:
    return Path(ctx.work_dir) / job.model_id / job.image_id


def is_done(ctx: Context, job: Job) -> bool:
    try:
        result = json.loads((_job_dir(ctx, job) / "result.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return result.get("key") == job.key


class _Worker:
    """Per-process cache of the models; images and checkpoints come from the stage's files
    (local processes) or from Ray objects (``images``, ``checkpoints``: no shared filesystem)."""

    def __init__(self, ctx: Context, images: dict | None = None, checkpoints: dict | None = None):
        self.ctx = ctx
        self.ds = standard.load(ctx.prepared_dir) if images is None else None
        self.images = images
        self.checkpoints = checkpoints
        self.models: dict[str, tuple] = {}

    def image(self, job: Job) -> np.ndarray:
        return self.ds.images(job.split)[job.index] if self.images is None else self.images[job.split, job.index]

    def model(self, model_id: str):
        if model_id not in self.models:
            if self.checkpoints is None:
                model, card = checkpoints.load(Path(self.ctx.model_dir) / f"{model_id}.pt")
            else:
                weights, card = self.checkpoints[model_id]
                where = f"{self.ctx.model_dir}/{model_id}.pt"
                model = checkpoints.from_state(load_state(weights, where), card, where)
            self.models[model_id] = (model.to(self.ctx.device), card)
        return self.models[model_id]

    def run(self, batch: list[Job]) -> list[dict]:
        """Attack ``batch`` and save each job's files in its work folder (result.json last)."""
        results = []
        for job, files, result in self.compute(batch):
            save(self.ctx, job, files, result)
            results.append(result)
        return results

    def compute(self, batch: list[Job]) -> list[tuple[Job, dict[str, bytes], dict]]:
        """Attack every image of ``batch`` (one model) in one vectorised optimisation; each job's
        PNG files (name -> bytes) and result, written nowhere yet."""
        ctx = self.ctx
        torch.set_num_threads(1)
        model, card = self.model(batch[0].model_id)
        norm = card["normalization"]
        aug = augment.Augmentation(crop_flip=card["crop_flip"], policy=card["ats_policy"])
        originals, attacked, targets, gens, xs = [], [], [], [], []
        for job in batch:
            rng, gen = job_seeds(ctx, job)
            original = self.image(job)
            # the threat model of the paper's code: the client's image passes the training transform
            seen = aug(original, rng) if (aug.crop_flip or aug.policy) else original
            x = to_tensor(seen[None], norm["mean"], norm["std"]).to(ctx.device)
            target = engine.observed_gradient(model, x, job.label, ctx.config.loss_scale)
            if card.get("defense_on_observed_gradient"):  # on CPU with the job's generator: same noise anywhere
                d = card["defense"]
                target = [t.cpu() for t in target]
                defenses.Defense(d["kind"], d["prune_ratio"], d["noise_sigma"]).apply_(target, gen)
                target = [t.to(ctx.device) for t in target]
            originals.append(original)
            attacked.append(seen)
            targets.append(target)
            gens.append(gen)
            xs.append(x)
        recs = engine.reconstruct_budgets(model, targets, tuple(xs[0].shape[1:]), norm["mean"], norm["std"],
                                          ctx.config, gens, [job.label for job in batch], card["num_classes"],
                                          ctx.device, ctx.per_sample)
        results = []
        for job, original, seen, per_budget in zip(batch, originals, attacked, recs):
            files = {"original.png": png_bytes(original), "attacked.png": png_bytes(seen)}
            snapshots = []
            for rec in per_budget:
                recon = (rec.image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                files[f"reconstruction-{rec.budget}.png"] = png_bytes(recon)
                snapshots.append({"budget": rec.budget, "recovered_label": rec.label,
                                  "final_loss": rec.loss if math.isfinite(rec.loss) else None,
                                  "iterations": rec.iterations, "status": rec.status,
                                  "restart_losses": [v if math.isfinite(v) else None for v in rec.restart_losses]})
            # seconds: for the progress log only; assemble never copies it into the stage output
            result = {"key": job.key, "seconds": round(per_budget[-1].seconds, 3), "snapshots": snapshots}
            results.append((job, files, result))
        return results


def save(ctx: Context, job: Job, files: dict[str, bytes], result: dict) -> None:
    """One finished job into its work folder, result.json last: a job is done only when all is there."""
    out = _job_dir(ctx, job)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic.write_bytes(out / name, data)
    atomic.write_json(out / "result.json", result)


def _ray_batch(batch: list[Job], ctx: Context, images: dict, checkpoints: dict) -> list[tuple[Job, dict, dict]]:
    """One batch as a Ray task: inputs arrive as objects, files go back to the stage to be saved.
    ``checkpoints`` maps model ids to object refs: a worker fetches each model it attacks once."""
    import ray

    global _RAY_WORKER
    if _RAY_WORKER is None or _RAY_WORKER.ctx != ctx:  # a Ray worker process serves many tasks
        _RAY_WORKER = _Worker(ctx, images, {})
    model_id = batch[0].model_id
    if model_id not in _RAY_WORKER.checkpoints:
        _RAY_WORKER.checkpoints[model_id] = ray.get(checkpoints[model_id])
    return _RAY_WORKER.compute(batch)


_RAY_WORKER: _Worker | None = None


_WORKERS: dict[int, _Worker] = {}
_CONTEXTS: tuple[Context, ...] = ()


def _init_worker(contexts: tuple[Context, ...]) -> None:
    global _CONTEXTS
    torch.set_num_threads(1)
    _CONTEXTS = contexts
    _WORKERS.clear()


def _run_in_worker(which: int, batch: list[Job]) -> list[dict]:
    """One batch of plan ``which`` in a pool process (one cached ``_Worker`` per plan's context)."""
    if which not in _WORKERS:
        _WORKERS[which] = _Worker(_CONTEXTS[which])
    return _WORKERS[which].run(batch)


def run_all(plans: list[tuple[Context, list[Job]]], workers: int, run_on: executor.ExecutorConfig | None = None) -> None:
    """Run every batch with a job not yet done, of every (context, jobs) plan (a dataset's attacks):
    on Ray when ``run_on`` says so (plan after plan), else here, all plans' batches in one pool of
    ``workers`` processes (> 1), so a stage of several attacks keeps every worker busy to its end.
    Each job seeds itself and runs on one torch thread: the bytes do not depend on the pool, the
    order or which plans share it. Finished jobs are saved as they arrive."""
    todo: list[tuple[int, list[Job]]] = []
    total = 0
    for which, (ctx, jobs) in enumerate(plans):
        pending = [b for b in batches(jobs) if not all(is_done(ctx, j) for j in b)]
        left = sum(len(b) for b in pending)
        if left < len(jobs):
            log.info("%s/%s: resuming, %d of %d jobs already done", ctx.dataset, ctx.attack, len(jobs) - left, len(jobs))
        todo += [(which, b) for b in pending]
        total += len(jobs)
    n_todo = sum(len(b) for _, b in todo)
    name = ", ".join(dict.fromkeys(f"{ctx.dataset}/{ctx.attack}" for ctx, _ in plans))
    desc = plans[0][0].dataset if len({ctx.dataset for ctx, _ in plans}) == 1 and len(plans) > 1 else name
    bar = tqdm(total=total, initial=total - n_todo, unit="img", desc=desc, disable=None, dynamic_ncols=True)
    iterations, seconds, finished = 0, 0.0, 0
    log.info("%s: %d jobs in %d batches to run on %d worker(s)", name, n_todo, len(todo),
             max(1, min(workers, len(todo))))

    def done(result: dict) -> None:
        nonlocal iterations, seconds, finished
        iterations += result["snapshots"][-1]["iterations"]
        seconds += result["seconds"]
        finished += 1
        rate = f"{iterations / max(seconds, 1e-9):.0f} it/s per worker"
        bar.set_postfix_str(rate)
        bar.update(1)
        if bar.disable and (finished % max(1, n_todo // 4) == 0 or finished == n_todo):
            log.info("%s: %d/%d jobs done, %s", desc, finished, n_todo, rate)

    if run_on is not None and run_on.kind == "ray" and todo:
        for which, (ctx, _) in enumerate(plans):
            ctx_batches = [b for w, b in todo if w == which]
            if not ctx_batches:
                continue
            ctx_todo = [j for b in ctx_batches for j in b]
            images = {(j.split, j.index): img for j, img in zip(ctx_todo, _subset_images(ctx, ctx_todo))}
            models = sorted({j.model_id for j in ctx_todo})
            checkpoints = {m: ((Path(ctx.model_dir) / f"{m}.pt").read_bytes(),
                               atomic.read_json(Path(ctx.model_dir) / f"{m}.json", "model card missing")) for m in models}
            for _, batch_results in executor.run_ray(run_on, _ray_batch, ctx_batches, {"ctx": ctx, "images": images},
                                                     gpu=ctx.device.startswith("cuda"), desc=f"{ctx.dataset}/{ctx.attack}",
                                                     by_key={"checkpoints": checkpoints}):
                for job, files, result in batch_results:
                    save(ctx, job, files, result)
                    done(result)
    elif workers <= 1 or len(todo) <= 1:
        local: dict[int, _Worker] = {}
        threads = torch.get_num_threads()
        try:
            for which, batch in todo:
                if which not in local:
                    local[which] = _Worker(plans[which][0])
                for result in local[which].run(batch):
                    done(result)
        finally:
            torch.set_num_threads(threads)
    else:
        with executor.process_pool(workers, initializer=_init_worker,
                                   initargs=(tuple(ctx for ctx, _ in plans),)) as pool:
            for future in as_completed([pool.submit(_run_in_worker, which, batch) for which, batch in todo]):
                for result in future.result():
                    done(result)
    bar.close()


def _subset_images(ctx: Context, jobs: list[Job]) -> list[np.ndarray]:
    ds = standard.load(ctx.prepared_dir)
    return [ds.images(j.split)[j.index] for j in jobs]


def assemble(ctx: Context, jobs: list[Job], out_dir: str | Path) -> list[dict]:
    """Build the stage output (images + index.csv) from finished jobs, atomically."""
    rows = []
    labelled = bool(ctx.config.budgets)  # with budgets, every snapshot (the last too) is a set <attack>@<budget>
    with atomic.build_dir(out_dir) as tmp:
        for job in jobs:
            src = _job_dir(ctx, job)
            result = json.loads((src / "result.json").read_text())
            rel = Path("images") / job.model_id
            (tmp / rel).mkdir(parents=True, exist_ok=True)
            names = {}
            for kind in ("original", "attacked"):
                names[kind] = str(rel / f"{job.image_id}_{kind}.png")
                shutil.copyfile(src / f"{kind}.png", tmp / names[kind])
            for snap in result["snapshots"]:
                budget = snap["budget"]
                attack = threat.label(ctx.attack, budget if labelled else None)
                suffix = f"_{budget}" if labelled else ""
                recon = str(rel / f"{job.image_id}_reconstruction{suffix}.png")
                shutil.copyfile(src / f"reconstruction-{budget}.png", tmp / recon)
                loss = snap["final_loss"]
                rows.append({
                    "item_id": f"{ctx.dataset}/{job.model_id}/{attack}/{job.image_id}",
                    "dataset": ctx.dataset, "model": job.model_id, "attack": attack, "image_id": job.image_id,
                    "label": job.label, "recovered_label": snap["recovered_label"],
                    "final_loss": "nan" if loss is None else f"{loss:.6g}", "iterations": snap["iterations"],
                    "budget": budget, "status": snap["status"], **names, "reconstruction": recon,
                })
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=INDEX_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        (tmp / "index.csv").write_text(buf.getvalue(), encoding="utf-8")
        (tmp / "config.json").write_text(atomic.dumps_json({"attack": ctx.attack, "config": ctx.config.as_dict(),
                                                            "seed": ctx.seed}), encoding="utf-8")
    return rows


def read_index(path: str | Path) -> list[dict]:
    with open(Path(path) / "index.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def prune_stale(ctx: Context, jobs: list[Job]) -> int:
    """Remove job folders this plan will not reuse (another key, model or image): left by a crash
    before a run-cache restore or by older params. Finished jobs of this plan stay, to resume."""
    keep = {(j.model_id, j.image_id): j.key for j in jobs}
    removed = 0
    root = Path(ctx.work_dir)
    for result in sorted(root.glob("*/*/result.json")) if root.is_dir() else []:
        job_dir = result.parent
        try:
            key = json.loads(result.read_text()).get("key")
        except (json.JSONDecodeError, OSError):
            key = None
        if keep.get((job_dir.parent.name, job_dir.name)) != key:
            shutil.rmtree(job_dir, ignore_errors=True)
            removed += 1
    for folder in sorted(root.glob("*/*")) if root.is_dir() else []:  # unfinished, unplanned folders
        if folder.is_dir() and (folder.parent.name, folder.name) not in keep:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    for folder in sorted(root.glob("*")) if root.is_dir() else []:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def clear_work(ctx: Context) -> None:
    shutil.rmtree(ctx.work_dir, ignore_errors=True)
    os.makedirs(Path(ctx.work_dir).parent, exist_ok=True)
