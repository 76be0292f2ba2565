"""Storage: one small interface, with SQLite (WAL, one file) as the embedded backend.

Every method runs one transaction: a call either applies completely or not at all. Methods are
synchronous; see `SqliteStorage` for why they are called straight from the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..filters import Node
from ..patch import MemberChange
from ..resources import Stored
from ..schemas import ResourceType


@dataclass(frozen=True)
class Query:
    filter: Node | None = None
    sort_by: str | None = None
    descending: bool = False
    start_index: int = 1  # 1-based, as in SCIM
    count: int = 100
    with_members: bool = True  # load Group members (False for excludedAttributes=members)
    with_groups: bool = True  # load User groups


Mutation = Callable[[dict], tuple[dict, list[MemberChange]]]


class Storage(Protocol):
    def get(self, rt: ResourceType, id: str, *, with_related: bool = True) -> Stored: ...

    def search(self, rt: ResourceType, query: Query) -> tuple[int, list[Stored]]: ...

    def create(self, rt: ResourceType, doc: dict, members: list[dict] | None) -> Stored: ...

    def replace(self, rt: ResourceType, id: str, doc: dict, members: list[dict] | None,
                if_match: str | None) -> Stored: ...

    def modify(self, rt: ResourceType, id: str, mutate: Mutation, if_match: str | None,
               *, with_related: bool = True) -> Stored: ...

    def delete(self, rt: ResourceType, id: str, if_match: str | None) -> None: ...

    def count(self, rt: ResourceType) -> int: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...
