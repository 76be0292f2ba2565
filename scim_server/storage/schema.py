"""The logical schema, once for every backend: which SCIM attribute is kept in which table and
column, which columns hold folded values, which an index answers, and where the multi-valued
attributes that are not read from the document live (a user's email index, the memberships).

Everything not named here is read from the stored document (`DOC`), through the backend's
JSON functions (dialect.py). The filter compiler, the sort, the row a write stores and the
uniqueness check all read this table; a backend's DDL must provide exactly it
(tests/test_schema.py checks SQLite's migrated database against it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class Column:
    """A column of a resource table standing for one SCIM attribute."""

    name: str
    attr: str  # as SCIM spells it: "userName", "meta.lastModified"
    from_doc: bool = False  # written from the document's `attr` on every write (else storage's)
    folded: bool = False  # holds common.fold(value): compared with folded values
    unique: bool = False  # case-insensitively unique (folded)
    # A matching attribute whose `eq` an index answers: such a search costs microseconds and
    # runs on the event loop (sqlite.py). meta.lastModified's index serves ranges only.
    indexed: bool = False
    # A range on it is read first and then paged (the search's `rowid IN`), as the sync's
    # `meta.lastModified gt` needs: the columns range_on_index named before this table existed
    # (meta.created among them, though no index holds it).
    ranged: bool = False
    etag: bool = False  # the attribute is the column's number as an ETag, W/"n"

    @property
    def key(self) -> tuple[str, str]:
        """(attribute, sub-attribute or ""), lower-case, as a resolved filter path names it."""
        name, _, sub = self.attr.lower().partition(".")
        return name, sub


@dataclass(frozen=True)
class Table:
    """The table of one resource type: one row per resource, the document as sent in `DOC`."""

    type: str  # the resource type's name
    name: str
    columns: tuple[Column, ...]
    by_key: dict[tuple[str, str], Column] = field(default_factory=dict, compare=False,
                                                  repr=False)

    def __post_init__(self) -> None:
        self.by_key.update({c.key: c for c in self.columns})

    def column(self, attr: str, sub: str = "") -> Column | None:
        return self.by_key.get((attr.lower(), sub.lower()))

    @cached_property
    def unique(self) -> Column:
        return next(c for c in self.columns if c.unique)

    @cached_property  # read on every write
    def from_doc(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.from_doc)


DOC = "data"  # the column holding the resource's document (JSON)

# Every resource table has these; they answer the common attributes (RFC 7643 §3.1).
_COMMON = (
    Column("id", "id", indexed=True),
    Column("external_id", "externalId", from_doc=True, indexed=True),
    Column("created", "meta.created", ranged=True),
    Column("last_modified", "meta.lastModified", ranged=True),
    Column("version", "meta.version", etag=True),
)

# meta.resourceType has no column: it is the type the table holds.
RESOURCE_TYPE_ATTR = ("meta", "resourcetype")

TABLES = {
    "User": Table("User", "users", (
        *_COMMON,
        Column("user_name_fold", "userName", from_doc=True, folded=True, unique=True,
               indexed=True, ranged=True),
        Column("display_name_fold", "displayName", from_doc=True, folded=True, indexed=True,
               ranged=True),
        Column("active", "active", from_doc=True, ranged=True),
    )),
    "Group": Table("Group", "groups", (
        *_COMMON,
        Column("display_name_fold", "displayName", from_doc=True, folded=True, unique=True,
               indexed=True, ranged=True),
    )),
}


@dataclass(frozen=True)
class ValueIndex:
    """The values of one sub-attribute of a multi-valued attribute, folded, in a table of their
    own (one row per resource and value): what answers Entra's `emails.value eq`."""

    type: str
    attr: str
    sub: str
    table: str
    owner: str  # the column holding the resource's id
    value: str  # the column holding the folded value


EMAILS = ValueIndex("User", "emails", "value", "user_emails", "user_id", "value_fold")


@dataclass(frozen=True)
class Membership:
    """The one table of group memberships: a row per (group, member)."""

    table: str = "group_members"
    group: str = "group_id"
    member: str = "value"  # the member's id (a user or a group)
    display: str = "display"
    type: str = "type"  # "User" or "Group"


MEMBERSHIP = Membership()


@dataclass(frozen=True)
class Fixed:
    """A sub-attribute with one value for every membership (User `groups.type`: "direct")."""

    value: str


@dataclass(frozen=True)
class OfGroup:
    """A sub-attribute read from the group a membership names (User `groups.display`)."""

    attr: str


@dataclass(frozen=True)
class Related:
    """A multi-valued attribute held in the membership table, not in the document: a group's
    `members`, a user's `groups`. `owner`: the membership column holding this resource's id;
    `subs`: each sub-attribute (lower-case) from a membership column, a fixed value or the
    group."""

    type: str
    attr: str
    owner: str
    subs: dict[str, str | Fixed | OfGroup]


GROUP_DISPLAY = OfGroup("displayName")

RELATED = {
    ("Group", "members"): Related("Group", "members", MEMBERSHIP.group, {
        "value": MEMBERSHIP.member, "display": MEMBERSHIP.display, "type": MEMBERSHIP.type}),
    ("User", "groups"): Related("User", "groups", MEMBERSHIP.member, {
        "value": MEMBERSHIP.group, "display": GROUP_DISPLAY, "type": Fixed("direct")}),
}


def related(type_name: str, attr: str) -> Related | None:
    return RELATED.get((type_name, attr.lower()))
