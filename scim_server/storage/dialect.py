"""How a backend's SQL spells what the filter compiler (sqlfilter.py) and the reads need: the
compiler writes no SQL of its own that differs between databases, only what this interface
returns, so a second backend is a second `Dialect`, not a second compiler.

SQLite (`SQLITE`): `?` placeholders; JSON read with `json_extract`/`json_each`/`json_type` over
the document stored as text; case folding by `scim_fold()`, Python's `str.casefold`
registered on every connection (sqlite.py), so a folded column written by `common.fold` and a
folded JSON value compare alike (SQLite's `lower()` and `COLLATE NOCASE` fold ASCII only, so
`"ÉVA"` would miss `"éva"`); substring tests with `instr`/`substr` (no LIKE, so nothing
to escape); booleans are 1 and 0; the paging order is the table's `rowid`.

PostgreSQL (`POSTGRES`, psycopg 3): `%s` placeholders; the document is stored as `json` (its
text kept byte for byte, as SQLite keeps it) and read with `#>` / `#>>` and
`json_array_elements ... WITH ORDINALITY`; a value is cast to its SCIM type only where JSON holds
that type (`CASE WHEN json_typeof(...) = 'number'`), so a stray string in a number attribute
compares as no match instead of failing the query; strings compare and sort `COLLATE "C"`
(bytes, as SQLite's BINARY does); case folding by `scim_fold()`, an SQL function made by
postgres.py that equals `str.casefold` (ICU's lower() and the few foldings lower() lacks, such
as ß to ss); substring tests with `strpos`/`starts_with`/`right`; booleans are SQL booleans; the
paging order is a `bigint` identity column, PostgreSQL having no rowid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Bind = Callable[[object], str]  # binds a value as a parameter, returns its placeholder


class Dialect(Protocol):
    placeholder: str  # one bound parameter, positional
    false: str  # what NOT COALESCE(cond, ...) takes for an unknown cond
    row_order: str  # the column that orders a table's rows as inserted

    def json_value(self, doc: str, path: tuple[str, ...], scim_type: str = "string") -> str:
        """The value at `path` of the JSON in `doc`, as SQL compares a value of that SCIM type;
        NULL when absent."""

    def elements(self, doc: str, path: tuple[str, ...], alias: str) -> str:
        """A FROM item: one row per element of the JSON array at `path` of `doc`."""

    def element(self, alias: str, sub: str | None, scim_type: str = "string") -> str:
        """The element's `sub` value (or the element itself for None), as json_value."""

    def position(self, alias: str) -> str:
        """The element's position in its array."""

    def is_object(self, doc: str, path: tuple[str, ...]) -> str:
        """True when the value at `path` is a JSON object."""

    def fold(self, expr: str) -> str:
        """`expr` case-folded as common.fold folds a value in Python."""

    def contains(self, expr: str, value: str, bind: Bind) -> str: ...

    def starts_with(self, expr: str, value: str, bind: Bind) -> str: ...

    def ends_with(self, expr: str, value: str, bind: Bind) -> str: ...

    def boolean(self, value: bool) -> object:
        """A boolean as the database binds it (in a column or compared with a JSON value)."""


def json_path(*names: str) -> str:
    """A JSONPath as SQLite's JSON functions take it, each name quoted."""
    return "$" + "".join('."' + n.replace('"', '""') + '"' for n in names)


