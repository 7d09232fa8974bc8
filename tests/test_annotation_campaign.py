"""Running a campaign: gold items, the status view (CLI and admin page), leaving out annotators
who fail the gold items."""

from __future__ import annotations

import copy
import io
import json
import sqlite3

import numpy as np
import pytest
from PIL import Image

from semsim_study.annotation import cli, collect, gold, importers, quality
from semsim_study.annotation.app import ADMIN_COOKIE, COOKIE, create_app
from semsim_study.annotation.catalog import Catalog
from semsim_study.annotation.status import status
from semsim_study.annotation.store import Store
from semsim_study.errors import ConfigError, DataError

from .support.annotation_helpers import project

ITEM_KEYS = {"ref", "protocol", "question", "candidates", "images"}
_INPUTS = ("data/tasks/toy/tasks.csv", "data/prepared/toy")  # as stages/annotate.py names them


@pytest.fixture()
def camp(tmp_path):
    built = project(tmp_path, {"toy": "A", "pairs": "B"}, images=2)  # 2 originals x 4 reconstructions each
    store = Store(tmp_path / "answers.sqlite")
    tokens = store.add_annotators(["alice", "bob"])
    catalog = Catalog.load(tmp_path, ["toy", "pairs"], store.ref)
    golden = {e.ref: e.task for e in gold.build(catalog, store.ref)}
    return {"root": tmp_path, "tasks": {**built["toy"], **built["pairs"]}, "store": store, "tokens": tokens,
            "catalog": catalog, "gold": golden}


def client_for(camp, who, **app_kw):
    app = create_app(camp["catalog"], camp["store"], annotators_per_item=2, **app_kw)
    client = app.test_client()
    assert client.post("/api/session", json={"token": camp["tokens"][who]}).status_code == 200
    return client


def answer_everything(camp, client, gold_right: bool) -> list[tuple[str, object]]:
    """Answer every item shown until none is left: study items with their first choice, gold
    items rightly or wrongly; returns (kind, task) in the order shown."""
    shown = []
    data = client.get("/api/next").json
    while data["item"] is not None:
        item = data["item"]
        assert set(item) == ITEM_KEYS and "gold" not in json.dumps(item).lower()
        task = camp["gold"].get(item["ref"])
        if task is None:
            task = camp["catalog"].by_ref[item["ref"]].task
            answer = task.candidates[0]
        else:
            answer = next(c for c in task.candidates if task.correct(c) == gold_right)
        shown.append(("gold" if isinstance(task, gold.GoldItem) else "study", task))
        resp = client.post("/api/answer", json={"ref": item["ref"], "answer": answer, "lead_time": 1.5})
        assert resp.status_code == 200 and resp.json["stored"] is True
        data = resp.json
    return shown


def test_gold_looks_ordinary_and_never_reaches_the_study_answers(camp, tmp_path):
    client = client_for(camp, "alice", gold_rate=0.5)  # no cap on views: alice answers every item
    shown = answer_everything(camp, client, gold_right=True)
    golds = [t for kind, t in shown if kind == "gold"]
    assert {t.kind for t in golds} == {"clean", "noise"} and {t.protocol for t in golds} == {"A", "B"}
    study = [t.item_id for kind, t in shown if kind == "study"]
    assert sorted(study) == sorted(camp["tasks"])
    # a gold item showing an original comes only after every reconstruction of it was answered
    for n, (kind, task) in enumerate(shown):
        if kind == "gold" and task.shows_original:
            later = [t for k, t in shown[n:] if k == "study"]
            assert gold.exposure_key(task) not in {gold.exposure_key(t) for t in later}
    store = camp["store"]
    assert {r[0] for r in store.answer_rows()} == set(camp["tasks"])
    assert len(store.gold_rows()) == len(golds) and all(r[3] == 1 for r in store.gold_rows())
    out = tmp_path / "export.csv"
    assert store.export_csv(out) == len(camp["tasks"])
    assert "gold" not in out.read_text()
    imported = importers.read_app_db([store.path], camp["tasks"])
    assert set(imported["item_id"]) == set(camp["tasks"]) and len(imported) == len(camp["tasks"])
    state = status(store, camp["tasks"], 2)
    assert sum(r["answers"] for r in state["coverage"]) == len(camp["tasks"])
    alice = next(r for r in state["annotators"] if r["annotator"] == "alice")
    assert alice == {"annotator": "alice", "answers": len(camp["tasks"]), "gold_answers": len(golds),
                     "gold_accuracy": 1.0, "median_seconds": 1.5}


