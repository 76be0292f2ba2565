"""Compile a filter AST into a WHERE clause over the tables of the logical schema (schema.py),
spelled by a backend's dialect (dialect.py).

Columns serve the attributes the schema names (Entra's `userName`, `externalId`, `displayName`,
`emails.value`, `id`, `active`, `meta.*`); every other attribute is read from the stored
document with the dialect's JSON functions, multi-valued ones one element at a time. Nothing is
filtered in Python. A comparison with an absent attribute yields NULL, which WHERE, AND and OR
treat exactly like false; only `not (...)` and `ne` need a definite false, so only they wrap
their operand in COALESCE. Comparisons stay bare elsewhere, which is what lets the database
use the indexes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ScimError
from ..filters import And, Compare, Node, Not, Or, Present, ValuePath, normalize_datetime
from ..resources import Resolved, resolve
from ..schemas import GROUP_TYPE, Attribute, ResourceType
from .common import fold
from .dialect import SQLITE, Dialect
from .schema import (
    DOC,
    EMAILS,
    MEMBERSHIP,
    RESOURCE_TYPE_ATTR,
    TABLES,
    Column,
    Fixed,
    OfGroup,
    related,
)


def _invalid(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidFilter")


@dataclass(frozen=True)
class Expr:
    """An SQL expression standing for an attribute. `folded`: it holds casefolded values."""

    sql: str
    attr: Attribute
    folded: bool = False


def _key(r: Resolved) -> tuple[str, str]:
    assert r.attr is not None
    return r.attr.name.lower(), r.sub.name.lower() if r.sub else ""


def _table_column(rt: ResourceType, r: Resolved) -> Column | None:
    """The schema's column for a resolved attribute of `rt`, if it has one."""
    if r.attr is None or r.schema is not rt.core:
        return None
    return TABLES[rt.name].by_key.get(_key(r))


def _logic(node: Node, leaf, dialect: Dialect) -> str:
    """and / or / not over `leaf`, which compiles everything else. A chain of one operator
    is written flat, `(a OR b OR c)`: nested parentheses, one pair per term, overflow
    SQLite's parser stack at about 90 terms."""
    if isinstance(node, (And, Or)):
        kind = type(node)
        terms, todo = [], [node]
        while todo:  # in order, without recursing down a long chain
            n = todo.pop()
            if type(n) is kind:
                todo += (n.right, n.left)
            else:
                terms.append(_logic(n, leaf, dialect))
        return "(" + (" AND " if kind is And else " OR ").join(terms) + ")"
    if isinstance(node, Not):
        return f"(NOT COALESCE({_logic(node.inner, leaf, dialect)}, {dialect.false}))"
    return leaf(node)


_ORDER_OPS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


