"""The storage interface (scim_server.storage.Storage), as any backend must keep it.

Every test runs once per backend in BACKENDS (SQLite, and PostgreSQL on the session's real
server, tests/pgserver.py); a backend passes when it behaves as this contract says.
What only one backend has (SQLite's migrations, query plans, reader threads) is tested in
that backend's own file (test_sqlite.py).
"""

import re
from contextlib import contextmanager

import pytest

from scim_server.errors import ScimError
from scim_server.filters import parse_filter
from scim_server.schemas import GROUP_TYPE, USER_TYPE
from scim_server.storage import MemberChange, Query
from scim_server.storage.postgres import PostgresStorage
from scim_server.storage.sqlite import SqliteStorage

pytestmark = pytest.mark.anyio



def _sqlite(request):
    return lambda folder, events=False: SqliteStorage(str(folder / "scim.db"), events=events)


def _postgres(request):
    server = request.getfixturevalue("postgres")
    return lambda folder, events=False: PostgresStorage(server.database_for(folder),
                                                        events=events)


# name -> (pytest request -> make(folder, events=False)): a backend whose data lives in (or is
# named by) `folder`, so making it again finds it; `events` turns its outbox on. `opened()`
# opens what `make` returns.
BACKENDS = {"sqlite": _sqlite, "postgresql": _postgres}


async def opened(storage):
    await storage.open()
    return storage
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    make = BACKENDS[request.param](request)
    return lambda folder, events=False: opened(make(folder, events))


@pytest.fixture
async def store(backend, tmp_path):
    s = await backend(tmp_path)
    yield s
    await s.close()


@pytest.fixture
async def outbox(backend, tmp_path):
    """A backend with its event outbox on."""
    s = await backend(tmp_path, events=True)
    yield s
    await s.close()


async def user(store, name, **doc):
    return await store.create(USER_TYPE, {"userName": name, **doc}, None)


@contextmanager
def fails(status, scim_type=None):
    """The ScimError a call must raise: the client sees it, so it is never a database error."""
    with pytest.raises(ScimError) as e:
        yield e
    assert (e.value.status, e.value.scim_type) == (status, scim_type), e.value.detail


def set_title(title):
    return lambda doc: ({**doc, "title": title}, [])


async def test_a_created_resource_reads_back_as_written(store):
    made = await user(store, "alice@example.com", displayName="Alice")
    assert UUID.match(made.id)
    assert made.version == 1 and made.etag == 'W/"1"'
    assert made.created == made.last_modified
    got = await store.get(USER_TYPE, made.id)
    assert (got.id, got.doc, got.created, got.version) == \
        (made.id, {"userName": "alice@example.com", "displayName": "Alice"}, made.created, 1)
    assert got.groups == []
    with fails(404):
        await store.get(USER_TYPE, "9edf3db5-0000-4000-8000-000000000000")


async def test_a_taken_user_name_is_409_naming_the_holder_in_any_case(store):
    holder = await user(store, "Alice@Example.com")
    with fails(409, "uniqueness") as e:
        await user(store, "alice@example.COM")
    assert holder.id in e.value.detail
    other = await user(store, "bob@example.com")
    with fails(409, "uniqueness"):
        await store.replace(USER_TYPE, other.id, {"userName": "ALICE@example.com"}, None, None)
    with fails(409, "uniqueness"):
        await store.modify(USER_TYPE, other.id,
                           lambda d: ({**d, "userName": "alice@EXAMPLE.com"}, []), None)
    assert (await store.get(USER_TYPE, other.id)).doc == {"userName": "bob@example.com"}
    assert await store.count(USER_TYPE) == 2
    # A resource may keep its own name in another case.
    renamed = await store.replace(USER_TYPE, holder.id, {"userName": "alice@example.com"},
                                  None, None)
    assert renamed.doc["userName"] == "alice@example.com"


async def test_group_display_names_are_unique_too(store):
    first = await store.create(GROUP_TYPE, {"displayName": "Field Techs"}, [])
    with fails(409, "uniqueness") as e:
        await store.create(GROUP_TYPE, {"displayName": "field techs"}, [])
    assert first.id in e.value.detail