def test_noise_is_served_from_memory_and_gold_images_only_while_shown(camp):
    client = client_for(camp, "alice", gold_rate=0.99)
    item = client.get("/api/next").json["item"]
    task = camp["gold"][item["ref"]]  # the first view is gold at this rate; only noise qualifies yet
    assert task.kind == "noise" and task.protocol == "A"
    png = client.get(item["images"]["reconstruction"])
    assert png.status_code == 200 and png.mimetype == "image/png"
    pixels = np.asarray(Image.open(io.BytesIO(png.data)), dtype=np.float64) / 255
    assert pixels.shape == (32, 32, 3)
    # an inversion's start: Gaussian noise with the dataset's own per-channel mean and spread
    originals = [camp["catalog"].original_path(t) for t in camp["tasks"].values() if t.dataset == task.dataset]
    mean, std = gold._channel_stats([np.asarray(Image.open(o).convert("RGB")) for o in originals])
    assert np.abs(pixels.reshape(-1, 3).mean(0) - mean).max() < 0.08
    assert np.all(pixels.reshape(-1, 3).std(0) > 0.5 * np.asarray(std))
    assert not any(np.array_equal((pixels * 255).round(), np.asarray(Image.open(o).convert("RGB"))) for o in originals)
    other = next(ref for ref in camp["gold"] if ref != item["ref"])
    assert client.get(f"/img/{other}/reconstruction").status_code == 403
    wrong = next(c for c in task.candidates if c == task.truth)  # naming the class of noise is wrong
    assert client.post("/api/answer", json={"ref": item["ref"], "answer": wrong}).status_code == 200
    assert camp["store"].gold_rows()[0][1:4] == ("alice", "noise", 0)
    assert camp["store"].answer_rows() == []


def test_admin_page_and_api_need_the_admin_token(camp, tmp_path):
    app = create_app(camp["catalog"], camp["store"], annotators_per_item=2)
    anon = app.test_client()
    for path in ("/admin", "/api/admin/status"):
        resp = anon.get(path)
        assert resp.status_code == 401 and b"alice" not in resp.data
    annotator = app.test_client()
    annotator.post("/api/session", json={"token": camp["tokens"]["alice"]})
    for path in ("/admin", "/api/admin/status"):
        assert annotator.get(path).status_code == 403
    resp = anon.get("/api/admin/status", headers={"Authorization": f"Bearer {camp['tokens']['bob']}"})
    assert resp.status_code == 403 and "admin token" in resp.json["error"]
    assert anon.post("/api/admin/session", json={"token": camp["tokens"]["bob"]}).status_code == 403
    assert anon.post("/api/admin/session", json={"token": "not-a-token-at-all"}).status_code == 401
    token = camp["store"].rotate_admin_token()
    assert camp["store"].authenticate(token) is None  # the admin token signs nobody in to answer
    assert annotator.post("/api/session", json={"token": token}).status_code == 401
    resp = anon.post("/api/admin/session", json={"token": token}, headers={"Origin": "http://evil.example"})
    assert resp.status_code == 403
    assert anon.get("/admin", headers={"Host": "evil.example"}).status_code == 400
    admin = app.test_client()
    resp = admin.post("/api/admin/session", json={"token": token})
    assert resp.status_code == 200 and f"{ADMIN_COOKIE}=" in resp.headers["Set-Cookie"]
    assert "HttpOnly" in resp.headers["Set-Cookie"] and "SameSite=Strict" in resp.headers["Set-Cookie"]
    page = admin.get("/admin")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert b'id="coverage"' in page.data and b"alice" in page.data and page.headers["Cache-Control"] == "no-store"
    assert b"<td>pairs</td><td>B</td><td>0</td><td>8</td>" in page.data  # rendered values, not their methods
    data = anon.get("/api/admin/status", headers={"Authorization": f"Bearer {token}"}).json
    assert [(r["dataset"], r["protocol"], r["items"]) for r in data["coverage"]] == [("pairs", "B", 8), ("toy", "A", 8)]
    assert raw_token_not_stored(camp["store"], token)
    assert camp["store"].is_admin(camp["store"].rotate_admin_token()) and not camp["store"].is_admin(token)


def raw_token_not_stored(store: Store, token: str) -> bool:
    raw = b"".join(p.read_bytes() for p in store.path.parent.glob("answers.sqlite*"))
    return token.encode() not in raw


def test_status_cli_table_and_json(camp, capsys):
    client = client_for(camp, "bob", gold_rate=0.5, max_views_per_original=1)
    answer_everything(camp, client, gold_right=False)
    db, root = str(camp["store"].path), str(camp["root"])
    assert cli.main(["status", "--db", db, "--root", root, "--datasets", "toy", "pairs", "--annotators-per-item", "2",
                     "--json", "--params", str(camp["root"] / "none.yaml")]) == 0
    state = json.loads(capsys.readouterr().out)
    bob = next(r for r in state["annotators"] if r["annotator"] == "bob")
    assert bob["answers"] == 4 and bob["gold_accuracy"] == 0.0  # one reconstruction per original: 4 originals
    assert {r["dataset"] for r in state["agreement"]} == {"toy", "pairs"}
    assert cli.main(["status", "--db", db, "--root", root, "--datasets", "toy", "pairs",
                     "--params", str(camp["root"] / "none.yaml")]) == 0
    text = capsys.readouterr().out
    assert "Coverage" in text and "bob" in text and "Fleiss" in text
    assert cli.main(["tokens", "--db", db, "--admin", "--url", "http://127.0.0.1:9"]) == 0
    name, token, link = capsys.readouterr().out.strip().split("\t")
    assert name == "admin" and link == f"http://127.0.0.1:9/admin#token={token}" and camp["store"].is_admin(token)
    assert cli.main(["status", "--db", str(camp["root"] / "none.sqlite")]) == 2


