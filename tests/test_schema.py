"""The logical schema (scim_server.storage.schema) is what SQLite's migrated database holds:
every column, unique column, index, the email index and the membership table, so the filter
compiler and the writes cannot name a column the DDL lacks or an index it does not have."""

import sqlite3

import pytest

from scim_server.schemas import RESOURCE_TYPES
from scim_server.storage.common import UNIQUE
from scim_server.storage.schema import DOC, EMAILS, MEMBERSHIP, RELATED, TABLES, related
from scim_server.storage.sqlite import SqliteStorage

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
async def db(tmp_path):
    path = str(tmp_path / "scim.db")
    await SqliteStorage(path).close()
    conn = sqlite3.connect(path)
    yield conn
    conn.close()


def columns(db, table):
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def leading_index_columns(db, table):
    """The first column of each index on `table` (the primary key's and UNIQUE's included),
    with whether that index is unique."""
    found = {}
    for _, name, unique, *_ in db.execute(f"PRAGMA index_list({table})"):
        first = db.execute(f"PRAGMA index_info({name})").fetchone()[2]
        found[first] = found.get(first, False) or bool(unique)
    return found


@pytest.mark.parametrize("type_name", sorted(TABLES))
async def test_every_declared_column_and_index_exists_in_sqlite(db, type_name):
    table = TABLES[type_name]
    assert {c.name for c in table.columns} | {DOC} <= columns(db, table.name)
    indexes = leading_index_columns(db, table.name)
    for col in table.columns:
        if col.indexed or col.unique:
            assert col.name in indexes, col
        if col.unique:
            assert indexes[col.name], col


async def test_the_email_index_and_the_memberships_exist_in_sqlite(db):
    assert {EMAILS.owner, EMAILS.value} <= columns(db, EMAILS.table)
    assert EMAILS.value in leading_index_columns(db, EMAILS.table)
    assert {MEMBERSHIP.group, MEMBERSHIP.member, MEMBERSHIP.display, MEMBERSHIP.type} <= \
        columns(db, MEMBERSHIP.table)
    indexes = leading_index_columns(db, MEMBERSHIP.table)
    assert MEMBERSHIP.group in indexes and MEMBERSHIP.member in indexes


def test_the_schema_names_attributes_the_scim_schemas_define():
    for name, table in TABLES.items():
        rt = RESOURCE_TYPES[name]
        assert table.type == name and UNIQUE[name] == table.unique.attr
        for col in table.columns:
            attr, sub = col.key
            if attr in ("id", "externalid", "meta"):
                continue
            assert rt.core.attr(attr) is not None and not sub, col
            assert col.folded == (not rt.core.attr(attr).case_exact
                                  and rt.core.attr(attr).type == "string"), col
    rt = RESOURCE_TYPES[EMAILS.type]
    assert rt.core.attr(EMAILS.attr).sub(EMAILS.sub) is not None
    for (type_name, attr), rel in RELATED.items():
        assert related(type_name, attr.upper()) is rel
        assert {s.name.lower() for s in
                RESOURCE_TYPES[type_name].core.attr(attr).sub_attributes} >= set(rel.subs)
