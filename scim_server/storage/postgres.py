"""PostgreSQL storage: psycopg 3 (async) with a psycopg_pool connection pool.

One tenant is one database with its own role (docs/platform/postgres.md says why, with the
figures); several server processes (replicas) may share it, and give the answers one would.
What keeps them exact, each in one statement or lock, never in a check-then-act across two:
- uniqueness: the folded `userName` / group `displayName` columns are UNIQUE; an insert is
  `ON CONFLICT DO NOTHING` (a concurrent creator of the same name waits for the first to commit
  and then finds it taken), so 50 racing creates make one user and 49 409s;
- If-Match and every read-modify-write: the current row is read `FOR NO KEY UPDATE`, so a second
  writer waits and then reads the version the first one wrote (READ COMMITTED);
- memberships: the group row is locked first, and the members added are locked `FOR KEY SHARE`,
  so a member deleted meanwhile is either still there (the delete waits) or reported missing;
- a deadlock (a user's delete and a group's PATCH meeting from both ends) rolls back one
  transaction, which writes.py runs again (`Retry`).

The event outbox keeps the stream in commit order and dense, with no event ever skipped: each
recording transaction takes its seqs by incrementing a counter row (`event_stream.head`) in its
last statement, and holds that row's lock until it commits. So seqs are handed out in the order
transactions commit, and a reader at any moment sees a prefix of the stream: a transaction
becomes visible before its locks are released (PostgreSQL's commit order), and one that aborts
takes its increment back with it. Writers wait on each other only between that last statement
and COMMIT, not for their whole transaction.
Considered and not taken, the snapshot-xmin cursor (read `(xid, id) > cursor AND xid <
pg_snapshot_xmin(pg_current_snapshot())`): it never skips, but its order is the order in
which transactions first wrote (their xid), not the order they committed: a user's deletion that
took its xid before a PATCH of one of the user's groups, and locked that group after the PATCH
committed, would be read before the PATCH although it changed the group after it, so a receiver
would apply a group's changes in the wrong order. It also stalls every tenant's stream while any
transaction in the cluster stays open.

A long poll on any replica wakes when any replica commits: a committing process sends a NOTIFY
after its commit (not inside the transaction: a NOTIFY in a transaction takes a cluster-wide
lock at commit, through the WAL flush), coalesced, and every process LISTENs on a connection
of its own. NOTIFY is only a hint: waiters also look at the head every few seconds.

The database down: a request fails with a SCIM 503 and Retry-After within the pool's timeout,
never a 500 or a hang; /readyz says why; the pool reconnects by itself, and the server opens
(migrates) as soon as the database answers, however long after start-up that is.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import orjson
import psycopg
from psycopg import errors as pgerrors
from psycopg import sql as psql
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..errors import ScimError, bad_request, not_found
from ..limits import QUERY_TIMEOUT
from ..schemas import ResourceType
from . import MemberChange, Outboxed, Query, Stored, StreamState
from .common import additions, email_changes, index_columns, member, unique_key, wanted_members
from .dialect import POSTGRES
from .outbox import MemberDelta
from .schema import DOC, EMAILS, GROUP_DISPLAY, TABLES
from .sqlfilter import compile_filter, compile_member_filter, compile_sort
from .writes import Retry, Taken, WritePath

log = logging.getLogger("scim_server.storage")

_TABLE = {name: t.name for name, t in TABLES.items()}
_ROW_ORDER = POSTGRES.row_order
_GROUP_DISPLAY = POSTGRES.json_value(f"g.{DOC}", (GROUP_DISPLAY.attr,))
_CHANNEL = "joyn_scim_events"  # NOTIFY is per database, and a tenant is one database
_MIGRATION_LOCK = 7_405_116_001  # pg_advisory_xact_lock key: one migrator at a time
RETRY_AFTER = "5"  # seconds, on a 503 while the database is unreachable
POOL_SIZE = 8
POOL_TIMEOUT = 5.0  # seconds a request waits for a connection before its 503
CONNECT_TIMEOUT = 3  # seconds, libpq's connect_timeout
_RECHECK = 2.0  # seconds between a waiter's own looks at the head (NOTIFY is a hint)
_SNAPSHOT_BATCH = 500
_LEADER_LOCKS = 7_405_116  # the advisory lock class of leadership() (its first key)
_LEADER_RETRY = 2.0  # seconds between tries to become the leader, and between its checks


def redact(dsn: str) -> str:
    """The connection URI without its password, for logs and errors."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _casefold_table() -> tuple[str, str, dict[str, str]]:
    """What `lower()` leaves for `str.casefold` to do: characters that lower-case output may
    hold and casefold maps further (final sigma to sigma, sharp s to "ss", ...). Applied after
    lower(), they make lower() equal casefold for every code point (tests/test_postgres.py
    checks)."""
    one_from, one_to, many = [], [], {}
    for cp in range(sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        folded = c.casefold()
        if folded != c and c.lower() == c:
            if len(folded) == 1:
                one_from.append(c)
                one_to.append(folded)
            else:
                many[c] = folded
    return "".join(one_from), "".join(one_to), many


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def fold_function_sql(collation: str) -> str:
    """`scim_fold(text)`: Python's str.casefold in SQL, for the filter compiler (dialect.py).
    `collation` gives lower() its Unicode case mapping (ICU's root locale where there is one)."""
    one_from, one_to, many = _casefold_table()
    expr = f'translate(lower(t COLLATE "{collation}"), {_literal(one_from)}, {_literal(one_to)})'
    for c, folded in many.items():
        expr = f"replace({expr}, {_literal(c)}, {_literal(folded)})"
    return (f"CREATE OR REPLACE FUNCTION {POSTGRES.fold_function}(t text) RETURNS text "
            f"LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT {expr} $$")


# Each entry upgrades the schema by one version (scim_schema.version); never edit a shipped one.
# Text columns compare and sort as bytes (COLLATE "C"), as SQLite's do; the document is `json`,
# which keeps its text as written (jsonb would reorder keys and refuse \u0000).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE users (
        row_order bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        id text COLLATE "C" PRIMARY KEY,
        user_name_fold text COLLATE "C" NOT NULL UNIQUE,
        external_id text COLLATE "C",
        display_name_fold text COLLATE "C",
        active boolean,
        created text COLLATE "C" NOT NULL,
        last_modified text COLLATE "C" NOT NULL,
        version integer NOT NULL,
        data json NOT NULL
    );
    CREATE INDEX users_external_id ON users (external_id);
    CREATE INDEX users_display_name ON users (display_name_fold);
    CREATE INDEX users_last_modified ON users (last_modified);
    CREATE TABLE user_emails (
        user_id text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        value_fold text COLLATE "C" NOT NULL,
        PRIMARY KEY (user_id, value_fold)
    );
    CREATE INDEX user_emails_value ON user_emails (value_fold);
    CREATE TABLE groups (
        row_order bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        id text COLLATE "C" PRIMARY KEY,
        display_name_fold text COLLATE "C" NOT NULL UNIQUE,
        external_id text COLLATE "C",
        created text COLLATE "C" NOT NULL,
        last_modified text COLLATE "C" NOT NULL,
        version integer NOT NULL,
        data json NOT NULL
    );
    CREATE INDEX groups_external_id ON groups (external_id);
    CREATE INDEX groups_last_modified ON groups (last_modified);
    CREATE TABLE group_members (
        group_id text COLLATE "C" NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        value text COLLATE "C" NOT NULL,
        display text,
        type text NOT NULL,
        PRIMARY KEY (group_id, value)
    );
    CREATE INDEX group_members_value ON group_members (value);
    CREATE TABLE events (
        seq bigint PRIMARY KEY,
        txn bigint NOT NULL,
        iat bigint NOT NULL,
        record json NOT NULL
    );
    CREATE TABLE event_stream (
        id integer PRIMARY KEY CHECK (id = 1),
        stream text NOT NULL,
        recording boolean NOT NULL,
        head bigint NOT NULL DEFAULT 0,
        gap_through bigint NOT NULL DEFAULT 0,
        gap_count bigint NOT NULL DEFAULT 0,
        gap_reason text
    )
    """,
)


# Why a connection failed, as a tenant condition's reason names it (the operator's too:
# the operator probes a tenant's database with this), by the SQLSTATE or libpq's words.
_REFUSED = {"28P01": "DatabaseAuthFailed", "28000": "DatabaseAuthFailed",
            "3D000": "DatabaseMissing", "42501": "DatabaseAuthFailed"}


def problem(e: BaseException) -> tuple[str, str]:
    """(reason, message) for a failed connection: the reason one of DatabaseAuthFailed,
    DatabaseMissing, DatabaseUnreachable; the message PostgreSQL's or libpq's first line,
    which names the user and database but never the password."""
    state = getattr(e, "sqlstate", None)
    if state is None and isinstance(e, psycopg.OperationalError):
        # libpq reports a refused login in its own text (no SQLSTATE reaches psycopg then).
        text = str(e)
        if "password authentication failed" in text or "no password supplied" in text \
                or ("role" in text and "does not exist" in text):
            return "DatabaseAuthFailed", _clip(text)
        if "database" in text and "does not exist" in text:
            return "DatabaseMissing", _clip(text)
    return _REFUSED.get(state or "", "DatabaseUnreachable"), _clip(str(e) or type(e).__name__)


def _clip(text: str) -> str:
    line = " ".join(text.split())
    return line[:300]


def _unavailable(e: BaseException) -> ScimError:
    """The database cannot be reached: retryable, and the detail names no host or password."""
    return ScimError(503, "The database is unavailable; retry shortly "
                     f"({type(e).__name__})", headers={"Retry-After": RETRY_AFTER})


def _stored(row: tuple) -> Stored:
    return Stored(row[0], row[1], row[2], row[3], row[4])


_COLUMNS = ("id", DOC, "created", "last_modified", "version")  # a Stored, in _stored's order
_ROW = ", ".join(_COLUMNS)
# A resource's related ones as one more column of its own row (one statement and one round
# trip where a second SELECT cost another: 13% of the server's time in an Entra cycle, and
# half the database's, measured with bench/): a group's members, a user's groups, as JSON
# arrays in the order sqlite.py returns them.
_RELATED = {
    "Group": ("(SELECT json_agg(json_build_array(m.value, m.display, m.type) ORDER BY m.value) "
              "FROM group_members m WHERE m.group_id = r.id)"),
    "User": (f"(SELECT json_agg(json_build_array(m.group_id, {_GROUP_DISPLAY}) "
             f"ORDER BY m.group_id) FROM group_members m JOIN {_TABLE['Group']} g "
             "ON g.id = m.group_id WHERE m.value = r.id)"),
}


def _select(rt: ResourceType, with_related: bool) -> str:
    """The columns of a resource read as `r`, with its related resources when asked."""
    columns = ", ".join(f"r.{c}" for c in _COLUMNS)
    return f"{columns}, {_RELATED[rt.name]}" if with_related else columns


def _with_related(rt: ResourceType, row: tuple) -> Stored:
    """A row of _select(rt, True): the resource with its members or groups filled in."""
    res = _stored(row)
    related = row[5] or []
    if rt.name == "Group":
        res.members = [member(v, d, t) for v, d, t in related]
    else:
        res.groups = [{"value": v, "display": d} for v, d in related]
    return res


async def _configure(conn: psycopg.AsyncConnection) -> None:
    set_json_loads(orjson.loads, conn)


class PostgresStorage(WritePath):
    """The Storage interface (see the package) over one PostgreSQL database. `dsn`: a libpq
    URI; `events`: record every change in the outbox (the event stream is on); None leaves the
    stream as it is (a copy's source)."""

    def __init__(self, dsn: str, *, events: bool | None = False,
                 query_timeout: float = QUERY_TIMEOUT, pool_size: int = POOL_SIZE,
                 pool_timeout: float = POOL_TIMEOUT) -> None:
        self.dsn = dsn
        self.events_on = bool(events)
        self._stream_kept = events is None  # `storage copy`: read the stream, change nothing
        self.query_timeout = query_timeout
        # The session's statement_timeout bounds every statement, a search's filter above all
        # (its 400 tooMany); a write waiting that long for a lock is a 503 and is retried.
        options = f"-c statement_timeout={int(query_timeout * 1000)}"
        # No check of a connection before it is lent (an empty query: one more round trip on
        # every request, 11% of the server's time in an Entra cycle): a connection the
        # database dropped fails its request with a retryable 503, and _recover() then has
        # the pool replace every broken one (pool.check).
        self.pool = AsyncConnectionPool(
            dsn, min_size=1, max_size=pool_size, open=False, timeout=pool_timeout,
            name="joyn-scim", configure=_configure,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT, "options": options})
        self._opened = asyncio.Event()
        self._opening: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self._wake = asyncio.Event()
        self._notify = asyncio.Event()
        self._closed = False
        self._down: BaseException | None = None  # the failure, while the database is down
        self._problem: tuple[str, str] | None = None  # problem() of the last failure

    # -- life cycle -------------------------------------------------------------------------

    async def open(self, wait: bool = True) -> None:
        """Connect, migrate and open the event stream. With `wait=False` (the server) a
        database that does not answer yet is retried in the background: requests get 503
        and /readyz says why until it does."""
        await self.pool.open(wait=False)
        if wait:
            await self._open_once()
            return
        self._opening = asyncio.ensure_future(self._open_retrying())

    async def _open_retrying(self) -> None:
        delay = 0.5
        while not self._closed:
            try:
                await self._open_once()
                return
            except (psycopg.OperationalError, PoolTimeout) as e:
                # The pool says only that it timed out: a connection of its own says why.
                self._problem = await self._diagnose() or problem(e)
                log.warning("the database does not answer yet; retrying",
                            extra={"database": redact(self.dsn), "reason": self._problem[0],
                                   "error": self._problem[1]})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _open_once(self) -> None:
        async with self.pool.connection() as conn:
            await self._migrate(conn)
            await self._open_stream(conn)
        self._opened.set()
        if self.events_on:
            self._tasks += [asyncio.ensure_future(self._listen()),
                            asyncio.ensure_future(self._notifier())]
        log.info("database opened", extra={"database": redact(self.dsn)})

    async def _migrate(self, conn: psycopg.AsyncConnection) -> None:
        async with conn.transaction():
            # Replicas starting together: one migrates, the others wait and find it done.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute("CREATE TABLE IF NOT EXISTS scim_schema "
                               "(id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL)")
            row = await (await conn.execute("SELECT version FROM scim_schema")).fetchone()
            current = row[0] if row else 0
            if current > len(MIGRATIONS):
                raise RuntimeError(f"Database {redact(self.dsn)} has schema version {current}, "
                                   f"newer than this server ({len(MIGRATIONS)}); refusing to start")
            for version in range(current, len(MIGRATIONS)):
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        await conn.execute(statement)
                log.info("database migrated", extra={"schema_version": version + 1})
            if current < len(MIGRATIONS):
                await conn.execute(
                    "INSERT INTO scim_schema (id, version) VALUES (1, %s) "
                    "ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                    (len(MIGRATIONS),))
            # A tenant's database is its own: no other role may connect to it, whatever the
            # cluster's defaults (CloudNativePG's Database leaves CONNECT to PUBLIC). Only the
            # owner can; for another role this is a warning and changes nothing.
            name = (await (await conn.execute("SELECT current_database()")).fetchone())[0]
            await conn.execute(psql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC")
                               .format(psql.Identifier(name)))
            # Derived from this Python's Unicode tables, so made again by every start.
            icu = await (await conn.execute(
                "SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'")).fetchone()
            await conn.execute(fold_function_sql("und-x-icu" if icu else "default"))

    async def _open_stream(self, conn: psycopg.AsyncConnection) -> None:
        """The stream's row, as sqlite.py keeps it: turning events off and on again leaves
        changes no event tells of, so the receiver is told to resync (a gap)."""
        if self._stream_kept:
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            row = await (await conn.execute("SELECT recording FROM event_stream")).fetchone()
            if row is None:
                if self.events_on:
                    await conn.execute("INSERT INTO event_stream (id, stream, recording) "
                                       "VALUES (1, %s, true)", (secrets.token_hex(8),))
            elif self.events_on and not row[0]:
                await conn.execute(
                    "UPDATE event_stream SET recording = true, gap_through = head, "
                    "gap_count = -1, gap_reason = 'the server ran with events off' "
                    "WHERE gap_reason IS NULL")
                await conn.execute("UPDATE event_stream SET recording = true")
            elif not self.events_on and row[0]:
                await conn.execute("UPDATE event_stream SET recording = false")

    async def close(self) -> None:
        self._closed = True
        for task in [self._opening, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [self._opening, *self._tasks] if t],
                             return_exceptions=True)
        await self.pool.close()

    # -- connections and errors -------------------------------------------------------------

    @asynccontextmanager
    async def _conn(self, search: bool = False) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection; database failures become the client's SCIM error."""
        if not self._opened.is_set():
            raise ScimError(503, "The database is not ready yet; retry shortly",
                            headers={"Retry-After": RETRY_AFTER})
        if self._down is not None:
            # Known down: answer at once rather than have every request wait out the pool's
            # timeout; _recover() finds out when it is back.
            raise _unavailable(self._down)
        try:
            # getconn/putconn, not pool.connection(): that one also lends the connection inside
            # `async with conn`, whose commit() on the way out costs every request 7 µs
            # (bench/), to do nothing on an autocommit connection. A write that fails rolls
            # its own transaction back (transaction()).
            conn = await self.pool.getconn()
            try:
                yield conn
            finally:
                await self.pool.putconn(conn)
        except pgerrors.QueryCanceled:
            if search:
                raise ScimError(400, f"The query ran longer than the {self.query_timeout:g} s "
                                "limit: filter on an indexed attribute (userName, externalId, "
                                "emails.value, displayName, id, meta.lastModified) or narrow "
                                "it", "tooMany") from None
            raise _unavailable(TimeoutError()) from None
        except (pgerrors.DeadlockDetected, pgerrors.SerializationFailure):
            raise Retry() from None
        except pgerrors.UntranslatableCharacter:
            raise bad_request("A value holds a character the database cannot store "
                              "(U+0000)") from None
        except psycopg.DataError as e:
            if "NUL" in str(e):  # psycopg refuses a text parameter holding U+0000
                raise bad_request("A value holds a character the database cannot store "
                                  "(U+0000)") from None
            raise
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as e:
            self._went_down(e)
            raise _unavailable(e) from None

    def _went_down(self, e: BaseException) -> None:
        if self._down is None and not self._closed:
            log.warning("the database does not answer: requests get 503 until it does",
                        extra={"database": redact(self.dsn), "error": type(e).__name__})
            self._down = e
            self._problem = problem(e)
            self._tasks.append(asyncio.ensure_future(self._recover()))

    async def _diagnose(self) -> tuple[str, str] | None:
        """problem() of a connection made now, None if it works."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
            await conn.close()
            return None
        except psycopg.Error as e:
            return problem(e)

    async def _recover(self) -> None:
        """Try a connection of its own each second; once one works, the pool's broken
        connections are replaced (pool.check) and requests go to the database again."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
                async with conn:
                    await conn.execute("SELECT 1")
                await self.pool.check()
                self._down = None
                log.info("the database answers again", extra={"database": redact(self.dsn)})
                return
            except (psycopg.Error, PoolTimeout) as e:
                self._problem = problem(e)  # the real reason (the pool's is a timeout)
                await asyncio.sleep(1)

    async def ping(self) -> None:
        """Raises, for /readyz, why the database cannot be used: the reason a tenant
        condition names and PostgreSQL's message (never the URI's password)."""
        if not self._opened.is_set():
            why = f": {self._problem[0]}: {self._problem[1]}" if self._problem else ""
            raise RuntimeError(f"the database has not answered yet{why}")
        if self._down is None:
            try:
                async with self.pool.connection(timeout=2) as conn:
                    await conn.execute("SELECT 1")
                return
            except (psycopg.Error, PoolTimeout) as e:
                self._went_down(e)
        reason, message = self._problem or problem(self._down)
        raise RuntimeError(f"{reason}: {message}")

    async def count(self, rt: ResourceType) -> int:
        async with self._conn() as conn:
            cur = await conn.execute(f"SELECT count(*) FROM {_TABLE[rt.name]}")
            return (await cur.fetchone())[0]

    # -- reads ------------------------------------------------------------------------------

    async def get(self, rt: ResourceType, id: str, *, with_related: bool = True) -> Stored:
        async with self._conn() as conn:
            cur = await conn.execute(f"SELECT {_select(rt, with_related)} "
                                     f"FROM {_TABLE[rt.name]} r WHERE r.id = %s", (id,))
            row = await cur.fetchone()
        if row is None:
            raise not_found(f"{rt.name} {id} not found")
        return _with_related(rt, row) if with_related else _stored(row)

    async def search(self, rt: ResourceType, query: Query) -> tuple[int, list[Stored]]:
        table = _TABLE[rt.name]
        where, params = ("true", []) if query.filter is None else \
            compile_filter(rt, query.filter, POSTGRES)
        order = f"r.{_ROW_ORDER}"
        if query.sort_by:
            direction = "DESC" if query.descending else "ASC"
            order = f"{compile_sort(rt, query.sort_by, POSTGRES)} {direction} NULLS LAST, {order}"
        offset = query.start_index - 1
        related = query.with_members if rt.name == "Group" else query.with_groups
        async with self._conn(search=True) as conn:
            rows = []
            if query.count > 0:
                # LIMIT and OFFSET written in, not bound: with them as parameters PostgreSQL
                # never settles on the prepared statement's generic plan, and planned Entra's
                # `userName eq` afresh on every call (58 µs of its 84, measured with bench/).
                cur = await conn.execute(
                    f"SELECT {_select(rt, related)} FROM {table} r "
                    f"WHERE {where} ORDER BY {order} LIMIT {int(query.count)} "
                    f"OFFSET {int(offset)}", params)
                rows = await cur.fetchall()
            if offset == 0 and len(rows) < query.count:
                total = len(rows)  # the whole result is on this page: no second query
            else:
                cur = await conn.execute(f"SELECT count(*) FROM {table} r WHERE {where}", params)
                total = (await cur.fetchone())[0]
        return total, [_with_related(rt, r) if related else _stored(r) for r in rows]

    # -- writes (the rules are writes.py's; these are its primitives) -------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_WriteTx]:
        # Pipeline mode: BEGIN goes out with the transaction's first statement and COMMIT with
        # its last, not in round trips of their own (a statement whose result is read still
        # waits for it). BEGIN and COMMIT are written here rather than with psycopg's
        # conn.transaction(), which in a pipeline syncs before and after its block (nested
        # pipelines): two more round trips per write, and a third of a PATCH's CPU in this
        # process (0.35 ms where this takes 0.23). Not prepared: BEGIN and COMMIT then stay
        # in pg_stat_statements, which bench/ counts statements with.
        async with self._conn() as conn:
            try:
                async with conn.pipeline():
                    await conn.execute("BEGIN", prepare=False)
                    yield _WriteTx(conn)
                    await conn.execute("COMMIT", prepare=False)
            except BaseException:
                await _roll_back(conn)
                raise

    def events_committed(self) -> None:
        self._wake_waiters()
        self._notify.set()

    def recent_events(self, after: int) -> tuple[list[Outboxed], bool]:
        """Nothing from memory: another replica commits events this process never holds, so
        a watcher reads the outbox (events/routes.py), in stream order, and is told of the
        events a receiver acknowledged before it read them."""
        return [], False

    def _wake_waiters(self) -> None:
        self._wake, event = asyncio.Event(), self._wake
        event.set()

    async def _notifier(self) -> None:
        """Tell the other replicas' waiters that events committed: one NOTIFY for however many
        commits happened while the last one was sent."""
        while True:
            await self._notify.wait()
            self._notify.clear()
            try:
                async with self.pool.connection() as conn:
                    await conn.execute(f"NOTIFY {_CHANNEL}")
            except (psycopg.Error, PoolTimeout):
                await asyncio.sleep(1)  # the others find the events by their own look

    async def _listen(self) -> None:
        """A connection of its own, LISTENing, for as long as the storage is open."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
                async with conn:
                    await conn.execute(f"LISTEN {_CHANNEL}")
                    self._wake_waiters()  # whatever committed while it was not listening
                    async for _ in conn.notifies():
                        self._wake_waiters()
            except psycopg.Error:
                await asyncio.sleep(1)

    # -- the event outbox -------------------------------------------------------------------

    async def _head(self, conn: psycopg.AsyncConnection) -> int:
        row = await (await conn.execute("SELECT head FROM event_stream")).fetchone()
        return row[0] if row else 0

    async def read_events(self, limit: int, after: int = 0) -> list[Outboxed]:
        async with self._conn() as conn:
            cur = await conn.execute("SELECT seq, txn, iat, record FROM events WHERE seq > %s "
                                     "ORDER BY seq LIMIT %s", (after, limit))
            return [Outboxed(*row) for row in await cur.fetchall()]

    async def ack_events(self, seqs: Collection[int]) -> int:
        async with self._conn() as conn:
            cur = await conn.execute("DELETE FROM events WHERE seq = ANY(%s)", (list(seqs),))
            return cur.rowcount

    async def ack_gap(self, through: int) -> bool:
        async with self._conn() as conn:
            cur = await conn.execute(
                "UPDATE event_stream SET gap_through = 0, gap_count = 0, gap_reason = NULL "
                "WHERE gap_reason IS NOT NULL AND gap_through = %s", (through,))
            return cur.rowcount > 0

    async def stream_state(self, counts: bool = True) -> StreamState:
        async with self._conn() as conn:
            row = await (await conn.execute(
                "SELECT stream, head, gap_through, gap_count, gap_reason FROM event_stream"
            )).fetchone()
            if row is None:
                raise RuntimeError("the event stream is off")
            backlog = oldest = None
            if counts:
                backlog, oldest = await (await conn.execute(
                    "SELECT count(*), (SELECT iat FROM events ORDER BY seq LIMIT 1) FROM events"
                )).fetchone()
        return StreamState(row[0], row[1], backlog, oldest, row[2], row[3], row[4])

    async def trim_events(self, max_age: float, max_count: int) -> int:
        async with self._conn() as conn, conn.transaction():
            head = await self._head(conn)
            keep_from = await (await conn.execute(
                "SELECT seq FROM events WHERE iat >= %s ORDER BY seq LIMIT 1",
                (int(time.time() - max_age),))).fetchone()
            cut = max(head - max_count, (keep_from[0] - 1) if keep_from else head)
            gone = (await conn.execute("DELETE FROM events WHERE seq <= %s", (cut,))).rowcount
            if gone:
                await self._mark_gap(conn, cut, gone, "retention")
        return gone

    async def lose_events(self, seqs: Collection[int], reason: str) -> int:
        seqs = list(seqs)
        if not seqs:
            return 0
        async with self._conn() as conn, conn.transaction():
            gone = (await conn.execute("DELETE FROM events WHERE seq = ANY(%s)",
                                       (seqs,))).rowcount
            await self._mark_gap(conn, max(seqs), len(seqs), reason)
        return gone

    @staticmethod
    async def _mark_gap(conn: psycopg.AsyncConnection, through: int, count: int,
                        reason: str) -> None:
        """Events up to `through` are lost to the receiver: it must resync (sets.RESYNC)."""
        await conn.execute(
            "UPDATE event_stream SET gap_through = greatest(gap_through, %s), "
            "gap_count = CASE WHEN gap_count < 0 THEN -1 ELSE gap_count + %s END, "
            "gap_reason = coalesce(gap_reason, %s)", (through, count, reason))
        log.warning("events lost to the receiver: it must resync",
                    extra={"events": count, "through": through, "reason": reason})

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            wake = self._wake  # before the look: a commit after it sets this one
            async with self._conn() as conn:
                if await self._head(conn) > after:
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(wake.wait(), min(left, _RECHECK))
            except TimeoutError:
                pass

    @asynccontextmanager
    async def leadership(self, name: str) -> AsyncIterator[asyncio.Event]:
        """A session advisory lock on a connection of its own, tried every few seconds until
        it is this process's; while held, the connection is checked, and if it breaks (the
        database restarted, the lock went with it) the yielded Event is set. Another replica
        may then take over while this one finishes a push: a receiver may get an event twice,
        never out of order (each sender starts from the oldest unacknowledged event)."""
        key = int.from_bytes(name.encode()[:7].ljust(7, b"\0"), "big")
        lost = asyncio.Event()
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
            except psycopg.Error:
                await asyncio.sleep(_LEADER_RETRY)
                continue
            try:
                held = await (await conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                                 (_LEADER_LOCKS, key % 2**31))).fetchone()
            except psycopg.Error:
                held = (False,)
            if held[0]:
                break
            await conn.close()
            await asyncio.sleep(_LEADER_RETRY)

        async def watch() -> None:
            try:
                while True:
                    await asyncio.sleep(_LEADER_RETRY)
                    await conn.execute("SELECT 1")
            except psycopg.Error:
                lost.set()

        watcher = asyncio.ensure_future(watch())
        try:
            yield lost
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await conn.close()  # the session's advisory lock goes with it

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[_Snapshot]:
        """One REPEATABLE READ transaction on a connection of its own, held until the
        receiver has read every batch."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = await (await conn.execute("SELECT stream, head FROM event_stream")).fetchone()
            yield _Snapshot(conn, row[1] if row else 0, row[0] if row else "")