class Compiler:
    def __init__(self, rt: ResourceType, dialect: Dialect) -> None:
        self.rt = rt
        self.dialect = dialect
        self.params: list[object] = []

    def param(self, value: object) -> str:
        self.params.append(value)
        return self.dialect.placeholder

    def doc(self, *path: str, scim_type: str = "string") -> str:
        return self.dialect.json_value(f"r.{DOC}", path, scim_type)

    # -- tree -------------------------------------------------------------------------------

    def compile(self, node: Node) -> str:
        return _logic(node, self.leaf, self.dialect)

    def leaf(self, node: Compare | Present | ValuePath) -> str:
        if isinstance(node, ValuePath):
            return self.value_path(node)
        r = resolve(self.rt, node.path, "invalidFilter")
        if r.attr is None:
            raise _invalid(f"{node.path!r} names a schema, not an attribute")
        return self.attribute(r, node)

    def attribute(self, r: Resolved, node: Compare | Present) -> str:
        attr, sub = r.attr, r.sub
        assert attr is not None
        target = sub or attr
        col = _table_column(self.rt, r)
        if col is not None:
            return self.predicate(Expr(_column_sql(col), target, col.folded), node)
        if r.common:
            if _key(r) == RESOURCE_TYPE_ATTR:
                return self.predicate(Expr(self.param(self.rt.name), target), node)
            raise _invalid(f"{node.path!r} cannot be filtered on")
        name = attr.name.lower()
        rel = related(self.rt.name, name)
        if rel is not None:
            return self.membership_attr(rel.owner, attr, sub, node)
        container = () if r.schema is self.rt.core else (r.schema.id,)
        if attr.multi_valued:
            if (self.value_index(r) and isinstance(node, Compare) and node.op == "eq"
                    and (sub is None or sub.name.lower() == EMAILS.sub)
                    and isinstance(node.value, str)):
                return self.in_value_index(node.value)
            each = self.dialect.elements(f"r.{DOC}", (*container, attr.name), "j")
            if isinstance(node, Present) and sub is None:
                return f"EXISTS (SELECT 1 FROM {each})"
            target = sub or _value_sub(attr, node.path)
            expr = self.dialect.element("j", target.name if attr.sub_attributes else None,
                                        target.type)
            cond = self.predicate(Expr(expr, target), node)
            return f"EXISTS (SELECT 1 FROM {each} WHERE {cond})"
        if attr.type == "complex" and sub is None:
            if isinstance(node, Present):
                return f"({self.dialect.is_object(f'r.{DOC}', (*container, attr.name))})"
            sub = _value_sub(attr, node.path)  # `manager eq "id"` compares manager.value
        names = (*container, attr.name, *((sub.name,) if sub else ()))
        target = sub or attr
        return self.predicate(Expr(self.doc(*names, scim_type=target.type), target), node)

    def value_index(self, r: Resolved) -> bool:
        """Whether `r` is the attribute whose values the value index holds (emails)."""
        return self.rt.name == EMAILS.type and r.schema is self.rt.core and \
            r.attr is not None and r.attr.name.lower() == EMAILS.attr

    def in_value_index(self, value: str) -> str:
        return (f"r.id IN (SELECT {EMAILS.owner} FROM {EMAILS.table} WHERE {EMAILS.value} = "
                f"{self.param(fold(value))})")

    def memberships(self, owner: str, cond: str | None = None) -> str:
        """Whether a membership of this resource (`owner`: the column holding its id)
        satisfies `cond`, over the alias `m`."""
        where = f"m.{owner} = r.id" + (f" AND {cond}" if cond else "")
        return f"EXISTS (SELECT 1 FROM {MEMBERSHIP.table} m WHERE {where})"

    def membership_attr(self, owner: str, attr: Attribute, sub: Attribute | None,
                node: Compare | Present) -> str:
        """Group `members` and User `groups`, both held in the membership table."""
        if isinstance(node, Present) and sub is None:
            return self.memberships(owner)
        target = sub or attr.sub("value")
        cond = self.predicate(Expr(self.member_column(attr, target), target), node)
        return self.memberships(owner, cond)

    def member_column(self, attr: Attribute, sub: Attribute) -> str:
        rel = related(self.rt.name, attr.name)
        assert rel is not None
        source = rel.subs.get(sub.name.lower())
        if source is None:
            raise _invalid(f"'{sub.name}' cannot be filtered on")
        if isinstance(source, Fixed):
            return self.param(source.value)
        if isinstance(source, OfGroup):
            value = self.dialect.json_value(f"g.{DOC}", (source.attr,))
            return (f"(SELECT {value} FROM {TABLES[GROUP_TYPE.name].name} g "
                    f"WHERE g.id = m.{MEMBERSHIP.group})")
        return f"m.{source}"

    def value_path(self, node: ValuePath) -> str:
        r = resolve(self.rt, node.path, "invalidFilter")
        attr = r.attr
        if attr is None or r.sub is not None or attr.type != "complex":
            raise _invalid(f"{node.path!r} is not a complex attribute")
        rel = related(self.rt.name, attr.name)
        if rel is not None:
            inner = _Inner(self, attr, lambda sub: self.member_column(attr, sub))
            return self.memberships(rel.owner, inner.compile(node.inner))
        container = () if r.schema is self.rt.core else (r.schema.id,)
        path = (*container, attr.name)
        if attr.multi_valued:
            # `emails[type eq "work" and value eq "x"]` (and Entra's `emails[type eq
            # "work"].value eq "x"`): the email index finds the few users with that address,
            # then their emails are checked for the whole condition.
            index = ""
            if self.value_index(r):
                wanted = _eq_value(node.inner, attr)
                if wanted is not None:
                    index = self.in_value_index(wanted) + " AND "
            inner = _Inner(self, attr,
                           lambda sub: self.dialect.element("j", sub.name, sub.type))
            each = self.dialect.elements(f"r.{DOC}", path, "j")
            return f"({index}EXISTS (SELECT 1 FROM {each} WHERE {inner.compile(node.inner)}))"
        inner = _Inner(self, attr,
                       lambda sub: self.doc(*path, sub.name, scim_type=sub.type))
        return inner.compile(node.inner)

    # -- one comparison ---------------------------------------------------------------------

    def predicate(self, col: Expr, node: Compare | Present) -> str:
        attr, expr, false = col.attr, col.sql, self.dialect.false
        if isinstance(node, Present):
            if attr.type in ("string", "reference", "binary"):
                return f"({expr} <> '')"
            return f"({expr} IS NOT NULL)"
        op, value = node.op, node.value
        if value is None:
            if op not in ("eq", "ne"):
                raise _invalid(f"Operator {op!r} cannot compare with null")
            return f"({expr} IS {'NOT ' if op == 'ne' else ''}NULL)"
        if attr.type == "complex":
            raise _invalid(f"{node.path!r} is complex: compare one of its sub-attributes")
        if attr.type == "boolean":
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            if not isinstance(value, bool) or op not in ("eq", "ne"):
                raise _invalid(f"{node.path!r} is a boolean: use eq or ne with true or false")
            p = self.param(self.dialect.boolean(value))
            return f"({expr} = {p})" if op == "eq" else f"(NOT COALESCE({expr} = {p}, {false}))"
        if attr.type in ("integer", "decimal"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _invalid(f"{node.path!r} is a number: compare it with a number")
            if op in ("co", "sw", "ew"):
                raise _invalid(f"Operator {op!r} is not defined for numbers")
        elif attr.type == "dateTime":
            if not isinstance(value, str):
                raise _invalid(f"{node.path!r} is a dateTime: compare it with a quoted string")
            value = normalize_datetime(value)
        else:
            if isinstance(value, bool):
                raise _invalid(f"{node.path!r} is a string: compare it with a quoted string")
            value = str(value)
            if not attr.case_exact:
                value = value.casefold()
                if not col.folded:
                    expr = self.dialect.fold(expr)
            if op in ("co", "sw", "ew") and value == "":
                return f"({expr} IS NOT NULL)"
        if op == "co":
            sql = self.dialect.contains(expr, value, self.param)
        elif op == "sw":
            sql = self.dialect.starts_with(expr, value, self.param)
        elif op == "ew":
            sql = self.dialect.ends_with(expr, value, self.param)
        elif op in ("eq", "ne"):
            sql = f"{expr} = {self.param(value)}"
        else:
            sql = f"{expr} {_ORDER_OPS[op]} {self.param(value)}"
        return f"(NOT COALESCE({sql}, {false}))" if op == "ne" else f"({sql})"


class _Inner:
    """Compiles the filter inside `attr[...]`, where names are sub-attributes of `attr`."""

    def __init__(self, outer: Compiler, attr: Attribute, column) -> None:
        self.outer = outer
        self.attr = attr
        self.column = column

    def compile(self, node: Node) -> str:
        return _logic(node, self.leaf, self.outer.dialect)

    def leaf(self, node: Compare | Present | ValuePath) -> str:
        if isinstance(node, ValuePath):
            raise _invalid("Value filters cannot be nested")
        name = node.path
        if name.lower().startswith(self.attr.name.lower() + "."):
            name = name[len(self.attr.name) + 1:]
        sub = self.attr.sub(name)
        if sub is None:
            raise _invalid(f"Unknown sub-attribute {node.path!r} of {self.attr.name}")
        return self.outer.predicate(Expr(self.column(sub), sub), node)


def _column_sql(col: Column) -> str:
    sql = f"r.{col.name}"
    return f"('W/\"' || {sql} || '\"')" if col.etag else sql


def _eq_value(node: Node, attr: Attribute) -> str | None:
    """The string that `value` must equal for `node` (inside `attr[...]`) to hold, if any:
    found in a `value eq "x"` that is the whole condition or one term of its top-level `and`."""
    todo = [node]
    while todo:
        n = todo.pop()
        if isinstance(n, And):
            todo += (n.left, n.right)
        elif isinstance(n, Compare) and n.op == "eq" and isinstance(n.value, str) and \
                n.path.lower() in (EMAILS.sub, f"{attr.name.lower()}.{EMAILS.sub}"):
            return n.value
    return None


def _value_sub(attr: Attribute, path: str) -> Attribute:
    if not attr.sub_attributes:
        return attr
    sub = attr.sub("value")
    if sub is None:
        raise _invalid(f"{path!r} is complex: compare one of its sub-attributes")
    return sub


def served_by_index(rt: ResourceType, node: Node) -> bool:
    """Whether an index finds every row `node` can match, so the search costs microseconds:
    `and`/`or` of `eq` on an indexed attribute (Entra's matching filters), or of
    `emails[... value eq "x" ...]`. Storage runs these on the event loop, others elsewhere."""
    todo = [node]
    while todo:
        n = todo.pop()
        if isinstance(n, (And, Or)):
            todo += (n.left, n.right)
            continue
        if isinstance(n, ValuePath):
            if rt.name != EMAILS.type or n.path.lower() != EMAILS.attr:
                return False
            if _eq_value(n.inner, rt.core.attr(EMAILS.attr)) is None:
                return False
            continue
        if not (isinstance(n, Compare) and n.op == "eq" and isinstance(n.value, str)):
            return False
        try:
            r = resolve(rt, n.path, "invalidFilter")
        except ScimError:
            return False  # the search itself says what is wrong
        if r.attr is None:
            return False
        col = _table_column(rt, r)
        if col is not None and col.indexed:
            continue
        if not (rt.name == EMAILS.type and r.schema is rt.core
                and _key(r) in ((EMAILS.attr, ""), (EMAILS.attr, EMAILS.sub))):
            return False
    return True


def range_on_index(rt: ResourceType, node: Node) -> bool:
    """Whether `node` must hold a range (gt ge lt le) on a column the schema marks `ranged`,
    e.g. the incremental sync's `meta.lastModified gt "..."`. For such a filter, SQLite left
    to itself walks the whole table in rowid order (the paging order) to skip sorting the
    hits; the search reads the hits from the index first instead (`rowid IN (...)`)."""
    todo = [node]
    while todo:
        n = todo.pop()
        if isinstance(n, And):
            todo += (n.left, n.right)
        elif isinstance(n, Compare) and n.op in _ORDER_OPS:
            try:
                r = resolve(rt, n.path, "invalidFilter")
            except ScimError:
                return False
            col = _table_column(rt, r)
            if col is not None and col.ranged:
                return True
    return False


def compile_filter(rt: ResourceType, node: Node,
                   dialect: Dialect = SQLITE) -> tuple[str, list[object]]:
    c = Compiler(rt, dialect)
    return c.compile(node), c.params


def compile_member_filter(node: Node, dialect: Dialect = SQLITE) -> tuple[str, list[object]]:
    """The filter inside `members[...]` of a PATCH path, over the membership alias `m`."""
    c = Compiler(GROUP_TYPE, dialect)
    attr = GROUP_TYPE.core.attr("members")
    sql = _Inner(c, attr, lambda sub: c.member_column(attr, sub)).compile(node)
    return sql, c.params


def compile_sort(rt: ResourceType, sort_by: str, dialect: Dialect = SQLITE) -> str:
    """The ORDER BY expression for `sortBy` (RFC 7644 §3.4.2.3)."""
    try:
        r = resolve(rt, sort_by, "invalidValue")
    except ScimError as e:
        raise ScimError(400, f"Cannot sort by {sort_by!r}: {e.detail}", "invalidValue") from None
    attr, sub = r.attr, r.sub
    if attr is None:
        raise ScimError(400, f"Cannot sort by {sort_by!r}", "invalidValue")
    col = _table_column(rt, r)
    if col is not None:
        return _column_sql(col)
    if r.common or related(rt.name, attr.name) is not None:
        raise ScimError(400, f"Cannot sort by {sort_by!r}", "invalidValue")
    container = () if r.schema is rt.core else (r.schema.id,)
    doc = f"r.{DOC}"
    if attr.multi_valued:
        target = sub or _value_sub(attr, sort_by)
        value = dialect.element("j", target.name if attr.sub_attributes else None, target.type)
        primary = dialect.element("j", "primary", "boolean")
        # RFC 7644 §3.4.2.3: a multi-valued attribute sorts by its primary (else first) value.
        expr = (f"(SELECT {value} FROM {dialect.elements(doc, (*container, attr.name), 'j')} "
                f"ORDER BY COALESCE({primary}, {dialect.false}) DESC, {dialect.position('j')} "
                "LIMIT 1)")
    else:
        if attr.type == "complex" and sub is None:
            raise ScimError(400, f"Cannot sort by the complex attribute {sort_by!r}",
                            "invalidValue")
        target = sub or attr
        names = (*container, attr.name, *((sub.name,) if sub else ()))
        expr = dialect.json_value(doc, names, target.type)
    if target.type in ("string", "reference") and not target.case_exact:
        expr = dialect.fold(expr)
    return expr