def test_annotators_below_the_gold_threshold_are_left_out_and_named(camp, monkeypatch):
    answer_everything(camp, client_for(camp, "alice", gold_rate=0.5), gold_right=True)
    answer_everything(camp, client_for(camp, "bob", gold_rate=0.5), gold_right=False)
    db = str(camp["store"].path)
    stats = quality.gold_stats([db])
    assert stats["alice"]["gold_accuracy"] == 1.0 and stats["bob"]["gold_accuracy"] == 0.0
    params = {"seed": 0, "datasets": ["toy", "pairs"],
              "annotate": {"source": "app", "paths": {"toy": [db], "pairs": [db]},
                           "quality": {"min_gold_accuracy": 0.8}}}
    monkeypatch.chdir(camp["root"])
    result = collect.run(params, "toy", *_INPUTS)
    assert set(result.answers["annotator_id"]) == {"alice"}
    assert result.summary["excluded_annotators"] == [
        {"annotator": "bob", "gold_accuracy": 0.0, "gold_answers": stats["bob"]["gold_answers"]}]
    assert result.summary["min_gold_accuracy"] == 0.8
    assert json.loads(json.dumps(result.summary))["excluded_annotators"][0]["annotator"] == "bob"  # as the stage writes it
    kept = collect.run({**params, "annotate": {**params["annotate"], "quality": {"min_gold_accuracy": None}}}, "toy",
                       *_INPUTS)
    assert set(kept.answers["annotator_id"]) == {"alice", "bob"} and "excluded_annotators" not in kept.summary
    strict = copy.deepcopy(params)
    strict["annotate"]["quality"]["min_gold_accuracy"] = 1.0
    assert set(collect.run(strict, "toy", *_INPUTS).answers["annotator_id"]) == {"alice"}  # right every time: kept
    with sqlite3.connect(db) as con:  # alice's gold record spoilt by hand: nobody is left
        con.execute("UPDATE gold_answers SET correct=0 WHERE annotator_id='alice'")
    with pytest.raises(DataError, match="every annotator with answers here is below"):
        collect.run(strict, "toy", *_INPUTS)
    csv_params = copy.deepcopy(params)
    csv_params["annotate"]["source"] = "csv"
    with pytest.raises(ConfigError, match="gold answers are kept only in the app's database"):
        collect.run(csv_params, "toy", *_INPUTS)
    bad = copy.deepcopy(params)
    bad["annotate"]["quality"]["min_gold_accuracy"] = 1.5
    with pytest.raises(ConfigError, match="'annotate.quality.min_gold_accuracy' must be a finite number"):
        collect.run(bad, "toy", *_INPUTS)


def test_cookie_of_an_annotator_is_not_an_admin_cookie(camp):
    """An annotator's token put in the admin cookie by hand opens nothing."""
    app = create_app(camp["catalog"], camp["store"], annotators_per_item=2)
    client = app.test_client()
    client.set_cookie(ADMIN_COOKIE, camp["tokens"]["alice"])
    assert client.get("/api/admin/status").status_code == 403
    client.set_cookie(COOKIE, camp["tokens"]["alice"])
    assert client.get("/admin").status_code == 403


def test_database_has_no_gold_in_answers_table(camp):
    answer_everything(camp, client_for(camp, "alice", gold_rate=0.9), gold_right=True)
    with sqlite3.connect(camp["store"].path) as db:
        assert not db.execute("SELECT 1 FROM answers WHERE item_id LIKE 'gold:%'").fetchone()
        assert db.execute("SELECT COUNT(*) FROM gold_answers").fetchone()[0] > 0


def test_gold_refuses_an_original_outside_the_attack_folders(camp):
    """Protocol A items never show their original, so the catalog checks it only when gold needs it."""
    root = camp["root"]
    path = root / "data/tasks/toy/tasks.csv"
    text = path.read_text()
    original = text.splitlines()[1].split(",")[8]
    (root / "data/prepared").mkdir(parents=True)
    (root / "data/prepared/leak.png").write_bytes((root / original).read_bytes())
    path.write_text(text.replace(original, "data/prepared/leak.png"))
    catalog = Catalog.load(root, ["toy"], camp["store"].ref)
    with pytest.raises(DataError, match="original data/prepared/leak.png lies outside"):
        gold.build(catalog, camp["store"].ref)
    with pytest.raises(DataError, match="lies outside"):
        create_app(catalog, camp["store"], annotators_per_item=2, gold_rate=0.1)