# Up to this many values, a statement gets one placeholder each rather than one array: an
# array's length is unknown to a prepared statement's generic plan, which then never wins over
# planning every call afresh (51 µs of a user PATCH's 63, measured with bench/). Beyond it (a
# user in hundreds of groups being deleted), an array: one statement text, and no parameter
# limit (65,535) to meet.
_PLACEHOLDERS_UP_TO = 32


def _email_statements(id: str, doc: dict, old: dict | None) -> list[tuple[str, list]]:
    """The statements that bring the email index of user `id` from `old` to `doc`, with their
    parameters (a user has one or two emails: _PLACEHOLDERS_UP_TO)."""
    gone, added = email_changes(doc, old)
    statements = []
    if len(gone) > _PLACEHOLDERS_UP_TO:
        statements.append((f"DELETE FROM {EMAILS.table} WHERE {EMAILS.owner} = %s AND "
                           f"{EMAILS.value} = ANY(%s)", [id, list(gone)]))
    elif gone:
        statements.append((f"DELETE FROM {EMAILS.table} WHERE {EMAILS.owner} = %s AND "
                           f"{EMAILS.value} IN ({', '.join(['%s'] * len(gone))})",
                           [id, *gone]))
    if len(added) > _PLACEHOLDERS_UP_TO:
        statements.append((f"INSERT INTO {EMAILS.table} ({EMAILS.owner}, {EMAILS.value}) "
                           "SELECT %s, unnest(%s::text[])", [id, list(added)]))
    elif added:
        statements.append((f"INSERT INTO {EMAILS.table} ({EMAILS.owner}, {EMAILS.value}) "
                           f"VALUES {', '.join(['(%s, %s)'] * len(added))}",
                           [x for value in added for x in (id, value)]))
    return statements


