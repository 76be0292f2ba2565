"""`joyn-scim storage copy`: a tenant from one database to another (SQLite to PostgreSQL, or
back), exactly: every user and group with its id, version, timestamps and document, every
membership with its display, and the event stream where it stands (its id, its last seq, an
unacknowledged gap, and the events not yet acknowledged, with their seqs). A receiver goes on
polling the new database as if nothing had happened, and Entra's next PATCH carries on from the
same ETags.

The source must not change while it is copied (the operator pauses the tenant first): the copy
reads one consistent snapshot, and checks at the end that the stream has not moved since. The
target must be empty; everything is written in one transaction of the target, so a failure
leaves it empty.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..schemas import GROUP_TYPE, USER_TYPE
from . import MemberChange, Storage, StreamState


class CopyRefused(Exception):
    """The copy cannot start, or the source changed under it; the message says which, and
    whether anything was written to the target."""


@dataclass(frozen=True)
class Copied:
    users: int
    groups: int
    memberships: int
    events: int  # unacknowledged events carried over
    position: int  # the stream's last seq (0 without a stream)


_EVENT_BATCH = 1000


async def copy(src: Storage, dst: Storage) -> Copied:
    """Copy everything from `src` into the empty `dst` (both opened)."""
    for rt in (USER_TYPE, GROUP_TYPE):
        if await dst.count(rt):
            raise CopyRefused(f"the target already holds {rt.endpoint.strip('/')}: it must be "
                              "empty")
    if await _stream(dst) is not None:
        raise CopyRefused("the target already has an event stream: it must be empty")
    state = await _stream(src)
    events = []
    if state is not None:
        while batch := await src.read_events(_EVENT_BATCH, events[-1].seq if events else 0):
            events += batch
    users = groups = memberships = 0
    async with src.snapshot() as snap, dst.transaction() as tx:
        if state is not None and snap.position != state.head:
            raise CopyRefused("the source changed while it was read: pause it, then copy")
        async for batch in snap.batches(USER_TYPE):
            for user in batch:
                await tx.insert(USER_TYPE, user)
            users += len(batch)
        # Groups first, members after: a member may be a group further down the list.
        members: list[tuple[str, list[dict]]] = []
        async for batch in snap.batches(GROUP_TYPE):
            for group in batch:
                await tx.insert(GROUP_TYPE, group)
                if group.members:
                    members.append((group.id, group.members))
            groups += len(batch)
        for group_id, group_members in members:
            await tx.change_members(group_id, [MemberChange("add", members=[
                {"value": m["value"], "display": m["display"]} for m in group_members])])
            memberships += len(group_members)
        if state is not None:
            await tx.restore_stream(state, events)
    after = await _stream(src)
    if after is not None and after.head != state.head:
        # Written already: say so plainly rather than leave a target that looks complete.
        raise CopyRefused(f"the source changed during the copy: the target holds the state at "
                          f"seq {state.head}, the source is at {after.head}; empty the target, "
                          "pause the source and copy again")
    return Copied(users, groups, memberships, len(events), state.head if state else 0)


async def _stream(storage: Storage) -> StreamState | None:
    """The stream's state, None where there has never been one."""
    try:
        return await storage.stream_state(counts=False)
    except RuntimeError:  # the backends' "the event stream is off": no stream row
        return None
