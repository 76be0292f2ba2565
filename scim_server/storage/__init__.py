"""Storage: the interface every backend implements, and the types it speaks.

SQLite (WAL, one file; `sqlite.py`) is the embedded backend, PostgreSQL (`postgres.py`) the one
for several replicas on a database with replication and backups. Both pass the same tests
(tests/test_storage.py runs against this interface, once per backend in its BACKENDS).

The contract:
- Every method is a coroutine and one transaction: a call applies completely or not at all,
  and a failure is a `ScimError` the client may see (404, 409 uniqueness, 412 precondition,
  400 for a filter the backend cannot run), never a database exception.
- `Stored` is what reads and writes return; the document (`doc`) holds the resource's own
  attributes only: no id, meta, schemas, Group members or User groups, which storage keeps.
- Group membership changes come in as `MemberChange` deltas, applied in order, so one member
  costs the same in a group of 10 or of 50,000.
- Every change made through a write method records its event in the same transaction, in an
  ordered outbox (when the backend was opened with events on): a write that fails or changes
  nothing records none, an acknowledged one always has one. The write rules (precondition,
  mutate, no-op, uniqueness, side effects on groups, the event) live once, in `writes.py`, over a
  few primitives each backend provides (`WriteTx`); what an event holds is `outbox.py`'s.
- The logic every backend shares lives in `common.py` (ids, preconditions, uniqueness keys);
  the logical schema (which attribute is in which table and column) in `schema.py`; filters
  and sorts compile once (`sqlfilter.py`), spelled by each backend's `dialect.py` Dialect.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from ..filters import Node
from ..schemas import ResourceType


@dataclass
class Stored:
    """A resource as storage returns it."""

    id: str
    doc: dict
    created: str
    last_modified: str
    version: int
    members: list[dict] | None = None  # Group members, None when not loaded
    groups: list[dict] | None = None  # User groups, None when not loaded

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


@dataclass
class MemberChange:
    """One change to a group's membership, applied by storage in request order."""

    kind: str  # add | remove | remove_all | replace | remove_where | update_where
    members: list[dict] = field(default_factory=list)  # add, replace: {"value", "display"}
    values: list[str] = field(default_factory=list)  # remove: member ids
    filter: Node | None = None  # remove_where, update_where: over value, display, type
    display: object = None  # update_where: the new display (None clears it)


@dataclass(frozen=True)
class Query:
    filter: Node | None = None
    sort_by: str | None = None
    descending: bool = False
    start_index: int = 1  # 1-based, as in SCIM
    count: int = 100
    with_members: bool = True  # load Group members (False for excludedAttributes=members)
    with_groups: bool = True  # load User groups


# A PATCH, as storage applies it: from the current document to the new one plus the
# membership deltas, run inside the write's transaction (so If-Match and the change are one).
Mutation = Callable[[dict], tuple[dict, list[MemberChange]]]


@dataclass(frozen=True)
class Outboxed:
    """One event as the outbox holds it: what changed, not yet a signed SET (events/sets.py
    makes that at delivery, so the write path pays for no rendering or signature)."""

    seq: int  # its position in the stream: commit order, never reused
    txn: int  # the position of its transaction (the seq of the transaction's first event)
    iat: int  # when it was recorded, Unix seconds
    record: dict  # the change (outbox.py)


@dataclass(frozen=True)
class StreamState:
    """Where the event stream stands. `gap` is a loss the receiver has not acknowledged yet:
    events up to `gap_through` were discarded unread (retention) or never recorded (the server
    ran with events off), so the receiver must resync from a snapshot."""

    stream: str  # this stream's id: part of every jti, so a jti names one stream only
    head: int  # the last seq ever recorded, 0 for none
    backlog: int | None  # events recorded and not acknowledged (None: not counted)
    oldest_iat: int | None  # iat of the oldest of them
    gap_through: int = 0
    gap_count: int = 0  # -1: unknown (changes made while recording was off)
    gap_reason: str | None = None

    @property
    def gap(self) -> bool:
        return self.gap_through > 0


class Snapshot(Protocol):
    """The state at one stream position, read consistently: every resource whose last event is
    at or before `position` is as that event left it, and no later change shows."""

    position: int
    stream: str

    def batches(self, rt: ResourceType) -> AsyncIterator[list[Stored]]:
        """Every resource of a type, in batches; Groups with their members."""


class Storage(Protocol):
    async def open(self, wait: bool = True) -> None:
        """Ready the database (connect, migrate). With `wait=False` a database that does not
        answer yet is retried in the background, and requests get 503 until it does."""

    async def get(self, rt: ResourceType, id: str, *, with_related: bool = True) -> Stored:
        """One resource (404 if absent); `with_related` loads members or groups."""

    async def search(self, rt: ResourceType, query: Query) -> tuple[int, list[Stored]]:
        """(total matching, the page), in a stable order (sortBy, else insertion)."""

    async def create(self, rt: ResourceType, doc: dict, members: list[dict] | None) -> Stored:
        """A new resource with a new id; 409 uniqueness for a taken userName/displayName."""

    async def replace(self, rt: ResourceType, id: str, doc: dict, members: list[dict] | None,
                      if_match: str | None) -> Stored:
        """PUT: the whole document (and, for a group, the whole member list)."""

    async def modify(self, rt: ResourceType, id: str, mutate: Mutation, if_match: str | None,
                     *, with_related: bool = True, patch_op: dict | None = None) -> Stored:
        """PATCH: `mutate` runs on the current document inside the transaction; a change
        that changes nothing keeps the version and lastModified. `patch_op` is the request
        as sent, which the event carries."""

    async def delete(self, rt: ResourceType, id: str, if_match: str | None) -> None:
        """Delete; a deleted user or group leaves every group it was in, and each such group
        is changed (a new version, lastModified and event)."""

    async def count(self, rt: ResourceType) -> int: ...

    async def ping(self) -> None:
        """Raise if the database cannot answer (readiness)."""

    async def close(self) -> None: ...

    # -- the event outbox (only when opened with events on) -----------------------------------

    async def read_events(self, limit: int, after: int = 0) -> list[Outboxed]:
        """The oldest unacknowledged events with a seq above `after`, in stream order."""

    async def ack_events(self, seqs: Collection[int]) -> int:
        """Forget these events (delivered); unknown or already forgotten seqs are ignored.
        Returns how many were forgotten."""

    async def ack_gap(self, through: int) -> bool:
        """The receiver has resynced past the gap ending at `through`: clear it."""

    async def lose_events(self, seqs: Collection[int], reason: str) -> int:
        """Forget these events undelivered (the receiver rejected them) and mark the gap."""

    async def stream_state(self, counts: bool = True) -> StreamState:
        """Where the stream stands; `counts=False` leaves the backlog uncounted (delivery
        needs the head and the gap on every batch, the count only for metrics)."""

    async def trim_events(self, max_age: float, max_count: int) -> int:
        """Discard unacknowledged events older than `max_age` seconds or beyond the newest
        `max_count`, marking the gap; returns how many were discarded."""

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        """Wait until an event with a seq above `after` is committed (True) or `timeout`
        seconds pass (False)."""

    def snapshot(self) -> AbstractAsyncContextManager[Snapshot]:
        """A consistent read of every user and group, for a receiver's bootstrap."""

    def leadership(self, name: str) -> AbstractAsyncContextManager[asyncio.Event]:
        """Entered once this process is the only one, of all sharing the database, inside a
        block of this `name` (the push sender: one at a time, or events would go out of
        order); yields an Event set if that is no longer certain (the lock was lost)."""
