"""The write rules, once for every backend: a unit of work over a few primitives.

Each write method opens one transaction of the backend (`WriteTx`) and, inside it: reads the
current resource and checks If-Match, runs the mutation, decides whether anything changed,
writes, turns a uniqueness violation into the 409 that names the holder, carries a deletion's
side effect to the groups that lose a member, and records the events. A backend provides only
the primitives, so none can forget an event, bump a version differently or answer 409 in its
own words; tests/test_storage.py holds every backend to the result.
"""

from __future__ import annotations

import time
from collections import deque
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from ..errors import ScimError, not_found
from ..schemas import GROUP_TYPE, ResourceType
from . import MemberChange, Mutation, Outboxed, Stored, StreamState, outbox
from .common import check_precondition, new_id, now, uniqueness_conflict
from .outbox import MemberDelta


class Taken(Exception):
    """Raised by a primitive when the unique attribute is already held (by `holder`)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class Retry(Exception):
    """Raised by a backend when the database rolled the transaction back for a reason that
    running it again resolves (PostgreSQL's deadlock detector): the write runs again, whole."""


RETRIES = 5


class WriteTx(Protocol):
    """One open write transaction of a backend. Nothing is visible to others until the
    transaction commits, which the backend does when the `transaction()` block ends without
    an exception (and rolls back when it raises)."""

    async def current(self, rt: ResourceType, id: str) -> Stored | None:
        """The resource as stored; None if absent. A user's groups may come with it (a backend
        that reads them in the same statement), a group's members never."""

    async def insert(self, rt: ResourceType, res: Stored) -> None:
        """A new row; raises Taken when its unique attribute is held."""

    async def update(self, rt: ResourceType, res: Stored, old: Stored) -> None:
        """Overwrite `old` with `res` (same id); raises Taken likewise."""

    async def remove(self, rt: ResourceType, id: str) -> list[str]:
        """Delete the row, its own members (a group) and its memberships; returns the ids of
        the groups it was a member of."""

    async def change_members(self, group_id: str, changes: list[MemberChange]) -> MemberDelta:
        """Apply membership changes in order (400 for a member that does not exist or a group
        in itself); returns exactly what changed."""

    async def load_related(self, rt: ResourceType, items: list[Stored]) -> None:
        """Fill in members (Groups) or groups (Users), where they are not loaded yet."""

    async def record(self, iat: int, records: list[dict]) -> list[Outboxed]:
        """Append the events of this transaction to the outbox, in order."""

    async def restore_stream(self, state: StreamState, events: list[Outboxed]) -> None:
        """Make the event stream `state` says (its id, last seq and gap), holding `events` as
        they are (their seqs kept): what `storage copy` writes into an empty database."""


RECENT_KEPT = 10_000  # committed events kept in memory for watchers (`events tail`)


class WritePath:
    """create, replace, modify and delete of the Storage interface, for a backend that
    provides `transaction()` and says whether it records events (`events_on`)."""

    events_on: bool = False
    _recent: deque[Outboxed] | None = None

    def transaction(self) -> AbstractAsyncContextManager[WriteTx]:
        raise NotImplementedError

    def events_committed(self) -> None:
        """Called after a transaction that recorded events has committed (wakes waiters)."""

    def recent_events(self, after: int) -> tuple[list[Outboxed], bool]:
        """The events committed by this process after seq `after`, from memory, and whether
        some after `after` are no longer kept. A watcher sees them even when the receiver
        has acknowledged them already."""
        recent = self._recent or deque()
        missed = bool(recent) and recent[0].seq > after + 1
        return [e for e in recent if e.seq > after], missed

    async def _save(self, tx: WriteTx, records: list[dict]) -> list[Outboxed]:
        if records and self.events_on:
            return await tx.record(int(time.time()), records)
        return []

    async def _write(self, tx: WriteTx, rt: ResourceType, res: Stored,
                     old: Stored | None) -> None:
        try:
            if old is None:
                await tx.insert(rt, res)
            else:
                await tx.update(rt, res, old)
        except Taken as e:
            raise uniqueness_conflict(rt, res.doc, e.holder) from None

    async def _current(self, tx: WriteTx, rt: ResourceType, id: str,
                       if_match: str | None) -> Stored:
        cur = await tx.current(rt, id)
        if cur is None:
            raise not_found(f"{rt.name} {id} not found")
        check_precondition(cur, if_match)
        return cur

    async def _retried(self, attempt):
        """Run one write's transaction, again on `Retry` (a few times: each retry is a fresh
        transaction that sees what made the last one fail as committed)."""
        for _ in range(RETRIES):
            try:
                return await attempt()
            except Retry:
                continue
        raise ScimError(503, "The change met others on the same resources and could not be "
                        "made; retry shortly", headers={"Retry-After": "1"})

    async def create(self, rt: ResourceType, doc: dict, members: list[dict] | None) -> Stored:
        return await self._retried(lambda: self._create(rt, doc, members))

    async def _create(self, rt: ResourceType, doc: dict, members: list[dict] | None) -> Stored:
        async with self.transaction() as tx:
            at = now()
            res = Stored(new_id(), doc, at, at, 1)
            await self._write(tx, rt, res, None)
            if rt is GROUP_TYPE:
                await tx.change_members(res.id, [MemberChange("add", members=members or [])])
                await tx.load_related(rt, [res])
            else:
                res.groups = []  # a new user is in no group yet
            saved = await self._save(tx, [outbox.created(rt, res)])
        self._committed(saved)
        return res

    async def replace(self, rt: ResourceType, id: str, doc: dict, members: list[dict] | None,
                      if_match: str | None) -> Stored:
        return await self._retried(lambda: self._replace(rt, id, doc, members, if_match))

    async def _replace(self, rt: ResourceType, id: str, doc: dict, members: list[dict] | None,
                       if_match: str | None) -> Stored:
        async with self.transaction() as tx:
            cur = await self._current(tx, rt, id, if_match)
            res = Stored(id, doc, cur.created, now(), cur.version + 1, groups=cur.groups)
            await self._write(tx, rt, res, cur)
            if rt is GROUP_TYPE:
                await tx.change_members(id, [MemberChange("replace", members=members or [])])
            await tx.load_related(rt, [res])
            saved = await self._save(tx, [outbox.replaced(rt, cur, res)])
        self._committed(saved)
        return res

    async def modify(self, rt: ResourceType, id: str, mutate: Mutation, if_match: str | None,
                     *, with_related: bool = True, patch_op: dict | None = None) -> Stored:
        return await self._retried(
            lambda: self._modify(rt, id, mutate, if_match, with_related, patch_op))

    async def _modify(self, rt: ResourceType, id: str, mutate: Mutation, if_match: str | None,
                      with_related: bool, patch_op: dict | None) -> Stored:
        async with self.transaction() as tx:
            cur = await self._current(tx, rt, id, if_match)
            doc, changes = mutate(cur.doc)
            # Member deltas first: one that changes no member (Entra adding a member already
            # there) is no change, and neither the version nor lastModified moves.
            delta = await tx.change_members(id, changes) if changes else None
            changed = not (doc == cur.doc and not delta)
            res = cur
            if changed:
                # A user's groups are the same after a write of the user (None: not read yet).
                res = Stored(id, doc, cur.created, now(), cur.version + 1, groups=cur.groups)
                await self._write(tx, rt, res, cur)
            if with_related:
                await tx.load_related(rt, [res])
            # The events last: a backend may serialise recorders from here to the commit.
            saved = await self._save(tx, [outbox.patched(rt, cur, res, delta, patch_op)]) \
                if changed else []
        self._committed(saved)
        return res

    async def delete(self, rt: ResourceType, id: str, if_match: str | None) -> None:
        await self._retried(lambda: self._delete(rt, id, if_match))

    async def _delete(self, rt: ResourceType, id: str, if_match: str | None) -> None:
        async with self.transaction() as tx:
            cur = await self._current(tx, rt, id, if_match)
            records = [outbox.deleted(rt, cur)]
            # A group that loses a member is a changed group: a new version and lastModified
            # (so its ETag tells the truth) and an event saying so, in the same transaction.
            at = now()
            for group_id in await tx.remove(rt, id):
                group = await tx.current(GROUP_TYPE, group_id)
                assert group is not None  # a membership's group exists (foreign key)
                changed = Stored(group.id, group.doc, group.created, at, group.version + 1)
                await tx.update(GROUP_TYPE, changed, group)
                records.append(outbox.lost_member(group, changed, id))
            saved = await self._save(tx, records)
        self._committed(saved)

    def _committed(self, saved: list[Outboxed]) -> None:
        if saved:
            if self._recent is None:
                self._recent = deque(maxlen=RECENT_KEPT)
            self._recent.extend(saved)
            self.events_committed()
