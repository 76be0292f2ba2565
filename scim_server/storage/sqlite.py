"""SQLite storage: one file in WAL mode, plain `sqlite3`.

Plain sqlite3 rather than SQLAlchemy: the queries are few, hand-tuned and SQLite-specific (JSON
functions, json_each, partial reads), and an ORM layer would cost more per request than the query.

Writes, reads by id and the searches an index answers (Entra's `userName eq`, `externalId eq`,
`emails.value eq`, ...) run straight on the event loop thread: they take tens of microseconds,
less than a hop to a worker thread, and running each write's transaction without an `await` in
between makes it atomic and serialises writers without locks. Every other search (a filter that
reads each row's JSON, deep paging) runs on a reader thread with its own connection, which WAL
lets read beside the writer: sqlite3 releases the GIL while SQLite works, so health checks and
Entra's requests go on meanwhile. Measured (20,000 users, 4 clients sending a 40-term `co`
filter, 2 cores): with those searches on the loop, /healthz waited 11.4 s (median; 13.7 s
without the query time limit); on reader threads, 1.8 ms (max 3.8 ms).

Crash safety comes from SQLite: each request commits one transaction, so a `kill -9` leaves
either all of a PATCH or none of it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager

import orjson

from ..errors import ScimError, not_found
from ..limits import QUERY_TIMEOUT
from ..schemas import ResourceType
from . import MemberChange, Outboxed, Query, Stored, StreamState
from .common import (
    additions,
    email_changes,
    fold,
    index_columns,
    member,
    unique_key,
    wanted_members,
)
from .dialect import SQLITE
from .outbox import MemberDelta
from .schema import DOC, EMAILS, GROUP_DISPLAY, TABLES
from .sqlfilter import (
    compile_filter,
    compile_member_filter,
    compile_sort,
    range_on_index,
    served_by_index,
)
from .writes import Taken, WritePath

log = logging.getLogger("scim_server.storage")

# Each entry upgrades the schema by one version (PRAGMA user_version); never edit a shipped one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        user_name_fold TEXT NOT NULL UNIQUE,
        external_id TEXT,
        display_name_fold TEXT,
        active INTEGER,
        created TEXT NOT NULL,
        last_modified TEXT NOT NULL,
        version INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX users_external_id ON users (external_id);
    CREATE INDEX users_display_name ON users (display_name_fold);
    CREATE INDEX users_last_modified ON users (last_modified);
    CREATE TABLE user_emails (
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        value_fold TEXT NOT NULL
    );
    CREATE INDEX user_emails_value ON user_emails (value_fold);
    CREATE INDEX user_emails_user ON user_emails (user_id);
    CREATE TABLE groups (
        id TEXT PRIMARY KEY,
        display_name_fold TEXT NOT NULL UNIQUE,
        external_id TEXT,
        created TEXT NOT NULL,
        last_modified TEXT NOT NULL,
        version INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX groups_external_id ON groups (external_id);
    CREATE INDEX groups_last_modified ON groups (last_modified);
    CREATE TABLE group_members (
        group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        value TEXT NOT NULL,
        display TEXT,
        type TEXT NOT NULL,
        PRIMARY KEY (group_id, value)
    ) WITHOUT ROWID;
    CREATE INDEX group_members_value ON group_members (value);
    """,
    # A user's addresses keyed by (user, address), without a rowid: changing a user's email
    # now rewrites one page of this table and two of the address index, where the rowid table
    # and its two indexes rewrote five or six (each page is a WAL frame, two writes, and a
    # checkpoint's read and write; 10.7 frames per Entra PATCH became 8.9, measured).
    """
    CREATE TABLE user_emails_keyed (
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        value_fold TEXT NOT NULL,
        PRIMARY KEY (user_id, value_fold)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO user_emails_keyed (user_id, value_fold)
        SELECT user_id, value_fold FROM user_emails;
    DROP TABLE user_emails;
    ALTER TABLE user_emails_keyed RENAME TO user_emails;
    CREATE INDEX user_emails_value ON user_emails (value_fold);
    """,
    # The event outbox (storage/outbox.py): written in each change's transaction, read by
    # delivery, deleted once acknowledged. `event_stream` is one row: the stream's id and an
    # unacknowledged gap, if any (events discarded by the retention or never recorded).
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        txn INTEGER NOT NULL,
        iat INTEGER NOT NULL,
        record BLOB NOT NULL
    );
    CREATE TABLE event_stream (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        stream TEXT NOT NULL,
        recording INTEGER NOT NULL,
        gap_through INTEGER NOT NULL DEFAULT 0,
        gap_count INTEGER NOT NULL DEFAULT 0,
        gap_reason TEXT
    );
    """,
)

_TABLE = {name: t.name for name, t in TABLES.items()}
_ROWID = SQLITE.row_order
_GROUP_DISPLAY = SQLITE.json_value(f"g.{DOC}", (GROUP_DISPLAY.attr,))  # in a user's groups
_CHUNK = 500  # stays well below SQLite's bound-parameter limit
_WAL_LIMIT = 16 * 1024 * 1024  # the WAL file is truncated back to this size after a reset
READERS = 2  # reader threads: the two cores a tenant's pod gets at most
INLINE_MAX_OFFSET = 1000  # an indexed search paging further runs on a reader thread
_SNAPSHOT_BATCH = 500
_FREE_PAGES_KEPT = 256  # free pages beyond these go back to the file system after a trim


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                         cached_statements=256)
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA cache_size=-65536")  # KiB: a tenant's whole database, typically
    db.create_function(SQLITE.fold_function, 1, fold, deterministic=True)
    return db


class _Reader:
    """The reads, over one connection: the loop's own (also the writer's) or a reader
    thread's. Each connection has its own search deadline."""

    def __init__(self, db: sqlite3.Connection, query_timeout: float) -> None:
        self.db = db
        self.query_timeout = query_timeout
        self.deadline = 0.0  # monotonic; 0 while no search runs
        # SQLite calls this every 10,000 virtual-machine steps (a few hundred microseconds);
        # a true answer interrupts the statement. Only searches set a deadline.
        db.set_progress_handler(self.past_deadline, 10_000)

    def row(self, rt: ResourceType, id: str) -> tuple | None:
        return self.db.execute(
            f"SELECT id, {DOC}, created, last_modified, version FROM {_TABLE[rt.name]} "
            "WHERE id = ?", (id,)).fetchone()

    @staticmethod
    def stored(row: tuple) -> Stored:
        return Stored(row[0], orjson.loads(row[1]), row[2], row[3], row[4])

    def load_related(self, rt: ResourceType, items: list[Stored]) -> None:
        if not items:
            return
        by_id = {s.id: s for s in items}
        ids = list(by_id)
        for s in items:
            if rt.name == "Group":
                s.members = []
            else:
                s.groups = []
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            if rt.name == "Group":
                rows = self.db.execute(
                    "SELECT group_id, value, display, type FROM group_members "
                    f"WHERE group_id IN ({marks})", chunk)
                for gid, value, display, type_ in rows:
                    by_id[gid].members.append({"value": value, "display": display,
                                               "type": type_})
            else:
                rows = self.db.execute(
                    f"SELECT m.value, m.group_id, {_GROUP_DISPLAY} "
                    f"FROM group_members m JOIN {_TABLE['Group']} g ON g.id = m.group_id "
                    f"WHERE m.value IN ({marks})", chunk)
                for uid, gid, display in rows:
                    by_id[uid].groups.append({"value": gid, "display": display})

    def events(self, limit: int, after: int) -> list[Outboxed]:
        return [Outboxed(seq, txn, iat, orjson.loads(record)) for seq, txn, iat, record in
                self.db.execute("SELECT seq, txn, iat, record FROM events WHERE seq > ? "
                                "ORDER BY seq LIMIT ?", (after, limit))]

    def past_deadline(self) -> bool:
        return 0 < self.deadline < time.monotonic()

    @contextmanager
    def bounded_query(self) -> Iterator[None]:
        """A search's statements, within the query time limit and SQLite's own limits on a
        statement's shape: past either, the client's filter is at fault, a 400 (not a 500)."""
        self.deadline = time.monotonic() + self.query_timeout
        try:
            yield
        except sqlite3.OperationalError as e:
            text = str(e)
            if text == "interrupted":
                raise ScimError(400, f"The query ran longer than the {self.query_timeout:g} s "
                                "limit: filter on an indexed attribute (userName, externalId, "
                                "emails.value, displayName, id, meta.lastModified) or narrow "
                                "it", "tooMany") from None
            if "parser stack overflow" in text or "too large" in text or "too many" in text:
                raise ScimError(400, f"The filter is too complex for the database ({text})",
                                "invalidFilter") from None
            raise
        finally:
            self.deadline = 0.0

    def get(self, rt: ResourceType, id: str, *, with_related: bool = True) -> Stored:
        row = self.row(rt, id)
        if row is None:
            raise not_found(f"{rt.name} {id} not found")
        res = self.stored(row)
        if with_related:
            self.load_related(rt, [res])
        return res

    def search(self, rt: ResourceType, query: Query) -> tuple[int, list[Stored]]:
        table = _TABLE[rt.name]
        where, params = ("1", []) if query.filter is None else \
            compile_filter(rt, query.filter, SQLITE)
        order = f"r.{_ROWID}"
        page_where = where
        if query.filter is not None and not query.sort_by and range_on_index(rt, query.filter):
            page_where = f"r.{_ROWID} IN (SELECT r.{_ROWID} FROM {table} r WHERE {where})"
        if query.sort_by:
            direction = "DESC" if query.descending else "ASC"
            order = f"{compile_sort(rt, query.sort_by, SQLITE)} {direction} NULLS LAST, {order}"
        offset = query.start_index - 1
        rows = []
        with self.bounded_query():
            if query.count > 0:
                rows = self.db.execute(
                    f"SELECT r.id, r.{DOC}, r.created, r.last_modified, r.version FROM {table} r "
                    f"WHERE {page_where} ORDER BY {order} LIMIT ? OFFSET ?",
                    (*params, query.count, offset)).fetchall()
            if offset == 0 and len(rows) < query.count:
                # The whole result fits on this page, or there is none (Entra's lookup of a
                # user it has not created yet): no second query.
                total = len(rows)
            else:
                total = self.db.execute(f"SELECT count(*) FROM {table} r WHERE {where}",
                                        params).fetchone()[0]
        items = [self.stored(r) for r in rows]
        if query.with_members if rt.name == "Group" else query.with_groups:
            self.load_related(rt, items)
        return total, items


