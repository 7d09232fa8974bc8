"""The app's SQLite store: schema (contract 3), tokens, allocation, resume, export."""

from __future__ import annotations

import csv
import sqlite3
import threading
from collections import Counter

import pytest

from semsim_study.annotation.store import (ANSWER_COLUMNS, AlreadyAnswered, ItemComplete, NotOffered, Pool,
                                           Store, token_hash)
from semsim_study.errors import ConfigError, DataError

ITEMS = [f"toy/m1/dlg/test-{i:06d}" for i in range(12)]


@pytest.fixture()
def store(tmp_path) -> Store:
    return Store(tmp_path / "db" / "answers.sqlite")


def answer_all(store: Store, who: str, pool: Pool, k: int, limit: int | None = None) -> list[str]:
    got = []
    while limit is None or len(got) < limit:
        item = store.offer(who, pool, k)
        if item is None:
            break
        assert store.submit(who, item, "A", "class01", k) is True
        got.append(item)
    return got


def test_schema_is_the_contract(store):
    with sqlite3.connect(store.path) as db:
        cols = db.execute("PRAGMA table_info(answers)").fetchall()
        assert [(c[1], c[2], c[3], c[5]) for c in cols] == [
            ("item_id", "TEXT", 1, 1), ("annotator_id", "TEXT", 1, 2), ("protocol", "TEXT", 1, 0),
            ("answer", "TEXT", 1, 0), ("submitted_at", "TEXT", 1, 0), ("lead_time", "REAL", 0, 0)]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute("INSERT INTO answers VALUES ('i', 'a', 'A', 'x', 't', NULL)")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO answers VALUES ('i', 'a', 'A', 'y', 't', 1.5)")


def test_tokens_only_hash_stored(store):
    tokens = store.add_annotators(["alice", "bob"])
    assert set(tokens) == {"alice", "bob"} and len(set(tokens.values())) == 2
    assert store.authenticate(tokens["alice"]) == "alice"
    assert store.authenticate(tokens["bob"]) == "bob"
    assert store.authenticate("x" * 32) is None and store.authenticate("") is None
    raw = b"".join(p.read_bytes() for p in store.path.parent.iterdir())  # the database and any WAL
    assert tokens["alice"].encode() not in raw and token_hash(tokens["alice"]).encode() in raw
    with pytest.raises(ConfigError, match="already exist: alice"):
        store.add_annotators(["alice"])
    with pytest.raises(ConfigError, match="annotator id"):
        store.add_annotators(["../evil"])
    new = store.rotate_tokens(["alice"])
    assert store.authenticate(tokens["alice"]) is None and store.authenticate(new["alice"]) == "alice"
    with pytest.raises(ConfigError, match="no annotator 'carol'"):
        store.rotate_tokens(["carol"])
    assert [a[0] for a in store.annotators()] == ["alice", "bob"]


def test_never_twice_and_finishes(store):
    pool = Pool(ITEMS)
    got = answer_all(store, "alice", pool, k=3)
    assert sorted(got) == sorted(ITEMS)  # every item once, then done
    assert store.offer("alice", pool, 3) is None
    assert store.progress("alice", pool, 3)["answered"] == 12


def test_k_cap_and_even_coverage(store):
    pool = Pool(ITEMS)
    k = 2
    names = [f"a{i}" for i in range(5)]
    # Round robin, one answer each at a time: coverage never differs by more than one.
    done = set()
    while len(done) < len(names):
        for who in names:
            if who in done:
                continue
            item = store.offer(who, pool, k)
            if item is None:
                done.add(who)
                continue
            store.submit(who, item, "A", "x", k)
            counts = Counter(row[0] for row in store.answer_rows())
            values = [counts.get(i, 0) for i in ITEMS]
            assert max(values) - min(values) <= 1
    counts = Counter(row[0] for row in store.answer_rows())
    assert all(counts[i] == k for i in ITEMS)  # exactly K each
    pairs = [(row[0], row[1]) for row in store.answer_rows()]
    assert len(pairs) == len(set(pairs)) == len(ITEMS) * k


