"""SQLite storage as a unit: migrations, membership cost, projection-aware loading."""

import sqlite3

import pytest

from scim_server.patch import apply_patch
from scim_server.schemas import GROUP_TYPE, USER_TYPE
from scim_server.storage import Query
from scim_server.storage.sqlite import MIGRATIONS, SqliteStorage


@pytest.fixture
def store(tmp_path):
    s = SqliteStorage(str(tmp_path / "scim.db"))
    yield s
    s.close()


def users(store, n, prefix="u"):
    return [store.create(USER_TYPE, {"userName": f"{prefix}{i}"}, None).id for i in range(n)]


def test_migrations_are_versioned_and_run_once(tmp_path):
    path = str(tmp_path / "scim.db")
    SqliteStorage(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    s = SqliteStorage(path)  # opening again applies nothing and keeps the data
    s.create(USER_TYPE, {"userName": "kept"}, None)
    s.close()
    s = SqliteStorage(path)
    assert s.count(USER_TYPE) == 1
    s.close()


def test_a_newer_database_is_refused(tmp_path):
    path = str(tmp_path / "scim.db")
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="newer than this server"):
        SqliteStorage(path)


def statements_for_one_member_add(store, group_size):
    ids = users(store, group_size + 1, prefix=f"s{group_size}-")
    g = store.create(GROUP_TYPE, {"displayName": f"g{group_size}"},
                     [{"value": i} for i in ids[:group_size]])
    seen = []
    store.db.set_trace_callback(seen.append)
    body = {"Operations": [{"op": "add", "path": "members", "value": [{"value": ids[-1]}]}]}
    store.modify(GROUP_TYPE, g.id, lambda d: apply_patch(GROUP_TYPE, d, body), None,
                 with_related=False)
    store.db.set_trace_callback(None)
    return seen


def test_one_member_change_does_the_same_work_in_any_group_size(store):
    small = statements_for_one_member_add(store, 3)
    big = statements_for_one_member_add(store, 3000)
    assert len(small) == len(big)
    # No statement reads the group's member list.
    assert not [s for s in big if "FROM group_members" in s and "SELECT" in s]


def test_excluded_members_are_not_loaded(store):
    ids = users(store, 3)
    store.create(GROUP_TYPE, {"displayName": "g"}, [{"value": i} for i in ids])
    _, without = store.search(GROUP_TYPE, Query(with_members=False))
    assert without[0].members is None
    _, with_members = store.search(GROUP_TYPE, Query())
    assert {m["value"] for m in with_members[0].members} == set(ids)
    assert store.get(GROUP_TYPE, without[0].id, with_related=False).members is None


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
def test_matching_filters_use_an_index(store, rt, flt):
    """The filters Entra matches with, and a sync's lastModified range, never walk the table:
    every statement a search runs (the page, in its paging order, and the count) is planned
    from an index, so 100,000 users stay as fast as 10."""
    from scim_server.filters import parse_filter
    users(store, 3)
    db, ran = store.db, []

    class Recording:  # the statements as SQLite plans them: with their parameters unbound
        def execute(self, sql, params=()):
            ran.append((sql, params))
            return db.execute(sql, params)

    store.db = Recording()
    try:
        store.search(rt, Query(parse_filter(flt), count=1, start_index=2, with_members=False,
                               with_groups=False))  # the page, then the count
    finally:
        store.db = db
    assert len(ran) == 2, ran
    for sql, params in ran:
        plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        assert "SCAN r" not in plan, (sql, plan)
        assert "INDEX" in plan, (sql, plan)
