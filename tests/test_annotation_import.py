"""Importers of annotators' answers: long CSV, the app's SQLite database, the paper's folder
layout, Label Studio JSON. Each on good input and on every kind of bad input the issue lists;
errors must name the file, the line (row / folder / task index) and the problem."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from semsim_study.annotation import importers
from semsim_study.annotation.longformat import OUTPUT_COLUMNS
from semsim_study.errors import ConfigError, DataError
from tests.support.annotation_fixtures import D1, D2, D3, D4, F1, F2, item_file_name, tasks

HEADER = "item_id,annotator_id,protocol,answer,submitted_at"
T0 = "2024-05-01T10:00:00Z"


@pytest.fixture
def T():
    return tasks()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict:
    """Every file under folder with its hash: importers must leave it unchanged."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------- CSV

def test_csv_good_files_give_sorted_long_format(tmp_path, T):
    a = write(tmp_path / "a.csv", "\ufeff" + HEADER + ",note\n"      # BOM and an extra column
              f"{F1},ann2,B,different,{T0},\n"
              "\n"                                                      # a blank line is skipped
              f"{D1},ann1,A,3,2024-05-01T10:00:05+02:00,\"multi\nline\"\n")
    b = write(tmp_path / "b.csv", HEADER + f"\n{D1},ann2,A,8,2024-05-01 10:01:00+00:00\n{D2},ann1,A,6,2024-05-01T09:00Z\n")
    before = snapshot(tmp_path)
    df = importers.read_csv_answers([a, b], T)
    assert snapshot(tmp_path) == before
    assert list(df.columns) == list(OUTPUT_COLUMNS)
    assert df[["item_id", "annotator_id", "answer"]].values.tolist() == [
        [D1, "ann1", "3"], [D1, "ann2", "8"], [D2, "ann1", "6"], [F1, "ann2", "different"]]
    assert (df["verdict"] == "").all()
    assert df.loc[0, "submitted_at"] == "2024-05-01T10:00:05+02:00"  # kept as written


def test_csv_header_only_is_no_answers(tmp_path, T):
    df = importers.read_csv_answers(write(tmp_path / "a.csv", HEADER + "\n"), T)
    assert len(df) == 0 and list(df.columns) == list(OUTPUT_COLUMNS)


def test_header_only_is_refused_where_answers_are_imported(tmp_path, T):
    f = write(tmp_path / "a.csv", HEADER + "\n")
    with pytest.raises(DataError, match=r"a.csv: no answers for .*a header and no rows"):
        importers.import_answers("csv", [f], T)


def test_e_mail_annotators_are_valid_ids(tmp_path, T):
    f = write(tmp_path / "a.csv", HEADER + f"\n{D1},alice+lab@example.org,A,3,{T0}\n")
    assert importers.read_csv_answers(f, T)["annotator_id"].tolist() == ["alice+lab@example.org"]


def test_csv_skip_datasets_leaves_other_datasets_out(tmp_path, T):
    f = write(tmp_path / "a.csv", HEADER + f"\n{D1},x,A,3,{T0}\nshapes/m/dlg/test-1,x,A,star,{T0}\n")
    with pytest.raises(DataError, match=r"a.csv line 3: unknown item id 'shapes/m/dlg/test-1'"):
        importers.read_csv_answers(f, T)
    assert importers.read_csv_answers(f, T, skip_datasets=["shapes"])["item_id"].tolist() == [D1]


