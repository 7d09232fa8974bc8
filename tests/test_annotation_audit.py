"""The blind audit by eye (annotation/audit.py): sampling, hidden verdicts, scoring, the CLI.

The project is made in the test (tests/support/annotation_helpers.py: attack folders and tasks.csv),
with a crowd table and PSNR values laid out so every PSNR band x verdict stratum holds two
items, plus one tie, one unannotated item and one without a PSNR.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from semsim_study.annotation import audit
from semsim_study.datasets.imaging import decode, to_rgb_array
from semsim_study.errors import ConfigError, DataError
from tests.support.annotation_helpers import project
from tests.conftest import ROOT

MODELS = ("resnet8_none", "lenet_crop")
ATTACKS = ("dlg", "invgrad")
DATASETS = {"digits": "A", "faces": "B"}
CENTRES = (8.0, 15.0, 21.0, 27.0, 35.0)  # one PSNR per band of audit.BANDS_DB


def crowd_and_psnr(root: Path, tasks: dict) -> None:
    """items.csv and images.csv for each dataset: item k (in id order) of the first 20 sits in
    band k % 5 with verdict recognised for k // 5 even; then a tie, an unannotated item, one
    without a PSNR, and the rest recognised in the lowest band."""
    for ds, by_id in tasks.items():
        items, images = [], []
        for k, item_id in enumerate(sorted(by_id)):
            psnr, majority, n = f"{CENTRES[k % 5] + 0.123 * k:.6f}", "recognised" if (k // 5) % 2 == 0 else "unrecognised", 3
            if k >= 20:
                psnr, majority = "9.500000", ("tie", "", "unrecognised", "recognised")[min(k - 20, 3)]
                n = {"tie": 2, "": 0}.get(majority, 3)
                psnr = "" if k == 22 else psnr
            rec = {"recognised": 2, "unrecognised": 1, "tie": 1, "": 0}[majority]
            items.append([item_id, n, rec, f"{rec / n:.6f}" if n else "", majority])
            images.append([item_id, "ok", "0.1", psnr])
        for path, header, rows in ((root / "data" / "annotations" / ds / "items.csv",
                                    ["item_id", "annotators", "recognised", "recognised_rate", "majority"], items),
                                   (root / "data" / "metrics" / ds / "images.csv", ["item_id", "status", "mse", "psnr"],
                                    images)):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh, lineterminator="\n").writerows([header, *rows])


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audit-study")
    tasks = project(root, DATASETS, images=6, models=MODELS, attacks=ATTACKS)
    crowd_and_psnr(root, tasks)
    return root


def make(study: Path, out: Path, **options) -> dict:
    options = {"per_dataset": 10, "seed": 0, "originals": False, **options}  # controls: their own tests
    return audit.make_audit(study, list(DATASETS), options.pop("per_dataset"), out, **options)


def fill(folder: Path, answer_for, path: Path | None = None) -> Path:
    """Write answers.csv (or ``path``) with ``answer_for(key entry)`` in every row."""
    entries = {e["number"]: e for e in json.loads((folder / audit.KEY_FILE).read_text())["items"]}
    with open(folder / audit.ANSWERS_FILE, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["answer"] = answer_for(entries[int(row["number"])])
    path = path or folder / audit.ANSWERS_FILE
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(audit.ANSWER_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def as_crowd(entry: dict, invert: bool = False) -> str:
    """The answer that gives the crowd's majority verdict (or the opposite one); a control: its class."""
    if entry.get("control"):
        return entry["truth"]
    recognised = (entry["majority"] == "recognised") != invert
    if entry["protocol"] == "B":
        return "same" if recognised else "different"
    return entry["truth"] if recognised else next(c for c in entry["candidates"] if c != entry["truth"])


DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


# ----------------------------------------------------------------------------- sheets