async def test_if_match_must_name_the_current_version(store):
    u = await user(store, "a")
    with fails(412) as e:
        await store.replace(USER_TYPE, u.id, {"userName": "a", "title": "x"}, None, 'W/"7"')
    assert e.value.headers["ETag"] == 'W/"1"'
    with fails(412):
        await store.modify(USER_TYPE, u.id, set_title("x"), 'W/"7"')
    with fails(412):
        await store.delete(USER_TYPE, u.id, 'W/"7"')
    assert (await store.get(USER_TYPE, u.id)).version == 1
    assert (await store.modify(USER_TYPE, u.id, set_title("x"), 'W/"1"')).version == 2
    assert (await store.modify(USER_TYPE, u.id, set_title("y"), '"2"')).version == 3
    assert (await store.replace(USER_TYPE, u.id, {"userName": "a"}, None, "*")).version == 4
    await store.delete(USER_TYPE, u.id, 'W/"1", W/"4"')
    assert await store.count(USER_TYPE) == 0


async def test_a_change_that_changes_nothing_keeps_the_version(store):
    u = await user(store, "a", title="t")
    same = await store.modify(USER_TYPE, u.id, set_title("t"), None)
    assert (same.version, same.last_modified) == (1, u.last_modified)
    changed = await store.modify(USER_TYPE, u.id, set_title("u"), None)
    assert changed.version == 2 and changed.last_modified >= u.last_modified
    assert changed.created == u.created


async def test_a_failing_mutation_changes_nothing(store):
    u = await user(store, "a", title="t")

    def half_done(doc):
        doc["title"] = "half"  # a mutation that edits, then fails, must leave no trace
        raise ScimError(400, "no", "invalidValue")

    with fails(400, "invalidValue"):
        await store.modify(USER_TYPE, u.id, half_done, None)
    got = await store.get(USER_TYPE, u.id)
    assert got.doc["title"] == "t" and got.version == 1
    with fails(404):
        await store.modify(USER_TYPE, "9edf3db5-0000-4000-8000-000000000000", set_title("x"),
                           None)


async def test_membership_deltas_apply_in_order_and_show_on_both_sides(store):
    a, b, c = [await user(store, n) for n in "abc"]
    g = await store.create(GROUP_TYPE, {"displayName": "g"}, [{"value": a.id}])
    assert [m["value"] for m in g.members] == [a.id]

    def changes(*deltas):
        return lambda doc: (doc, list(deltas))

    g2 = await store.modify(GROUP_TYPE, g.id, changes(
        MemberChange("add", members=[{"value": b.id}, {"value": c.id}]),
        MemberChange("remove", values=[a.id])), None)
    assert g2.version == 2
    assert {m["value"] for m in g2.members} == {b.id, c.id}
    assert [x["value"] for x in (await store.get(USER_TYPE, b.id)).groups] == [g.id]
    assert (await store.get(USER_TYPE, a.id)).groups == []
    g3 = await store.modify(GROUP_TYPE, g.id, changes(
        MemberChange("replace", members=[{"value": a.id}])), None)
    assert [m["value"] for m in g3.members] == [a.id]
    g4 = await store.modify(GROUP_TYPE, g.id, changes(MemberChange("remove_all")), None)
    assert g4.members == []
    # Adding a member already there, or removing one that is not, changes nothing.
    await store.modify(GROUP_TYPE, g.id, changes(MemberChange("add", members=[{"value": a.id}])),
                       None)
    again = await store.modify(GROUP_TYPE, g.id, changes(
        MemberChange("add", members=[{"value": a.id}]), MemberChange("remove", values=[b.id])),
        None)
    assert [m["value"] for m in again.members] == [a.id] and again.version == 5


async def test_a_deleted_user_leaves_every_group(store):
    a, b = await user(store, "a"), await user(store, "b")
    g = await store.create(GROUP_TYPE, {"displayName": "g"}, [{"value": a.id}, {"value": b.id}])
    await store.delete(USER_TYPE, a.id, None)
    assert [m["value"] for m in (await store.get(GROUP_TYPE, g.id)).members] == [b.id]
    with fails(404):
        await store.delete(USER_TYPE, a.id, None)
    await store.delete(GROUP_TYPE, g.id, None)
    assert (await store.get(USER_TYPE, b.id)).groups == []


async def test_related_resources_load_only_when_asked(store):
    a = await user(store, "a")
    g = await store.create(GROUP_TYPE, {"displayName": "g"}, [{"value": a.id}])
    assert (await store.get(GROUP_TYPE, g.id, with_related=False)).members is None
    assert (await store.get(USER_TYPE, a.id, with_related=False)).groups is None
    _, [without] = await store.search(GROUP_TYPE, Query(with_members=False))
    assert without.members is None
    _, [with_members] = await store.search(GROUP_TYPE, Query())
    assert [m["value"] for m in with_members.members] == [a.id]


