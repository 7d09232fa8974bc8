"""The annotation web app through its WSGI interface and a real HTTP server.

Input validation, what the client may and may not see, path traversal, the CLI, and a load
test: 20 annotators submitting 100 answers each at once, every answer stored exactly once.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import requests

from semsim_study.annotation import cli
from semsim_study.annotation import tasks as T
from semsim_study.annotation.app import COOKIE, create_app
from semsim_study.annotation.catalog import Catalog
from semsim_study.annotation.store import Store
from semsim_study.errors import DataError

from .support.annotation_helpers import ServerThread, png, project


@pytest.fixture()
def env(tmp_path):
    built = project(tmp_path, {"toy": "A", "pairs": "B"}, images=2)
    (tmp_path / "params.yaml").write_text("secret: do-not-serve\n")
    store = Store(tmp_path / "data/annotation_app/answers.sqlite")
    tokens = store.add_annotators(["alice", "bob"])
    catalog = Catalog.load(tmp_path, ["toy", "pairs"], store.ref)
    app = create_app(catalog, store, annotators_per_item=2)
    app.testing = True
    return {"root": tmp_path, "tasks": {**built["toy"], **built["pairs"]}, "store": store, "tokens": tokens,
            "catalog": catalog, "app": app}


def signed_in(env, who="alice"):
    client = env["app"].test_client()
    resp = client.post("/api/session", json={"token": env["tokens"][who]})
    assert resp.status_code == 200 and resp.json == {"annotator": who}
    return client


def current(env, client):
    data = client.get("/api/next").json
    return data, env["catalog"].by_ref[data["item"]["ref"]].task


def test_sign_in_sets_a_strict_cookie(env):
    client = env["app"].test_client()
    assert client.get("/api/next").status_code == 401
    assert client.post("/api/session", json={"token": "wrong-token-wrong-token"}).status_code == 401
    assert client.post("/api/session", json={"token": 5}).status_code == 400
    resp = client.post("/api/session", json={"token": env["tokens"]["bob"]})
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/api/next").json["annotator"] == "bob"
    assert client.delete("/api/session").status_code == 200
    assert client.get("/api/next").status_code == 401


def test_page_and_headers(env):
    resp = env["app"].test_client().get("/")
    assert resp.status_code == 200 and b"app.js" in resp.data
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert env["app"].test_client().get("/static/app.js").status_code == 200


def test_item_hides_identity_and_truth(env):
    client = signed_in(env)
    seen = set()
    for _ in range(len(env["tasks"])):
        data, task = current(env, client)
        item = data["item"]
        assert set(item) == {"ref", "protocol", "question", "candidates", "images"}
        text = json.dumps(item)
        for secret in (task.item_id, task.model, task.attack, task.image_id, task.reconstruction):
            assert secret not in text
        if task.protocol == "B":
            assert task.truth not in text and set(item["images"]) == {"original", "reconstruction"}
        else:
            assert set(item["images"]) == {"reconstruction"}  # the original would give the class away
            assert item["candidates"] == list(task.candidates)
        seen.add(task.item_id)
        assert client.post("/api/answer", json={"ref": item["ref"], "answer": task.candidates[1]}).json["stored"]
    assert seen == set(env["tasks"])  # never the same item twice
    assert client.get("/api/next").json["item"] is None


@pytest.mark.parametrize("body, status, message", [
    ({"ref": "x"}, 400, "exactly the fields"),
    ({"ref": "x", "answer": "y", "extra": 1}, 400, "exactly the fields"),
    ({"ref": 3, "answer": "y"}, 400, "ref must be"),
    ({"ref": "x" * 201, "answer": "y"}, 400, "ref must be"),
    ({"ref": "0" * 24, "answer": "same"}, 404, "unknown item"),
    (["ref", "answer"], 400, "JSON object"),
])
def test_answer_validation(env, body, status, message):
    client = signed_in(env)
    resp = client.post("/api/answer", json=body)
    assert resp.status_code == status and message in resp.json["error"]
    assert env["store"].answer_rows() == []


@pytest.mark.parametrize("raw", ["[" * 2000 + "]" * 2000, '{"ref": ' + "[" * 1500 + "]" * 1500 + "}",
                                 '{"ref": "x", "answer": ', "\x00\xff", "null", '"text"', "1e999"])
def test_malformed_json_of_any_shape_is_a_400(env, raw):
    client = signed_in(env)
    resp = client.post("/api/answer", data=raw.encode("utf-8", "surrogateescape"), content_type="application/json")
    assert resp.status_code == 400 and "error" in resp.json
    assert env["store"].answer_rows() == []


def test_hosts_outside_the_allow_list_are_refused(env):
    client = signed_in(env)
    assert client.get("/api/next", headers={"Host": "evil.example:8765"}).status_code == 400
    # both client-sent headers foreign and equal: the same-origin comparison alone would pass it
    resp = client.post("/api/answer", json={"ref": "x", "answer": "y"},
                       headers={"Host": "evil.example", "Origin": "http://evil.example"})
    assert resp.status_code == 400 and "not served here" in resp.json["error"]
    resp = client.post("/api/answer", json={"ref": "x", "answer": "y"}, headers={"Origin": "http://evil.example"})
    assert resp.status_code == 403
    assert client.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    proxied = create_app(env["catalog"], env["store"], annotators_per_item=2, allowed_hosts=("study.example.org",))
    assert proxied.test_client().get("/", headers={"Host": "study.example.org"}).status_code == 200
    assert proxied.test_client().get("/", headers={"Host": "localhost"}).status_code == 400


def test_answer_must_be_offered_and_a_candidate(env):
    client = signed_in(env)
    data, task = current(env, client)
    ref = data["item"]["ref"]
    wrong = "same" if task.protocol == "A" else "class00"
    resp = client.post("/api/answer", json={"ref": ref, "answer": wrong})
    assert resp.status_code == 400 and "not one of this item's choices" in resp.json["error"]
    other = next(e for e in env["catalog"].entries if e.ref != ref)
    resp = client.post("/api/answer", json={"ref": other.ref, "answer": other.task.candidates[0]})
    assert resp.status_code == 409 and "not the one you are being shown" in resp.json["error"]
    resp = client.post("/api/answer", data=json.dumps({"ref": ref, "answer": task.candidates[0]}),
                       content_type="text/plain")
    assert resp.status_code == 415
    resp = client.post("/api/answer", json={"ref": ref, "answer": task.candidates[0]},
                       headers={"Origin": "http://evil.example"})
    assert resp.status_code == 403
    resp = client.post("/api/answer", json={"ref": ref, "answer": task.candidates[0]}, headers={"Origin": "null"})
    assert resp.status_code == 403
    assert env["store"].answer_rows() == []
    resp = client.post("/api/answer", json={"ref": ref, "answer": task.candidates[0]},
                       headers={"Origin": "https://localhost"})  # same host behind an HTTPS proxy
    assert resp.status_code == 200 and resp.json["stored"] is True
    resp = client.post("/api/answer", json={"ref": ref, "answer": task.candidates[0]})
    assert resp.status_code == 200 and resp.json["stored"] is False  # a retry is harmless
    resp = client.post("/api/answer", json={"ref": ref, "answer": task.candidates[1]})
    assert resp.status_code == 409 and "answers are final" in resp.json["error"]
    rows = env["store"].answer_rows()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(task.item_id, "alice", task.protocol, task.candidates[0])]
    oversized = client.post("/api/answer", data=b"{" + b" " * 5000 + b"}", content_type="application/json")
    assert oversized.status_code == 413


def test_images_only_of_the_item_shown(env):
    client = signed_in(env)
    data, task = current(env, client)
    ref = data["item"]["ref"]
    resp = client.get(data["item"]["images"]["reconstruction"])
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    assert resp.data == (env["root"] / task.reconstruction).read_bytes()
    original = client.get(f"/img/{ref}/original")
    assert original.status_code == (404 if task.protocol == "A" else 200)
    other = next(e for e in env["catalog"].entries if e.ref != ref)
    assert client.get(f"/img/{other.ref}/reconstruction").status_code == 403
    assert env["app"].test_client().get(f"/img/{ref}/reconstruction").status_code == 401


@pytest.mark.parametrize("path", [
    "/img/../../params.yaml",
    "/img/%2e%2e/%2e%2e/params.yaml",
    "/img/{ref}/..%2f..%2f..%2fparams.yaml",
    "/img/{ref}/../../../params.yaml",
    "/img/{ref}/%2e%2e%2f%2e%2e%2fparams.yaml",
    "/img/..%2f..%2fparams.yaml/reconstruction",
    "/img/{ref}/reconstruction/../../../../params.yaml",
    "/img/{ref}/tasks.csv",
    "/img/{ref}/%00",
    "/img/data%2fattacks%2ftoy/reconstruction",
    "/static/../params.yaml",
    "/static/%2e%2e/%2e%2e/params.yaml",
    "/static/..%2f..%2f..%2fparams.yaml",
    "/../../params.yaml",
    "/data/tasks/toy/tasks.csv",
    "/params.yaml",
])
def test_no_path_traversal(env, path):
    client = signed_in(env)
    data, _ = current(env, client)
    resp = client.get(path.format(ref=data["item"]["ref"]))
    assert resp.status_code in (400, 403, 404, 405)
    assert b"do-not-serve" not in resp.data and b"item_id," not in resp.data


def test_catalog_refuses_images_outside_attack_folders(env):
    root = env["root"]
    path = root / "data/tasks/toy/tasks.csv"
    text = path.read_text()
    first = text.splitlines()[1].split(",")
    (root / "data/prepared").mkdir(parents=True)
    png(root / "data/prepared/leak.png", 1)
    path.write_text(text.replace(first[9], "data/prepared/leak.png", 1))
    with pytest.raises(DataError, match="lies outside"):
        Catalog.load(root, ["toy"], env["store"].ref)
    (root / "data/attacks/toy/dlg/link.png").symlink_to(root / "data/prepared/leak.png")
    path.write_text(text.replace(first[9], "data/attacks/toy/dlg/link.png", 1))
    with pytest.raises(DataError, match="lies outside"):
        Catalog.load(root, ["toy"], env["store"].ref)
    path.write_text(text.replace(first[9], "data/attacks/toy/dlg/none.png", 1))
    with pytest.raises(DataError, match="is missing"):
        Catalog.load(root, ["toy"], env["store"].ref)


def test_cli_tokens_export_and_serve_defaults(env, tmp_path, capsys):
    db = str(tmp_path / "cli.sqlite")
    assert cli.main(["tokens", "--db", db, "--add", "carol", "dave"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["carol", "dave"]
    token = lines[0].split("\t")[1]
    assert lines[0].split("\t")[2].endswith(f"/#token={token}")
    assert Store(db).authenticate(token) == "carol"
    assert cli.main(["tokens", "--db", db, "--add", "carol"]) == 2
    assert "already exist" in capsys.readouterr().err
    assert cli.main(["tokens", "--db", db, "--list"]) == 0
    assert "carol\tcreated" in capsys.readouterr().out
    assert cli.main(["export", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "x.csv")]) == 2
    client = signed_in(env)
    data, task = current(env, client)
    client.post("/api/answer", json={"ref": data["item"]["ref"], "answer": task.candidates[0]})
    out = tmp_path / "answers.csv"
    assert cli.main(["export", "--db", str(env["store"].path), "--out", str(out)]) == 0
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[0] == ["item_id", "annotator_id", "protocol", "answer", "submitted_at", "lead_time"]
    assert rows[1][:4] == [task.item_id, "alice", task.protocol, task.candidates[0]] and rows[1][5] == ""
    args = cli.parser().parse_args(["serve", "--root", str(env["root"]), "--db", str(env["store"].path),
                                    "--datasets", "toy", "--port", "0", "--params", str(tmp_path / "none.yaml")])
    server, catalog, k = cli.make_server(args, {})
    try:
        assert server.effective_host == "127.0.0.1" and k == 3 and len(catalog.entries) == 8
    finally:
        server.close()
    args = cli.parser().parse_args(["serve", "--root", str(env["root"]), "--db", str(env["store"].path),
                                    "--datasets", "toy", "--port", "0", "--allowed-host", "study.example.org"])
    server, _, _ = cli.make_server(args, {})
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.effective_port}/"
        for host, status in (("study.example.org", 200), ("localhost", 200), ("127.0.0.1", 200), ("other.example", 400)):
            assert requests.get(url, headers={"Host": host}, timeout=10).status_code == status, host
    finally:
        server.close()


@pytest.mark.slow
def test_load_twenty_annotators_hundred_answers_each(tmp_path):
    """20 concurrent annotators x 100 answers through the real HTTP server: each stored once."""
    png(tmp_path / "data/attacks/big/dlg/images/m/r.png", 1)
    png(tmp_path / "data/attacks/big/dlg/images/m/o.png", 2)
    items = [T.Task(f"big/m/dlg/test-{i:06d}", "big", "m", "dlg", f"test-{i:06d}", "A", "a", ("a", "b", "c"),
                    "data/attacks/big/dlg/images/m/o.png", "data/attacks/big/dlg/images/m/r.png", "ok")
             for i in range(250)]
    T.write_tasks(tmp_path / "data/tasks/big/tasks.csv", items)
    store = Store(tmp_path / "answers.sqlite")
    tokens = store.add_annotators([f"ann{i:02d}" for i in range(20)])
    app = create_app(Catalog.load(tmp_path, ["big"], store.ref), store, annotators_per_item=10)
    sent: dict[str, list[tuple[str, str]]] = {}
    errors: list[str] = []
    start = threading.Barrier(20)
    with ServerThread(app, threads=8) as server:
        threads = [threading.Thread(target=annotate_recording, args=(who, server.url, tokens, sent, errors, start))
                   for who in tokens]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=300)
        seconds = time.perf_counter() - t0
    assert not errors, errors[:3]
    by_ref = {store.ref(t.item_id): t.item_id for t in items}
    expected = {(by_ref[ref], who, answer) for who, pairs in sent.items() for ref, answer in pairs}
    with sqlite3.connect(store.path) as db:
        rows = db.execute("SELECT item_id, annotator_id, answer FROM answers").fetchall()
    assert len(rows) == 2000 == len(expected)
    assert set(rows) == expected  # every answer given is stored, exactly once, as given
    assert Counter(r[1] for r in rows) == {who: 100 for who in tokens}
    assert max(Counter(r[0] for r in rows).values()) <= 10  # K never exceeded
    print(f"load test: 2000 answers from 20 annotators in {seconds:.1f} s")


def annotate_recording(who, url, tokens, sent, errors, start):
    """One annotator: sign in, then 100 times answer the item shown and record (ref, answer)."""
    try:
        with requests.Session() as s:
            assert s.post(f"{url}/api/session", json={"token": tokens[who]}, timeout=30).ok
            start.wait(timeout=30)
            data = s.get(f"{url}/api/next", timeout=30).json()
            mine = []
            for n in range(100):
                ref = data["item"]["ref"]
                answer = "abc"[(n + int(who[-2:])) % 3]
                resp = s.post(f"{url}/api/answer", json={"ref": ref, "answer": answer}, timeout=60)
                if resp.status_code != 200 or resp.json().get("stored") is not True:
                    raise AssertionError(f"answer {n}: {resp.status_code} {resp.text[:200]}")
                mine.append((ref, answer))
                data = resp.json()
            sent[who] = mine
    except Exception as exc:  # reported by the test; an exception in a thread would be lost
        errors.append(f"{who}: {exc!r}")


def test_lead_time_is_checked_and_stored(env):
    client = signed_in(env)
    data, task = current(env, client)
    ref = data["item"]["ref"]
    for bad in ("fast", -1, True, [2]):
        r = client.post("/api/answer", json={"ref": ref, "answer": task.candidates[0], "lead_time": bad})
        assert r.status_code == 400 and "lead_time" in r.get_json()["error"], bad
    r = client.post("/api/answer", json={"ref": ref, "answer": task.candidates[0], "lead_time": 2.34567})
    assert r.status_code == 200
    with sqlite3.connect(env["store"].path) as db:
        assert db.execute("SELECT lead_time FROM answers WHERE item_id=?", (task.item_id,)).fetchone()[0] == 2.346
    r = client.post("/api/answer", json={"ref": ref, "answer": task.candidates[0], "extra": 1})
    assert r.status_code == 400
    data, task = current(env, client)  # a tab left open for days: the answer is stored, its time is not
    r = client.post("/api/answer", json={"ref": data["item"]["ref"], "answer": task.candidates[0], "lead_time": 1e9})
    assert r.status_code == 200
    with sqlite3.connect(env["store"].path) as db:
        assert db.execute("SELECT lead_time FROM answers WHERE item_id=?", (task.item_id,)).fetchone()[0] is None


def test_a_database_from_before_lead_times_gains_the_column(tmp_path):
    db_path = tmp_path / "old.sqlite"
    with sqlite3.connect(db_path) as db:
        db.executescript("""CREATE TABLE answers (item_id TEXT NOT NULL, annotator_id TEXT NOT NULL,
            protocol TEXT NOT NULL, answer TEXT NOT NULL, submitted_at TEXT NOT NULL, PRIMARY KEY (item_id, annotator_id));
            CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO settings VALUES ('schema_version', '1');
            INSERT INTO answers VALUES ('toy/m/dlg/x', 'ann', 'A', 'cat', '2026-01-01T00:00:00+00:00');""")
    store = Store(db_path)
    assert store.answer_rows() == [("toy/m/dlg/x", "ann", "A", "cat", "2026-01-01T00:00:00+00:00", None)]


def test_token_links_name_where_the_app_is_served(tmp_path, env):
    """`serve` records its address; `tokens` prints links to it (not to the params' default port)."""
    db = tmp_path / "served.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "semsim_study.annotation", "serve", "--root", str(env["root"]),
                             "--db", str(db), "--datasets", "toy", "--port", "0", "--params", str(tmp_path / "no.yaml")],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        line, lines = "", []
        while "annotators open" not in line and time.time() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        # 4 reconstructions of each original (2 models x 2 attacks), K = 3, one view each
        assert any("at least 12 people are needed (ceil(4 x 3 / 1))" in x for x in lines), lines
        assert port != 8765
        out = subprocess.run([sys.executable, "-m", "semsim_study.annotation", "tokens", "--db", str(db), "--add",
                              "erin", "--params", str(tmp_path / "no.yaml")], capture_output=True, text=True, timeout=60)
        name, token, link = out.stdout.strip().split("\t")
        assert link == f"http://127.0.0.1:{port}/#token={token}"
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out = subprocess.run([sys.executable, "-m", "semsim_study.annotation", "tokens", "--db", str(db), "--add", "fay",
                          "--url", "https://annotate.example.org/", "--params", str(tmp_path / "no.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().split("\t")[2].startswith("https://annotate.example.org/#token=")