class SqliteStorage(WritePath):
    """The Storage interface (see the package) over one SQLite file. `events`: record every
    change in the outbox (the event stream is on); None leaves the stream as it is (a copy's
    source: opening it with events off would mark a gap)."""

    def __init__(self, path: str, synchronous: str = "NORMAL",
                 query_timeout: float = QUERY_TIMEOUT, readers: int = READERS,
                 events: bool | None = False) -> None:
        self.path = path
        self.synchronous = synchronous
        self.events_on = bool(events)
        self._stream_kept = events is None  # `storage copy`: read the stream, change nothing
        self._commits = 0
        self._event_commits = asyncio.Event()
        self.db = _connect(path, synchronous)
        if self.db.execute("PRAGMA user_version").fetchone()[0] == 0:
            # Before the first table: pages freed by acknowledged events can then be given
            # back to the file system (older databases are converted once, in _migrate).
            self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.reads = _Reader(self.db, query_timeout)
        self._writes = _WriteTx(self.reads)
        self._migrate()
        self._open_stream()
        # Checkpoints copy the WAL into the database and fsync. A thread with its own connection
        # runs them right behind the writer (PASSIVE: it never blocks a request), so the
        # request thread rarely pays for one; SQLite's own automatic checkpoint, at 1024 pages,
        # stays as the bound that lets the WAL restart under a load that never pauses.
        # Measured (bench/, user PATCH p99, 2 cores): inline checkpoints only, 3.3 ms; this,
        # 1.5-2.8 ms, and no pause over 6 ms (a checkpoint thread without the inline bound let
        # the WAL grow to 38 MB and paused requests for up to 230 ms).
        self.db.execute("PRAGMA wal_autocheckpoint=1024")
        self.db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop,
                                              name="sqlite-checkpoint", daemon=True)
        self._checkpointer.start()
        self._thread_reader = threading.local()
        self._thread_readers: list[_Reader] = []
        self._readers = ThreadPoolExecutor(max_workers=readers,
                                           thread_name_prefix="sqlite-reader")

    async def open(self, wait: bool = True) -> None:
        """Nothing left to do: the file is opened and migrated by the constructor."""

    @property
    def query_timeout(self) -> float:
        return self.reads.query_timeout

    @query_timeout.setter
    def query_timeout(self, seconds: float) -> None:
        self.reads.query_timeout = seconds
        for reader in self._thread_readers:
            reader.query_timeout = seconds

    def _on_reader_thread(self, fn, *args):
        """Run `fn(reader, *args)` on this reader thread's own connection (opened once)."""
        reader = getattr(self._thread_reader, "reader", None)
        if reader is None:
            db = _connect(self.path, self.synchronous)
            reader = self._thread_reader.reader = _Reader(db, self.query_timeout)
            self._thread_readers.append(reader)
        return fn(reader, *args)

    def _checkpoint_loop(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        seen = 0
        try:
            while not self._stop.is_set():
                if self._commits == seen:
                    self._stop.wait(0.02)
                    continue
                seen = self._commits
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as e:
                    log.warning("WAL checkpoint failed", extra={"error": str(e)})
                    self._stop.wait(1)
        finally:
            db.close()

    def _migrate(self) -> None:
        with self._tx():
            current = self.db.execute("PRAGMA user_version").fetchone()[0]
            if current > len(MIGRATIONS):
                raise RuntimeError(f"Database {self.path} has schema version {current}, newer "
                                   f"than this server ({len(MIGRATIONS)}); refusing to start")
            for version in range(current, len(MIGRATIONS)):
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={version + 1}")
                log.info("database migrated", extra={"schema_version": version + 1})
        if self.events_on and self.db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            # A database made before the outbox: once, so acknowledged events give their
            # pages back (VACUUM rewrites the file; it needs as much free space again).
            log.info("converting the database to incremental vacuum, once")
            self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self.db.execute("VACUUM")

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException as e:
            if self.db.in_transaction:  # SQLite has already rolled back some failures
                self.db.execute("ROLLBACK")
            if isinstance(e, sqlite3.OperationalError) and \
                    e.sqlite_errorcode == sqlite3.SQLITE_FULL:
                log.error("the database's disk is full: writes fail until there is room",
                          extra={"database": self.path})
                raise ScimError(507, "The server's disk is full: the change was not stored. "
                                "Reads still work; retry once the operator of this server has "
                                "made room.") from None
            raise
        self._commits += 1

    async def close(self) -> None:
        self._readers.shutdown(wait=True)
        for reader in self._thread_readers:
            reader.db.close()
        self._stop.set()
        self._checkpointer.join(timeout=30)
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        self.db.close()

    async def count(self, rt: ResourceType) -> int:
        return self.db.execute(f"SELECT count(*) FROM {_TABLE[rt.name]}").fetchone()[0]

    async def ping(self) -> None:
        self.db.execute(f"SELECT count(*) FROM {_TABLE['User']} WHERE 0").fetchone()

    # -- reads ------------------------------------------------------------------------------

    async def get(self, rt: ResourceType, id: str, *, with_related: bool = True) -> Stored:
        return self.reads.get(rt, id, with_related=with_related)

    async def search(self, rt: ResourceType, query: Query) -> tuple[int, list[Stored]]:
        if query.filter is not None and served_by_index(rt, query.filter) and \
                query.start_index <= INLINE_MAX_OFFSET:
            return self.reads.search(rt, query)
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, self._on_reader_thread, _Reader.search, rt, query)

    # -- writes (the rules are writes.py's; these are its primitives) -------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_WriteTx]:
        with self._tx():
            yield self._writes

    def events_committed(self) -> None:
        self._event_commits, event = asyncio.Event(), self._event_commits
        event.set()

    # -- the event outbox -------------------------------------------------------------------
    # Commit order is stream order: SQLite has one writer at a time, so seqs (AUTOINCREMENT:
    # never reused, even once every event is acknowledged and the table is empty) are handed
    # out in the order transactions commit.

    def _open_stream(self) -> None:
        """The stream's row: made when events are first on. Turning events off and on again
        leaves changes no event tells of, so the receiver is told to resync (a gap)."""
        if self._stream_kept:
            return
        with self._tx():
            row = self.db.execute("SELECT recording FROM event_stream").fetchone()
            if row is None:
                if self.events_on:
                    self.db.execute("INSERT INTO event_stream (id, stream, recording) "
                                    "VALUES (1, ?, 1)", (secrets.token_hex(8),))
            elif self.events_on and not row[0]:
                self.db.execute(
                    "UPDATE event_stream SET recording = 1, gap_through = ?, gap_count = -1, "
                    "gap_reason = 'the server ran with events off' WHERE gap_reason IS NULL",
                    (_head(self.db),))
                self.db.execute("UPDATE event_stream SET recording = 1")
            elif not self.events_on and row[0]:
                self.db.execute("UPDATE event_stream SET recording = 0")

    async def read_events(self, limit: int, after: int = 0) -> list[Outboxed]:
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, self._on_reader_thread, _Reader.events, limit, after)

    async def ack_events(self, seqs: Collection[int]) -> int:
        with self._tx():
            return sum(self.db.execute(
                f"DELETE FROM events WHERE seq IN ({','.join('?' * len(chunk))})",
                chunk).rowcount for chunk in _chunks(list(seqs)))

    async def ack_gap(self, through: int) -> bool:
        with self._tx():
            return self.db.execute(
                "UPDATE event_stream SET gap_through = 0, gap_count = 0, gap_reason = NULL "
                "WHERE gap_reason IS NOT NULL AND gap_through = ?", (through,)).rowcount > 0

    async def stream_state(self, counts: bool = True) -> StreamState:
        row = self.db.execute("SELECT stream, gap_through, gap_count, gap_reason "
                              "FROM event_stream").fetchone()
        if row is None:
            raise RuntimeError("the event stream is off")
        backlog = oldest = None
        if counts:
            backlog, oldest = self.db.execute(
                "SELECT count(*), (SELECT iat FROM events ORDER BY seq LIMIT 1) FROM events"
            ).fetchone()
        return StreamState(row[0], _head(self.db), backlog, oldest, row[1], row[2], row[3])

    async def trim_events(self, max_age: float, max_count: int) -> int:
        with self._tx():
            head = _head(self.db)
            keep_from = self.db.execute(
                "SELECT seq FROM events WHERE iat >= ? ORDER BY seq LIMIT 1",
                (int(time.time() - max_age),)).fetchone()
            cut = max(head - max_count, (keep_from[0] - 1) if keep_from else head)
            gone = self.db.execute("DELETE FROM events WHERE seq <= ?", (cut,)).rowcount
            if gone:
                self._mark_gap(cut, gone, "retention")
        # Give the pages the events held back to the file system (auto_vacuum=INCREMENTAL).
        if self.db.execute("PRAGMA freelist_count").fetchone()[0] > _FREE_PAGES_KEPT:
            # sqlite3 steps a statement once per row; executescript runs it to the end.
            self.db.executescript("PRAGMA incremental_vacuum")
        return gone

    async def lose_events(self, seqs: Collection[int], reason: str) -> int:
        seqs = list(seqs)
        if not seqs:
            return 0
        with self._tx():
            gone = sum(self.db.execute(
                f"DELETE FROM events WHERE seq IN ({','.join('?' * len(chunk))})",
                chunk).rowcount for chunk in _chunks(seqs))
            self._mark_gap(max(seqs), len(seqs), reason)
        return gone

    def _mark_gap(self, through: int, count: int, reason: str) -> None:
        """Events up to `through` are lost to the receiver: it must resync (sets.RESYNC)."""
        self.db.execute(
            "UPDATE event_stream SET gap_through = max(gap_through, ?), "
            "gap_count = CASE WHEN gap_count < 0 THEN -1 ELSE gap_count + ? END, "
            "gap_reason = coalesce(gap_reason, ?)", (through, count, reason))
        log.warning("events lost to the receiver: it must resync",
                    extra={"events": count, "through": through, "reason": reason})

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        if _head(self.db) > after:
            return True
        try:
            await asyncio.wait_for(self._event_commits.wait(), timeout)
        except TimeoutError:
            pass
        return _head(self.db) > after

    @asynccontextmanager
    async def leadership(self, name: str) -> AsyncIterator[asyncio.Event]:
        """Always this process's: one process opens a SQLite file (its volume is
        ReadWriteOnce, and the CRD refuses replicas with SQLite)."""
        yield asyncio.Event()

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[_Snapshot]:
        """One read transaction on a connection and thread of its own (WAL keeps it
        consistent while writes go on), held until the receiver has read every batch."""
        loop = asyncio.get_running_loop()
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-snapshot")
        db = await loop.run_in_executor(thread, _connect, self.path, self.synchronous)
        try:
            snap = _Snapshot(_Reader(db, 0), thread)
            await loop.run_in_executor(thread, snap.begin)
            yield snap
        finally:
            await loop.run_in_executor(thread, db.close)
            thread.shutdown()