async def test_search_filters_counts_pages_and_sorts(store):
    for name, title in [("carol", "b"), ("Alice", "a"), ("bob", "c")]:
        await user(store, name, title=title, emails=[{"value": f"{name}@X.com", "type": "work"}])

    async def names(text=None, **q):
        total, page = await store.search(USER_TYPE, Query(parse_filter(text) if text else None,
                                                          **q))
        return total, [u.doc["userName"] for u in page]

    assert await names() == (3, ["carol", "Alice", "bob"])  # insertion order, stable
    assert await names(sort_by="userName") == (3, ["Alice", "bob", "carol"])  # folded
    assert await names(sort_by="title", descending=True) == (3, ["bob", "carol", "Alice"])
    assert await names(start_index=2, count=1) == (3, ["Alice"])
    assert await names(start_index=9) == (3, [])
    assert await names(count=0) == (3, [])
    assert await names('userName eq "ALICE"') == (1, ["Alice"])
    assert await names('emails[type eq "work"].value eq "bob@x.com"') == (1, ["bob"])
    assert await names('title gt "a" and not (userName sw "c")') == (1, ["bob"])
    with fails(400, "invalidFilter"):
        await store.search(USER_TYPE, Query(parse_filter('nosuch eq "x"')))


async def test_data_survives_closing_and_opening_again(backend, tmp_path):
    s = await backend(tmp_path)
    a = await user(s, "a")
    g = await s.create(GROUP_TYPE, {"displayName": "g"}, [{"value": a.id}])
    await s.close()
    s = await backend(tmp_path)
    try:
        await s.ping()
        assert await s.count(USER_TYPE) == 1 and await s.count(GROUP_TYPE) == 1
        assert [m["value"] for m in (await s.get(GROUP_TYPE, g.id)).members] == [a.id]
    finally:
        await s.close()


# -- the event outbox ---------------------------------------------------------------------------

async def events(store, after=0):
    return await store.read_events(1000, after)


def summary(evs):
    return [(e.record["op"], e.record["type"], e.record["id"], e.record.get("version"))
            for e in evs]


