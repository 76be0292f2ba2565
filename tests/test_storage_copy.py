"""`joyn-scim storage copy`: a tenant moved between backends keeps every id, version,
timestamp, membership and its event stream's position, and an occupied target is refused."""

import subprocess
import sys

import pytest

from scim_server.filters import parse_filter
from scim_server.schemas import GROUP_TYPE, USER_TYPE
from scim_server.storage import MemberChange, Query
from scim_server.storage.copy import CopyRefused, copy
from scim_server.storage.postgres import PostgresStorage
from scim_server.storage.sqlite import SqliteStorage

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _open(kind, tmp_path, postgres, name, events):
    if kind == "sqlite":
        return SqliteStorage(str(tmp_path / f"{name}.db"), events=events)
    return PostgresStorage(postgres.database_for(tmp_path / name), events=events)


async def opened(storage):
    await storage.open()
    return storage


async def seeded(store):
    """A tenant with a history: changed users, nested groups, acknowledged events, a gap."""
    users = [await store.create(USER_TYPE, {"userName": f"u{n}@example.com", "emails": [
        {"value": f"U{n}@Example.com", "type": "work"}]}, None) for n in range(5)]
    await store.modify(USER_TYPE, users[0].id, lambda d: ({**d, "title": "Boss"}, []), None)
    inner = await store.create(GROUP_TYPE, {"displayName": "inner"},
                               [{"value": users[1].id, "display": "one"}])
    outer = await store.create(GROUP_TYPE, {"displayName": "outer"}, [
        {"value": inner.id}, {"value": users[2].id, "display": "two"}])
    await store.modify(GROUP_TYPE, outer.id, lambda d: (
        d, [MemberChange("add", members=[{"value": users[3].id}])]), None)
    await store.delete(USER_TYPE, users[4].id, None)
    events = await store.read_events(3)
    await store.ack_events([e.seq for e in events])
    await store.lose_events([events[-1].seq + 1], "rejected by the receiver")
    return [u.id for u in users[:4]], [inner.id, outer.id]


async def everything(store, user_ids, group_ids):
    out = [await store.get(USER_TYPE, i) for i in user_ids]
    out += [await store.get(GROUP_TYPE, i) for i in group_ids]
    return out, await store.stream_state(), await store.read_events(1000)


@pytest.mark.parametrize("source,target", [("sqlite", "postgresql"), ("postgresql", "sqlite")])
async def test_a_copy_is_the_same_tenant_with_its_stream_where_it_stood(
        tmp_path, postgres, source, target):
    src = await opened(_open(source, tmp_path, postgres, "src", True))
    user_ids, group_ids = await seeded(src)
    before = await everything(src, user_ids, group_ids)
    await src.close()
    src = await opened(_open(source, tmp_path, postgres, "src", None))
    dst = await opened(_open(target, tmp_path, postgres, "dst", None))
    try:
        done = await copy(src, dst)
        assert (done.users, done.groups, done.memberships) == (4, 2, 4)
        assert done.position == before[1].head and done.events == len(before[2])
        assert await everything(dst, user_ids, group_ids) == before
        # The derived index came along: Entra's email match finds the user.
        email = parse_filter('emails.value eq "u2@EXAMPLE.com"')
        _, found = await dst.search(USER_TYPE, Query(email))
        assert [u.id for u in found] == [user_ids[2]]
    finally:
        await src.close()
        await dst.close()
    # A server on the copy records its next event right after the source's last one.
    dst = await opened(_open(target, tmp_path, postgres, "dst", True))
    try:
        await dst.modify(USER_TYPE, user_ids[1], lambda d: ({**d, "title": "New"}, []), None)
        state = await dst.stream_state()
        assert (state.stream, state.head) == (before[1].stream, before[1].head + 1)
        assert state.gap_reason == before[1].gap_reason
    finally:
        await dst.close()


async def test_an_occupied_target_is_refused_and_left_as_it_was(tmp_path, postgres):
    src = await opened(_open("sqlite", tmp_path, postgres, "src", True))
    dst = await opened(_open("postgresql", tmp_path, postgres, "dst", False))
    try:
        await src.create(USER_TYPE, {"userName": "a@example.com"}, None)
        await dst.create(USER_TYPE, {"userName": "b@example.com"}, None)
        with pytest.raises(CopyRefused, match="already holds Users"):
            await copy(src, dst)
        _, users = await dst.search(USER_TYPE, Query())
        assert [u.doc["userName"] for u in users] == ["b@example.com"]
    finally:
        await src.close()
        await dst.close()


def test_the_command_copies_sqlite_into_postgresql(tmp_path, postgres):
    db = tmp_path / "scim.db"
    store = SqliteStorage(str(db), events=True)
    import asyncio
    asyncio.run(store.create(USER_TYPE, {"userName": "cli@example.com"}, None))
    asyncio.run(store.close())
    target = postgres.database_for(tmp_path / "cli")
    run = [sys.executable, "-m", "scim_server", "storage", "copy", "--from", f"sqlite:{db}",
           "--to", target]
    first = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("copied 1 users, 0 groups, 0 memberships")
    again = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "must be empty" in again.stderr
    missing = subprocess.run([*run[:6], f"sqlite:{tmp_path}/absent.db", *run[7:]],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no such database file" in missing.stderr
