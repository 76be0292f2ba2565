"""The storage interface (scim_server.storage.Storage), as any backend must keep it.

Every test runs once per backend in BACKENDS: a second backend (PostgreSQL) is added by
writing its module and one entry here, and passes when it behaves as this contract says.
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
from scim_server.storage.sqlite import SqliteStorage

pytestmark = pytest.mark.anyio

# name -> open(folder): a backend whose data lives in `folder`, so opening it again finds it.
BACKENDS = {
    "sqlite": lambda folder: SqliteStorage(str(folder / "scim.db")),
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    return BACKENDS[request.param]


@pytest.fixture
async def store(backend, tmp_path):
    s = backend(tmp_path)
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
    s = backend(tmp_path)
    a = await user(s, "a")
    g = await s.create(GROUP_TYPE, {"displayName": "g"}, [{"value": a.id}])
    await s.close()
    s = backend(tmp_path)
    try:
        await s.ping()
        assert await s.count(USER_TYPE) == 1 and await s.count(GROUP_TYPE) == 1
        assert [m["value"] for m in (await s.get(GROUP_TYPE, g.id)).members] == [a.id]
    finally:
        await s.close()
