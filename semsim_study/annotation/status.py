"""Where an annotation campaign stands: one dict, rendered by ``status`` (text or JSON) and the
app's admin page alike, so both always show the same numbers.

- coverage per dataset and protocol: items with K answers out of all, answers given, and the
  answers the study needs (items x K);
- per annotator: study answers, gold answers, gold accuracy, median seconds per answer (study
  and gold answers together: a person rushing shows on both);
- agreement so far per dataset: Fleiss' kappa on recognised / unrecognised, through
  ``agreement.dataset_agreement``, the annotate stage's own computation;
- the campaign's settings as ``serve`` last ran them (K, views per original, gold rate, and
  the people that K needs under the exposure rule).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from typing import Mapping

import pandas as pd

from . import agreement, quality
from .longformat import COLUMNS, TaskLike
from .store import Store

CAMPAIGN_SETTING = "campaign"


def record_campaign(store: Store, settings: Mapping) -> None:
    """Keep the settings ``serve`` runs with, so ``status`` can show them without params."""
    store.set_setting(CAMPAIGN_SETTING, json.dumps(dict(settings), sort_keys=True))


def campaign(store: Store) -> dict:
    raw = store.setting(CAMPAIGN_SETTING)
    return json.loads(raw) if raw else {}


def exposure_line(settings: Mapping) -> str:
    """What K needs under the exposure rule: with R reconstructions per original, K answers each
    and at most v views of an original per person, at least ceil(R * K / v) people."""
    r, k, v = (settings.get(key) for key in ("reconstructions_per_original", "annotators_per_item",
                                              "max_views_per_original"))
    gold = f"gold rate {settings.get('gold_rate', 0)}"
    if v is None:
        return f"no cap on views per original, {gold}: {settings.get('people_needed')} people can give every item K = {k} answers"
    return (f"{r} reconstructions per original (at most), K = {k} answers each, at most {v} per original per "
            f"person, {gold}: at least {settings.get('people_needed')} people are needed (ceil({r} x {k} / {v}))")


def status(store: Store, tasks: Mapping[str, TaskLike], k: int) -> dict:
    """The campaign's state: coverage, annotators, agreement (see the module docstring)."""
    rows = [r for r in store.answer_rows() if r[0] in tasks]
    gold = store.gold_rows()
    per_item = Counter(r[0] for r in rows)
    coverage = []
    for (ds, protocol), items in sorted(Counter((t.dataset, t.protocol) for t in tasks.values()).items()):
        mine = [i for i, t in tasks.items() if (t.dataset, t.protocol) == (ds, protocol)]
        coverage.append({"dataset": ds, "protocol": protocol, "items": items,
                         "complete": sum(per_item[i] >= k for i in mine),
                         "answers": sum(per_item[i] for i in mine), "target": items * k})
    stats = quality.gold_stats([store.path])
    times: dict[str, list[float]] = {}
    for who, seconds in [(r[1], r[5]) for r in rows] + [(g[1], g[4]) for g in gold]:
        if seconds is not None:
            times.setdefault(who, []).append(seconds)
    answered = Counter(r[1] for r in rows)
    people = []
    for who, _created, _n in store.annotators():
        s = stats.get(who, {"gold_answers": 0, "gold_accuracy": None})
        people.append({"annotator": who, "answers": answered[who], "gold_answers": s["gold_answers"],
                       "gold_accuracy": s["gold_accuracy"],
                       "median_seconds": round(statistics.median(times[who]), 3) if who in times else None})
    frame = pd.DataFrame([r[:5] for r in rows], columns=list(COLUMNS))
    agree = [{"dataset": ds, "fleiss_kappa": a["fleiss_kappa"]["value"],
              "items_with_two_or_more": a["items_with_two_or_more"],
              **({"undefined_because": a["fleiss_kappa"]["undefined_because"]}
                 if "undefined_because" in a["fleiss_kappa"] else {})}
             for ds, a in agreement.dataset_agreement(frame, tasks).items()]
    return {"database": str(store.path), "annotators_per_item": k, "campaign": campaign(store),
            "coverage": coverage, "annotators": people, "agreement": agree,
            "totals": {"answers": len(rows), "gold_answers": len(gold), "annotators": len(people)}}


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    cells = [tuple(map(str, header))] + [tuple("-" if v is None else str(v) for v in row) for row in rows]
    widths = [max(len(r[c]) for r in cells) for c in range(len(header))]
    return ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]


def render_text(state: Mapping) -> str:
    """A readable report of ``status`` for a terminal."""
    c = state["campaign"]
    lines = [f"{state['database']}: {state['totals']['answers']} answers, {state['totals']['gold_answers']} gold "
             f"answers, {state['totals']['annotators']} annotators, K = {state['annotators_per_item']}"]
    if c:
        lines.append("served with " + exposure_line(c))
    lines += ["", "Coverage"]
    lines += _table(("dataset", "protocol", "complete", "items", "answers", "target"),
                    [(r["dataset"], r["protocol"], r["complete"], r["items"], r["answers"], r["target"])
                     for r in state["coverage"]])
    lines += ["", "Annotators"]
    lines += _table(("annotator", "answers", "gold", "gold accuracy", "median s"),
                    [(r["annotator"], r["answers"], r["gold_answers"], r["gold_accuracy"], r["median_seconds"])
                     for r in state["annotators"]])
    lines += ["", "Agreement (Fleiss' kappa, recognised / unrecognised)"]
    lines += _table(("dataset", "kappa", "items with 2+"),
                    [(r["dataset"], None if r["fleiss_kappa"] is None else round(r["fleiss_kappa"], 3),
                      r["items_with_two_or_more"]) for r in state["agreement"]])
    return "\n".join(lines)
