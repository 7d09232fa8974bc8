"""The annotation app's SQLite database: answers as they are given, annotators, allocation.

Tables (contract 3 of the project: ``answers`` is what importers read; the rest is the app's):

- ``answers(item_id, annotator_id, protocol, answer, submitted_at)``, primary key
  (item_id, annotator_id): one answer per annotator per item, final once written;
- ``annotators(annotator_id, token_sha256, created_at)``: only a hash of each token is kept;
- ``offers(annotator_id, item_id, offered_at)``: the one item each annotator is looking at.
  An offer counts towards the item's coverage for ``lease_seconds``, so K annotators looking
  at once do not all get the same last slot; an annotator who leaves keeps the offer and sees
  the same item on return;
- ``views(annotator_id, item_id)``: every item (study or gold) ever offered to an annotator,
  so the exposure rule counts what a person has seen, not only what they answered;
- ``gold_answers(item_id, annotator_id, kind, protocol, answer, correct, submitted_at,
  lead_time)``: answers to gold items (``gold.py``), kept apart from ``answers`` so that no
  export, importer or coverage count can take one for a study answer;
- ``settings(key, value)``: schema version, the secret that makes public item refs, the
  address the app was last served at (``served_url``, for the token links ``tokens`` prints),
  the hash of the admin token, and the campaign's settings as ``serve`` last ran them.

Durability and concurrency: WAL journal, ``synchronous=FULL`` (each answer is on disk when the
request returns), one connection per thread (never shared), ``BEGIN IMMEDIATE`` around every
read-modify-write (allocation, submission) so concurrent requests serialise on SQLite's write
lock instead of racing, and a busy timeout so they wait rather than fail. Storing an answer and
choosing the next item is one transaction: one disk sync per answer.

Allocation: least-covered first (answers plus live offers of others), never an item the
annotator answered, never one with K answers, and (exposure control) never a reconstruction of
an original of which the annotator has already seen ``max_views`` reconstructions: a second
reconstruction of the same image would be judged by someone who knows what it should show.
Gold items are mixed in at ``gold_rate`` (a draw seeded per annotator and view), and one that
shows an original only once none of that original's reconstructions is left for the
annotator, so gold never primes a study answer. Ties broken by a permutation seeded per
annotator (and the study seed), so annotators spread over items instead of all starting on
the first one, and the same annotator gets the same order after a restart. An answer to an
item that reached K while the annotator's offer had lapsed is refused (ItemComplete), so
every item ends with exactly K answers (what agreement statistics such as Fleiss' kappa want).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Hashable, Iterator, Mapping, Sequence

import numpy as np

from .. import atomic
from ..errors import ConfigError, DataError
from .longformat import ANNOTATOR_ID, ANNOTATOR_RULE

SCHEMA_VERSION = "1"
ANSWER_COLUMNS = ("item_id", "annotator_id", "protocol", "answer", "submitted_at")
SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    item_id TEXT NOT NULL,
    annotator_id TEXT NOT NULL,
    protocol TEXT NOT NULL,
    answer TEXT NOT NULL,
    submitted_at TEXT NOT NULL,
    lead_time REAL,
    PRIMARY KEY (item_id, annotator_id)
);
CREATE INDEX IF NOT EXISTS answers_by_annotator ON answers (annotator_id);
CREATE TABLE IF NOT EXISTS annotators (
    annotator_id TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS offers (
    annotator_id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    offered_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS views (
    annotator_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    PRIMARY KEY (annotator_id, item_id)
);
CREATE TABLE IF NOT EXISTS gold_answers (
    item_id TEXT NOT NULL,
    annotator_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    protocol TEXT NOT NULL,
    answer TEXT NOT NULL,
    correct INTEGER NOT NULL,
    submitted_at TEXT NOT NULL,
    lead_time REAL,
    PRIMARY KEY (item_id, annotator_id)
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class NotOffered(Exception):
    """The item is not the one this annotator was shown."""


class AlreadyAnswered(Exception):
    """The annotator answered this item before, differently."""


class ItemComplete(Exception):
    """The item got its K answers from others while this annotator's offer had lapsed."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Pool:
    """The items an app serves, in a fixed order, with each annotator's tie-break order.

    ``groups`` names the original each item reconstructs (any hashable key; default: every item
    its own), so that allocation can cap a person's views of one original at ``max_views``
    (None: no cap). ``gold`` maps gold item id -> (kind, group of the original it shows, or
    None); they are offered at ``gold_rate`` and never count towards any item's coverage.
    """

    def __init__(self, items: Sequence[str], seed: int = 0, cache_size: int = 1024, *,
                 groups: Sequence[Hashable] | None = None, max_views: int | None = None,
                 gold: Mapping[str, tuple[str, Hashable | None]] | None = None, gold_rate: float = 0.0):
        self.items = tuple(items)
        self.seed = int(seed)
        self.index = {item: i for i, item in enumerate(self.items)}
        if len(self.index) != len(self.items):
            raise DataError("the task pool lists an item twice")
        if max_views is not None and max_views < 1:
            raise ConfigError(f"max_views must be at least 1 (or None for no cap), got {max_views}")
        if not 0.0 <= gold_rate < 1.0:
            raise ConfigError(f"gold_rate must lie in [0, 1), got {gold_rate}")
        self.max_views = max_views
        groups = list(groups) if groups is not None else list(self.items)
        if len(groups) != len(self.items):
            raise DataError(f"the task pool has {len(self.items)} items but {len(groups)} groups")
        codes: dict[Hashable, int] = {}
        self.group = np.array([codes.setdefault(g, len(codes)) for g in groups], dtype=np.int64)
        gold = dict(gold or {})
        self.gold = tuple(gold)
        self.gold_index = {g: i for i, g in enumerate(self.gold)}
        if set(self.gold_index) & set(self.index):
            raise DataError("a gold item has the id of a study item")
        self.gold_kind = tuple(kind for kind, _ in gold.values())
        # a gold item's original outside the study's groups constrains nothing: code -1
        self.gold_group = np.array([codes.get(g, -1) if g is not None else -1 for _, g in gold.values()],
                                   dtype=np.int64)
        self.groups = len(codes)
        self.gold_rate = float(gold_rate) if self.gold else 0.0
        self._ranks: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.items)

    @property
    def per_original(self) -> int:
        """R: the most items that share one original."""
        return int(np.bincount(self.group).max()) if len(self.items) else 0

    def people_needed(self, k: int) -> int:
        """The fewest annotators that can give every item K answers: with R reconstructions of
        one original and at most v views of it per person, ceil(R * K / v) (the largest R counts)."""
        largest = self.per_original
        if not largest:
            return 0
        return -(-largest * k // min(self.max_views or largest, largest))

    def rank(self, annotator_id: str, salt: int = 0) -> np.ndarray:
        """rank[i]: where item i comes in this annotator's order among equally covered items
        (salt 1: the same for the gold items)."""
        key = f"{salt}:{annotator_id}"
        with self._lock:
            rank = self._ranks.get(key)
            if rank is not None:
                self._ranks.move_to_end(key)
                return rank
        size = len(self.gold) if salt else len(self.items)
        rank = np.empty(size, dtype=np.int64)
        rank[self._rng(annotator_id, salt).permutation(size)] = np.arange(size)
        rank.setflags(write=False)
        with self._lock:
            self._ranks[key] = rank
            while len(self._ranks) > self._cache_size:
                self._ranks.popitem(last=False)
        return rank

    def _rng(self, annotator_id: str, *extra: int) -> np.random.Generator:
        digest = hashlib.sha256(annotator_id.encode("utf-8")).digest()
        return np.random.default_rng([self.seed, int.from_bytes(digest[:8], "little"), *extra])

    def gold_turn(self, annotator_id: str, views: int) -> bool:
        """Whether this annotator's next new item (their ``views``-th) is a gold one: a draw
        seeded per annotator and view, so a restart offers the same sequence."""
        return self.gold_rate > 0 and self._rng(annotator_id, 2, views).random() < self.gold_rate


@dataclass(frozen=True)
class Exposure:
    """One annotator's history as allocation needs it."""

    seen: np.ndarray  # study items ever offered to (or answered by) them
    per_original: np.ndarray  # how many of each original's reconstructions they have seen
    gold_done: np.ndarray  # gold items they answered
    views: int  # items of any kind ever offered to them (the gold draw's counter)


def _counts(db: sqlite3.Connection, sql: str, args: tuple, index: Mapping[str, int], size: int) -> np.ndarray:
    """How often each pool position's item id comes among the ids ``sql`` returns (ids outside
    the pool ignored)."""
    out = np.zeros(size, dtype=np.int64)
    for (item_id,) in db.execute(sql, args):
        i = index.get(item_id)
        if i is not None:
            out[i] += 1
    return out


class Store:
    def __init__(self, path: str | Path, busy_timeout: float = 30.0, create: bool = True):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        if not create and not self.path.is_file():
            raise DataError(f"{self.path}: no such annotation database")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if "lead_time" not in [row[1] for row in db.execute("PRAGMA table_info(answers)")]:
                db.execute("ALTER TABLE answers ADD COLUMN lead_time REAL")  # a database from before lead times
            db.execute("INSERT OR IGNORE INTO settings VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            db.execute("INSERT OR IGNORE INTO settings VALUES ('ref_secret', ?)", (secrets.token_hex(32),))
            version = db.execute("SELECT value FROM settings WHERE key='schema_version'").fetchone()[0]
            self._secret = bytes.fromhex(db.execute("SELECT value FROM settings WHERE key='ref_secret'").fetchone()[0])
        if version != SCHEMA_VERSION:
            raise DataError(f"{self.path}: database schema version {version}, this app writes {SCHEMA_VERSION}")

    def _open(self, readonly: bool = False) -> sqlite3.Connection:
        try:
            if readonly:
                db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=self.busy_timeout,
                                     isolation_level=None)
            else:
                db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise DataError(f"{self.path}: cannot open the database ({exc})") from None
        return db

    @contextlib.contextmanager
    def connect(self, readonly: bool = False) -> Iterator[sqlite3.Connection]:
        """This thread's connection: threads never share one (sqlite3 objects are not thread-safe).

        Keeping it open between requests spares a connect and, more costly, the WAL
        checkpoint SQLite runs when the last connection closes.
        """
        if readonly:
            db = self._open(readonly=True)
            try:
                yield db
            finally:
                db.close()
            return
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._open()
        yield db

    def close(self) -> None:
        """Close the calling thread's connection (others close when their thread ends)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front, so read-then-write sequences cannot interleave."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ refs and tokens

    def ref(self, item_id: str) -> str:
        """A public handle for an item that says nothing about its model, attack or truth."""
        return hmac.new(self._secret, item_id.encode("utf-8"), hashlib.sha256).hexdigest()[:24]

    def add_annotators(self, names: Sequence[str]) -> dict[str, str]:
        """Create annotators; returns name -> token (shown once: only its hash is stored)."""
        self._check_names(names)
        tokens = {name: secrets.token_urlsafe(24) for name in names}
        with self.transaction() as db:
            taken = [n for n in names if db.execute("SELECT 1 FROM annotators WHERE annotator_id=?", (n,)).fetchone()]
            if taken:
                raise ConfigError(f"{self.path}: annotator(s) already exist: {', '.join(taken)} (use --rotate for a new token)")
            db.executemany("INSERT INTO annotators VALUES (?, ?, ?)",
                           [(n, token_hash(t), now_iso()) for n, t in tokens.items()])
        return tokens

    def rotate_tokens(self, names: Sequence[str]) -> dict[str, str]:
        """New tokens for existing annotators (the old ones stop working); their answers stay."""
        self._check_names(names)
        tokens = {name: secrets.token_urlsafe(24) for name in names}
        with self.transaction() as db:
            for name, token in tokens.items():
                if not db.execute("UPDATE annotators SET token_sha256=? WHERE annotator_id=?",
                                  (token_hash(token), name)).rowcount:
                    raise ConfigError(f"{self.path}: no annotator {name!r} (use --add)")
        return tokens

    @staticmethod
    def _check_names(names: Sequence[str]) -> None:
        for name in names:
            if not ANNOTATOR_ID.fullmatch(name):
                raise ConfigError(f"annotator id {name!r}: use {ANNOTATOR_RULE}")
        if len(set(names)) != len(names):
            raise ConfigError("an annotator id is given twice")

    def annotators(self) -> list[tuple[str, str, int]]:
        """(annotator_id, created_at, answers) for every annotator."""
        with self.connect() as db:
            return db.execute("""SELECT a.annotator_id, a.created_at, COUNT(x.item_id) FROM annotators a
                                 LEFT JOIN answers x ON x.annotator_id = a.annotator_id
                                 GROUP BY a.annotator_id ORDER BY a.annotator_id""").fetchall()

    def authenticate(self, token: str) -> str | None:
        if not isinstance(token, str) or not 16 <= len(token) <= 128:
            return None
        with self.connect() as db:
            row = db.execute("SELECT annotator_id FROM annotators WHERE token_sha256=?", (token_hash(token),)).fetchone()
        return row[0] if row else None

    def rotate_admin_token(self) -> str:
        """A new admin token (the status page's; the old one stops working), shown once: only its
        hash is stored. It is no annotator's: it signs nobody in to answer, and no annotator
        token opens the status page."""
        token = secrets.token_urlsafe(24)
        self.set_setting("admin_token_sha256", token_hash(token))
        return token

    def is_admin(self, token: str) -> bool:
        if not isinstance(token, str) or not 16 <= len(token) <= 128:
            return False
        stored = self.setting("admin_token_sha256")
        return stored is not None and hmac.compare_digest(stored, token_hash(token))

    # ------------------------------------------------------------------ allocation

    @staticmethod
    def _coverage(db: sqlite3.Connection, pool: Pool, annotator_id: str, now: float,
                  lease_seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(answers per item, answers + live offers of others per item, mask answered by me)."""
        answers = np.zeros(len(pool), dtype=np.int64)
        for item_id, n in db.execute("SELECT item_id, COUNT(*) FROM answers GROUP BY item_id"):
            i = pool.index.get(item_id)
            if i is not None:
                answers[i] = n
        load = answers.copy()
        load += _counts(db, "SELECT item_id FROM offers WHERE annotator_id != ? AND offered_at > ?",
                      (annotator_id, now - lease_seconds), pool.index, len(pool))
        mine = _counts(db, "SELECT item_id FROM answers WHERE annotator_id = ?", (annotator_id,), pool.index,
                       len(pool)) > 0
        return answers, load, mine

    @staticmethod
    def _seen(db: sqlite3.Connection, pool: Pool, annotator_id: str, mine: np.ndarray) -> Exposure:
        """What this annotator has seen (answers given before the views table existed count as
        views too), and the gold items they answered."""
        seen = mine | (_counts(db, "SELECT item_id FROM views WHERE annotator_id = ?", (annotator_id,), pool.index,
                               len(pool)) > 0)
        views = db.execute("SELECT COUNT(*) FROM views WHERE annotator_id = ?", (annotator_id,)).fetchone()[0]
        gold_done = _counts(db, "SELECT item_id FROM gold_answers WHERE annotator_id = ?", (annotator_id,),
                            pool.gold_index, len(pool.gold)) > 0
        return Exposure(seen, np.bincount(pool.group[seen], minlength=pool.groups), gold_done, views)

    @staticmethod
    def _open_items(pool: Pool, load: np.ndarray, mine: np.ndarray, exposure: Exposure, k: int) -> np.ndarray:
        """Study items this annotator may be offered: not answered by them, under K, and not a
        new view of an original they have already seen ``max_views`` reconstructions of."""
        open_ = (~mine) & (load < k)
        if pool.max_views is not None:
            open_ &= exposure.seen | (exposure.per_original[pool.group] < pool.max_views)
        return open_

    @staticmethod
    def _progress(pool: Pool, answers: np.ndarray, mine: np.ndarray, exposure: Exposure, open_: np.ndarray,
                  k: int) -> dict:
        """``open_``: ``_open_items`` on the answers alone (others' leases lapse)."""
        if pool.max_views is None:
            available = int(open_.sum())
        else:  # one original's reconstructions count up to the views of it the annotator has left
            seen, views = exposure.seen, exposure.per_original
            new = np.bincount(pool.group[open_ & ~seen], minlength=pool.groups)
            available = int((open_ & seen).sum() + np.minimum(new, np.maximum(pool.max_views - views, 0)).sum())
        return {
            "answered": int(mine.sum()),
            "available": available,
            "study_answers": int(np.minimum(answers, k).sum()),
            "study_target": int(len(answers) * k),
            "items_complete": int((answers >= k).sum()),
            "items": int(len(answers)),
            "annotators_per_item": k,
        }

    def _allocate(self, db: sqlite3.Connection, annotator_id: str, pool: Pool, k: int,
                  lease_seconds: float) -> tuple[str | None, dict]:
        """Inside a write transaction (so the exposure check and the lease cannot interleave with
        another request of the same annotator): the item to show now, and progress."""
        now = time.time()
        answers, load, mine = self._coverage(db, pool, annotator_id, now, lease_seconds)
        exposure = self._seen(db, pool, annotator_id, mine)
        open_ = self._open_items(pool, answers, mine, exposure, k)
        progress = self._progress(pool, answers, mine, exposure, open_, k)
        gold_done = exposure.gold_done
        row = db.execute("SELECT item_id, offered_at FROM offers WHERE annotator_id=?", (annotator_id,)).fetchone()
        if row and (row[0] in pool.index or row[0] in pool.gold_index):
            i = pool.index.get(row[0])
            keep = not mine[i] and load[i] < k if i is not None else not gold_done[pool.gold_index[row[0]]]
            if keep:
                if now - row[1] > lease_seconds / 4:  # keep the lease alive without a write per request
                    db.execute("UPDATE offers SET offered_at=? WHERE annotator_id=?", (now, annotator_id))
                return row[0], progress
        # Items others are looking at count as covered until their lease ends, so no item
        # collects more than K answers; a lapsed offer frees its slot for someone else.
        eligible = self._open_items(pool, load, mine, exposure, k)
        if not eligible.any():
            if row:
                db.execute("DELETE FROM offers WHERE annotator_id=?", (annotator_id,))
            return None, progress
        item_id = self._gold_pick(pool, annotator_id, exposure.views, open_, gold_done)
        if item_id is None:
            key = np.where(eligible, load * len(pool) + pool.rank(annotator_id), np.iinfo(np.int64).max)
            item_id = pool.items[int(np.argmin(key))]
        db.execute("INSERT OR REPLACE INTO offers VALUES (?, ?, ?)", (annotator_id, item_id, now))
        db.execute("INSERT OR IGNORE INTO views VALUES (?, ?)", (annotator_id, item_id))
        return item_id, progress

    @staticmethod
    def _gold_pick(pool: Pool, annotator_id: str, views: int, open_: np.ndarray, gold_done: np.ndarray) -> str | None:
        """A gold item when it is this view's turn for one, else None. One that shows an original
        qualifies only when no reconstruction of it can ever be offered to this annotator again
        (``open_`` ignores others' leases, which lapse): the original never primes a study answer."""
        if not pool.gold_turn(annotator_id, views):
            return None
        left = np.bincount(pool.group[open_], minlength=pool.groups)
        free = (pool.gold_group < 0) | (left[np.maximum(pool.gold_group, 0)] == 0)
        candidates = (~gold_done) & free
        if not candidates.any():
            return None
        key = np.where(candidates, pool.rank(annotator_id, salt=1), np.iinfo(np.int64).max)
        return pool.gold[int(np.argmin(key))]

    @staticmethod
    def _submit(db: sqlite3.Connection, annotator_id: str, item_id: str, protocol: str, answer: str, k: int,
                lead_time: float | None = None, gold: tuple[str, bool] | None = None) -> str:
        """Inside a write transaction: 'stored', 'repeat' (same answer before) or 'complete'.
        ``gold`` = (kind, correct) for a gold item: its answer goes to ``gold_answers``."""
        table = "gold_answers" if gold is not None else "answers"
        row = db.execute(f"SELECT answer FROM {table} WHERE item_id=? AND annotator_id=?",
                         (item_id, annotator_id)).fetchone()
        if row:
            if row[0] == answer:
                return "repeat"
            raise AlreadyAnswered(item_id)
        offer = db.execute("SELECT item_id FROM offers WHERE annotator_id=?", (annotator_id,)).fetchone()
        if not offer or offer[0] != item_id:
            raise NotOffered(item_id)
        db.execute("DELETE FROM offers WHERE annotator_id=?", (annotator_id,))
        if gold is not None:  # gold has no K: every annotator may answer it
            db.execute("INSERT INTO gold_answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (item_id, annotator_id, gold[0], protocol, answer, int(gold[1]), now_iso(), lead_time))
            return "stored"
        if db.execute("SELECT COUNT(*) FROM answers WHERE item_id=?", (item_id,)).fetchone()[0] >= k:
            return "complete"
        db.execute(f"INSERT INTO answers ({', '.join(ANSWER_COLUMNS)}, lead_time) VALUES (?, ?, ?, ?, ?, ?)",
                   (item_id, annotator_id, protocol, answer, now_iso(), lead_time))
        return "stored"

    def next_item(self, annotator_id: str, pool: Pool, k: int, lease_seconds: float = 900.0) -> tuple[str | None, dict]:
        """The item this annotator should answer now (the same one until answered; None when
        nothing is left for them) and their progress."""
        with self.transaction() as db:
            return self._allocate(db, annotator_id, pool, k, lease_seconds)

    def answer(self, annotator_id: str, item_id: str, protocol: str, answer: str, pool: Pool, k: int,
               lease_seconds: float = 900.0, lead_time: float | None = None,
               correct: bool | None = None) -> tuple[bool, str | None, dict]:
        """Store one answer and pick the next item in one transaction (one disk sync per answer).

        Returns (stored now?, next item, progress); False means the same answer was stored
        before (a retried request). Raises AlreadyAnswered for a different second answer,
        NotOffered if the item is not the one this annotator was shown, ItemComplete if it got
        its K answers while this annotator's offer had lapsed (the stale offer is dropped).
        A gold item's answer needs ``correct`` (whether it is right) and goes to ``gold_answers``.
        """
        j = pool.gold_index.get(item_id)
        if (j is None) != (correct is None):
            raise ValueError(f"{item_id}: 'correct' is for gold items, and only for them")
        gold = None if j is None else (pool.gold_kind[j], bool(correct))
        with self.transaction() as db:
            outcome = self._submit(db, annotator_id, item_id, protocol, answer, k, lead_time, gold)
            if outcome != "complete":
                item, progress = self._allocate(db, annotator_id, pool, k, lease_seconds)
        if outcome == "complete":  # raised after COMMIT, so the stale offer is gone
            raise ItemComplete(item_id)
        return outcome == "stored", item, progress

    def offer(self, annotator_id: str, pool: Pool, k: int, lease_seconds: float = 900.0) -> str | None:
        return self.next_item(annotator_id, pool, k, lease_seconds)[0]

    def submit(self, annotator_id: str, item_id: str, protocol: str, answer: str, k: int,
               gold: tuple[str, bool] | None = None) -> bool:
        """Store one answer without picking the next (see ``answer``); ``gold`` = (kind, correct)."""
        with self.transaction() as db:
            outcome = self._submit(db, annotator_id, item_id, protocol, answer, k, gold=gold)
        if outcome == "complete":
            raise ItemComplete(item_id)
        return outcome == "stored"

    def current_offer(self, annotator_id: str) -> str | None:
        with self.connect() as db:
            row = db.execute("SELECT item_id FROM offers WHERE annotator_id=?", (annotator_id,)).fetchone()
        return row[0] if row else None

    def progress(self, annotator_id: str, pool: Pool, k: int) -> dict:
        """What the page shows: this annotator's count, what is left for them, the study's coverage."""
        with self.connect() as db:
            answers, _, mine = self._coverage(db, pool, annotator_id, time.time(), 0.0)
            exposure = self._seen(db, pool, annotator_id, mine)
        return self._progress(pool, answers, mine, exposure, self._open_items(pool, answers, mine, exposure, k), k)

    # ------------------------------------------------------------------ export

    def setting(self, key: str) -> str | None:
        with self.connect() as db:
            row = db.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, value))

    def answer_rows(self) -> list[tuple]:
        """(item_id, annotator_id, protocol, answer, submitted_at, lead_time) of every answer."""
        with self.connect(readonly=True) as db:
            return db.execute(f"SELECT {', '.join(ANSWER_COLUMNS)}, lead_time FROM answers "
                              "ORDER BY item_id, annotator_id").fetchall()

    def gold_rows(self) -> list[tuple]:
        """(item_id, annotator_id, kind, correct, lead_time) of every gold answer."""
        with self.connect(readonly=True) as db:
            return db.execute("SELECT item_id, annotator_id, kind, correct, lead_time FROM gold_answers "
                              "ORDER BY item_id, annotator_id").fetchall()

    def export_csv(self, out: str | Path) -> int:
        """Write the long-format answers CSV atomically, with ``lead_time`` (seconds from the images
        on screen to the answer, as Label Studio names it) as an extra column; returns the rows."""
        rows = self.answer_rows()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow((*ANSWER_COLUMNS, "lead_time"))
        writer.writerows((*row[:-1], "" if row[-1] is None else f"{row[-1]:.3f}") for row in rows)
        atomic.write_text(out, buf.getvalue())
        return len(rows)