class SqliteDialect:
    placeholder = "?"
    fold_function = "scim_fold"  # registered on each connection (sqlite.py)
    false = "0"
    row_order = "rowid"

    def json_value(self, doc: str, path: tuple[str, ...], scim_type: str = "string") -> str:
        # json_extract returns SQL values of the JSON's own type (true as 1): no cast.
        return f"json_extract({doc}, '{json_path(*path)}')"

    def elements(self, doc: str, path: tuple[str, ...], alias: str) -> str:
        return f"json_each({doc}, '{json_path(*path)}') {alias}"

    def element(self, alias: str, sub: str | None, scim_type: str = "string") -> str:
        return f"{alias}.value" if sub is None else self.json_value(f"{alias}.value", (sub,))

    def position(self, alias: str) -> str:
        return f"{alias}.key"

    def is_object(self, doc: str, path: tuple[str, ...]) -> str:
        return f"json_type({doc}, '{json_path(*path)}') = 'object'"

    def fold(self, expr: str) -> str:
        return f"{self.fold_function}({expr})"

    def contains(self, expr: str, value: str, bind: Bind) -> str:
        return f"instr({expr}, {bind(value)}) > 0"

    def starts_with(self, expr: str, value: str, bind: Bind) -> str:
        return f"instr({expr}, {bind(value)}) = 1"

    def ends_with(self, expr: str, value: str, bind: Bind) -> str:
        return f"substr({expr}, -length({bind(value)})) = {bind(value)}"

    def boolean(self, value: bool) -> object:
        return 1 if value else 0


SQLITE = SqliteDialect()


def _pg_path(names: tuple[str, ...]) -> str:
    """A path as `#>` takes it: a text array of literals. Names come from the schema (never
    from a request), but are quoted anyway; `%` is doubled, psycopg's placeholder sign."""
    quoted = ("'" + n.replace("'", "''").replace("%", "%%") + "'" for n in names)
    return f"ARRAY[{', '.join(quoted)}]::text[]"


def _pg_typed(json: str, text: str, scim_type: str) -> str:
    """`text` (the value as text) cast to the SCIM type, where `json` (the same value as JSON)
    holds that type; strings compare as bytes."""
    if scim_type in ("integer", "decimal"):
        return f"(CASE WHEN json_typeof({json}) = 'number' THEN ({text})::numeric END)"
    if scim_type == "boolean":
        return f"(CASE WHEN json_typeof({json}) = 'boolean' THEN ({text})::boolean END)"
    return f'(({text}) COLLATE "C")'


class PostgresDialect:
    placeholder = "%s"
    fold_function = "scim_fold"  # made by postgres.py's schema
    false = "false"
    row_order = "row_order"

    def json_value(self, doc: str, path: tuple[str, ...], scim_type: str = "string") -> str:
        p = _pg_path(path)
        return _pg_typed(f"({doc} #> {p})", f"{doc} #>> {p}", scim_type)

    def elements(self, doc: str, path: tuple[str, ...], alias: str) -> str:
        # json_array_elements fails on anything but an array: a stray object or string in a
        # multi-valued attribute is no elements, as it is no match on SQLite.
        value = f"({doc} #> {_pg_path(path)})"
        return (f"json_array_elements(CASE WHEN json_typeof({value}) = 'array' THEN {value} "
                f"END) WITH ORDINALITY AS {alias}(value, position)")

    def element(self, alias: str, sub: str | None, scim_type: str = "string") -> str:
        if sub is None:
            return _pg_typed(f"{alias}.value", f"{alias}.value #>> '{{}}'", scim_type)
        return self.json_value(f"{alias}.value", (sub,), scim_type)

    def position(self, alias: str) -> str:
        return f"{alias}.position"

    def is_object(self, doc: str, path: tuple[str, ...]) -> str:
        return f"json_typeof({doc} #> {_pg_path(path)}) = 'object'"

    def fold(self, expr: str) -> str:
        return f"{self.fold_function}({expr})"

    def contains(self, expr: str, value: str, bind: Bind) -> str:
        return f"strpos({expr}, {bind(value)}) > 0"

    def starts_with(self, expr: str, value: str, bind: Bind) -> str:
        return f"starts_with({expr}, {bind(value)})"

    def ends_with(self, expr: str, value: str, bind: Bind) -> str:
        return f"right({expr}, length({bind(value)})) = {bind(value)}"

    def boolean(self, value: bool) -> object:
        return value


POSTGRES = PostgresDialect()