async def _roll_back(conn: psycopg.AsyncConnection) -> None:
    """End a failed write's transaction before its connection goes back to the pool (which
    would otherwise roll it back itself, with a warning for each 409 and 412). The pipeline
    is over by now (its exit synced), so the connection knows where it is; one that broke,
    or was cancelled mid-statement (ACTIVE), is the pool's to discard."""
    if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        try:
            await conn.execute("ROLLBACK", prepare=False)
        except psycopg.Error:
            pass  # broken: the pool replaces it, and the write's own error is the one to tell


async def _load_related(conn: psycopg.AsyncConnection, rt: ResourceType,
                        items: list[Stored]) -> None:
    if not items:
        return
    by_id = {s.id: s for s in items}
    if rt.name == "Group":
        for s in items:
            s.members = []
        # In the order SQLite keeps them (its primary key's), so both backends answer alike.
        cur = await conn.execute("SELECT group_id, value, display, type FROM group_members "
                                 "WHERE group_id = ANY(%s) ORDER BY group_id, value",
                                 (list(by_id),))
        for gid, value, display, type_ in await cur.fetchall():
            by_id[gid].members.append(member(value, display, type_))
    else:
        for s in items:
            s.groups = []
        cur = await conn.execute(
            f"SELECT m.value, m.group_id, {_GROUP_DISPLAY} FROM group_members m "
            f"JOIN {_TABLE['Group']} g ON g.id = m.group_id WHERE m.value = ANY(%s) "
            "ORDER BY m.value, m.group_id",
            (list(by_id),))
        for uid, gid, display in await cur.fetchall():
            by_id[uid].groups.append({"value": gid, "display": display})