async def test_every_change_records_its_event_in_commit_order(outbox):
    a = await user(outbox, "a", externalId="ext-a")
    g = await outbox.create(GROUP_TYPE, {"displayName": "g"}, [{"value": a.id, "display": "A"}])
    await outbox.modify(USER_TYPE, a.id, set_title("t"), None,
                        patch_op={"Operations": [{"op": "add", "path": "title", "value": "t"}]})
    await outbox.replace(USER_TYPE, a.id, {"userName": "a", "title": "u"}, None, None)
    b = await user(outbox, "b")
    await outbox.modify(GROUP_TYPE, g.id, lambda d: (d, [MemberChange("add", members=[
        {"value": b.id}])]), None)
    await outbox.delete(GROUP_TYPE, g.id, None)
    evs = await events(outbox)
    assert summary(evs) == [
        ("create", "User", a.id, 1), ("create", "Group", g.id, 1), ("patch", "User", a.id, 2),
        ("put", "User", a.id, 3), ("create", "User", b.id, 1), ("patch", "Group", g.id, 2),
        ("delete", "Group", g.id, None)]
    seqs = [e.seq for e in evs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [e.txn for e in evs] == seqs  # one event a transaction: the txn is its own seq
    create, group, patch = (e.record for e in evs[:3])
    assert create["doc"] == {"userName": "a", "externalId": "ext-a"}
    assert create["externalId"] == "ext-a" and create["created"] == a.created
    assert group["members"] == [{"value": a.id, "display": "A", "type": "User"}]
    assert patch["patch"] == {"Operations": [{"op": "add", "path": "title", "value": "t"}]}
    assert patch["doc"]["title"] == "t"
    assert evs[5].record["delta"] == {"upsert": [{"value": b.id, "display": None,
                                                  "type": "User"}]}
    state = await outbox.stream_state()
    assert (state.head, state.backlog, state.gap) == (seqs[-1], 7, False)
    assert await events(outbox, after=seqs[3]) == evs[4:]


async def test_a_write_that_fails_or_changes_nothing_records_no_event(outbox):
    a = await user(outbox, "a", title="t")
    b = await user(outbox, "b")
    g = await outbox.create(GROUP_TYPE, {"displayName": "g"}, [{"value": a.id}])
    before = await events(outbox)

    def broken(doc):
        doc["title"] = "half"
        raise ScimError(400, "no", "invalidValue")

    with fails(409, "uniqueness"):
        await user(outbox, "A")
    with fails(412):
        await outbox.modify(USER_TYPE, a.id, set_title("x"), 'W/"9"')
    with fails(400, "invalidValue"):
        await outbox.modify(USER_TYPE, a.id, broken, None)
    with fails(404):
        await outbox.delete(USER_TYPE, "9edf3db5-0000-4000-8000-000000000000", None)
    with fails(400, "invalidValue"):  # a member that does not exist
        await outbox.modify(GROUP_TYPE, g.id, lambda d: (d, [MemberChange("add", members=[
            {"value": b.id}, {"value": "9edf3db5-0000-4000-8000-000000000000"}])]), None)
    # No-ops: the same title, a member already there, a member removed that is not there,
    # and the same member list again.
    await outbox.modify(USER_TYPE, a.id, set_title("t"), None)
    await outbox.modify(GROUP_TYPE, g.id, lambda d: (d, [
        MemberChange("add", members=[{"value": a.id}]), MemberChange("remove", values=[b.id])]),
        None)
    after = await events(outbox)
    assert after == before
    # A PUT is a write even when it sends what is there: it makes a version and an event.
    same = await outbox.replace(GROUP_TYPE, g.id, {"displayName": "g"}, [{"value": a.id}], None)
    after = await events(outbox)
    assert after[:-1] == before and summary(after[-1:]) == [("put", "Group", g.id, same.version)]
    assert [m["value"] for m in (await outbox.get(GROUP_TYPE, g.id)).members] == [a.id]


async def test_a_membership_delta_is_exact(outbox):
    a, b, c = [await user(outbox, n) for n in "abc"]
    g = await outbox.create(GROUP_TYPE, {"displayName": "g"}, [{"value": a.id, "display": "A"},
                                                                {"value": b.id}])

    async def patch(*changes):
        res = await outbox.modify(GROUP_TYPE, g.id, lambda d: (d, list(changes)), None)
        evs = await events(outbox)
        return res, evs[-1].record

    # A whole new list that keeps a (same display), drops b and brings c: only b and c show.
    res, rec = await patch(MemberChange("replace", members=[{"value": a.id, "display": "A"},
                                                            {"value": c.id}]))
    assert res.version == 2
    assert rec["delta"] == {"upsert": [{"value": c.id, "display": None, "type": "User"}],
                            "remove": [b.id]}
    # Removed and added back in one request is no change; a new display is one.
    before = len(await events(outbox))
    res, _ = await patch(MemberChange("remove", values=[c.id]),
                         MemberChange("add", members=[{"value": c.id}]))
    assert res.version == 2 and len(await events(outbox)) == before
    res, rec = await patch(MemberChange("add", members=[{"value": a.id, "display": "Ann"}]))
    assert res.version == 3
    assert rec["delta"] == {"upsert": [{"value": a.id, "display": "Ann", "type": "User"}]}
    # Adding without a display keeps the one a member has.
    res, _ = await patch(MemberChange("add", members=[{"value": a.id}]))
    assert res.version == 3
    assert {m["value"]: m["display"] for m in res.members}[a.id] == "Ann"
    res, rec = await patch(MemberChange("remove_all"))
    assert set(rec["delta"]["remove"]) == {a.id, c.id} and "upsert" not in rec["delta"]


async def test_a_deleted_member_changes_each_of_its_groups_in_the_same_transaction(outbox):
    a, b = await user(outbox, "a"), await user(outbox, "b")
    g1 = await outbox.create(GROUP_TYPE, {"displayName": "g1"}, [{"value": a.id},
                                                                 {"value": b.id}])
    g2 = await outbox.create(GROUP_TYPE, {"displayName": "g2"}, [{"value": a.id}])
    parent = await outbox.create(GROUP_TYPE, {"displayName": "parent"}, [{"value": g2.id}])
    head = (await outbox.stream_state()).head
    await outbox.delete(USER_TYPE, a.id, None)
    for g in (g1, g2):
        now = await outbox.get(GROUP_TYPE, g.id)
        assert now.version == g.version + 1 and now.last_modified > g.last_modified
    assert (await outbox.get(GROUP_TYPE, parent.id)).version == 1
    evs = await events(outbox, head)
    assert {e.txn for e in evs} == {evs[0].seq}  # one transaction
    assert evs[0].record == {"op": "delete", "type": "User", "id": a.id}
    by_group = {e.record["id"]: e.record for e in evs[1:]}
    assert set(by_group) == {g1.id, g2.id}
    for rec in by_group.values():
        assert rec["op"] == "patch" and rec["delta"] == {"remove": [a.id]}
        assert rec["patch"]["Operations"] == [
            {"op": "remove", "path": f'members[value eq "{a.id}"]'}]
    # A deleted group leaves its parent likewise.
    await outbox.delete(GROUP_TYPE, g2.id, None)
    assert (await outbox.get(GROUP_TYPE, parent.id)).members == []
    last = (await events(outbox))[-1].record
    assert (last["id"], last["version"], last["delta"]) == (parent.id, 2, {"remove": [g2.id]})


async def test_an_active_flip_is_recorded_and_nothing_else_is(outbox):
    a = await user(outbox, "a", active=True)

    async def last():
        return (await events(outbox))[-1].record

    await outbox.modify(USER_TYPE, a.id, lambda d: ({**d, "active": False}, []), None)
    assert (await last())["active"] is False
    await outbox.modify(USER_TYPE, a.id, set_title("t"), None)
    assert "active" not in await last()
    await outbox.replace(USER_TYPE, a.id, {"userName": "a", "active": True}, None, None)
    assert (await last())["active"] is True
    # No `active` counts as active: dropping it is no flip.
    await outbox.replace(USER_TYPE, a.id, {"userName": "a"}, None, None)
    assert "active" not in await last()


async def test_acknowledged_events_are_gone_and_their_seqs_never_come_back(outbox):
    for n in "abc":
        await user(outbox, n)
    evs = await events(outbox)
    assert await outbox.ack_events([evs[1].seq, 999_999]) == 1
    assert await events(outbox) == [evs[0], evs[2]]
    assert await outbox.ack_events([evs[1].seq]) == 0  # again: nothing, and no error
    await outbox.ack_events([evs[0].seq, evs[2].seq])
    state = await outbox.stream_state()
    assert (state.backlog, state.oldest_iat, state.head) == (0, None, evs[2].seq)
    d = await user(outbox, "d")
    [new] = await events(outbox)
    assert new.seq == evs[2].seq + 1 and new.record["id"] == d.id


async def test_the_retention_discards_the_oldest_and_marks_a_gap(outbox):
    for n in range(5):
        await user(outbox, f"u{n}")
    evs = await events(outbox)
    assert await outbox.trim_events(max_age=3600, max_count=10) == 0
    assert not (await outbox.stream_state()).gap
    assert await outbox.trim_events(max_age=3600, max_count=2) == 3
    state = await outbox.stream_state()
    assert (state.gap, state.gap_through, state.gap_count, state.gap_reason) == \
        (True, evs[2].seq, 3, "retention")
    assert await events(outbox) == evs[3:]
    # By age: iat is whole seconds, so with -1 s every event is older than the limit.
    assert await outbox.trim_events(max_age=-1, max_count=10) == 2
    state = await outbox.stream_state()
    assert (state.gap_through, state.gap_count, state.backlog) == (evs[4].seq, 5, 0)
    assert not await outbox.ack_gap(evs[2].seq)  # an older gap's end clears nothing
    assert await outbox.ack_gap(evs[4].seq)
    assert not (await outbox.stream_state()).gap


async def test_changes_made_with_events_off_leave_a_gap(backend, tmp_path):
    s = await backend(tmp_path, events=True)
    await user(s, "a")
    stream = (await s.stream_state()).stream
    await s.close()
    s = await backend(tmp_path)
    await user(s, "unrecorded")
    await s.close()
    s = await backend(tmp_path, events=True)
    try:
        state = await s.stream_state()
        assert (state.stream, state.gap, state.gap_count) == (stream, True, -1)
        assert len(await events(s)) == 1  # the recorded event stays, in front of the gap
    finally:
        await s.close()


async def test_events_survive_closing_and_opening_again(backend, tmp_path):
    s = await backend(tmp_path, events=True)
    await user(s, "a")
    before = await events(s)
    await s.close()
    s = await backend(tmp_path, events=True)
    try:
        assert await events(s) == before
    finally:
        await s.close()


async def test_a_waiter_wakes_when_an_event_commits(outbox):
    import asyncio
    await user(outbox, "x")
    head = (await outbox.stream_state()).head
    assert not await outbox.wait_for_events(head, 0.01)
    waiter = asyncio.ensure_future(outbox.wait_for_events(head, 30))
    await asyncio.sleep(0)
    with fails(409, "uniqueness"):  # a failed write commits no event
        await user(outbox, "X")
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await user(outbox, "y")
    assert await asyncio.wait_for(waiter, 5)


async def test_a_snapshot_is_the_state_at_its_position(outbox):
    a, b = await user(outbox, "a"), await user(outbox, "b")
    g = await outbox.create(GROUP_TYPE, {"displayName": "g"}, [{"value": a.id}])
    async with outbox.snapshot() as snap:
        assert snap.position == (await outbox.stream_state()).head
        assert snap.stream == (await outbox.stream_state()).stream
        # Writes after the snapshot began do not show in it.
        await outbox.delete(USER_TYPE, b.id, None)
        await user(outbox, "c")
        await outbox.modify(GROUP_TYPE, g.id, lambda d: (d, [MemberChange("remove_all")]), None)
        users = [u async for batch in snap.batches(USER_TYPE) for u in batch]
        groups = [x async for batch in snap.batches(GROUP_TYPE) for x in batch]
    assert [u.doc["userName"] for u in users] == ["a", "b"]
    assert [(x.id, x.version, [m["value"] for m in x.members]) for x in groups] == \
        [(g.id, 1, [a.id])]
    later = await events(outbox, snap.position)
    assert [e.record["op"] for e in later] == ["delete", "create", "patch"]


async def with_email(store, address) -> list[str]:
    """The ids of the users `emails.value eq` finds (the index Entra matches users by)."""
    total, found = await store.search(
        USER_TYPE, Query(parse_filter(f'emails.value eq "{address}"')))
    assert total == len(found)
    return [r.id for r in found]


async def test_the_email_index_follows_every_change(store):
    """Entra matches users by email: the index answers for the address a write left, in any
    case, and no longer for one it took away."""
    u = await user(store, "mail", emails=[{"value": "Old@Example.com", "type": "work"}])
    assert await with_email(store, "old@example.com") == [u.id]
    await store.modify(USER_TYPE, u.id, lambda d: ({**d, "emails": [
        {"value": "new@example.com", "type": "work"}, {"value": "Two@Example.com"}]}, []), None)
    assert await with_email(store, "OLD@example.com") == []
    assert await with_email(store, "NEW@example.com") == [u.id]
    assert await with_email(store, "two@example.com") == [u.id]
    await store.replace(USER_TYPE, u.id, {"userName": "mail"}, None, None)
    assert await with_email(store, "new@example.com") == []


@pytest.mark.parametrize("n", [2, 40])  # either side of postgres.py's _PLACEHOLDERS_UP_TO
async def test_the_email_index_follows_a_user_with_many_addresses(store, n):
    def addresses(prefix):
        return [{"value": f"{prefix}{i}@example.com"} for i in range(n)]

    u = await user(store, "many", emails=addresses("a"))
    assert await with_email(store, f"A{n - 1}@example.com") == [u.id]
    await store.modify(USER_TYPE, u.id, lambda d: ({**d, "emails": addresses("b")}, []), None)
    assert await with_email(store, f"a{n - 1}@example.com") == []
    assert await with_email(store, f"b{n - 1}@example.com") == [u.id]


@pytest.mark.parametrize("groups", [3, 40])  # either side of postgres.py's _PLACEHOLDERS_UP_TO
async def test_a_user_in_many_groups_deleted_is_one_event_per_group_in_one_transaction(
        outbox, groups):
    u = await user(outbox, "member")
    made = [await outbox.create(GROUP_TYPE, {"displayName": f"g{i}"}, [{"value": u.id}])
            for i in range(groups)]
    head = (await outbox.stream_state()).head
    await outbox.delete(USER_TYPE, u.id, None)
    evs = await events(outbox, head)
    assert [e.seq for e in evs] == list(range(head + 1, head + 2 + groups))
    assert {e.txn for e in evs} == {head + 1}
    assert evs[0].record == {"op": "delete", "type": "User", "id": u.id}
    assert sorted(e.record["id"] for e in evs[1:]) == sorted(g.id for g in made)