class _WriteTx:
    """writes.WriteTx over the writer connection, inside its BEGIN IMMEDIATE. Plain synchronous
    SQL under `async def`: nothing here suspends, so a write transaction still runs from BEGIN
    to COMMIT without another request's statements in between, and needs no lock."""

    def __init__(self, reads: _Reader) -> None:
        self.reads = reads
        self.db = reads.db

    async def current(self, rt: ResourceType, id: str) -> Stored | None:
        row = self.reads.row(rt, id)
        return None if row is None else self.reads.stored(row)

    async def insert(self, rt: ResourceType, res: Stored) -> None:
        self._write_row(rt, res, None)

    async def update(self, rt: ResourceType, res: Stored, old: Stored) -> None:
        self._write_row(rt, res, old.doc)

    async def load_related(self, rt: ResourceType, items: list[Stored]) -> None:
        self.reads.load_related(rt, items)

    async def remove(self, rt: ResourceType, id: str) -> list[str]:
        self.db.execute(f"DELETE FROM {_TABLE[rt.name]} WHERE id = ?", (id,))
        return [r[0] for r in self.db.execute(
            "DELETE FROM group_members WHERE value = ? RETURNING group_id", (id,)).fetchall()]

    async def record(self, iat: int, records: list[dict]) -> list[Outboxed]:
        txn = _head(self.db) + 1
        saved = [Outboxed(txn + i, txn, iat, r) for i, r in enumerate(records)]
        self.db.executemany("INSERT INTO events (seq, txn, iat, record) VALUES (?, ?, ?, ?)",
                            [(e.seq, txn, iat, orjson.dumps(e.record)) for e in saved])
        return saved

    async def restore_stream(self, state: StreamState, events: list[Outboxed]) -> None:
        self.db.execute("INSERT INTO event_stream (id, stream, recording, gap_through, "
                        "gap_count, gap_reason) VALUES (1, ?, 1, ?, ?, ?)",
                        (state.stream, state.gap_through, state.gap_count, state.gap_reason))
        self.db.executemany("INSERT INTO events (seq, txn, iat, record) VALUES (?, ?, ?, ?)",
                            [(e.seq, e.txn, e.iat, orjson.dumps(e.record)) for e in events])
        # AUTOINCREMENT's counter is the head: the next event follows the source's last one.
        self.db.execute("DELETE FROM sqlite_sequence WHERE name = 'events'")
        self.db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)",
                        (state.head,))

    def _taken(self, rt: ResourceType, doc: dict, own_id: str) -> Taken | None:
        """After the UNIQUE index refused a write (it checks for free; a SELECT before every
        write cost a statement per request): who holds the value."""
        row = self.db.execute(
            f"SELECT id FROM {_TABLE[rt.name]} WHERE {TABLES[rt.name].unique.name} = ?",
            (unique_key(rt, doc),)).fetchone()
        return None if row is None or row[0] == own_id else Taken(row[0])

    def _write_row(self, rt: ResourceType, res: Stored, old: dict | None) -> None:
        """Insert (`old` is None) or update a row. An update sets only the indexed columns
        whose value changed: every index named in an UPDATE is rewritten, and each rewritten
        index page is another 4 KiB in the WAL and in the next checkpoint."""
        cols = index_columns(rt, res.doc, SQLITE)
        if old is not None:
            before = index_columns(rt, old, SQLITE)
            cols = {k: v for k, v in cols.items() if before.get(k) != v}
        cols.update(last_modified=res.last_modified, version=res.version)
        cols[DOC] = orjson.dumps(res.doc).decode()
        table = _TABLE[rt.name]
        try:
            if old is None:
                cols.update(id=res.id, created=res.created)
                self.db.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                                f"({', '.join('?' * len(cols))})", tuple(cols.values()))
            else:
                sets = ", ".join(f"{k} = ?" for k in cols)
                self.db.execute(f"UPDATE {table} SET {sets} WHERE id = ?",
                                (*cols.values(), res.id))
        except sqlite3.IntegrityError:
            taken = self._taken(rt, res.doc, res.id)
            if taken is None:
                raise
            raise taken from None
        if rt.name == "User":
            self._write_emails(res.id, res.doc, old)

    def _write_emails(self, id: str, doc: dict, old: dict | None) -> None:
        gone, added = email_changes(doc, old)
        if gone:
            self.db.executemany(f"DELETE FROM {EMAILS.table} WHERE {EMAILS.owner} = ? AND "
                                f"{EMAILS.value} = ?", [(id, v) for v in gone])
        if added:
            self.db.executemany(f"INSERT INTO {EMAILS.table} ({EMAILS.owner}, {EMAILS.value}) "
                                "VALUES (?, ?)", [(id, v) for v in added])

    # -- membership -------------------------------------------------------------------------

    async def change_members(self, group_id: str, changes: list[MemberChange]) -> MemberDelta:
        delta = MemberDelta()
        member_rows = "RETURNING value, display, type"
        for ch in changes:
            if ch.kind in ("replace", "remove_all"):
                self._gone(delta, self.db.execute(
                    f"DELETE FROM group_members WHERE group_id = ? {member_rows}", (group_id,)))
            if ch.kind in ("add", "replace"):
                self._add_members(group_id, ch.members, delta)
            elif ch.kind == "remove":
                for chunk in _chunks(ch.values):
                    self._gone(delta, self.db.execute(
                        f"DELETE FROM group_members WHERE group_id = ? AND value IN "
                        f"({','.join('?' * len(chunk))}) {member_rows}", (group_id, *chunk)))
            elif ch.kind == "remove_where":
                where, params = compile_member_filter(ch.filter, SQLITE)
                self._gone(delta, self.db.execute(
                    f"DELETE FROM group_members AS m WHERE group_id = ? AND {where} "
                    f"{member_rows}", (group_id, *params)))
            elif ch.kind == "update_where":
                where, params = compile_member_filter(ch.filter, SQLITE)
                match = f"group_id = ? AND display IS NOT ? AND {where}"
                args = (group_id, ch.display, *params)
                # RETURNING shows rows as they become; the delta needs them as they were too.
                for value, display, type_ in self.db.execute(
                        f"SELECT value, display, type FROM group_members AS m WHERE {match}",
                        args).fetchall():
                    delta.saw(value, member(value, display, type_))
                    delta.set(value, member(value, ch.display, type_))
                self.db.execute(f"UPDATE group_members AS m SET display = ? WHERE {match}",
                                (ch.display, *args))
        return delta

    @staticmethod
    def _gone(delta: MemberDelta, rows: sqlite3.Cursor) -> None:
        for value, display, type_ in rows.fetchall():
            delta.saw(value, member(value, display, type_))
            delta.set(value, None)

    def _add_members(self, group_id: str, members: list[dict], delta: MemberDelta) -> None:
        if not members:
            return
        wanted = wanted_members(group_id, members)
        # Each wanted member's type, and its row in this group if it has one: one statement,
        # point lookups only (the group's other members are never read).
        found: dict[str, tuple] = {}
        ids = list(wanted)
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for mid, type_, present, display in self.db.execute(
                    f"SELECT r.id, 'User', m.value IS NOT NULL, m.display FROM {_TABLE['User']} r "
                    f"LEFT JOIN group_members m ON m.group_id = ? AND m.value = r.id "
                    f"WHERE r.id IN ({marks}) UNION ALL "
                    f"SELECT r.id, 'Group', m.value IS NOT NULL, m.display "
                    f"FROM {_TABLE['Group']} r "
                    f"LEFT JOIN group_members m ON m.group_id = ? AND m.value = r.id "
                    f"WHERE r.id IN ({marks})", (group_id, *chunk, group_id, *chunk)):
                found[mid] = (type_, present, display)
        rows = [(group_id, *row) for row in additions(wanted, found, delta)]
        if rows:
            self.db.executemany(
                "INSERT INTO group_members (group_id, value, display, type) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (group_id, value) DO UPDATE SET display = excluded.display", rows)


