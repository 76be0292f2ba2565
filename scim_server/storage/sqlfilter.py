"""Compile a filter AST into a SQLite WHERE clause over the tables of `sqlite.py`.

Indexed columns serve the attributes Entra matches on (`userName`, `externalId`, `displayName`,
`emails.value`, `id`, `active`, `meta.*`); every other attribute is read from the stored JSON with
SQLite's JSON functions, multi-valued ones through `json_each`. Nothing is filtered in Python.
A comparison with an absent attribute yields NULL, which WHERE, AND and OR treat exactly like
false; only `not (...)` and `ne` need a definite false, so only they wrap their operand in
COALESCE. Comparisons stay bare elsewhere, which is what lets SQLite use the indexes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ScimError
from ..filters import And, Compare, Node, Not, Or, Present, ValuePath, normalize_datetime
from ..resources import Resolved, resolve
from ..schemas import GROUP_TYPE, Attribute, ResourceType
from .common import fold  # registered in SQLite as scim_fold()


def json_path(*names: str) -> str:
    return "$" + "".join('."' + n.replace('"', '""') + '"' for n in names)


def _invalid(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidFilter")


@dataclass(frozen=True)
class Column:
    """An indexed column standing for an attribute. `folded`: it holds casefolded values."""

    sql: str
    attr: Attribute
    folded: bool = False


# (resource type, lower-case attribute name, lower-case sub-attribute or "") -> column
_COLUMNS: dict[tuple[str, str, str], tuple[str, bool]] = {
    ("User", "username", ""): ("r.user_name_fold", True),
    ("User", "displayname", ""): ("r.display_name_fold", True),
    ("User", "active", ""): ("r.active", False),
    ("Group", "displayname", ""): ("r.display_name_fold", True),
}
_COMMON_COLUMNS = {
    ("id", ""): "r.id",
    ("externalid", ""): "r.external_id",
    ("meta", "created"): "r.created",
    ("meta", "lastmodified"): "r.last_modified",
    ("meta", "resourcetype"): "{resource_type}",
    ("meta", "version"): "('W/\"' || r.version || '\"')",
}


def _logic(node: Node, leaf) -> str:
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
                terms.append(_logic(n, leaf))
        return "(" + (" AND " if kind is And else " OR ").join(terms) + ")"
    if isinstance(node, Not):
        return f"(NOT COALESCE({_logic(node.inner, leaf)}, 0))"
    return leaf(node)


_ORDER_OPS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


class Compiler:
    def __init__(self, rt: ResourceType) -> None:
        self.rt = rt
        self.params: list[object] = []

    def param(self, value: object) -> str:
        self.params.append(value)
        return "?"

    # -- tree -------------------------------------------------------------------------------

    def compile(self, node: Node) -> str:
        return _logic(node, self.leaf)

    def leaf(self, node: Compare | Present | ValuePath) -> str:
        if isinstance(node, ValuePath):
            return self.value_path(node)
        r = resolve(self.rt, node.path, "invalidFilter")
        if r.attr is None:
            raise _invalid(f"{node.path!r} names a schema, not an attribute")
        return self.attribute(r, node)

    def attribute(self, r: Resolved, node: Compare | Present) -> str:
        attr, sub = r.attr, r.sub
        if r.common:
            key = (attr.name.lower(), sub.name.lower() if sub else "")
            sql = _COMMON_COLUMNS.get(key)
            if sql is None:
                raise _invalid(f"{node.path!r} cannot be filtered on")
            if "{resource_type}" in sql:
                sql = sql.replace("{resource_type}", self.param(self.rt.name))
            return self.predicate(Column(sql, sub or attr), node)
        name = attr.name.lower()
        col = _COLUMNS.get((self.rt.name, name, sub.name.lower() if sub else ""))
        if col is not None and r.schema is self.rt.core:
            return self.predicate(Column(col[0], sub or attr, col[1]), node)
        if self.rt.name == "Group" and name == "members":
            return self.related("m.group_id = r.id", attr, sub, node)
        if self.rt.name == "User" and name == "groups":
            return self.related("m.value = r.id", attr, sub, node)
        container = () if r.schema is self.rt.core else (r.schema.id,)
        if attr.multi_valued:
            if (name == "emails" and r.schema is self.rt.core and isinstance(node, Compare)
                    and node.op == "eq" and (sub is None or sub.name == "value")
                    and isinstance(node.value, str)):
                return ("r.id IN (SELECT user_id FROM user_emails WHERE value_fold = "
                        f"{self.param(fold(node.value))})")
            each = f"json_each(r.data, '{json_path(*container, attr.name)}')"
            if isinstance(node, Present) and sub is None:
                return f"EXISTS (SELECT 1 FROM {each} j)"
            target = sub or _value_sub(attr, node.path)
            expr = f"json_extract(j.value, '{json_path(target.name)}')" \
                if attr.sub_attributes else "j.value"
            cond = self.predicate(Column(expr, target), node)
            return f"EXISTS (SELECT 1 FROM {each} j WHERE {cond})"
        if attr.type == "complex" and sub is None:
            if isinstance(node, Present):
                return f"(json_type(r.data, '{json_path(*container, attr.name)}') = 'object')"
            sub = _value_sub(attr, node.path)  # `manager eq "id"` compares manager.value
        names = (*container, attr.name, *((sub.name,) if sub else ()))
        return self.predicate(Column(f"json_extract(r.data, '{json_path(*names)}')",
                                     sub or attr), node)

    def related(self, join: str, attr: Attribute, sub: Attribute | None,
                node: Compare | Present) -> str:
        """Group `members` and User `groups`, both held in the group_members table."""
        if isinstance(node, Present) and sub is None:
            return f"EXISTS (SELECT 1 FROM group_members m WHERE {join})"
        target = sub or attr.sub("value")
        cond = self.predicate(Column(self.member_column(attr, target), target), node)
        return f"EXISTS (SELECT 1 FROM group_members m WHERE {join} AND {cond})"

    def member_column(self, attr: Attribute, sub: Attribute) -> str:
        name = sub.name.lower()
        if attr.name == "groups":
            return {"value": "m.group_id", "type": "'direct'",
                    "display": "(SELECT json_extract(g.data, '$.displayName') FROM groups g "
                               "WHERE g.id = m.group_id)"}.get(name) or self._no_filter(sub)
        return {"value": "m.value", "type": "m.type", "display": "m.display"}.get(name) \
            or self._no_filter(sub)

    def _no_filter(self, sub: Attribute) -> str:
        raise _invalid(f"'{sub.name}' cannot be filtered on")

    def value_path(self, node: ValuePath) -> str:
        r = resolve(self.rt, node.path, "invalidFilter")
        attr = r.attr
        if attr is None or r.sub is not None or attr.type != "complex":
            raise _invalid(f"{node.path!r} is not a complex attribute")
        name = attr.name.lower()
        if (self.rt.name, name) in (("Group", "members"), ("User", "groups")):
            join = "m.group_id = r.id" if name == "members" else "m.value = r.id"
            inner = _Inner(self, attr, lambda sub: self.member_column(attr, sub))
            return f"EXISTS (SELECT 1 FROM group_members m WHERE {join} AND " \
                   f"{inner.compile(node.inner)})"
        container = () if r.schema is self.rt.core else (r.schema.id,)
        path = json_path(*container, attr.name)
        if attr.multi_valued:
            # `emails[type eq "work" and value eq "x"]` (and Entra's `emails[type eq
            # "work"].value eq "x"`): the email index finds the few users with that address,
            # then their emails are checked for the whole condition.
            index = ""
            if name == "emails" and r.schema is self.rt.core and self.rt.name == "User":
                wanted = _eq_value(node.inner, attr)
                if wanted is not None:
                    index = ("r.id IN (SELECT user_id FROM user_emails WHERE value_fold = "
                             f"{self.param(fold(wanted))}) AND ")
            inner = _Inner(self, attr,
                           lambda sub: f"json_extract(j.value, '{json_path(sub.name)}')")
            return f"({index}EXISTS (SELECT 1 FROM json_each(r.data, '{path}') j WHERE " \
                   f"{inner.compile(node.inner)}))"
        inner = _Inner(self, attr, lambda sub: f"json_extract(r.data, '{path}.\"{sub.name}\"')")
        return inner.compile(node.inner)

    # -- one comparison ---------------------------------------------------------------------

    def predicate(self, col: Column, node: Compare | Present) -> str:
        attr, expr = col.attr, col.sql
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
            p = self.param(1 if value else 0)
            return f"({expr} = {p})" if op == "eq" else f"(NOT COALESCE({expr} = {p}, 0))"
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
                    expr = f"scim_fold({expr})"
            if op in ("co", "sw", "ew") and value == "":
                return f"({expr} IS NOT NULL)"
        p = self.param(value)
        if op in ("eq", "ne"):
            sql = f"{expr} = {p}"
        elif op == "co":
            sql = f"instr({expr}, {p}) > 0"
        elif op == "sw":
            sql = f"instr({expr}, {p}) = 1"
        elif op == "ew":
            sql = f"substr({expr}, -length({p})) = {self.param(value)}"
        else:
            sql = f"{expr} {_ORDER_OPS[op]} {p}"
        return f"(NOT COALESCE({sql}, 0))" if op == "ne" else f"({sql})"


class _Inner:
    """Compiles the filter inside `attr[...]`, where names are sub-attributes of `attr`."""

    def __init__(self, outer: Compiler, attr: Attribute, column) -> None:
        self.outer = outer
        self.attr = attr
        self.column = column

    def compile(self, node: Node) -> str:
        return _logic(node, self.leaf)

    def leaf(self, node: Compare | Present | ValuePath) -> str:
        if isinstance(node, ValuePath):
            raise _invalid("Value filters cannot be nested")
        name = node.path
        if name.lower().startswith(self.attr.name.lower() + "."):
            name = name[len(self.attr.name) + 1:]
        sub = self.attr.sub(name)
        if sub is None:
            raise _invalid(f"Unknown sub-attribute {node.path!r} of {self.attr.name}")
        return self.outer.predicate(Column(self.column(sub), sub), node)


def _eq_value(node: Node, attr: Attribute) -> str | None:
    """The string that `value` must equal for `node` (inside `attr[...]`) to hold, if any:
    found in a `value eq "x"` that is the whole condition or one term of its top-level `and`."""
    todo = [node]
    while todo:
        n = todo.pop()
        if isinstance(n, And):
            todo += (n.left, n.right)
        elif isinstance(n, Compare) and n.op == "eq" and isinstance(n.value, str) and \
                n.path.lower() in ("value", f"{attr.name.lower()}.value"):
            return n.value
    return None


def _value_sub(attr: Attribute, path: str) -> Attribute:
    if not attr.sub_attributes:
        return attr
    sub = attr.sub("value")
    if sub is None:
        raise _invalid(f"{path!r} is complex: compare one of its sub-attributes")
    return sub


# Attributes whose `eq` an index answers, by resource type: (attribute, sub-attribute).
_EQ_INDEXED = {
    "User": {("username", ""), ("displayname", ""), ("emails", ""), ("emails", "value")},
    "Group": {("displayname", "")},
}


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
            if rt.name != "User" or n.path.lower() != "emails":
                return False
            attr = rt.core.attr("emails")
            if _eq_value(n.inner, attr) is None:
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
        key = (r.attr.name.lower(), r.sub.name.lower() if r.sub else "")
        if r.common:
            if key not in (("id", ""), ("externalid", "")):
                return False
        elif r.schema is not rt.core or key not in _EQ_INDEXED[rt.name]:
            return False
    return True


def range_on_index(rt: ResourceType, node: Node) -> bool:
    """Whether `node` must hold a range (gt ge lt le) on an indexed column, e.g. the
    incremental sync's `meta.lastModified gt "..."`. For such a filter, SQLite left to itself
    walks the whole table in rowid order (the paging order) to skip sorting the hits; the
    search reads the hits from the index first instead (`rowid IN (...)`)."""
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
            if r.attr is None:
                continue
            key = (r.attr.name.lower(), r.sub.name.lower() if r.sub else "")
            if (r.common and key in (("meta", "created"), ("meta", "lastmodified"))) or \
                    (not r.common and r.schema is rt.core and (rt.name, *key) in _COLUMNS):
                return True
    return False


def compile_filter(rt: ResourceType, node: Node) -> tuple[str, list[object]]:
    c = Compiler(rt)
    return c.compile(node), c.params


def compile_member_filter(node: Node) -> tuple[str, list[object]]:
    """The filter inside `members[...]` of a PATCH path, over the group_members alias `m`."""
    c = Compiler(GROUP_TYPE)
    attr = GROUP_TYPE.core.attr("members")
    sql = _Inner(c, attr, lambda sub: c.member_column(attr, sub)).compile(node)
    return sql, c.params


def compile_sort(rt: ResourceType, sort_by: str) -> str:
    """The ORDER BY expression for `sortBy` (RFC 7644 §3.4.2.3)."""
    try:
        r = resolve(rt, sort_by, "invalidValue")
    except ScimError as e:
        raise ScimError(400, f"Cannot sort by {sort_by!r}: {e.detail}", "invalidValue") from None
    attr, sub = r.attr, r.sub
    if attr is None:
        raise ScimError(400, f"Cannot sort by {sort_by!r}", "invalidValue")
    if r.common:
        sql = _COMMON_COLUMNS.get((attr.name.lower(), sub.name.lower() if sub else ""))
        if sql is None or "{" in sql:
            raise ScimError(400, f"Cannot sort by {sort_by!r}", "invalidValue")
        return sql
    col = _COLUMNS.get((rt.name, attr.name.lower(), sub.name.lower() if sub else ""))
    if col is not None and r.schema is rt.core:
        return col[0]
    if attr.name in ("members", "groups"):
        raise ScimError(400, f"Cannot sort by {sort_by!r}", "invalidValue")
    container = () if r.schema is rt.core else (r.schema.id,)
    if attr.multi_valued:
        target = sub or _value_sub(attr, sort_by)
        value = f"json_extract(j.value, '{json_path(target.name)}')" if attr.sub_attributes \
            else "j.value"
        # RFC 7644 §3.4.2.3: a multi-valued attribute sorts by its primary (else first) value.
        expr = (f"(SELECT {value} FROM json_each(r.data, '{json_path(*container, attr.name)}') j "
                "ORDER BY COALESCE(json_extract(j.value, '$.primary'), 0) DESC, j.key LIMIT 1)")
    else:
        if attr.type == "complex" and sub is None:
            raise ScimError(400, f"Cannot sort by the complex attribute {sort_by!r}",
                            "invalidValue")
        names = (*container, attr.name, *((sub.name,) if sub else ()))
        expr = f"json_extract(r.data, '{json_path(*names)}')"
        target = sub or attr
    if target.type in ("string", "reference") and not target.case_exact:
        expr = f"scim_fold({expr})"
    return expr
