"""What every storage backend does the same way: ids, timestamps, case folding, preconditions,
uniqueness."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

from ..errors import ScimError
from ..filters import format_datetime
from ..schemas import ResourceType
from . import Stored
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
