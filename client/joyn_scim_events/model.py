"""What the application's store receives: events, the stream position, snapshots.

An `Event` is one verified SET read as a change to one resource; a `Snapshot` is every user and
group at one stream position. The wire format they come from (RFC 9967 SETs with joyn-scim's
two payload members, `resource` and `memberChanges`) is described in the server's
scim_server/events/sets.py and in docs/events.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

PROV = "urn:ietf:params:scim:event:prov:"
_KINDS = {PROV + "create:full": "create", PROV + "put:full": "put",
          PROV + "patch:full": "patch", PROV + "delete": "delete"}
RESYNC = "https://scim.sevenlakes.com/events/resync"


class Position(NamedTuple):
    """Where a copy of the tenant's data stands: the stream it follows and the last event
    (its seq) it holds. Events at or before it are already in the copy."""

    stream: str
    seq: int


def parse_jti(jti: str) -> Position | None:
    """`<stream>.<seq>` (an event) as a Position; None for anything else (a resync's jti)."""
    stream, _, seq = jti.partition(".")
    return Position(stream, int(seq)) if seq.isascii() and seq.isdigit() else None


@dataclass(frozen=True)
class Event:
    """One change to one user or group.

    - `kind`: create, put, patch or delete.
    - `resource`: the user or group after the change, as a SCIM GET returns it (a Group from a
      patch comes without `members`; its membership change is in `members_added` and
      `members_removed`). None for a delete.
    - `active`: True or False when the user's `active` flipped in this change (Entra disables a
      user with active=false: take their access away, keep their data), else None.
    - `version`: the resource's ETag after the change (RFC 9967 `version`).
    """

    jti: str
    position: Position
    txn: int
    iat: int
    kind: str
    resource_type: str  # "User" or "Group"
    id: str
    external_id: str | None
    version: str | None
    resource: dict | None
    members_added: list[dict] = field(default_factory=list)  # added, or display changed
    members_removed: list[str] = field(default_factory=list)
    active: bool | None = None
    patch: dict | None = None  # the PatchOp as Entra sent it (for audit; `resource` is the truth)
    claims: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Resync:
    """The stream lost events the copy needed (retention, a rejected SET, or the server ran
    with events off): the copy must be replaced from a snapshot. `through` is the last seq
    lost; a copy whose position is at or past it has resynced already."""

    jti: str
    stream: str
    through: int
    reason: str
    lost: int | None


class SetError(Exception):
    """A SET that fails verification. `err` is the RFC 8935 §2.4 code the receiver reports."""

    def __init__(self, err: str, description: str) -> None:
        super().__init__(description)
        self.err = err
        self.description = description


def read_event(jti: str, claims: dict) -> Event | Resync:
    """A verified SET's claims as an Event (or a Resync); SetError if they are not one."""
    events = claims.get("events")
    if not isinstance(events, dict) or not events:
        raise SetError("invalid_request", "the SET has no events claim")
    if RESYNC in events:
        detail = events[RESYNC]
        stream = (claims.get("sub_id") or {}).get("id", "")
        return Resync(jti, stream, int(detail.get("through", 0)), str(detail.get("reason")),
                      detail.get("lost"))
    position = parse_jti(jti)
    kind = next((k for uri, k in _KINDS.items() if uri in events), None)
    sub = claims.get("sub_id") or {}
    resource_type, _, rid = str(sub.get("uri", "")).lstrip("/").partition("/")
    if position is None or kind is None or resource_type not in ("Users", "Groups") or not rid:
        raise SetError("invalid_request", "the SET is not a joyn-scim provisioning event")
    payload = events[next(uri for uri, k in _KINDS.items() if k == kind)]
    changes = payload.get("memberChanges") or {}
    active = True if PROV + "activate" in events else False if PROV + "deactivate" in events \
        else None
    if kind == "patch":
        resource = payload.get("resource")
    elif kind == "delete":
        resource = None
    else:
        resource = payload.get("data")
    return Event(
        jti=jti, position=position, txn=int(claims.get("txn", 0)), iat=int(claims["iat"]),
        kind=kind, resource_type=resource_type[:-1], id=rid, external_id=sub.get("externalId"),
        version=payload.get("version"), resource=resource,
        members_added=list(changes.get("upsert", ())),
        members_removed=list(changes.get("remove", ())), active=active,
        patch=payload.get("data") if kind == "patch" else None, claims=claims)


@dataclass
class Snapshot:
    """Every user and group at `position`, read from one consistent view. `users` and
    `groups` are iterators over the resources as a SCIM GET returns them (Groups with
    members); read each once, in order, users first."""

    position: Position
    users: Iterator[dict]
    groups: Iterator[dict]


class Store(Protocol):
    """What the application implements: its copy of the tenant's users and groups.

    Each method must be atomic and durable when it returns: the client acknowledges an event
    (after which the server forgets it) only once `apply` has returned, as RFC 9967 §5 asks.
    """

    def position(self) -> Position | None:
        """The position the copy holds, or None when it holds nothing yet (then the client
        starts it from a snapshot)."""

    def apply(self, event: Event) -> None:
        """Store the change and the new position (`event.position`) in one transaction."""

    def reset(self, snapshot: Snapshot) -> None:
        """Replace the whole copy with the snapshot and its position, in one transaction."""
