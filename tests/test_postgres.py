"""What only the PostgreSQL backend has: several server processes (replicas) on one database,
its case folding in SQL, its event stream's order under concurrent commits, and tenants that
cannot read each other. The storage contract itself is test_storage.py's, run on both."""

import asyncio
import random
import secrets

import psycopg
import pytest

from scim_server.errors import ScimError
from scim_server.filters import parse_filter
from scim_server.schemas import GROUP_TYPE, USER_TYPE
from scim_server.storage import MemberChange, Query, Stored, outbox
from scim_server.storage import postgres as pg
from scim_server.storage.postgres import PostgresStorage

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def dsn(postgres):
    return postgres.new_database(f"r_{secrets.token_hex(6)}")


@pytest.fixture
async def replicas(dsn):
    """Two storages on one database, each with its own pool: what two pods are."""
    stores = [PostgresStorage(dsn, events=True) for _ in range(2)]
    for s in stores:
        await s.open()
    yield stores
    for s in stores:
        await s.close()


async def outcome(coro):
    try:
        return await coro
    except ScimError as e:
        return e


# -- case folding -------------------------------------------------------------------------------

def test_scim_fold_in_sql_is_python_casefold(postgres):
    """The filter compiler compares casefold()ed values with scim_fold() of JSON values."""
    one_from, _, many = pg._casefold_table()
    rng = random.Random(7)
    sample = [chr(c) for c in rng.sample(range(0x20, 0x2FFFF), 3000)
              if not 0xD800 <= c <= 0xDFFF]
    texts = [*one_from, *many, *sample, "ÉVA", "Straße", "ΣΊΣΥΦΟΣ", "İstanbul", "ﬁle"]
    dsn = postgres.new_database("fold")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(pg.fold_function_sql("und-x-icu"))
        got = conn.execute("SELECT t, scim_fold(t) FROM unnest(%s::text[]) AS t",
                           (texts,)).fetchall()
    wrong = [(t, f, t.casefold()) for t, f in got if f != t.casefold()]
    # ICU and Python may be on different Unicode versions: a handful of the newest letters
    # may differ, nothing a directory holds.
    assert len(wrong) <= 5, wrong[:20]
    assert dict(got)["Straße"] == "strasse" and dict(got)["ΣΊΣΥΦΟΣ"] == "σίσυφοσ"


async def test_a_filter_folds_as_sqlite_does(dsn):
    s = PostgresStorage(dsn)
    await s.open()
    try:
        await s.create(USER_TYPE, {"userName": "a", "name": {"familyName": "STRASSE"}}, None)
        await s.create(USER_TYPE, {"userName": "b", "name": {"familyName": "Øster"}}, None)
        for text, want in [('name.familyName eq "straße"', ["a"]),
                           ('name.familyName sw "øS"', ["b"]),
                           ('userName eq "A"', ["a"])]:
            _, found = await s.search(USER_TYPE, Query(parse_filter(text)))
            assert [r.doc["userName"] for r in found] == want, text
    finally:
        await s.close()


# -- several replicas on one database ---------------------------------------------------------

async def test_racing_creates_of_one_user_name_make_exactly_one(replicas):
    spellings = ["race@example.com", "RACE@example.com", "Race@Example.Com"]
    tries = [outcome(replicas[i % 2].create(USER_TYPE, {"userName": spellings[i % 3]}, None))
             for i in range(50)]
    results = await asyncio.gather(*tries)
    made = [r for r in results if not isinstance(r, ScimError)]
    refused = [r for r in results if isinstance(r, ScimError)]
    assert len(made) == 1
    assert {(e.status, e.scim_type) for e in refused} == {(409, "uniqueness")}
    assert all(made[0].id in e.detail for e in refused)  # each 409 names the holder
    assert await replicas[1].count(USER_TYPE) == 1


