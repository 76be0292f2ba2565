"""What the outbox holds for each change: a record a receiver can rebuild the resource from.

A record is plain JSON, written by the write path (writes.py) in the change's own transaction
and turned into a signed RFC 9967 SET only when delivered (events/sets.py). It holds storage's
view of the change (the stored document, ids, versions, timestamps, the exact membership
delta), not a rendering: rendering needs the Tenant URL, and a write should not pay for it.

Keys (absent when empty):
- `op`: create | put | patch | delete; `type`: User | Group; `id`; `externalId`.
- `version`, `created`, `lastModified`: the resource after the change (not for delete).
- `doc`: the stored document after the change (not for delete; never members or groups).
- `members`: a Group's whole member list after a create or put.
- `delta`: a Group's membership change after a patch: `upsert` (members added, or whose
  display changed) and `remove` (member ids), net over the whole request.
- `patch`: the PatchOp as sent; for a change the server made itself (a group losing a deleted
  member) the equivalent PatchOp, as RFC 9967 §2.2 describes `data`.
- `active`: the user's new `active` when it flipped (Entra disables a user this way).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..schemas import GROUP_TYPE, ResourceType
from . import Stored


@dataclass
class MemberDelta:
    """The net change to one group's members in one transaction, exact: a backend records
    each member's state before its first change and after its last, and only members whose
    state differs count. So adding a member already there, or removing one that is not,
    changes nothing, and neither the version nor the stream moves."""

    before: dict[str, dict | None] = field(default_factory=dict)
    after: dict[str, dict | None] = field(default_factory=dict)

    def saw(self, value: str, member: dict | None) -> None:
        """A member's state before this transaction touched it (kept from the first sight)."""
        self.before.setdefault(value, member)

    def set(self, value: str, member: dict | None) -> None:
        """A member's state now: its row ({value, display, type}), or None once removed."""
        self.after[value] = member

    def upserted(self) -> list[dict]:
        return [m for v, m in self.after.items() if m is not None and self.before.get(v) != m]

    def removed(self) -> list[str]:
        return [v for v, m in self.after.items() if m is None and self.before.get(v) is not None]

    def __bool__(self) -> bool:
        return any(self.before.get(v) != m for v, m in self.after.items())


def _base(op: str, rt: ResourceType, res: Stored) -> dict:
    out = {"op": op, "type": rt.name, "id": res.id}
    if res.doc.get("externalId") is not None:
        out["externalId"] = res.doc["externalId"]
    if op != "delete":
        out.update(version=res.version, created=res.created, lastModified=res.last_modified,
                   doc=res.doc)
    return out


def _active(doc: dict) -> bool:
    """A user without `active` counts as active (RFC 7643 leaves the default to the server)."""
    return doc.get("active") is not False


def _flip(rt: ResourceType, before: Stored, after: Stored, out: dict) -> dict:
    if rt.name == "User" and _active(before.doc) != _active(after.doc):
        out["active"] = _active(after.doc)
    return out


def created(rt: ResourceType, res: Stored) -> dict:
    out = _base("create", rt, res)
    if rt.name == "Group":
        out["members"] = res.members or []
    return out


def replaced(rt: ResourceType, before: Stored, res: Stored) -> dict:
    out = _base("put", rt, res)
    if rt.name == "Group":
        out["members"] = res.members or []
    return _flip(rt, before, res, out)


def patched(rt: ResourceType, before: Stored, res: Stored, delta: MemberDelta | None,
            patch_op: dict | None) -> dict:
    out = _base("patch", rt, res)
    if patch_op is not None:
        out["patch"] = patch_op
    if delta:
        out["delta"] = {k: v for k, v in (("upsert", delta.upserted()),
                                           ("remove", delta.removed())) if v}
    return _flip(rt, before, res, out)


def deleted(rt: ResourceType, before: Stored) -> dict:
    return _base("delete", rt, before)


def lost_member(before: Stored, res: Stored, member_id: str) -> dict:
    """A group that lost a member because the member was deleted: the server's own change,
    written as the PatchOp that would have made it."""
    delta = MemberDelta()
    delta.saw(member_id, {"value": member_id})
    delta.set(member_id, None)
    op = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
          "Operations": [{"op": "remove", "path": f'members[value eq "{member_id}"]'}]}
    return patched(GROUP_TYPE, before, res, delta, op)
