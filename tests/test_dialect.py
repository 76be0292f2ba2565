"""The SQL spelling (scim_server.storage.dialect): the filter compiler writes only what a
Dialect returns, so every filter and sort compiles under a dialect that spells each piece
differently with no SQLite word left over; and every attribute a filter can name compiles to
SQL that SQLite runs."""

import pytest

from scim_server.errors import ScimError
from scim_server.filters import parse_filter
from scim_server.schemas import COMMON_ATTRS, RESOURCE_TYPES
from scim_server.storage import Query
from scim_server.storage.dialect import SQLITE, json_path
from scim_server.storage.schema import EMAILS, RELATED, TABLES
from scim_server.storage.sqlfilter import compile_filter, compile_member_filter, compile_sort
from scim_server.storage.sqlite import SqliteStorage

pytestmark = pytest.mark.anyio

VALUES = {"boolean": "true", "integer": "1", "decimal": "1.5",
          "dateTime": '"2026-01-01T00:00:00Z"'}
OPS = {"boolean": ("eq", "ne"), "integer": ("eq", "ne", "gt", "le"),
       "decimal": ("eq", "ne", "gt", "le"), "dateTime": ("eq", "ne", "gt", "le")}
STRING_OPS = ("eq", "ne", "co", "sw", "ew", "gt", "le")


@pytest.fixture
def anyio_backend():
    return "asyncio"


def leaves(rt):
    """(path, SCIM type) of every attribute and sub-attribute a filter can name."""
    for schema in (rt.core, *rt.extensions):
        prefix = "" if schema is rt.core else schema.id + ":"
        attrs = (*schema.attributes, *(COMMON_ATTRS.values() if schema is rt.core else ()))
        for a in attrs:
            yield prefix + a.name, a.type
            for s in a.sub_attributes:
                yield f"{prefix}{a.name}.{s.name}", s.type


def filters(rt):
    for path, scim_type in leaves(rt):
        yield f"{path} pr"
        if scim_type == "complex":
            continue
        value = VALUES.get(scim_type, '"Ab"')
        for op in OPS.get(scim_type, STRING_OPS):
            yield f"{path} {op} {value}"
        yield f"not ({path} eq {value})"
    for schema in (rt.core, *rt.extensions):
        prefix = "" if schema is rt.core else schema.id + ":"
        for a in schema.attributes:
            for s in a.sub_attributes:
                value = VALUES.get(s.type, '"Ab"')
                yield f"{prefix}{a.name}[{s.name} eq {value}]"


class Spelled:
    """A dialect whose every spelling is a made-up word: whatever of SQLite's shows through
    was written by the compiler itself."""

    placeholder = "P_"
    false = "FALSE_"
    row_order = "ROW_"

    def json_value(self, doc, path, scim_type="string"):
        return f"JV({doc}, {'/'.join(path)}, {scim_type})"

    def elements(self, doc, path, alias):
        return f"EACH({doc}, {'/'.join(path)}) {alias}"

    def element(self, alias, sub, scim_type="string"):
        return f"EL({alias}, {sub}, {scim_type})"

    def position(self, alias):
        return f"POS({alias})"

    def is_object(self, doc, path):
        return f"OBJ({doc}, {'/'.join(path)})"

    def fold(self, expr):
        return f"FOLD({expr})"

    def contains(self, expr, value, bind):
        return f"CO({expr}, {bind(value)})"

    def starts_with(self, expr, value, bind):
        return f"SW({expr}, {bind(value)})"

    def ends_with(self, expr, value, bind):
        return f"EW({expr}, {bind(value)})"

    def boolean(self, value):
        return "T" if value else "F"


SQLITE_WORDS = ("json_", "scim_fold", "instr", "substr", "rowid", "?", "$.", ", 0)")


@pytest.mark.parametrize("type_name", sorted(RESOURCE_TYPES))
def test_the_compiler_writes_no_sql_of_its_own_that_a_dialect_spells(type_name):
    rt = RESOURCE_TYPES[type_name]
    compiled = 0
    for text in filters(rt):
        try:
            sql, params = compile_filter(rt, parse_filter(text), Spelled())
        except ScimError as e:
            assert e.status == 400, text
            continue
        compiled += 1
        assert not [w for w in SQLITE_WORDS if w in sql], (text, sql)
        assert sql.count("P_") == len(params), (text, sql, params)
    assert compiled > 50
    sql, _ = compile_member_filter(parse_filter('value eq "x" or display co "y"'), Spelled())
    assert not [w for w in SQLITE_WORDS if w in sql], sql
    for path, _ in leaves(rt):
        try:
            sql = compile_sort(rt, path, Spelled())
        except ScimError:
            continue
        assert not [w for w in SQLITE_WORDS if w in sql], (path, sql)


@pytest.mark.parametrize("type_name", sorted(TABLES))
def test_every_column_of_the_schema_filters_and_sorts_on_the_column(type_name):
    rt = RESOURCE_TYPES[type_name]
    for col in TABLES[type_name].columns:
        value = {"active": "true", "meta.created": VALUES["dateTime"],
                 "meta.lastModified": VALUES["dateTime"]}.get(col.attr, '"Ab"')
        sql, _ = compile_filter(rt, parse_filter(f"{col.attr} eq {value}"))
        assert f"r.{col.name}" in sql and "json" not in sql, (col, sql)
        assert f"r.{col.name}" in compile_sort(rt, col.attr)
        if col.folded:
            assert "scim_fold" not in sql, sql  # the column holds folded values already
    for (owner_type, attr), rel in RELATED.items():
        if owner_type == type_name:
            for sub in rel.subs:
                sql, _ = compile_filter(rt, parse_filter(f'{attr}.{sub} eq "x"'))
                assert "json_each" not in sql, sql
    if type_name == EMAILS.type:
        sql, _ = compile_filter(rt, parse_filter(f'{EMAILS.attr}.{EMAILS.sub} eq "x"'))
        assert EMAILS.table in sql


@pytest.mark.parametrize("type_name", sorted(RESOURCE_TYPES))
async def test_every_filter_that_compiles_runs_on_sqlite(tmp_path, type_name):
    rt = RESOURCE_TYPES[type_name]
    store = SqliteStorage(str(tmp_path / "scim.db"))
    try:
        for text in filters(rt):
            try:
                compile_filter(rt, parse_filter(text))
            except ScimError:
                continue
            await store.search(rt, Query(parse_filter(text)))  # raises if SQLite refuses it
        for path, _ in leaves(rt):
            try:
                compile_sort(rt, path)
            except ScimError:
                continue
            await store.search(rt, Query(sort_by=path))
    finally:
        await store.close()


def test_json_paths_quote_every_name():
    assert json_path("urn:x:2.0:User", 'we"ird') == '$."urn:x:2.0:User"."we""ird"'
    assert SQLITE.json_value("r.data", ("a", "b")) == "json_extract(r.data, '$.\"a\".\"b\"')"