async def test_concurrent_if_match_writes_let_exactly_one_win(replicas):
    u = await replicas[0].create(USER_TYPE, {"userName": "ifmatch"}, None)

    def titled(n):
        return lambda doc: ({**doc, "title": f"t{n}"}, [])

    results = await asyncio.gather(*[
        outcome(replicas[n % 2].modify(USER_TYPE, u.id, titled(n), u.etag)) for n in range(20)])
    won = [r for r in results if not isinstance(r, ScimError)]
    assert len(won) == 1 and won[0].version == 2
    assert {e.status for e in results if isinstance(e, ScimError)} == {412}
    assert (await replicas[1].get(USER_TYPE, u.id)).doc["title"] == won[0].doc["title"]


@pytest.mark.parametrize("failure", ["after the lock", "in the write", "in the mutation"])
async def test_a_write_that_fails_midway_changes_nothing_and_its_connection_serves_the_next(
        dsn, failure, caplog):
    # One connection: the next write gets the very one the failed write had, so a
    # transaction left open or a pipeline left unsynced would show in it (or in the pool's
    # warning that it had to roll one back).
    store = PostgresStorage(dsn, events=True, pool_size=1)
    await store.open()
    try:
        a = await store.create(USER_TYPE, {"userName": "a@example.com"}, None)
        b = await store.create(USER_TYPE, {"userName": "b@example.com"}, None)
        if failure == "after the lock":  # If-Match refused after the row is locked
            attempt = store.modify(USER_TYPE, a.id, lambda d: ({**d, "title": "x"}, []),
                                   '"W/\\"99\\""')
        elif failure == "in the write":  # a rename onto a taken name: the savepoint's path
            attempt = store.modify(
                USER_TYPE, a.id, lambda d: ({**d, "userName": "B@example.com"}, []), None)
        else:
            def boom(doc):
                raise ScimError(400, "refused by the mutation", "invalidValue")
            attempt = store.modify(USER_TYPE, a.id, boom, None)
        with pytest.raises(ScimError) as refused:
            await attempt
        assert refused.value.status in (400, 409, 412)
        head = (await store.stream_state()).head
        following = await store.modify(USER_TYPE, b.id,
                                       lambda d: ({**d, "title": "next"}, []), b.etag)
        assert following.version == 2
        assert (await store.get(USER_TYPE, a.id)).version == 1  # the failed write left nothing
        assert (await store.stream_state()).head == head + 1  # and no event
        async with store.pool.connection() as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert not [r for r in caplog.records if r.name.startswith("psycopg")], caplog.text
    finally:
        await store.close()


async def test_concurrent_member_adds_all_land_and_each_is_one_event(replicas):
    group = await replicas[0].create(GROUP_TYPE, {"displayName": "crew"}, [])
    users = [await replicas[n % 2].create(USER_TYPE, {"userName": f"m{n}"}, None)
             for n in range(40)]

    def add(uid):
        return lambda doc: (doc, [MemberChange("add", members=[{"value": uid}])])

    await asyncio.gather(*[replicas[n % 2].modify(GROUP_TYPE, group.id, add(u.id), None)
                           for n, u in enumerate(users)])
    after = await replicas[1].get(GROUP_TYPE, group.id)
    assert sorted(m["value"] for m in after.members) == sorted(u.id for u in users)
    assert after.version == 1 + len(users)
    events = await replicas[0].read_events(1000)
    patches = [e.record for e in events if e.record["op"] == "patch"]
    assert sorted(p["version"] for p in patches) == list(range(2, 2 + len(users)))
    assert all(len(p["delta"]["upsert"]) == 1 for p in patches)


async def test_a_member_deleted_while_being_added_leaves_no_dangling_membership(replicas):
    group = await replicas[0].create(GROUP_TYPE, {"displayName": "g"}, [])
    for n in range(20):
        u = await replicas[0].create(USER_TYPE, {"userName": f"gone{n}"}, None)
        add = replicas[0].modify(GROUP_TYPE, group.id, lambda d, uid=u.id: (
            d, [MemberChange("add", members=[{"value": uid}])]), None)
        await asyncio.gather(outcome(add), replicas[1].delete(USER_TYPE, u.id, None))
    after = await replicas[1].get(GROUP_TYPE, group.id)
    assert after.members == []


