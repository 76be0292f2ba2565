"""How a backend's SQL spells what the filter compiler (sqlfilter.py) and the reads need: the
compiler writes no SQL of its own that differs between databases, only what this interface
returns, so a second backend is a second `Dialect`, not a second compiler.

SQLite (`SQLITE`): `?` placeholders; JSON read with `json_extract`/`json_each`/`json_type` over
the document stored as text; case folding by `scim_fold()`, Python's `str.casefold`
registered on every connection (sqlite.py), so a folded column written by `common.fold` and a
folded JSON value compare alike (SQLite's `lower()` and `COLLATE NOCASE` fold ASCII only, so
`"ÉVA"` would miss `"éva"`); substring tests with `instr`/`substr` (no LIKE, so nothing
to escape); booleans are 1 and 0; the paging order is the table's `rowid`.

A PostgreSQL dialect will provide, for psycopg 3 over `jsonb` documents:
- `placeholder` `%s` (so a literal `%` in its own spellings is written `%%`);
- `json_value`: `doc #>> '{a,b}'` (text), cast by SCIM type: `::numeric` for integer and
  decimal, `::boolean` for boolean (dateTime stays text: every stored one has one fixed
  width, so text order is time order);
- `elements`: `jsonb_array_elements(doc #> '{a}') WITH ORDINALITY AS j(value, position)`,
  `element` `j.value ->> 'sub'` (or `j.value #>> '{}'` for a plain value),
  `position` `j.position`; `is_object`: `jsonb_typeof(doc #> '{a}') = 'object'`;
- `fold`: `lower(x)`, which differs from `casefold` for a few characters (ß): the folded
  columns are written by `common.fold` either way, so only comparisons on JSON values not in a
  column can differ; or a function of its own that matches `casefold` exactly;
- `contains`/`starts_with`/`ends_with`: `strpos(x, v) > 0`, `starts_with(x, v)`,
  `right(x, length(v)) = v` (or LIKE with `%`, `_` and `\\` escaped in the value);
- `boolean` True/False, `false` `false` (NOT COALESCE(cond, false));
- `row_order`: a `bigint` identity column (or the time-ordered UUIDv7 `id`): PostgreSQL has no
  rowid.
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
