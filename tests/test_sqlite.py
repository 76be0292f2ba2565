"""The SQLite backend (storage/sqlite.py) beyond the interface: migrations, membership cost
in statements, query plans, its query time limit and its reader threads."""

import sqlite3

import pytest

from scim_server.filters import parse_filter
from scim_server.patch import apply_patch
from scim_server.schemas import GROUP_TYPE, USER_TYPE
from scim_server.storage import Query
from scim_server.storage.sqlite import MIGRATIONS, SqliteStorage

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
async def store(tmp_path):
    s = SqliteStorage(str(tmp_path / "scim.db"))
    yield s
    await s.close()


async def users(store, n, prefix="u"):
    return [(await store.create(USER_TYPE, {"userName": f"{prefix}{i}"}, None)).id
            for i in range(n)]


async def test_migrations_are_versioned_and_run_once(tmp_path):
    path = str(tmp_path / "scim.db")
    await SqliteStorage(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    s = SqliteStorage(path)  # opening again applies nothing and keeps the data
    await s.create(USER_TYPE, {"userName": "kept"}, None)
    await s.close()
    s = SqliteStorage(path)
    assert await s.count(USER_TYPE) == 1
    await s.close()


async def test_a_newer_database_is_refused(tmp_path):
    path = str(tmp_path / "scim.db")
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="newer than this server"):
        SqliteStorage(path)


async def test_a_version_1_database_keeps_its_emails_findable_after_the_upgrade(tmp_path):
    """Migration 2 rebuilds user_emails keyed by (user, address), without a rowid."""
    path = str(tmp_path / "scim.db")
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version=1;")
    doc = '{"userName": "ann", "emails": [{"value": "Ann@X.com"}, {"value": "ann@x.com"}]}'
    db.execute("INSERT INTO users (id, user_name_fold, created, last_modified, version, data) "
               "VALUES ('u1', 'ann', '2026-01-01T00:00:00.000000Z', "
               "'2026-01-01T00:00:00.000000Z', 1, ?)", (doc,))
    db.executemany("INSERT INTO user_emails VALUES ('u1', ?)", [("ann@x.com",), ("ann@x.com",)])
    db.commit()
    db.close()
    s = SqliteStorage(path)
    try:
        assert s.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        total, found = await s.search(USER_TYPE, Query(parse_filter('emails.value eq "ANN@x.com"')))
        assert (total, [r.id for r in found]) == (1, ["u1"])
        sql = s.db.execute("SELECT sql FROM sqlite_master WHERE name = 'user_emails'").fetchone()[0]
        assert "WITHOUT ROWID" in sql
    finally:
        await s.close()


async def test_a_changed_address_rewrites_only_its_own_email_rows(store):
    u = await store.create(USER_TYPE, {"userName": "bo", "emails": [
        {"value": "bo@x.com", "type": "work"}, {"value": "bo@home.net", "type": "home"}]}, None)

    async def statements(body):
        seen = []
        store.db.set_trace_callback(seen.append)
        await store.modify(USER_TYPE, u.id, lambda d: apply_patch(USER_TYPE, d, body), None)
        store.db.set_trace_callback(None)
        return [" ".join(q.split()[:3]) for q in seen if "user_emails" in q and "SELECT" not in q]

    rename = {"Operations": [{"op": "replace", "path": "displayName", "value": "Bo"}]}
    assert await statements(rename) == []
    move = {"Operations": [{"op": "replace", "path": 'emails[type eq "work"].value',
                            "value": "bo@y.com"}]}
    assert await statements(move) == ["DELETE FROM user_emails", "INSERT INTO user_emails"]
    for address, hits in (("bo@x.com", 0), ("bo@y.com", 1), ("bo@home.net", 1)):
        flt = parse_filter(f'emails.value eq "{address}"')
        total, _ = await store.search(USER_TYPE, Query(flt))
        assert total == hits, address


@pytest.mark.parametrize(("flt", "hits"), [('userName eq "u1"', 1), ('userName eq "nobody"', 0)])
async def test_a_lookup_that_fits_one_page_needs_no_count(store, flt, hits):
    """Entra matches every user first; a miss (a user not created yet) needs no count either."""
    await users(store, 3)
    seen = []
    store.db.set_trace_callback(seen.append)
    total, found = await store.search(USER_TYPE, Query(parse_filter(flt)))
    store.db.set_trace_callback(None)
    assert (total, len(found)) == (hits, hits)
    assert not [q for q in seen if "count(*)" in q], seen