# -- the event stream under concurrent commits --------------------------------------------------

async def test_a_transaction_that_commits_late_is_read_after_the_one_that_overtook_it(replicas):
    a, b = replicas
    slow = await a.create(USER_TYPE, {"userName": "slow"}, None)
    head = (await b.stream_state()).head
    started, release = asyncio.Event(), asyncio.Event()

    async def late_write():
        # writes.py's steps by hand, to hold the transaction open (its row locked, its change
        # made, its event not yet recorded) while another replica commits.
        async with a.transaction() as tx:
            cur = await tx.current(USER_TYPE, slow.id)
            res = Stored(cur.id, {**cur.doc, "title": "late"}, cur.created, cur.last_modified,
                         cur.version + 1)
            await tx.update(USER_TYPE, res, cur)
            started.set()
            await release.wait()
            await tx.record(0, [outbox.patched(USER_TYPE, cur, res, None, None)])

    task = asyncio.ensure_future(late_write())
    await started.wait()
    quick = await b.create(USER_TYPE, {"userName": "quick"}, None)
    seen = await b.read_events(100, after=head)
    assert [e.record["id"] for e in seen] == [quick.id]
    release.set()
    await task
    later = await b.read_events(100, after=seen[-1].seq)
    assert [(e.seq, e.record["id"]) for e in later] == [(seen[-1].seq + 1, slow.id)]


async def test_a_recorded_transaction_commits_before_the_next_one_gets_a_seq(replicas, postgres):
    """The case a plain sequence gets wrong: one transaction has its seq and has not committed,
    another records after it. The second waits (a reader meanwhile sees neither), so it can
    never commit a higher seq first and have a reader move past the lower one."""
    a, b = replicas
    first = await a.create(USER_TYPE, {"userName": "first"}, None)
    head = (await b.stream_state()).head
    recorded, release = asyncio.Event(), asyncio.Event()

    async def holding():
        async with a.transaction() as tx:
            cur = await tx.current(USER_TYPE, first.id)
            res = Stored(cur.id, {**cur.doc, "title": "t"}, cur.created, cur.last_modified,
                         cur.version + 1)
            await tx.update(USER_TYPE, res, cur)
            await tx.record(0, [outbox.patched(USER_TYPE, cur, res, None, None)])
            recorded.set()
            await release.wait()

    held = asyncio.ensure_future(holding())
    await recorded.wait()
    second = asyncio.ensure_future(b.create(USER_TYPE, {"userName": "second"}, None))
    database = a.dsn.rsplit("/", 1)[1]
    await wait_for(lambda: postgres.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
        (database,))[0][0] == 1)
    assert await b.read_events(100, after=head) == []
    release.set()
    await held
    made = await second
    events = await b.read_events(100, after=head)
    assert [(e.seq, e.record["id"]) for e in events] == [(head + 1, first.id),
                                                          (head + 2, made.id)]