def test_least_covered_first_and_live_offers_count(store):
    pool = Pool(ITEMS[:3])
    first = answer_all(store, "alice", pool, k=3, limit=2)
    # bob starts where nobody has answered yet
    assert store.offer("bob", pool, 3) not in first
    # one item, K = 1: while alice looks at it, bob gets nothing
    one = Pool(ITEMS[5:6])
    assert store.offer("alice", one, 1) == ITEMS[5]
    assert store.offer("bob", one, 1) is None
    # once alice's lease has lapsed, bob may take it; alice's late answer is then refused
    assert store.offer("bob", one, 1, lease_seconds=0.0) == ITEMS[5]
    store.submit("bob", ITEMS[5], "A", "x", 1)
    with pytest.raises(ItemComplete):
        store.submit("alice", ITEMS[5], "A", "x", 1)
    assert store.offer("alice", one, 1) is None


def test_ties_seeded_per_annotator(tmp_path):
    pool = Pool(ITEMS, seed=0)
    firsts = {who: Store(tmp_path / f"{who}.sqlite").offer(who, pool, 1) for who in ("a", "b", "c", "d", "e")}
    assert len(set(firsts.values())) > 1  # not everyone starts on the same item
    again = Store(tmp_path / "again.sqlite").offer("a", Pool(ITEMS, seed=0), 1)
    assert again == firsts["a"]  # same annotator, same order after a restart
    orders = {Store(tmp_path / f"s{s}.sqlite").offer("a", Pool(ITEMS, seed=s), 1) for s in range(6)}
    assert len(orders) > 1  # and the study seed matters


def test_resume_same_item_until_answered(tmp_path):
    path = tmp_path / "answers.sqlite"
    pool = Pool(ITEMS)
    s1 = Store(path)
    answered = answer_all(s1, "alice", pool, k=2, limit=4)
    shown = s1.offer("alice", pool, 2)
    assert s1.offer("alice", pool, 2) == shown  # a reload shows the same item
    s2 = Store(path)  # the app restarts
    assert s2.offer("alice", Pool(ITEMS), 2) == shown
    assert s2.progress("alice", pool, 2)["answered"] == 4
    s2.submit("alice", shown, "A", "x", 2)
    rest = answer_all(s2, "alice", pool, k=2)
    assert set(rest).isdisjoint(answered + [shown])
    assert len(answered) + 1 + len(rest) == len(ITEMS)


def test_submit_rules(store):
    pool = Pool(ITEMS)
    item = store.offer("alice", pool, 2)
    other = next(i for i in ITEMS if i != item)
    with pytest.raises(NotOffered):
        store.submit("alice", other, "A", "x", 2)
    with pytest.raises(NotOffered):
        store.submit("bob", item, "A", "x", 2)
    assert store.submit("alice", item, "A", "x", 2) is True
    assert store.submit("alice", item, "A", "x", 2) is False  # a retried request changes nothing
    with pytest.raises(AlreadyAnswered):
        store.submit("alice", item, "A", "y", 2)
    assert store.answer_rows() == [(item, "alice", "A", "x", store.answer_rows()[0][4], None)]


def test_progress(store):
    pool = Pool(ITEMS[:4])
    answer_all(store, "alice", pool, k=2, limit=3)
    p = store.progress("alice", pool, 2)
    assert p == {"answered": 3, "available": 1, "study_answers": 3, "study_target": 8, "items_complete": 0,
                 "items": 4, "annotators_per_item": 2}