async def statements_for_one_member_add(store, group_size):
    ids = await users(store, group_size + 1, prefix=f"s{group_size}-")
    g = await store.create(GROUP_TYPE, {"displayName": f"g{group_size}"},
                     [{"value": i} for i in ids[:group_size]])
    seen = []
    store.db.set_trace_callback(seen.append)
    body = {"Operations": [{"op": "add", "path": "members", "value": [{"value": ids[-1]}]}]}
    await store.modify(GROUP_TYPE, g.id, lambda d: apply_patch(GROUP_TYPE, d, body), None,
                 with_related=False)
    store.db.set_trace_callback(None)
    return seen


async def test_one_member_change_does_the_same_work_in_any_group_size(store):
    small = await statements_for_one_member_add(store, 3)
    big = await statements_for_one_member_add(store, 3000)
    assert len(small) == len(big)
    # No statement reads the group's member list.
    assert not [s for s in big if "FROM group_members" in s and "SELECT" in s]


async def test_excluded_members_are_not_loaded(store):
    ids = await users(store, 3)
    await store.create(GROUP_TYPE, {"displayName": "g"}, [{"value": i} for i in ids])
    _, without = await store.search(GROUP_TYPE, Query(with_members=False))
    assert without[0].members is None
    _, with_members = await store.search(GROUP_TYPE, Query())
    assert {m["value"] for m in with_members[0].members} == set(ids)
    assert (await store.get(GROUP_TYPE, without[0].id, with_related=False)).members is None


@pytest.mark.parametrize("rt,flt", [
    (USER_TYPE, 'userName eq "alice@example.com"'),
    (USER_TYPE, 'externalId eq "9edf3db5"'),
    (USER_TYPE, 'emails.value eq "a@x.com"'),
    # Entra's filter for a mapping to emails[type eq "work"].value, and the RFC's spelling.
    (USER_TYPE, 'emails[type eq "work"].value eq "a@x.com"'),
    (USER_TYPE, 'emails[type eq "work" and value eq "a@x.com"]'),
    (USER_TYPE, 'id eq "x" and active eq true'),
    # The incremental sync's query, and the same with a condition no index holds.
    (USER_TYPE, 'meta.lastModified gt "2026-01-01T00:00:00Z"'),
    (USER_TYPE, 'meta.lastModified ge "2026-01-01T00:00:00Z" and title co "x"'),
    (GROUP_TYPE, 'displayName eq "Field Techs"'),
    (GROUP_TYPE, 'externalId eq "x"'),
    (GROUP_TYPE, 'meta.lastModified gt "2026-01-01T00:00:00Z"'),
])
async def test_matching_filters_use_an_index(store, rt, flt):
    """The filters Entra matches with, and a sync's lastModified range, never walk the table:
    every statement a search runs (the page, in its paging order, and the count) is planned
    from an index, so 100,000 users stay as fast as 10."""
    from scim_server.filters import parse_filter
    await users(store, 3)
    db, ran = store.reads.db, []

    class Recording:  # the statements as SQLite plans them: with their parameters unbound
        def execute(self, sql, params=()):
            ran.append((sql, params))
            return db.execute(sql, params)

    store.reads.db = Recording()
    try:  # the reads as storage runs them, on the loop or on a reader thread
        store.reads.search(rt, Query(parse_filter(flt), count=1, start_index=2,
                                     with_members=False, with_groups=False))
    finally:
        store.reads.db = db
    assert len(ran) == 2, ran
    for sql, params in ran:
        plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        assert "SCAN r" not in plan, (sql, plan)
        assert "INDEX" in plan, (sql, plan)


async def test_a_query_past_its_time_limit_is_400_too_many_and_the_store_goes_on(tmp_path):
    from scim_server.errors import ScimError
    from scim_server.filters import parse_filter
    s = SqliteStorage(str(tmp_path / "scim.db"), query_timeout=0.000001)
    try:
        await users(s, 300)
        slow = parse_filter(" or ".join(f'title co "t{i}"' for i in range(40)))
        with pytest.raises(ScimError) as e:
            await s.search(USER_TYPE, Query(slow))
        assert e.value.status == 400 and e.value.scim_type == "tooMany"
        assert "1e-06 s limit" in e.value.detail
        # Writes have no time limit, and the next search has its own.
        await s.create(USER_TYPE, {"userName": "after"}, None)
        s.query_timeout = 60
        assert await s.search(USER_TYPE, Query(slow)) == (0, [])
    finally:
        await s.close()


