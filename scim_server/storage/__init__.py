"""Storage: the interface every backend implements, and the types it speaks.

SQLite (WAL, one file; `sqlite.py`) is the embedded backend. A second one (PostgreSQL) is one
more module implementing `Storage`, one entry in tests/test_storage.py's BACKENDS, and
passing the same tests: they run against this interface, once per backend.

The contract:
- Every method is a coroutine and one transaction: a call applies completely or not at all,
  and a failure is a `ScimError` the client may see (404, 409 uniqueness, 412 precondition,
  400 for a filter the backend cannot run), never a database exception.
- `Stored` is what reads and writes return; the document (`doc`) holds the resource's own
  attributes only: no id, meta, schemas, Group members or User groups, which storage keeps.
- Group membership changes come in as `MemberChange` deltas, applied in order, so one member
  costs the same in a group of 10 or of 50,000.
- The logic every backend shares lives in `common.py` (ids, preconditions, uniqueness keys).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..filters import Node
from ..schemas import ResourceType


@dataclass
class Stored:
    """A resource as storage returns it."""

    id: str
    doc: dict
    created: str
    last_modified: str
    version: int
    members: list[dict] | None = None  # Group members, None when not loaded
    groups: list[dict] | None = None  # User groups, None when not loaded

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


@dataclass
class MemberChange:
    """One change to a group's membership, applied by storage in request order."""

    kind: str  # add | remove | remove_all | replace | remove_where | update_where
    members: list[dict] = field(default_factory=list)  # add, replace: {"value", "display"}
    values: list[str] = field(default_factory=list)  # remove: member ids
    filter: Node | None = None  # remove_where, update_where: over value, display, type
    display: object = None  # update_where: the new display (None clears it)


@dataclass(frozen=True)
class Query:
    filter: Node | None = None
    sort_by: str | None = None
    descending: bool = False
    start_index: int = 1  # 1-based, as in SCIM
    count: int = 100
    with_members: bool = True  # load Group members (False for excludedAttributes=members)
    with_groups: bool = True  # load User groups


# A PATCH, as storage applies it: from the current document to the new one plus the
# membership deltas, run inside the write's transaction (so If-Match and the change are one).
Mutation = Callable[[dict], tuple[dict, list[MemberChange]]]


class Storage(Protocol):
    async def get(self, rt: ResourceType, id: str, *, with_related: bool = True) -> Stored:
        """One resource (404 if absent); `with_related` loads members or groups."""

    async def search(self, rt: ResourceType, query: Query) -> tuple[int, list[Stored]]:
        """(total matching, the page), in a stable order (sortBy, else insertion)."""

    async def create(self, rt: ResourceType, doc: dict, members: list[dict] | None) -> Stored:
        """A new resource with a new id; 409 uniqueness for a taken userName/displayName."""

    async def replace(self, rt: ResourceType, id: str, doc: dict, members: list[dict] | None,
                      if_match: str | None) -> Stored:
        """PUT: the whole document (and, for a group, the whole member list)."""

    async def modify(self, rt: ResourceType, id: str, mutate: Mutation, if_match: str | None,
                     *, with_related: bool = True) -> Stored:
        """PATCH: `mutate` runs on the current document inside the transaction; a change
        that changes nothing keeps the version and lastModified."""

    async def delete(self, rt: ResourceType, id: str, if_match: str | None) -> None:
        """Delete; a deleted user or group leaves every group it was in."""

    async def count(self, rt: ResourceType) -> int: ...

    async def ping(self) -> None:
        """Raise if the database cannot answer (readiness)."""

    async def close(self) -> None: ...