def test_same_seed_same_files_other_seed_other_order(study, tmp_path):
    make(study, tmp_path / "a")
    make(study, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert {"index.html", "answers.csv", "key.json", "README.txt", "sheet-01.png"} <= set(names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = make(study, tmp_path / "c", seed=1)
    first = json.loads((tmp_path / "a" / "key.json").read_text())
    assert [e["item_id"] for e in other["items"]] != [e["item_id"] for e in first["items"]]


def test_sheets_hide_verdicts_psnr_models_and_attacks(study, tmp_path):
    key = make(study, tmp_path / "audit")
    page = DATA_URI.sub("", (tmp_path / "audit" / "index.html").read_text(encoding="utf-8"))
    template = (tmp_path / "audit" / "answers.csv").read_text(encoding="utf-8")
    for text in (page, template):
        for word in ("recognised", "unrecognised", "majority", "psnr", " dB", *MODELS, *ATTACKS):
            assert word.lower() not in text.lower(), word
        assert not re.search(r"\btie\b", text)
        for entry in key["items"]:
            assert entry["item_id"] not in text
            assert format(entry["psnr"], "g") not in text and f"{entry['psnr']:.2f}" not in text
    assert "do not open key.json" in page.lower()
    with open(tmp_path / "audit" / "answers.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == audit.ANSWER_COLUMNS
    assert [int(r["number"]) for r in rows] == list(range(1, 21)) and all(r["answer"] == "" for r in rows)


def test_protocol_a_cells_show_no_original_and_b_cells_do(study, tmp_path):
    key = make(study, tmp_path / "audit")
    page = (tmp_path / "audit" / "index.html").read_text(encoding="utf-8")
    cells = dict((int(n), (p, body)) for n, p, body in
                 re.findall(r'<section class="cell" id="cell-(\d+)" data-protocol="(A|B)">(.*?)</section>', page, re.S))
    assert sorted(cells) == list(range(1, 21))
    from semsim_study.annotation.tasks import read_tasks

    tasks = {**read_tasks(study / "data/tasks/digits/tasks.csv"), **read_tasks(study / "data/tasks/faces/tasks.csv")}
    for entry in key["items"]:
        protocol, body = cells[entry["number"]]
        task = tasks[entry["item_id"]]
        original = audit.data_uri(to_rgb_array(decode(study / task.original)))
        reconstruction = audit.data_uri(to_rgb_array(decode(study / task.reconstruction)))
        assert protocol == entry["protocol"] and reconstruction in body
        if protocol == "A":
            assert re.findall(r'<img alt="([^"]+)"', body) == ["reconstruction"] and original not in body
            assert [c for c, _ in audit.cell_images(task, study)] == ["reconstruction"]
            assert all(c in body for c in task.candidates)
        else:
            assert re.findall(r'<img alt="([^"]+)"', body) == ["original", "reconstruction"] and original in body


def test_sampling_covers_every_stratum_and_counts_what_it_leaves_out(study, tmp_path):
    key = make(study, tmp_path / "audit")
    for ds in DATASETS:
        strata = Counter((e["band"], e["majority"]) for e in key["items"] if e["dataset"] == ds)
        assert strata == {(b, v): 1 for b in audit.band_labels(audit.BANDS_DB) for v in audit.VERDICTS}
        population = key["population"][ds]
        assert population["left_out"] == {"tie": 1, "unannotated": 1, "no_psnr": 1}
        assert population["strata"]["<12"] == {"recognised": 3, "unrecognised": 2}
        assert sum(sum(v.values()) for v in population["strata"].values()) == 21


def test_allocation_is_as_even_as_the_strata_allow():
    rng = np.random.default_rng(0)
    assert audit.allocate({(0, "a"): 1, (1, "a"): 5, (2, "a"): 5}, 7, rng) == {(0, "a"): 1, (1, "a"): 3, (2, "a"): 3}
    assert audit.allocate({(0, "a"): 2, (1, "a"): 1}, 10, rng) == {(0, "a"): 2, (1, "a"): 1}
    assert audit.band_of(12.0, audit.BANDS_DB) == "12-18" and audit.band_of(11.99, audit.BANDS_DB) == "<12"
    assert audit.band_labels((10, 20)) == ["<10", "10-20", ">=20"]
    with pytest.raises(ConfigError, match="strictly increasing"):
        audit.check_bands((20, 10))


def test_refuses_to_replace_filled_answers_or_a_foreign_folder(study, tmp_path):
    out = tmp_path / "audit"
    make(study, out)
    make(study, out, seed=3)  # blank answers: replaced
    fill(out, as_crowd)
    with pytest.raises(ConfigError, match="answers filled in.*--force"):
        make(study, out)
    make(study, out, force=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an audit folder"):
        make(study, tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_missing_input_names_the_file(study, tmp_path):
    with pytest.raises(DataError, match=r"data/metrics/photos/images.csv|data/tasks/photos/tasks.csv"):
        audit.make_audit(study, ["photos"], 4, tmp_path / "audit")


# ----------------------------------------------------------------------------- scoring


def test_answers_like_the_crowd_agree_fully_and_inverted_ones_not_at_all(study, tmp_path):
    out = tmp_path / "audit"
    make(study, out)
    fill(out, as_crowd)
    score = audit.score_audit(out)
    assert score["agreement"] == 1.0 and score["weighted"]["agreement"] == 1.0 and score["missing"] == 0
    assert score["confusion"] == {"eye_recognised": {"crowd_recognised": 10, "crowd_unrecognised": 0},
                                  "eye_unrecognised": {"crowd_recognised": 0, "crowd_unrecognised": 10}}
    assert json.loads((out / audit.SCORE_FILE).read_text())["agreement"] == 1.0
    assert all(t["agreement"] == 1.0 and t["answered"] == 2 for b in score["by_band_verdict"].values()
               for t in b.values())
    inverted = fill(out, lambda e: as_crowd(e, invert=True), tmp_path / "inverted.csv")
    score = audit.score_audit(out, inverted)
    assert score["agreement"] == 0.0 and score["weighted"]["agreement"] == 0.0
    assert score["by_dataset"]["digits"]["agreement"] == 0.0 and score["by_band"]["<12"]["agreement"] == 0.0


def test_question_mark_is_not_recognised_and_blank_is_missing(study, tmp_path):
    out = tmp_path / "audit"
    make(study, out)
    fill(out, lambda e: "" if e["number"] <= 4 else audit.CANT_TELL)
    score = audit.score_audit(out)
    assert score["missing"] == 4 and score["missing_numbers"] == [1, 2, 3, 4] and score["answered"] == 16
    assert score["confusion"]["eye_recognised"] == {"crowd_recognised": 0, "crowd_unrecognised": 0}
    assert "16 of 20 cells answered (4 missing)" in audit.summary(score)


def test_weighted_agreement_on_a_hand_example(tmp_path):
    """<12 recognised: 90 in the population, both sampled cells agree; <12 unrecognised: 10,
    both disagree; 12-18 recognised: 100, none sampled. Sample agreement 2/4; weighted
    (90 * 1 + 10 * 0) / 100 = 0.9 over the strata holding half the population."""
    def entry(n, majority):
        return {"number": n, "item_id": f"x/m/a/test-{n}", "dataset": "x", "protocol": "B", "truth": "id1",
                "candidates": ["same", "different"], "psnr": 10.0, "band": "<12", "majority": majority,
                "recognised_rate": 1.0, "annotators": 3}
    bands = audit.band_labels(audit.BANDS_DB)
    strata = {b: {"recognised": 0, "unrecognised": 0} for b in bands}
    strata["<12"] = {"recognised": 90, "unrecognised": 10}
    strata["12-18"]["recognised"] = 100
    key = {"datasets": ["x"], "bands": bands, "seed": 0, "population": {"x": {"strata": strata, "left_out": {}}},
           "items": [entry(1, "recognised"), entry(2, "unrecognised"), entry(3, "recognised"), entry(4, "unrecognised")]}
    (tmp_path / audit.KEY_FILE).write_text(json.dumps(key))
    (tmp_path / audit.ANSWERS_FILE).write_text("number,answer\n1,same\n2,Same\n3, same \n4,same\n")
    score = audit.score_audit(tmp_path)
    assert score["agreement"] == 0.5
    assert score["weighted"] == {"agreement": 0.9, "population_covered": 0.5, "population": 200}
    assert score["by_dataset"]["x"]["weighted"]["agreement"] == 0.9


def test_bad_answers_are_named_with_their_lines(study, tmp_path):
    out = tmp_path / "audit"
    key = make(study, out)
    a_cell = next(e["number"] for e in key["items"] if e["protocol"] == "A")
    b_cell = next(e["number"] for e in key["items"] if e["protocol"] == "B")
    (out / "answers.csv").write_text(
        "number,dataset,protocol,question,candidates,answer\n"
        f"{a_cell},digits,A,q,c,no-such-class\n"       # line 2: not a candidate
        "99,digits,A,q,c,?\n"                          # line 3: no such cell
        f"{b_cell},faces,B,q,c,maybe\n"                # line 4: not same/different
        f"{b_cell},faces,B,q,c,same\n"                 # line 5: fine (the bad line 4 did not count)
        f"{b_cell},faces,B,q,c,same\n"                 # line 6: answered twice
        f"{a_cell},digits,A,q\n")                      # line 7: too few fields
    with pytest.raises(DataError) as err:
        audit.score_audit(out)
    text = str(err.value)
    assert f"answers.csv, line 2: cell {a_cell}: answer 'no-such-class' is not one of" in text
    assert "answers.csv, line 3: number '99' is not a cell of this audit" in text
    assert f"answers.csv, line 4: cell {b_cell}: answer 'maybe' is not one of same, different or ?" in text
    assert f"answers.csv, line 6: cell {b_cell} already answered on line 5" in text
    assert "answers.csv, line 7: wrong number of fields" in text and "line 5:" not in text.replace("on line 5", "")
    (out / "answers.csv").write_text("nr,answer\n1,same\n")
    with pytest.raises(DataError, match=r"answers.csv, line 1: missing column\(s\) number"):
        audit.score_audit(out)


# ----------------------------------------------------------------------------- original controls


def test_original_controls_look_like_study_cells_and_measure_what_the_eye_can_name(study, tmp_path):
    """Every protocol A original once, drawn where a reconstruction is; the score says which
    originals the eye named and the agreement on the items whose original it did."""
    key = make(study, tmp_path / "audit", originals=True)
    controls = [e for e in key["items"] if e.get("control")]
    items = [e for e in key["items"] if not e.get("control")]
    assert len(items) == 20 and key["originals"] is True
    assert sorted(e["image_id"] for e in controls) == sorted({e["image_id"] for e in items if e["dataset"] == "digits"}
                                                             | {t.image_id for t in _digits_tasks(study)})
    assert {e["dataset"] for e in controls} == {"digits"}  # protocol B shows the original anyway
    assert all(set(e) == {"number", "control", "dataset", "protocol", "image_id", "truth", "candidates"} for e in controls)
    assert sorted(e["number"] for e in key["items"]) == list(range(1, len(key["items"]) + 1))
    page = (tmp_path / "audit" / "index.html").read_text(encoding="utf-8")
    cells = dict((int(n), body) for n, body in
                 re.findall(r'<section class="cell" id="cell-(\d+)" data-protocol="A">(.*?)</section>', page, re.S))
    tasks = {t.image_id: t for t in _digits_tasks(study)}
    for e in controls:  # the original's pixels, captioned as any reconstruction is
        body = cells[e["number"]]
        assert "original" not in DATA_URI.sub("", body) and body.count("<img") == 1 and "reconstruction" in body
        shown = decode_data_uri(DATA_URI.search(body).group(0))
        assert np.array_equal(shown, to_rgb_array(decode(study / tasks[e["image_id"]].original)))
    # the eye misnames two originals: their items leave the "readable" agreement, nothing else moves
    missed = sorted({e["image_id"] for e in items if e["dataset"] == "digits"})[:2]

    def answer(entry):
        if entry.get("control") and entry["image_id"] in missed:
            return next(c for c in entry["candidates"] if c != entry["truth"])
        return as_crowd(entry, invert=entry["dataset"] == "digits" and entry.get("image_id") in missed)

    fill(tmp_path / "audit", answer)
    score = audit.score_audit(tmp_path / "audit")
    assert score["originals"] == {"digits": {"answered": len(controls), "read": len(controls) - 2,
                                             "rate": round((len(controls) - 2) / len(controls), 6), "not_read": missed}}
    hidden = [e for e in items if e["dataset"] == "digits" and e["image_id"] in missed]
    assert hidden and score["answered"] == 20 and score["controls_answered"] == score["controls"] == len(controls)
    assert score["agree"] == 20 - len(hidden) and score["readable"]["answered"] == 20 - len(hidden)
    assert score["readable"]["agreement"] == 1.0 and score["readable"]["by_dataset"]["faces"]["answered"] == 10
    text = audit.summary(score)
    assert f"digits {len(controls) - 2}/{len(controls)} (not: {' '.join(missed)})" in text
    # an audit without controls: every item counts as readable
    plain = make(study, tmp_path / "plain")
    assert not any(e.get("control") for e in plain["items"])
    fill(tmp_path / "plain", as_crowd)
    score = audit.score_audit(tmp_path / "plain")
    assert score["originals"] == {} and score["readable"]["answered"] == score["answered"] == 20


def _digits_tasks(study: Path):
    from semsim_study.annotation.tasks import read_tasks

    return list(read_tasks(study / "data/tasks/digits/tasks.csv").values())


def decode_data_uri(uri: str) -> np.ndarray:
    import base64

    return to_rgb_array(decode(base64.b64decode(uri.split(",", 1)[1])))


# ----------------------------------------------------------------------------- command line


def test_cli_writes_sheets_and_scores_them(study, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "semsim_study.annotation", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    out = tmp_path / "audit"
    done = run("audit-sheet", "--root", str(study), "--datasets", "digits", "faces", "--per-dataset", "6",
               "--out", str(out), "--per-sheet", "5", "--seed", "2")
    assert done.returncode == 0, done.stderr
    # 12 items and, by default, the 6 digits originals as controls: 18 cells
    assert sorted(p.name for p in out.glob("sheet-*.png")) == [f"sheet-0{k}.png" for k in range(1, 5)]
    assert "audit-score" in done.stderr and "key.json" in done.stderr
    fill(out, as_crowd)
    done = run("audit-score", str(out))
    assert done.returncode == 0, done.stderr
    assert "agreement with the crowd: 1.000 (12/12)" in done.stdout and (out / "score.json").is_file()
    assert "originals named by eye (controls): digits 6/6" in done.stdout
    done = run("audit-sheet", "--root", str(study), "--datasets", "digits", "faces", "--per-dataset", "6",
               "--out", str(tmp_path / "plain"), "--per-sheet", "5", "--seed", "2", "--no-originals")
    assert done.returncode == 0 and len(list((tmp_path / "plain").glob("sheet-*.png"))) == 3, done.stderr
    done = run("audit-sheet", "--root", str(study), "--datasets", "nowhere", "--per-dataset", "6", "--out",
               str(tmp_path / "other"))
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "data/tasks/nowhere/tasks.csv" in done.stderr
