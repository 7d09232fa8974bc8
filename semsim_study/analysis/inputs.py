"""Read one dataset's metrics, annotations and SemSim scores into an image table and a set table.

Inputs (file contracts 4 and 5, and the semsim stage's scores.csv):
  data/metrics/<ds>/images.csv, sets.csv, meta.json       required
  data/annotations/<ds>/items.csv, sets.csv                optional: a dataset without them
                                                           (or with no annotated item) is listed
  data/semsim/dataset-<ds>/scores.csv                      optional: SemSim columns stay empty
  data/ce_baseline/dataset-<ds>/scores.csv                 optional: the CE baseline's column
The image table has one row per reconstruction; the set table one row per (model, attack),
whose SemSim / CE values are the mean of the set's per-image scores (as the paper's code
averages semsim_feature.npy per model) and whose other metrics come from the metrics stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metric_table as T
from ..atomic import read_json
from ..errors import DataError

KEY = ["dataset", "model", "attack"]
IMAGE_METRICS = T.names(stage="metrics", level="image")  # the metrics stage's per-image columns
SET_METRICS = T.names(stage="metrics", level="set") + IMAGE_METRICS  # ... and its per-set ones (as sets.csv)
IMAGE_COLUMNS = ("item_id", "dataset", "model", "attack", "image_id", "status", *IMAGE_METRICS)
METRIC_SET_COLUMNS = ("dataset", "model", "attack", "images", *SET_METRICS)
ITEM_COLUMNS = ("item_id", "annotators", "recognised", "recognised_rate", "majority", "source")
ANNOTATION_SET_COLUMNS = ("dataset", "model", "attack", "annotated", "unrecognised_rate", "source")
SCORE_STAGES = ("semsim", "ce_baseline")  # stages writing data/<stage>/<split>-<held_out>/scores.csv
SCORES = tuple(name for stage in SCORE_STAGES for name in T.names(stage=stage))  # their per-image columns
SCORE_ID = ("item_id", "dataset", "model", "attack", "image_id")
SCORE_COLUMNS = (*SCORE_ID, *SCORES)


TEXT_COLUMNS = ("item_id", "dataset", "model", "attack", "image_id", "source", "majority", "status")


def read_table(path: Path, required, what: str, text=TEXT_COLUMNS, **options) -> pd.DataFrame:
    """A CSV with the columns a contract promises; the error names the file and what is missing.
    ``text`` columns stay strings; ``options`` go to pandas.read_csv."""
    try:
        df = pd.read_csv(path, dtype={c: str for c in text}, **options)
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (header: {', '.join(map(str, df.columns))})")
    return df


def read_split_scores(root: Path, scope: str, stages=SCORE_STAGES) -> tuple[pd.DataFrame, list[str]]:
    """Every per-image score the SemSim-family ``stages`` wrote for one split (e.g. dataset-digits),
    one row per item; a stage whose scores.csv is missing leaves its columns empty and a note.
    Columns of stages not asked for stay empty without a note (stage ``correlate`` reads only
    the CE baseline's: it must not read what it does not depend on)."""
    frame, notes = None, []
    for stage in stages:
        columns = T.names(stage=stage)
        path = Path(root) / "data" / stage / scope / "scores.csv"
        if not path.exists():
            notes.append(f"no {stage} scores (data/{stage}/{scope}/scores.csv missing)")
            continue
        df = read_table(path, (*SCORE_ID, *columns), f"{stage} scores")[list(SCORE_ID + columns)]
        for col in columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
        frame = df if frame is None else frame.merge(df, on=list(SCORE_ID), how="outer")
    if frame is None:
        frame = pd.DataFrame(columns=list(SCORE_ID))
    for col in SCORES:
        if col not in frame.columns:
            frame[col] = np.nan
    return frame[list(SCORE_COLUMNS)].sort_values("item_id", kind="stable").reset_index(drop=True), notes


@dataclass
class DatasetInputs:
    name: str
    images: pd.DataFrame
    sets: pd.DataFrame
    features: str                      # imagenet | pipeline | unknown (from metrics meta.json)
    annotation_source: str | None      # human | simulated | mixed; None = no annotations
    annotation_note: str = ""          # why there are no annotations, when there are none
    semsim_note: str = ""              # why SemSim columns are empty, when they are
    notes: list[str] = field(default_factory=list)

    @property
    def annotated(self) -> bool:
        return self.annotation_source is not None


def _source(values: pd.Series) -> str | None:
    found = sorted(set(values.dropna().astype(str)))
    if not found:
        return None
    return found[0] if len(found) == 1 else "mixed"


def set_means(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, attack): the mean of each SemSim run score over the set's scored images."""
    if scores.empty:
        return pd.DataFrame(columns=KEY + list(SCORES))
    return scores.groupby(KEY, as_index=False, sort=True)[list(SCORES)].mean()


def load_dataset(root: Path, name: str, score_stages=SCORE_STAGES) -> DatasetInputs:
    root = Path(root)
    mdir = root / "data" / "metrics" / name
    images = read_table(mdir / "images.csv", IMAGE_COLUMNS, "per-image metrics (stage metrics)")
    msets = read_table(mdir / "sets.csv", METRIC_SET_COLUMNS, "per-set metrics (stage metrics)")
    meta = read_json(mdir / "meta.json", missing="metrics metadata not found (stage metrics)")
    features = str(meta.get("features", "unknown")) if isinstance(meta, dict) else "unknown"
    images = images[list(IMAGE_COLUMNS)].copy()
    msets = msets[list(METRIC_SET_COLUMNS)].copy()
    for df, cols in ((images, IMAGE_METRICS), (msets, SET_METRICS)):
        for col in cols:
            df[col] = pd.to_numeric(df[col], errors="coerce")

    # annotations
    adir = root / "data" / "annotations" / name
    source, note = None, ""
    if not (adir / "items.csv").exists() or not (adir / "sets.csv").exists():
        note = f"no annotations (data/annotations/{name}/items.csv or sets.csv missing)"
        items = pd.DataFrame(columns=list(ITEM_COLUMNS))
        asets = pd.DataFrame(columns=list(ANNOTATION_SET_COLUMNS))
    else:
        items = read_table(adir / "items.csv", ITEM_COLUMNS, "annotated items")[list(ITEM_COLUMNS)]
        asets = read_table(adir / "sets.csv", ANNOTATION_SET_COLUMNS, "annotated sets")[list(ANNOTATION_SET_COLUMNS)]
        items["annotators"] = pd.to_numeric(items["annotators"], errors="coerce").fillna(0).astype(int)
        items["recognised_rate"] = pd.to_numeric(items["recognised_rate"], errors="coerce")
        asets["annotated"] = pd.to_numeric(asets["annotated"], errors="coerce").fillna(0).astype(int)
        asets["unrecognised_rate"] = pd.to_numeric(asets["unrecognised_rate"], errors="coerce")
        # an item nobody annotated has no rate: it must not count as "never recognised"
        items.loc[items["annotators"] <= 0, "recognised_rate"] = np.nan
        asets.loc[asets["annotated"] <= 0, "unrecognised_rate"] = np.nan
        annotated = items[items["annotators"] > 0]
        if annotated.empty:
            note = "no annotated item (every item has 0 annotators)"
        else:
            source = _source(annotated["source"])
    items = items.rename(columns={"source": "annotation_source"})
    asets = asets.rename(columns={"source": "annotation_source"})

    # SemSim and the CE baseline (leave-one-dataset-out: scored by models that never saw this dataset)
    scores, score_notes = read_split_scores(root, f"dataset-{name}", score_stages)
    semsim_note = "; ".join(score_notes)
    image_table = images.merge(items, on="item_id", how="left")
    image_table = image_table.merge(scores[["item_id", *SCORES]], on="item_id", how="left")
    image_table["annotators"] = image_table["annotators"].fillna(0).astype(int)
    for col in ("recognised_rate", *SCORES):
        image_table[col] = pd.to_numeric(image_table[col], errors="coerce")
    set_table = msets.merge(asets, on=KEY, how="left").merge(set_means(scores), on=KEY, how="left")
    for col in ("unrecognised_rate", *SCORES):
        set_table[col] = pd.to_numeric(set_table[col], errors="coerce")
    set_table["annotated"] = set_table["annotated"].fillna(0).astype(int)
    return DatasetInputs(name, image_table.sort_values("item_id", kind="stable").reset_index(drop=True),
                         set_table.sort_values(KEY, kind="stable").reset_index(drop=True),
                         features, source, note, semsim_note)


def held_out_tables(images: pd.DataFrame, sets: pd.DataFrame, scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The items (and their sets) a held-out attack / backbone SemSim scored, with those scores.

    Every other metric keeps its value, so the comparison is on exactly the same items.
    """
    keep = images.drop(columns=list(SCORES)).merge(scores[["item_id", *SCORES]], on="item_id", how="inner")
    set_keys = scores[KEY].drop_duplicates()
    kept_sets = sets.drop(columns=list(SCORES)).merge(set_keys, on=KEY, how="inner")
    kept_sets = kept_sets.merge(set_means(scores), on=KEY, how="left")
    return keep.reset_index(drop=True), kept_sets.reset_index(drop=True)
