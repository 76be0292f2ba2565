"""RFC 9967 Security Event Tokens from outbox records: the claims, before signing. Pure.

One SET per changed resource per transaction (RFC 8417 §2.2: the events of one SET are aspects
of one state change of one subject):
- create, PUT: `prov:create:full` / `prov:put:full` with `data`, the resource as a GET would
  return it, and `version`, its ETag.
- PATCH: `prov:patch:full` with `data`, the PatchOp as sent (RFC 9967 §2.4.2), and `version`.
  A PatchOp alone does not let a receiver keep a mirror: it would need a whole PATCH engine,
  Entra's dialects included, and the resource as it was. So the payload also carries two
  members RFC 9967 does not define (RFC 7519 §4: a receiver ignores what it does not know):
  `resource`, the resource after the change (a Group without `members`, which can be 50,000
  long), and for a Group whose membership changed `memberChanges`: `upsert`, the members added
  or whose display changed, and `remove`, the ids that left, net over the request. Every
  member RFC 9967 defines stays as it says. A Group's members are never sent whole on a PATCH.
- DELETE: `prov:delete`, empty (RFC 9967 §2.4.4).
- `active` flipping adds `prov:activate` / `prov:deactivate` to the same SET (Entra disables
  a user with PATCH active=false; the SET still carries the patch).
- A gap (events discarded or never recorded) is one SET of our own URI, `RESYNC`, delivered
  before anything else: the receiver must resync from a snapshot.

`txn` is the transaction's stream position as a decimal string: it grows in delivery order and
is shared by the SETs of one transaction (a deleted user and the groups it left), which is the
ordered counter RFC 8417 §5.3 suggests. A snapshot names the position it includes up to.
`jti` is `<stream>.<seq>`: unique, and it names one stream only.
"""

from __future__ import annotations

from ..resources import render, render_member
from ..schemas import RESOURCE_TYPES
from ..storage import Outboxed, Stored, StreamState

PREFIX = "urn:ietf:params:scim:event:prov:"
CREATE = PREFIX + "create:full"
PUT = PREFIX + "put:full"
PATCH = PREFIX + "patch:full"
DELETE = PREFIX + "delete"
ACTIVATE = PREFIX + "activate"
DEACTIVATE = PREFIX + "deactivate"
# Ours: the receiver's copy can no longer be kept from the stream; it must take a snapshot.
RESYNC = "https://scim.sevenlakes.com/events/resync"
EVENT_URIS = (CREATE, PUT, PATCH, DELETE, ACTIVATE, DEACTIVATE)  # what the SPC advertises
_FULL = {"create": CREATE, "put": PUT, "patch": PATCH}


def jti(stream: str, seq: int) -> str:
    return f"{stream}.{seq}"


def gap_jti(stream: str, through: int) -> str:
    return f"{stream}.gap.{through}"


def parse_jti(stream: str, value: object) -> tuple[str, int] | None:
    """("event", seq) or ("gap", through) for a jti of this stream; None for anything else."""
    if not isinstance(value, str):
        return None
    head, _, rest = value.partition(".")
    if head != stream:
        return None
    kind, seq = ("gap", rest[4:]) if rest.startswith("gap.") else ("event", rest)
    # ASCII digits only (isdigit alone takes "²"), and no more than a 64-bit seq holds.
    if seq.isascii() and seq.isdigit() and len(seq) <= 19:
        return kind, int(seq)
    return None


def stored(record: dict) -> Stored:
    """The resource an outbox record describes, as storage would return it."""
    res = Stored(record["id"], record["doc"], record["created"], record["lastModified"],
                 record["version"])
    if record["type"] == "Group" and "members" in record:
        res.members = record["members"]
    return res


def claims(ev: Outboxed, stream: str, issuer: str, audience: str) -> dict:
    """The SET of one outbox event (not signed)."""
    rec = ev.record
    rt = RESOURCE_TYPES[rec["type"]]
    sub = {"format": "scim", "uri": f"{rt.endpoint}/{rec['id']}"}
    if rec.get("externalId") is not None:
        sub["externalId"] = rec["externalId"]
    op = rec["op"]
    events: dict = {}
    if op == "delete":
        events[DELETE] = {}
    else:
        res = stored(rec)
        payload: dict = {"version": res.etag}
        if op == "patch":
            payload["data"] = rec.get("patch") or {}
            payload["resource"] = render(rt, res, issuer)
            if "delta" in rec:
                payload["memberChanges"] = {
                    k: v for k, v in (("upsert", [render_member(m, issuer) for m in
                                                  rec["delta"].get("upsert", ())]),
                                      ("remove", rec["delta"].get("remove", []))) if v}
        else:
            payload["data"] = render(rt, res, issuer)
        events[_FULL[op]] = payload
        if "active" in rec:
            events[ACTIVATE if rec["active"] else DEACTIVATE] = {}
    return {"iss": issuer, "iat": ev.iat, "jti": jti(stream, ev.seq), "txn": str(ev.txn),
            "aud": audience, "sub_id": sub, "events": events}


def gap_claims(state: StreamState, iat: int, issuer: str, audience: str) -> dict:
    """The SET that tells the receiver its copy has a hole: resync from a snapshot, then take
    the events after the snapshot's position. Acknowledging it clears the gap."""
    detail = {"through": str(state.gap_through), "reason": state.gap_reason,
              "snapshot": "/events/snapshot"}
    if state.gap_count >= 0:
        detail["lost"] = state.gap_count
    return {"iss": issuer, "iat": iat, "jti": gap_jti(state.stream, state.gap_through),
            "aud": audience, "sub_id": {"format": "opaque", "id": state.stream},
            "events": {RESYNC: detail}}