async def _gone(delta: MemberDelta, cur: psycopg.AsyncCursor) -> None:
    for value, display, type_ in await cur.fetchall():
        delta.saw(value, member(value, display, type_))
        delta.set(value, None)


class _WriteTx:
    """writes.WriteTx over one connection inside its transaction (READ COMMITTED)."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def current(self, rt: ResourceType, id: str) -> Stored | None:
        # Locked until commit: a second writer of this resource waits here, then reads what
        # the first one wrote (its If-Match is checked against that).
        # A user's groups in the same statement (a write of a user does not change them, so
        # the answer needs no second read); never a group's members, which may be 50,000.
        users = rt.name == "User"
        row = await (await self.conn.execute(
            f"SELECT {_select(rt, users)} FROM {_TABLE[rt.name]} r WHERE r.id = %s "
            "FOR NO KEY UPDATE OF r", (id,))).fetchone()
        if row is None:
            return None
        return _with_related(rt, row) if users else _stored(row)

    async def insert(self, rt: ResourceType, res: Stored) -> None:
        cols = index_columns(rt, res.doc, POSTGRES)
        cols.update(id=res.id, created=res.created, last_modified=res.last_modified,
                    version=res.version)
        cols[DOC] = orjson.dumps(res.doc).decode()
        # ON CONFLICT DO NOTHING: a taken name leaves the transaction usable, to find the
        # holder; a concurrent creator of the same name is waited for, then seen.
        cur = await self.conn.execute(
            f"INSERT INTO {_TABLE[rt.name]} ({', '.join(cols)}) VALUES "
            f"({', '.join(['%s'] * len(cols))}) ON CONFLICT DO NOTHING RETURNING 1",
            tuple(cols.values()))
        if await cur.fetchone() is None:
            raise await self._taken(rt, res.doc, res.id)
        if rt.name == "User":
            for statement, values in _email_statements(res.id, res.doc, None):
                await self.conn.execute(statement, values)

    async def update(self, rt: ResourceType, res: Stored, old: Stored) -> None:
        cols = index_columns(rt, res.doc, POSTGRES)
        before = index_columns(rt, old.doc, POSTGRES)
        cols = {k: v for k, v in cols.items() if before.get(k) != v}
        renamed = TABLES[rt.name].unique.name in cols
        cols.update(last_modified=res.last_modified, version=res.version)
        cols[DOC] = orjson.dumps(res.doc).decode()
        ctes, args = [], []
        if rt.name == "User":
            # The email index's changes in the same statement as the row: one statement where
            # three were (the sub-statements touch disjoint rows, so none needs another's).
            for i, (statement, values) in enumerate(_email_statements(res.id, res.doc, old.doc)):
                ctes.append(f"e{i} AS ({statement})")
                args += values
        sql = (("WITH " + ", ".join(ctes) + " " if ctes else "")
               + f"UPDATE {_TABLE[rt.name]} SET {', '.join(f'{k} = %s' for k in cols)} "
               "WHERE id = %s")
        args = (*args, *cols.values(), res.id)
        if renamed:
            # Only a rename can break uniqueness: a savepoint (one more round trip) keeps the
            # transaction usable to name the holder.
            try:
                async with self.conn.transaction():
                    await self.conn.execute(sql, args)
            except pgerrors.UniqueViolation:
                raise await self._taken(rt, res.doc, res.id) from None
        else:
            await self.conn.execute(sql, args)

    async def _taken(self, rt: ResourceType, doc: dict, own_id: str) -> Exception:
        row = await (await self.conn.execute(
            f"SELECT id FROM {_TABLE[rt.name]} WHERE {TABLES[rt.name].unique.name} = %s",
            (unique_key(rt, doc),))).fetchone()
        if row is None or row[0] == own_id:
            # The holder went away between the conflict and this look: run it again.
            return Retry()
        return Taken(row[0])

    async def load_related(self, rt: ResourceType, items: list[Stored]) -> None:
        await _load_related(self.conn, rt, [s for s in items if (
            s.members if rt.name == "Group" else s.groups) is None])

    async def remove(self, rt: ResourceType, id: str) -> list[str]:
        await self.conn.execute(f"DELETE FROM {_TABLE[rt.name]} WHERE id = %s", (id,))
        cur = await self.conn.execute(
            "DELETE FROM group_members WHERE value = %s RETURNING group_id", (id,))
        # In id order: two deletions that share groups lock them in the same order.
        return sorted(r[0] for r in await cur.fetchall())

    async def record(self, iat: int, records: list[dict]) -> list[Outboxed]:
        # The last statement of the transaction: the counter row stays locked until COMMIT,
        # so the next recorder's seqs follow these in commit order (see the module).
        # A placeholder per record (_PLACEHOLDERS_UP_TO says why), and the count written in.
        n = len(records)
        docs = [orjson.dumps(r).decode() for r in records]
        if n > _PLACEHOLDERS_UP_TO:
            rows, args = "unnest(%s::json[]) WITH ORDINALITY AS r(record, n)", (docs,)
        else:
            rows = "(VALUES " + ", ".join(f"({i + 1}, %s::json)" for i in range(n)) + \
                ") AS r(n, record)"
            args = tuple(docs)
        row = await (await self.conn.execute(
            f"WITH h AS (UPDATE event_stream SET head = head + {n} RETURNING head) "
            "INSERT INTO events (seq, txn, iat, record) "
            f"SELECT h.head - {n} + r.n, h.head - {n} + 1, %s, r.record "
            f"FROM h, {rows} RETURNING txn", (iat, *args))).fetchone()
        txn = row[0]
        return [Outboxed(txn + i, txn, iat, r) for i, r in enumerate(records)]

    async def restore_stream(self, state: StreamState, events: list[Outboxed]) -> None:
        await self.conn.execute(
            "INSERT INTO event_stream (id, stream, recording, head, gap_through, gap_count, "
            "gap_reason) VALUES (1, %s, true, %s, %s, %s, %s)",
            (state.stream, state.head, state.gap_through, state.gap_count, state.gap_reason))
        if events:
            await self.conn.execute(
                "INSERT INTO events (seq, txn, iat, record) SELECT * FROM "
                "unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::json[])",
                ([e.seq for e in events], [e.txn for e in events], [e.iat for e in events],
                 [orjson.dumps(e.record).decode() for e in events]))

    # -- membership -------------------------------------------------------------------------

    async def change_members(self, group_id: str, changes: list[MemberChange]) -> MemberDelta:
        delta = MemberDelta()
        member_rows = "RETURNING value, display, type"
        for ch in changes:
            if ch.kind in ("replace", "remove_all"):
                await _gone(delta, await self.conn.execute(
                    f"DELETE FROM group_members WHERE group_id = %s {member_rows}", (group_id,)))
            if ch.kind in ("add", "replace"):
                await self._add_members(group_id, ch.members, delta)
            elif ch.kind == "remove":
                await _gone(delta, await self.conn.execute(
                    f"DELETE FROM group_members WHERE group_id = %s AND value = ANY(%s) "
                    f"{member_rows}", (group_id, list(ch.values))))
            elif ch.kind == "remove_where":
                where, params = compile_member_filter(ch.filter, POSTGRES)
                await _gone(delta, await self.conn.execute(
                    f"DELETE FROM group_members AS m WHERE group_id = %s AND {where} "
                    f"{member_rows}", (group_id, *params)))
            elif ch.kind == "update_where":
                where, params = compile_member_filter(ch.filter, POSTGRES)
                match = f"group_id = %s AND display IS DISTINCT FROM %s AND {where}"
                args = (group_id, ch.display, *params)
                cur = await self.conn.execute(
                    f"SELECT value, display, type FROM group_members AS m WHERE {match}", args)
                for value, display, type_ in await cur.fetchall():
                    delta.saw(value, member(value, display, type_))
                    delta.set(value, member(value, ch.display, type_))
                await self.conn.execute(f"UPDATE group_members AS m SET display = %s "
                                        f"WHERE {match}", (ch.display, *args))
        return delta

    async def _add_members(self, group_id: str, members: list[dict], delta: MemberDelta) -> None:
        if not members:
            return
        wanted = wanted_members(group_id, members)
        ids = list(wanted)
        found: dict[str, tuple] = {}
        # Each wanted member, locked FOR KEY SHARE (a concurrent delete of it waits for this
        # commit, and then removes the membership too), with its row in this group if any.
        # Users first: a group's members are mostly users, and groups are looked up only for
        # the ids that are not.
        for type_ in ("User", "Group"):
            todo = [i for i in ids if i not in found]
            if not todo:
                break
            cur = await self.conn.execute(
                f"SELECT r.id, m.value IS NOT NULL, m.display FROM {_TABLE[type_]} r "
                "LEFT JOIN group_members m ON m.group_id = %s AND m.value = r.id "
                "WHERE r.id = ANY(%s) FOR KEY SHARE OF r", (group_id, todo))
            for mid, present, display in await cur.fetchall():
                found[mid] = (type_, present, display)
        rows = additions(wanted, found, delta)
        if rows:
            await self.conn.execute(
                "INSERT INTO group_members (group_id, value, display, type) "
                "SELECT %s, v, d, t FROM unnest(%s::text[], %s::text[], %s::text[]) AS x(v, d, t) "
                "ON CONFLICT (group_id, value) DO UPDATE SET display = excluded.display",
                (group_id, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]))


class _Snapshot:
    """storage.Snapshot over one REPEATABLE READ transaction."""

    def __init__(self, conn: psycopg.AsyncConnection, position: int, stream: str) -> None:
        self.conn = conn
        self.position = position
        self.stream = stream

    async def batches(self, rt: ResourceType) -> AsyncIterator[list[Stored]]:
        after = 0
        while True:
            cur = await self.conn.execute(
                f"SELECT {_ROW_ORDER}, {_ROW} FROM {_TABLE[rt.name]} WHERE {_ROW_ORDER} > %s "
                f"ORDER BY {_ROW_ORDER} LIMIT {_SNAPSHOT_BATCH}", (after,))
            rows = await cur.fetchall()
            if not rows:
                return
            items = [_stored(r[1:]) for r in rows]
            if rt.name == "Group":
                await _load_related(self.conn, rt, items)
            after = rows[-1][0]
            yield items
