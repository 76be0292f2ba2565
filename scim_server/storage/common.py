"""What every storage backend does the same way: ids, timestamps, case folding, preconditions,
uniqueness."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

from ..errors import ScimError, bad_request
from ..filters import format_datetime
from ..schemas import ResourceType
from . import Stored
from .dialect import Dialect
from .outbox import MemberDelta
from .schema import EMAILS, TABLES


def new_id() -> str:
    """A UUIDv7 (RFC 9562): time-ordered, so new rows append to the id index instead of
    dirtying a random page of it on every insert."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | (0x7 << 76)  # version 7
    value = value & ~(0x3 << 62) | (0x2 << 62)  # RFC 9562 variant
    return str(uuid.UUID(int=value))


def now() -> str:
    """meta.created / meta.lastModified: one fixed-width UTC form, so strings sort as time."""
    return format_datetime(datetime.now(UTC))


def fold(value: object) -> object:
    """Case folding for `caseExact: false` strings: what uniqueness and filters compare."""
    return value.casefold() if isinstance(value, str) else value


def check_precondition(res: Stored, if_match: str | None) -> None:
    """`If-Match` (RFC 7232): any listed ETag, or `*`, must match the current version."""
    if if_match is None:
        return
    tags = [t.strip() for t in if_match.split(",")]
    current = res.etag
    if "*" in tags or current in tags or current.removeprefix("W/") in tags:
        return
    raise ScimError(412, f"The resource has changed: its version is {current}",
                    headers={"ETag": current})


def email_keys(doc: dict) -> set[str]:
    """The folded email addresses of a user document, as the email index holds them."""
    return {fold(e[EMAILS.sub]) for e in doc.get(EMAILS.attr) or ()
            if isinstance(e, dict) and isinstance(e.get(EMAILS.sub), str)}


def email_changes(doc: dict, old: dict | None) -> tuple[set[str], set[str]]:
    """(gone, added): the email index rows a write removes and adds. Only the addresses that
    changed: each row touched is index pages written (SQLite's WAL, PostgreSQL's too)."""
    values = email_keys(doc)
    before = email_keys(old) if old is not None else set()
    return before - values, values - before


# The attribute each resource type keeps unique (case-insensitively: both are caseExact false).
UNIQUE = {name: table.unique.attr for name, table in TABLES.items()}


def unique_key(rt: ResourceType, doc: dict) -> object:
    """What a backend's uniqueness constraint compares for `doc`."""
    return fold(doc[UNIQUE[rt.name]])


def uniqueness_conflict(rt: ResourceType, doc: dict, holder: str) -> ScimError:
    """The 409 for a write whose unique attribute `holder` already has: it names the holder, so
    an admin can find the duplicate."""
    attr = UNIQUE[rt.name]
    return ScimError(409, f"{attr} {doc[attr]!r} is already used by {rt.name} {holder}",
                     "uniqueness")


def index_columns(rt: ResourceType, doc: dict, dialect: Dialect) -> dict:
    """The columns the schema derives from a document (the document itself stays as sent):
    folded where the schema folds, booleans as the database binds them. The values' types are
    the request validation's (resources.py): a string is a string by then."""
    cols = {}
    for col in TABLES[rt.name].from_doc:
        value = doc.get(col.attr)
        if col.folded:
            value = fold(value) if isinstance(value, str) else None
        elif isinstance(value, bool):
            value = dialect.boolean(value)
        cols[col.name] = value
    return cols


def member(value: str, display: object, type_: str) -> dict:
    """A membership as storage returns it and a MemberDelta holds it."""
    return {"value": value, "display": display, "type": type_}


def wanted_members(group_id: str, members: list[dict]) -> dict[str, object]:
    """An add's members, {id: display}; a group cannot be its own member."""
    wanted = {m["value"]: m.get("display") for m in members}
    if group_id in wanted:
        raise bad_request("A group cannot be a member of itself")
    return wanted


def additions(wanted: dict[str, object], found: dict[str, tuple], delta: MemberDelta
              ) -> list[tuple[str, object, str]]:
    """The rows (id, display, type) an add writes, given what a backend found of each wanted
    member ({id: (type, in the group already, its display there)}); each member's before and
    after go into `delta`. 400 for a member that does not exist."""
    missing = [i for i in wanted if i not in found]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise bad_request(f"No user or group with id {shown}: a member must exist")
    rows = []
    for value, display in wanted.items():
        type_, present, current = found[value]
        before = member(value, current, type_) if present else None
        # Adding a member without a display keeps the display it has.
        after = member(value, current if display is None and present else display, type_)
        delta.saw(value, before)
        delta.set(value, after)
        if after != before:
            rows.append((value, after["display"], type_))
    return rows