async def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_reader_racing_writers_on_two_replicas_sees_every_event_once_in_order(replicas):
    """Writers on both replicas, a reader acknowledging as it goes: the reader gets a dense
    run of seqs, each event once, and each resource's versions in order."""
    group = await replicas[0].create(GROUP_TYPE, {"displayName": "busy"}, [])
    users = [await replicas[n % 2].create(USER_TYPE, {"userName": f"w{n}"}, None)
             for n in range(10)]
    stop = asyncio.Event()

    async def writer(n):
        store, rng = replicas[n % 2], random.Random(n)
        for i in range(30):
            u = rng.choice(users)
            if rng.random() < 0.5:
                await store.modify(USER_TYPE, u.id, lambda d, i=i: ({**d, "title": f"{n}-{i}"},
                                                                    []), None)
            else:
                await store.modify(GROUP_TYPE, group.id, lambda d, uid=u.id, on=rng.random() < .5: (
                    d, [MemberChange("add" if on else "remove", members=[{"value": uid}],
                                     values=[uid])]), None)

    seen = []

    async def reader():
        after = 0
        while True:
            done = stop.is_set()
            batch = await replicas[1].read_events(50, after)
            seen.extend(batch)
            if batch:
                after = batch[-1].seq
                await replicas[1].ack_events([e.seq for e in batch])
            elif done:
                return
            await asyncio.sleep(0)

    read = asyncio.ensure_future(reader())
    await asyncio.gather(*[writer(n) for n in range(6)])
    stop.set()
    await read
    seqs = [e.seq for e in seen]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert seqs[-1] == (await replicas[0].stream_state()).head
    versions: dict[str, list[int]] = {}
    for e in seen:
        versions.setdefault(e.record["id"], []).append(e.record["version"])
    assert all(v == sorted(v) and len(set(v)) == len(v) for v in versions.values())


async def test_a_long_poll_on_one_replica_wakes_when_the_other_commits(replicas, monkeypatch):
    # Waiters look at the head by themselves only after an hour here: what wakes this one is
    # the other replica's NOTIFY.
    monkeypatch.setattr(pg, "_RECHECK", 3600.0)
    head = (await replicas[1].stream_state()).head
    waiter = asyncio.ensure_future(replicas[1].wait_for_events(head, timeout=60))
    await asyncio.sleep(0.2)  # the waiter is waiting (a wake before it only makes it quicker)
    assert not waiter.done()
    await replicas[0].create(USER_TYPE, {"userName": "wake"}, None)
    assert await asyncio.wait_for(waiter, 30) is True


# -- tenants on one cluster ---------------------------------------------------------------------

def _tenant(postgres, name: str) -> str:
    """A tenant as the layout makes one: a role, and a database it owns."""
    postgres.execute(f'CREATE ROLE "{name}" LOGIN')
    postgres.execute(f'CREATE DATABASE "{name}" OWNER "{name}" STRATEGY FILE_COPY')
    return postgres.dsn(name, user=name)


async def test_a_tenants_role_cannot_read_another_tenants_database(postgres):
    a, b = (f"tenant_{secrets.token_hex(4)}" for _ in range(2))
    stores = [PostgresStorage(_tenant(postgres, t)) for t in (a, b)]
    for s in stores:
        await s.open()  # the server, as the tenant's role, closes its database to others
    try:
        await stores[1].create(USER_TYPE, {"userName": "secret@b.example"}, None)
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            psycopg.connect(postgres.dsn(b, user=a)).close()
        # Even where CONNECT is granted again (by mistake), the tables are the owner's alone.
        postgres.execute(f'GRANT CONNECT ON DATABASE "{b}" TO PUBLIC')
        with psycopg.connect(postgres.dsn(b, user=a)) as conn, \
                pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT data FROM users")
    finally:
        for s in stores:
            await s.close()



async def test_one_replica_at_a_time_leads_and_the_next_takes_over_when_it_stops(replicas,
                                                                                  monkeypatch):
    monkeypatch.setattr(pg, "_LEADER_RETRY", 0.05)
    a, b = replicas
    second = b.leadership("push")
    async with a.leadership("push") as lost:
        follower = asyncio.ensure_future(second.__aenter__())
        # b tries every 50 ms; it stays out while a leads (a negative, so bounded by a
        # number of b's tries rather than waited for).
        for _ in range(10):
            await asyncio.sleep(0.05)
            assert not follower.done()
        assert not lost.is_set()
    lost_b = await asyncio.wait_for(follower, 30)
    assert not lost_b.is_set()
    await second.__aexit__(None, None, None)
