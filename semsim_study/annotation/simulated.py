"""Simulated annotators: a pool of people with their own acuity, bias and lapses.

Each simulated annotator looks at a reconstruction through the observer network
(``observer.py``) and answers with a decision rule of their own:

- protocol A (pick the class among the candidates): a softmax choice over the candidates'
  log posteriors plus the annotator's fixed per-class bias, at the annotator's temperature
  (acuity); a reconstruction that shows nothing gives a near-uniform posterior, so a guess.
- protocol B (original and reconstruction side by side, same or different): the evidence is
  how well the observer's reading of the reconstruction agrees with its reading of the
  original (the Bhattacharyya coefficient of the two posteriors, rescaled so that 0 is what a
  blank reconstruction would give and 1 a perfect copy); the annotator says ``same`` with a
  probability that is a logistic function of the evidence's log-odds minus their own
  criterion's (liberal or strict people), with their own slope. On log-odds, because the
  evidence is bounded: a pixel-identical pair (evidence 1) is "same" for everyone and a blank
  one "different", apart from lapses, as for people; a logistic on the raw evidence left even
  an identical pair "different" for 3-12% of strict people, and a blind audit found 24-77 dB
  copies rejected by 2 of 3.
- everyone lapses now and then (a random answer), at their own rate.

Which annotators see an item is drawn per item from the pool (``per_item`` of ``pool``), as
an organiser's allocation would. Every draw comes from generators seeded by (seed, dataset,
annotator, item), so the answers are the same bytes for the same params. The answers come
out in the raw long format and then go through the same importer and aggregation as answers
from people; every output marks them ``source: simulated``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from .. import seeding
from .longformat import COLUMNS
from .tasks import DIFFERENT, SAME, Task

#: Simulated answers carry a fixed, made-up clock so that the same params give the same bytes.
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class PoolConfig:
    pool: int = 8  # people in the pool
    per_item: int = 3  # annotators per reconstruction (K)
    temperature_spread: float = 0.3  # log-normal spread of acuity around 1
    bias_spread: float = 0.3  # per-class preference (protocol A), in log-posterior units
    criterion_mean: float = 0.5  # protocol B: evidence at which a typical person is undecided
    criterion_spread: float = 0.12
    slope: float = 0.48  # protocol B: width of the logistic decision in evidence log-odds, times acuity
    lapse_min: float = 0.02
    lapse_max: float = 0.08


@dataclass(frozen=True)
class Annotator:
    annotator_id: str
    temperature: float
    criterion: float
    lapse: float
    class_bias: tuple[float, ...]


def _rng(seed: int, *parts: str) -> np.random.Generator:
    return seeding.rng(seed, *parts)


def make_pool(cfg: PoolConfig, classes: Sequence[str], seed: int, dataset: str) -> list[Annotator]:
    people = []
    for i in range(cfg.pool):
        name = f"sim-{i + 1:02d}"
        rng = _rng(seed, dataset, "annotator", name)
        people.append(Annotator(
            annotator_id=name,
            temperature=float(np.exp(rng.normal(0.0, cfg.temperature_spread))),
            criterion=float(rng.normal(cfg.criterion_mean, cfg.criterion_spread)),
            lapse=float(rng.uniform(cfg.lapse_min, cfg.lapse_max)),
            class_bias=tuple(float(v) for v in rng.normal(0.0, cfg.bias_spread, len(classes))),
        ))
    return people


def agreement_evidence(p_original: np.ndarray, p_reconstruction: np.ndarray) -> float:
    """Bhattacharyya coefficient of the two posteriors, 0 for a blank reconstruction, 1 for a copy."""
    bc = float(np.sqrt(p_original * p_reconstruction).sum())
    blank = float(np.sqrt(p_original / len(p_original)).sum())  # against a uniform posterior
    return float(np.clip((bc - blank) / max(1.0 - blank, 1e-9), -1.0, 1.0))


def answer_a(person: Annotator, task: Task, posterior: np.ndarray, class_index: Mapping[str, int],
             rng: np.random.Generator) -> str:
    candidates = list(task.candidates)
    if rng.random() < person.lapse:
        return candidates[int(rng.integers(len(candidates)))]
    idx = [class_index[c] for c in candidates]
    logits = (np.log(posterior[idx] + 1e-9) + np.asarray(person.class_bias)[idx]) / person.temperature
    p = np.exp(logits - logits.max())
    return candidates[int(rng.choice(len(candidates), p=p / p.sum()))]


def answer_b(person: Annotator, evidence: float, cfg: PoolConfig, rng: np.random.Generator) -> str:
    if rng.random() < person.lapse:
        return SAME if rng.random() < 0.5 else DIFFERENT
    # the evidence is clipped to [1e-3, 1 - 1e-3] (it may be exactly 0, 1 or negative); a criterion
    # at or below 0 (a person who says "same" to anything, as the tests' tiny profile has) is not
    z = (_logit(evidence) - _logit(person.criterion, eps=1e-9)) / (cfg.slope * person.temperature)
    return SAME if rng.random() < 1.0 / (1.0 + np.exp(-z)) else DIFFERENT


def _logit(p: float, eps: float = 1e-3) -> float:
    """log(p / (1 - p)) with p kept inside [eps, 1 - eps] (evidence may reach -1 or exactly 1)."""
    p = min(max(float(p), eps), 1.0 - eps)
    return float(np.log(p / (1.0 - p)))


def annotate(tasks: Mapping[str, Task], posteriors: Mapping[str, tuple[np.ndarray, np.ndarray]],
             classes: Sequence[str], cfg: PoolConfig, seed: int, dataset: str) -> list[dict]:
    """Long-format answer rows for every task; ``posteriors[item_id]`` = (original, reconstruction)."""
    if cfg.per_item > cfg.pool:
        raise ValueError("per_item cannot exceed the pool size")
    people = make_pool(cfg, classes, seed, dataset)
    class_index = {c: i for i, c in enumerate(classes)}
    rows = []
    clock = 0
    for item_id in sorted(tasks):
        task = tasks[item_id]
        p_orig, p_rec = posteriors[item_id]
        chosen = sorted(_rng(seed, dataset, "allocation", item_id).choice(cfg.pool, cfg.per_item, replace=False))
        evidence = agreement_evidence(p_orig, p_rec) if task.protocol == "B" else None
        for k in chosen:
            person = people[k]
            rng = _rng(seed, dataset, "answer", person.annotator_id, item_id)
            answer = (answer_a(person, task, p_rec, class_index, rng) if task.protocol == "A"
                      else answer_b(person, evidence, cfg, rng))
            clock += 1
            stamp = (EPOCH + dt.timedelta(seconds=7 * clock)).isoformat().replace("+00:00", "Z")
            rows.append(dict(zip(COLUMNS, (item_id, person.annotator_id, task.protocol, answer, stamp))))
    return rows


def recognised_votes(rows: Sequence[Mapping], tasks: Mapping[str, Task]) -> dict[str, list[bool]]:
    """Per item, whether each answer recognised it: the true class (protocol A) or "same" (B)."""
    votes: dict[str, list[bool]] = {}
    for r in rows:
        t = tasks[r["item_id"]]
        votes.setdefault(r["item_id"], []).append(r["answer"] == (t.truth if t.protocol == "A" else SAME))
    return votes


def describe(cfg: PoolConfig, people: Sequence[Annotator]) -> dict:
    """What the outputs record about the simulation (so the report can say so)."""
    return {"source": "simulated", "pool": asdict(cfg),
            "annotators": [{k: v for k, v in asdict(p).items() if k != "class_bias"} for p in people]}