def _head(db: sqlite3.Connection) -> int:
    """The last seq the outbox handed out (0 for none), as AUTOINCREMENT keeps it."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return row[0] if row else 0


def _chunks(values: list) -> Iterator[list]:
    for i in range(0, len(values), _CHUNK):
        yield values[i:i + _CHUNK]


class _Snapshot:
    """storage.Snapshot over one read transaction, every statement on its own thread."""

    def __init__(self, reads: _Reader, thread: ThreadPoolExecutor) -> None:
        self.reads = reads
        self.thread = thread
        self.position = 0
        self.stream = ""

    def begin(self) -> None:
        db = self.reads.db
        db.execute("BEGIN")  # the first read below fixes what every later one sees
        self.position = _head(db)
        stream = db.execute("SELECT stream FROM event_stream").fetchone()
        self.stream = stream[0] if stream else ""

    async def batches(self, rt: ResourceType) -> AsyncIterator[list[Stored]]:
        loop = asyncio.get_running_loop()
        after = 0
        while True:
            after, batch = await loop.run_in_executor(self.thread, self._batch, rt, after)
            if not batch:
                return
            yield batch

    def _batch(self, rt: ResourceType, after: int) -> tuple[int, list[Stored]]:
        rows = self.reads.db.execute(
            f"SELECT {_ROWID}, id, {DOC}, created, last_modified, version FROM "
            f"{_TABLE[rt.name]} WHERE {_ROWID} > ? ORDER BY {_ROWID} LIMIT {_SNAPSHOT_BATCH}",
            (after,)).fetchall()
        items = [self.reads.stored(r[1:]) for r in rows]
        if rt.name == "Group":
            self.reads.load_related(rt, items)
        return (rows[-1][0] if rows else after), items