@pytest.mark.parametrize("content, pattern", [
    ("", r"a.csv: empty file"),
    ("  \n\n", r"a.csv: empty file"),
    ("item_id,annotator_id,answer,submitted_at\n", r"a.csv line 1: missing column\(s\) protocol"),
    ("annotator_id,item_id,protocol,answer,submitted_at\n", r"a.csv line 1: columns must come first and in this order"),
    (HEADER + f"\n{D1},x,A,3,{T0}\n{D1[:-1]}9,x,A,3,{T0}\n", r"a.csv line 3: unknown item id '.*test-000009'"),
    (HEADER + f"\n{D1},x,A,3,{T0}\n{D2},x,A,5,{T0}\n{D1},x,A,3,{T0}\n",
     r"a.csv line 4: duplicate row: annotator 'x' already answered item .*test-000001 the same way at .*a.csv line 2"),
    (HEADER + f"\n{D1},x,A,3,{T0}\n{D1},x,A,8,{T0}\n",
     r"a.csv line 3: two different answers from annotator 'x' for item .*test-000001: '3' \(.*a.csv line 2\) and '8'"),
    (HEADER + f"\n{D1},x,A,9,{T0}\n", r"a.csv line 2: answer '9' is not among the item's candidates \(8\|3\|5\)"),
    (HEADER + f"\n{F1},x,B,yes,{T0}\n", r"a.csv line 2: answer 'yes' is not among the item's candidates \(same\|different\)"),
    (HEADER + f"\n{D1},x,B,3,{T0}\n", r"a.csv line 2: protocol B but item .* is a protocol A task"),
    (HEADER + f"\n{D1},x,C,3,{T0}\n", r"a.csv line 2: protocol 'C' is neither A nor B"),
    (HEADER + f"\n{D1},x,A,3,yesterday\n", r"a.csv line 2: submitted_at 'yesterday' is not an ISO 8601 date-time"),
    (HEADER + f"\n{D1},x,A,3,2024-13-01T00:00:00\n", r"a.csv line 2: submitted_at .* not an ISO 8601"),
    (HEADER + f"\n{D1},,A,3,{T0}\n", r"a.csv line 2: empty annotator_id"),
    (HEADER + f"\n{D1},x,A,,\n", r"a.csv line 2: empty answer, submitted_at"),
    (HEADER + f"\n{D1},x,A,3\n", r"a.csv line 2: 4 fields, the header has 5"),
    (HEADER + f"\n{D1},x,A,3,2024-05-01T10:00:00\n", r"a.csv line 2: submitted_at '2024-05-01T10:00:00' has no time zone"),
    (HEADER + f"\n{D1},x,A,3,2024-05-01\n", r"a.csv line 2: submitted_at '2024-05-01' is a date without a time"),
    (HEADER + f"\n{D1}, ann1,A,3,{T0}\n", r"a.csv line 2: annotator id ' ann1' is not valid"),
    (HEADER + f"\n{D1},ann1 ,A,3,{T0}\n", r"a.csv line 2: annotator id 'ann1 ' is not valid"),
    (HEADER + f"\n{D1},an\x00n,A,3,{T0}\n", r"a.csv line 2: annotator id 'an\\x00n' is not valid"),
    (HEADER + f"\n{D1},an\x07n,A,3,{T0}\n", r"a.csv line 2: annotator id 'an\\x07n' is not valid"),
    (HEADER + f"\n{D1},\"an\nn\",A,3,{T0}\n", r"a.csv line 2: annotator id 'an\\nn' is not valid"),
    (HEADER + f"\n{D1},-x,A,3,{T0}\n", r"a.csv line 2: annotator id '-x' is not valid \(1-128 letters"),
])
def test_csv_bad_input_names_file_line_and_problem(tmp_path, T, content, pattern):
    f = write(tmp_path / "a.csv", content)
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match=pattern):
        importers.read_csv_answers(f, T)
    assert snapshot(tmp_path) == before