def test_export(store, tmp_path):
    pool = Pool(ITEMS[:3])
    answer_all(store, "bob", pool, k=2)
    answer_all(store, "alice", pool, k=2, limit=1)
    out = tmp_path / "out" / "answers.csv"
    assert store.export_csv(out) == 4
    with open(out, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == (*ANSWER_COLUMNS, "lead_time")
    assert len(rows) == 5 and {r[1] for r in rows[1:]} == {"alice", "bob"}
    assert all(r[4].endswith("+00:00") and "T" in r[4] for r in rows[1:])  # ISO 8601, UTC
    with pytest.raises(DataError, match="no such annotation database"):
        Store(tmp_path / "nothing.sqlite", create=False)


# ---------------------------------------------------------------------------- exposure control

ORIGINALS = [f"test-{j:06d}" for j in range(3)]
RECONS = {f"toy/m{m}/dlg@{b}/{o}": o for o in ORIGINALS for m in (1, 2) for b in (2, 4)}  # R = 4 per original


def exposure_pool(max_views=1, **kw) -> Pool:
    return Pool(list(RECONS), groups=list(RECONS.values()), max_views=max_views, **kw)


def originals_seen(store: Store) -> Counter:
    """(annotator, original) -> study items of it ever offered to that annotator."""
    with sqlite3.connect(store.path) as db:
        return Counter((who, RECONS[item]) for who, item in db.execute("SELECT annotator_id, item_id FROM views")
                       if item in RECONS)


def test_people_needed_follows_the_exposure_rule():
    assert exposure_pool(1).people_needed(3) == 12  # ceil(4 * 3 / 1)
    assert exposure_pool(3).people_needed(2) == 3   # ceil(4 * 2 / 3)
    assert exposure_pool(None).people_needed(3) == 3
    assert Pool(ITEMS).people_needed(2) == 2
    with pytest.raises(ConfigError, match="max_views must be at least 1"):
        exposure_pool(0)


def test_one_view_per_original_and_k_reached_with_enough_people(store):
    pool = exposure_pool(1)
    k = 2
    names = [f"a{i}" for i in range(pool.people_needed(k))]  # 8
    done: set[str] = set()
    while len(done) < len(names):  # round robin, one answer at a time
        for who in names:
            if who not in done and not answer_all(store, who, pool, k, limit=1):
                done.add(who)
    counts = Counter(row[0] for row in store.answer_rows())
    assert all(counts[i] == k for i in RECONS)  # every reconstruction got its K answers
    assert max(originals_seen(store).values()) == 1
    assert Counter(row[1] for row in store.answer_rows()) == {who: len(ORIGINALS) for who in names}
    p = store.progress("a0", pool, k)
    assert p["available"] == 0 and p["items_complete"] == len(RECONS)


def test_too_few_people_leave_items_short(store):
    pool = exposure_pool(1)
    for who in ("a", "b", "c"):
        assert len(answer_all(store, who, pool, 2)) == len(ORIGINALS)  # one per original, then done
        assert store.offer(who, pool, 2) is None
    assert len(store.answer_rows()) == 9 < len(RECONS) * 2
    assert max(originals_seen(store).values()) == 1
    assert store.progress("d", pool, 2)["available"] == len(ORIGINALS)  # a newcomer can take one per original


def test_max_views_two(store):
    pool = exposure_pool(2)
    got = answer_all(store, "alice", pool, 3)
    assert len(got) == 2 * len(ORIGINALS)
    assert set(Counter(RECONS[i] for i in got).values()) == {2}


def test_fifty_concurrent_annotators_never_see_an_original_twice(tmp_path):
    """50 threads, each its own annotator, against one Store (as the app's server threads share
    one): allocation's exposure check and lease are one transaction, so no race hands anyone two
    reconstructions of one original."""
    store = Store(tmp_path / "answers.sqlite")
    pool = exposure_pool(1)
    k = 4  # 12 items x 4 = 48 answers from 50 people who may take 3 each
    errors: list[str] = []
    start = threading.Barrier(50)

    def work(who: str) -> None:
        try:
            start.wait(timeout=30)
            while True:
                item = store.offer(who, pool, k)
                if item is None:
                    break
                store.submit(who, item, "A", "class01", k)
        except Exception as exc:  # reported below: an exception in a thread would be lost
            errors.append(f"{who}: {exc!r}")
        finally:
            store.close()  # this thread's connection

    threads = [threading.Thread(target=work, args=(f"ann{i:02d}",)) for i in range(50)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors[:3]
    assert max(originals_seen(store).values()) == 1
    rows = store.answer_rows()
    assert not [who for who, n in Counter((r[1], RECONS[r[0]]) for r in rows).items() if n > 1]
    assert Counter(r[0] for r in rows) == {i: k for i in RECONS}  # and still exactly K each


def test_answers_from_before_the_views_table_count_as_views(store):
    pool = exposure_pool(1)
    first = next(iter(RECONS))
    with sqlite3.connect(store.path) as db:  # an answer of a database made before exposure control
        db.execute("INSERT INTO answers VALUES (?, 'alice', 'A', 'x', '2026-01-01T00:00:00+00:00', NULL)", (first,))
    got = answer_all(store, "alice", pool, 3)
    assert RECONS[first] not in {RECONS[i] for i in got} and len(got) == len(ORIGINALS) - 1