async def test_a_search_no_index_serves_runs_beside_the_event_loop(store):
    """While a filter that reads every row runs, the event loop goes on: an indexed search
    (Entra's matching) and a write both complete before it ends."""
    import asyncio
    import threading

    from scim_server.filters import parse_filter
    await users(store, 5)
    release, where = threading.Event(), []
    run = store._on_reader_thread

    def held(fn, *args):  # the reader thread waits until the loop has done its work
        where.append(threading.current_thread().name)
        assert release.wait(30)
        return run(fn, *args)

    store._on_reader_thread = held
    slow = asyncio.ensure_future(store.search(USER_TYPE, Query(parse_filter('title co "x"'))))
    while not where:
        await asyncio.sleep(0.01)
    _, found = await store.search(USER_TYPE, Query(parse_filter('userName eq "u3"')))
    assert [u.doc["userName"] for u in found] == ["u3"]
    await store.create(USER_TYPE, {"userName": "during"}, None)
    assert not slow.done()
    release.set()
    assert await slow == (0, [])
    assert where[0].startswith("sqlite-reader")


async def test_a_full_disk_is_507_the_write_is_not_stored_and_reads_go_on(store, caplog):
    """SQLite's page limit stands in for a full volume: both end a write with SQLITE_FULL."""
    from scim_server.errors import ScimError
    kept = await store.create(USER_TYPE, {"userName": "kept"}, None)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(ScimError) as e:
        for i in range(200):  # until the next page is needed
            await store.create(USER_TYPE, {"userName": f"u{i}", "title": "x" * 2000}, None)
    assert e.value.status == 507 and "disk is full" in e.value.detail
    assert "disk is full" in caplog.text
    total, found = await store.search(USER_TYPE, Query(count=1000))
    assert f"u{i}" not in {u.doc["userName"] for u in found}
    assert (await store.get(USER_TYPE, kept.id)).doc == {"userName": "kept"}
    store.db.execute(f"PRAGMA max_page_count = {pages * 100}")  # room again: writes go on
    await store.create(USER_TYPE, {"userName": "after"}, None)
    assert await store.count(USER_TYPE) == total + 1


async def test_a_full_disk_records_no_event_for_the_write_it_refused(tmp_path):
    from scim_server.errors import ScimError
    s = SqliteStorage(str(tmp_path / "scim.db"), events=True)
    try:
        await s.create(USER_TYPE, {"userName": "kept"}, None)
        pages = s.db.execute("PRAGMA page_count").fetchone()[0]
        s.db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(ScimError) as e:
            for i in range(200):
                await s.create(USER_TYPE, {"userName": f"u{i}", "title": "x" * 2000}, None)
        assert e.value.status == 507
        names = [ev.record["doc"]["userName"] for ev in await s.read_events(1000)]
        assert names == ["kept", *(f"u{n}" for n in range(i))]  # the refused one has none
    finally:
        await s.close()


async def test_acknowledged_events_give_their_disk_space_back(tmp_path):
    """The outbox's pages return to the file system once its events are acknowledged: the
    file ends about as large as one that never recorded events (auto_vacuum=INCREMENTAL)."""
    async def filled(name, events):
        s = SqliteStorage(str(tmp_path / name), events=events)
        for i in range(3000):
            await s.create(USER_TYPE, {"userName": f"user{i:05}@example.com", "title": "x" * 300},
                           None)
        return s

    plain = await filled("plain.db", False)
    floor = plain.db.execute("PRAGMA page_count").fetchone()[0]
    await plain.close()
    s = await filled("events.db", True)
    try:
        full = s.db.execute("PRAGMA page_count").fetchone()[0]
        assert full > floor * 1.5  # the outbox held a copy of every user
        while batch := await s.read_events(1000):
            await s.ack_events([e.seq for e in batch])
        await s.trim_events(max_age=3600, max_count=10**6)  # where the server gives pages back
        after = s.db.execute("PRAGMA page_count").fetchone()[0]
        assert after <= floor + 300, (floor, full, after)
    finally:
        await s.close()


async def test_a_database_made_before_the_outbox_is_converted_once_and_keeps_its_data(tmp_path):
    path = str(tmp_path / "scim.db")
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + ";" + MIGRATIONS[1] + "; PRAGMA user_version=2;")
    db.execute("INSERT INTO users (id, user_name_fold, created, last_modified, version, data) "
               "VALUES ('u1', 'ann', '2026-01-01T00:00:00.000000Z', "
               "'2026-01-01T00:00:00.000000Z', 1, '{\"userName\": \"ann\"}')")
    db.commit()
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    db.close()
    s = SqliteStorage(path, events=True)
    try:
        assert s.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert (await s.get(USER_TYPE, "u1")).doc == {"userName": "ann"}
        await s.create(USER_TYPE, {"userName": "bo"}, None)
        assert [e.record["doc"]["userName"] for e in await s.read_events(10)] == ["bo"]
    finally:
        await s.close()