def test_csv_bad_encoding_names_the_line(tmp_path, T):
    f = tmp_path / "a.csv"
    f.write_bytes((HEADER + f"\n{D1},x,A,3,{T0}\n{D2},Jos").encode() + "é,A,5,2024-05-01\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"a.csv line 3: not UTF-8 \(byte 0xe9"):
        importers.read_csv_answers(f, T)


def test_csv_missing_file(tmp_path, T):
    with pytest.raises(DataError, match=r"nope.csv: file not found"):
        importers.read_csv_answers(tmp_path / "nope.csv", T)


def test_csv_duplicates_across_files_name_both(tmp_path, T):
    a = write(tmp_path / "a.csv", HEADER + f"\n{D1},x,A,3,{T0}\n")
    b = write(tmp_path / "b.csv", HEADER + f"\n{D2},x,A,5,{T0}\n{D1},x,A,8,{T0}\n")
    with pytest.raises(DataError, match=r"b.csv line 3: two different answers .*'3' \(.*a.csv line 2\)"):
        importers.read_csv_answers([a, b], T)


def test_csv_lists_every_problem(tmp_path, T):
    f = write(tmp_path / "a.csv", HEADER + f"\n{D1},x,A,9,{T0}\n{D2},x,A,5,never\n{D3},x,B,7,{T0}\n")
    with pytest.raises(DataError) as err:
        importers.read_csv_answers(f, T)
    msg = str(err.value)
    assert msg.startswith("3 problems in ")
    assert "line 2: answer '9'" in msg and "line 3: submitted_at" in msg and "line 4: protocol B" in msg


# ------------------------------------------------------------------------------- app SQLite

SCHEMA = """CREATE TABLE answers(item_id TEXT NOT NULL, annotator_id TEXT NOT NULL, protocol TEXT NOT NULL,
answer TEXT NOT NULL, submitted_at TEXT NOT NULL, PRIMARY KEY (item_id, annotator_id))"""


def make_db(path: Path, rows, schema: str = SCHEMA) -> sqlite3.Connection:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(schema)
    con.execute("CREATE TABLE annotators(token TEXT)")  # the app's own tables are ignored
    if rows:
        con.executemany(f"INSERT INTO answers VALUES ({','.join('?' * len(rows[0]))})", rows)
    con.commit()
    return con


def test_app_db_is_read_while_the_app_holds_it_open(tmp_path, T):
    db = tmp_path / "app.sqlite"
    con = make_db(db, [(F1, "t2", "B", "same", T0), (D1, "t1", "A", "3", T0), (D1, "t2", "A", "5", T0)])
    try:
        assert (tmp_path / "app.sqlite-wal").exists()  # committed rows still in the WAL
        main_before = hashlib.sha256(db.read_bytes()).hexdigest()
        df = importers.read_app_db(db, T)
        assert hashlib.sha256(db.read_bytes()).hexdigest() == main_before
        assert df[["item_id", "annotator_id", "answer"]].values.tolist() == [
            [D1, "t1", "3"], [D1, "t2", "5"], [F1, "t2", "same"]]
        con.execute("INSERT INTO answers VALUES (?,?,?,?,?)", (F2, "t1", "B", "different", T0))
        con.commit()
        assert len(importers.read_app_db(db, T)) == 4
    finally:
        con.close()
    assert len(importers.import_answers("app", [db], T)) == 4


def test_app_db_bad_rows_name_the_row(tmp_path, T):
    db = tmp_path / "app.sqlite"
    make_db(db, [(D1, "t1", "A", "4", T0), (D2, "t1", "B", "5", T0), ("nope/a/b/c", "t1", "A", "3", T0),
                 (D3, "t1", "A", "7", "soon")]).close()
    with pytest.raises(DataError) as err:
        importers.read_app_db(db, T)
    msg = str(err.value)
    assert "4 problems in" in msg
    assert f"app.sqlite table answers row (item_id='{D1}', annotator_id='t1'): answer '4' is not among" in msg
    assert f"row (item_id='{D2}', annotator_id='t1'): protocol B but item" in msg
    assert "row (item_id='nope/a/b/c', annotator_id='t1'): unknown item id" in msg
    assert "submitted_at 'soon' is not an ISO 8601" in msg


def test_app_db_non_text_value(tmp_path, T):
    db = tmp_path / "app.sqlite"
    make_db(db, [(D1, "t1", "A", 3, T0)]).close()
    make_db(tmp_path / "loose.sqlite", [(D1, "t1", "A", 3, T0)],
            schema="CREATE TABLE answers(item_id, annotator_id, protocol, answer, submitted_at)").close()
    assert importers.read_app_db(db, T)["answer"].tolist() == ["3"]  # TEXT affinity stored '3'
    with pytest.raises(DataError, match=r"loose.sqlite table answers row .*: answer is 3, expected text"):
        importers.read_app_db(tmp_path / "loose.sqlite", T)


def test_app_db_structure_errors(tmp_path, T):
    with pytest.raises(DataError, match=r"missing.sqlite: database not found"):
        importers.read_app_db(tmp_path / "missing.sqlite", T)
    junk = write(tmp_path / "junk.sqlite", "this is not a database, just text that is long enough" * 20)
    with pytest.raises(DataError, match=r"junk.sqlite: not an SQLite database"):
        importers.read_app_db(junk, T)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t(x)").connection.close()
    with pytest.raises(DataError, match=r"other.sqlite: no table 'answers'"):
        importers.read_app_db(other, T)
    partial = tmp_path / "partial.sqlite"
    make_db(partial, [], schema="CREATE TABLE answers(item_id TEXT, annotator_id TEXT, answer TEXT)").close()
    with pytest.raises(DataError, match=r"partial.sqlite: table answers lacks column\(s\) protocol, submitted_at"):
        importers.read_app_db(partial, T)


# ------------------------------------------------------------------------------- paper folders

def fname(item_id: str) -> str:
    return item_file_name(item_id)


def make_tree(root: Path, layout: dict[str, list[str]]) -> Path:
    for folder, files in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for f in files:
            (root / folder / f).write_bytes(b"\x89PNG fake")
    return root


def test_paper_folders_by_file_name(tmp_path, T):
    root = make_tree(tmp_path / "human_anno_id" / "train_with_ori", {
        "test-000001": ["test-000001_ori.png", fname(D1)],          # D1 recognisable
        "-test-000001": [fname(D4)],                                 # D4 (same image, iDLG) not
        "-test-000003": [fname(D3)],
        "test-000010": ["x_ori.png", fname(F1)],
        "-test-000011": [fname(F2)],
        "others": ["whatever.txt", "neg.png"],                       # negatives pool: ignored
        ".cache": ["junk"],
    })
    before = snapshot(tmp_path)
    df = importers.read_paper_folders(root, T)
    assert snapshot(tmp_path) == before
    got = {r.item_id: (r.annotator_id, r.protocol, r.answer, r.verdict, r.submitted_at) for r in df.itertuples()}
    assert got == {
        D1: ("paper-release", "A", "3", "recognised", ""),
        D3: ("paper-release", "A", "", "unrecognised", ""),      # the class picked is not released
        D4: ("paper-release", "A", "", "unrecognised", ""),
        F1: ("paper-release", "B", "same", "recognised", ""),
        F2: ("paper-release", "B", "different", "unrecognised", ""),
    }


def test_paper_folders_with_mapping(tmp_path, T):
    root = make_tree(tmp_path / "tree", {"12": ["12_ori.png", "rec_a.png"], "-12": ["rec_b.png"], "-40": ["r.jpg"]})
    mapping = write(tmp_path / "map.csv", f"path,item_id\n12/rec_a.png,{D1}\n12/rec_b.png,{D4}\n-40/r.jpg,{F1}\n")
    df = importers.import_answers("paper_folders", [root], T, mapping=mapping)
    assert dict(zip(df.item_id, df.verdict)) == {D1: "recognised", D4: "unrecognised", F1: "unrecognised"}
    assert dict(zip(df.item_id, df.answer)) == {D1: "3", D4: "", F1: "different"}


@pytest.mark.parametrize("layout, pattern", [
    ({"test-000002": [fname(D1)]}, r"test-000002/digits__.*test-000001.png: item .* has image id 'test-000001' "
                                   r"but lies in the folder of image 'test-000002'"),
    ({"test-000009": [fname(D1[:-1] + "9")]}, r"test-000009/.*: unknown item id '.*test-000009'"),
    ({"test-000001": ["notes.txt"]}, r"test-000001/notes.txt: not an image"),
    ({"test-000001": [fname(D1)], "-test-000001": [fname(D1)]},
     r"tree/test-000001/.*test-000001.png: two different answers from annotator 'paper-release' for item "
     r".*: 'unrecognised' \(.*tree/-test-000001/.*\) and 'recognised' \(here\)"),
    ({"others": ["a.png"]}, r"tree: empty: no <id>/ or -<id>/ annotation folders"),
    ({"-": ["a.png"]}, r"tree/-: folder name has no id"),
])
def test_paper_folders_bad(tmp_path, T, layout, pattern):
    root = make_tree(tmp_path / "tree", layout)
    with pytest.raises(DataError, match=pattern):
        importers.read_paper_folders(root, T)


def test_paper_folders_more_bad(tmp_path, T):
    with pytest.raises(DataError, match=r"absent: annotation folder not found"):
        importers.read_paper_folders(tmp_path / "absent", T)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: empty: no <id>/"):
        importers.read_paper_folders(tmp_path / "empty", T)
    root = make_tree(tmp_path / "tree", {"12": ["rec_a.png", "rec_c.png"]})
    (root / "stray.png").write_bytes(b"x")
    mapping = write(tmp_path / "map.csv", f"path,item_id\n12/rec_a.png,{D1}\n")
    with pytest.raises(DataError) as err:
        importers.read_paper_folders(root, T, mapping=mapping)
    assert "tree/12/rec_c.png: not in the mapping (no row with path 12/rec_c.png)" in str(err.value)
    assert "tree/stray.png: unexpected file at the top level" in str(err.value)
    bad_map = write(tmp_path / "bad.csv", f"path,item_id\n12/rec_a.png,{D1}\n-12/rec_a.png,{D2}\n")
    with pytest.raises(DataError, match=r"bad.csv line 3: path '12/rec_a.png' mapped twice \(first at .*bad.csv line 2\)"):
        importers.read_paper_folders(root, T, mapping=bad_map)
    with pytest.raises(DataError, match=r"nocols.csv line 1: missing column\(s\) item_id"):
        importers.read_paper_folders(root, T, mapping=write(tmp_path / "nocols.csv", "path,item\n12/rec_a.png,x\n"))


# ------------------------------------------------------------------------------- Label Studio

def ls_annotation(choice, user=1, when="2024-05-02T09:00:00.123456Z", ann_id=100, **extra):
    ann = {"id": ann_id, "completed_by": user, "was_cancelled": False, "ground_truth": False,
           "created_at": "2024-05-01T09:00:00.000000Z", "updated_at": when, "lead_time": 3.2, "task": 1,
           "result": [{"id": "r1", "from_name": "answer", "to_name": "image", "type": "choices", "origin": "manual",
                       "value": {"choices": [choice] if isinstance(choice, str) else choice}}]}
    ann.update(extra)
    return ann


def ls_task(item_id, annotations, task_id=1, **data):
    return {"id": task_id, "data": {"item_id": item_id, "image": "/data/upload/1/x.png", **data},
            "annotations": annotations, "predictions": [], "created_at": "2024-05-01T08:00:00Z",
            "updated_at": "2024-05-02T09:00:00Z", "project": 3, "inner_id": task_id}


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    return path


def test_label_studio_good_export(tmp_path, T):
    export = write_json(tmp_path / "export.json", [
        ls_task(D1, [ls_annotation("3", user=7),
                     ls_annotation("8", user={"id": 9, "email": "ann@lab.org", "first_name": "", "last_name": ""}),
                     ls_annotation("5", user=11, was_cancelled=True, result=[])]),      # skipped: no answer
        ls_task(F1, [ls_annotation("yes", user=7)], task_id=2, protocol="B"),
        ls_task(D2, [], task_id=3),                                                    # nobody annotated it
    ])
    before = snapshot(tmp_path)
    df = importers.read_label_studio(export, T, choice_map={"yes": "same", "no": "different"})
    assert snapshot(tmp_path) == before
    assert df[["item_id", "annotator_id", "protocol", "answer"]].values.tolist() == [
        [D1, "7", "A", "3"], [D1, "ann@lab.org", "A", "8"], [F1, "7", "B", "same"]]
    assert df.loc[0, "submitted_at"] == "2024-05-02T09:00:00.123456Z"  # updated_at: the last edit


def test_label_studio_custom_keys(tmp_path, T):
    ann = ls_annotation("3")
    ann["result"].insert(0, {"type": "choices", "from_name": "quality", "value": {"choices": ["blurry"]}})
    ann.pop("updated_at")
    export = write_json(tmp_path / "e.json", [{"id": 5, "data": {"ref": D1}, "annotations": [ann]}])
    df = importers.read_label_studio(export, T, item_key="ref", from_name="answer")
    assert df[["item_id", "answer", "submitted_at"]].values.tolist() == [[D1, "3", "2024-05-01T09:00:00.000000Z"]]
    with pytest.raises(DataError, match=r"e.json task #0 \(id 5\) annotation #0 \(id 100\): 2 choices results, "
                                        r"expected exactly one \(set from_name\)"):
        importers.read_label_studio(export, T, item_key="ref")


@pytest.mark.parametrize("export, pattern", [
    ({"tasks": []}, r"e.json: expected a list of tasks"),
    ([], r"e.json: empty export \(no tasks\)"),
    ([{"id": 4, "item_id": D1, "answer": "3", "annotator": 1}], r"e.json task #0 \(id 4\): no 'annotations' "
                                                               r"\(this looks like the JSON-MIN or CSV export"),
    ([{"id": 4, "data": {"image": "x"}, "annotations": []}], r"e.json task #0 \(id 4\): no data.item_id"),
    ([ls_task(D1, [ls_annotation("4")])], r"e.json task #0 \(id 1\) annotation #0 \(id 100\): answer '4' is not among"),
    ([ls_task(D1, [ls_annotation(["3", "8"])])], r"annotation #0 \(id 100\): value.choices is \['3', '8'\], expected one"),
    ([ls_task(D1, [ls_annotation("3", result=[])])], r"annotation #0 \(id 100\): 0 choices results, expected exactly one"),
    ([ls_task(D1, [ls_annotation("3", when="02/05/2024")])], r"annotation #0 \(id 100\): submitted_at '02/05/2024' is not"),
    ([ls_task(D1, [ls_annotation("3", when=None, created_at=None)])], r"annotation #0 \(id 100\): submitted_at is None"),
    ([ls_task("digits/x/dlg/test-9", [ls_annotation("3")])], r"task #0 \(id 1\) annotation #0 .*unknown item id"),
    ([ls_task(D1, [ls_annotation("3")], protocol="B")], r"annotation #0 .*: protocol B but item .* is a protocol A task"),
    ([ls_task(D1, [ls_annotation("3")]), ls_task(D1, [ls_annotation("8", ann_id=200)], task_id=2)],
     r"e.json task #1 \(id 2\) annotation #0 \(id 200\): two different answers from annotator '1' .*: '3' \(.*task #0"),
    ([ls_task(D1, [ls_annotation("3"), ls_annotation("3", ann_id=101)])],
     r"annotation #1 \(id 101\): duplicate row: annotator '1' already answered"),
    ([ls_task(D1, [{k: v for k, v in ls_annotation("3").items() if k != "completed_by"}])],
     r"annotation #0 \(id 100\): no completed_by"),
])
def test_label_studio_bad(tmp_path, T, export, pattern):
    with pytest.raises(DataError, match=pattern):
        importers.read_label_studio(write_json(tmp_path / "e.json", export), T)


def test_label_studio_bad_file(tmp_path, T):
    with pytest.raises(DataError, match=r"e.json line 2: not valid JSON"):
        importers.read_label_studio(write(tmp_path / "e.json", "[\n{oops}\n]"), T)
    with pytest.raises(DataError, match=r"e.json: empty file"):
        importers.read_label_studio(write(tmp_path / "e.json", ""), T)
    (tmp_path / "l.json").write_bytes('[{"data": {"item_id": "caf\u00e9"}}]'.encode("latin-1"))
    with pytest.raises(DataError, match=r"l.json line 1: not UTF-8"):
        importers.read_label_studio(tmp_path / "l.json", T)


# ------------------------------------------------------------------------------- dispatch

def test_import_answers_rejects_unknown_source(tmp_path, T):
    with pytest.raises(ConfigError, match=r"'annotate.source' is 'excel'; importable sources: csv, app, "
                                          r"paper_folders, label_studio"):
        importers.import_answers("excel", [tmp_path / "a.xlsx"], T)
    with pytest.raises(ConfigError, match=r"annotate.paths is empty"):
        importers.import_answers("csv", [], T)


# ---------------------------------------------------------------------------- validate (CLI)

def _tasks_on_disk(root: Path, T) -> None:
    from dataclasses import astuple

    from semsim_study.annotation.tasks import Task, tasks_csv

    for ds in sorted({t.dataset for t in T.values()}):
        folder = root / "data" / "tasks" / ds
        folder.mkdir(parents=True)
        real = [Task(*astuple(t)) for t in T.values() if t.dataset == ds]
        (folder / "tasks.csv").write_text(tasks_csv(real), encoding="utf-8")


def test_validate_accepts_a_good_file_in_one_line(tmp_path, T, capsys):
    from semsim_study.annotation import cli

    _tasks_on_disk(tmp_path, T)
    f = write(tmp_path / "answers.csv", HEADER + f"\n{D1},ann1,A,3,{T0}\n{D2},ann2,A,6,{T0}\n")
    before = snapshot(tmp_path)
    datasets = sorted({t.dataset for t in T.values()})
    args = ["validate", str(f), "--root", str(tmp_path), "--params", str(tmp_path / "none.yaml")]
    assert cli.main(args + sum((["--dataset", d] for d in datasets), [])) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "valid (csv): 2 answers by 2 annotators on 2 items" in out[0]
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("content, pattern", [
    (HEADER + "\n", "no answers for"),
    (HEADER + f"\n{D1}, ann1,A,3,{T0}\n", "line 2: annotator id ' ann1' is not valid"),
    (HEADER + f"\n{D1},ann1,A,3,2024-05-01T10:00:00\n", "line 2: submitted_at '2024-05-01T10:00:00' has no time zone"),
    (HEADER + f"\n{D1},ann1,A,3,{T0}\n{D1[:-1]}9,ann1,A,3,{T0}\n", "line 3: unknown item id"),
])
def test_validate_rejects_bad_files_naming_file_line_and_reason(tmp_path, T, capsys, content, pattern):
    from semsim_study.annotation import cli

    _tasks_on_disk(tmp_path, T)
    f = write(tmp_path / "answers.csv", content)
    datasets = sorted({t.dataset for t in T.values()})
    args = ["validate", str(f), "--root", str(tmp_path), "--params", str(tmp_path / "none.yaml")]
    assert cli.main(args + sum((["--dataset", d] for d in datasets), [])) == 2
    err = capsys.readouterr().err
    assert "answers.csv" in err and pattern in err


def test_validate_needs_a_format_it_can_tell(tmp_path, T, capsys):
    from semsim_study.annotation import cli

    _tasks_on_disk(tmp_path, T)
    f = write(tmp_path / "answers.txt", HEADER + "\n")
    assert cli.main(["validate", str(f), "--root", str(tmp_path), "--dataset", "digits"]) == 2
    assert "pass --format" in capsys.readouterr().err
