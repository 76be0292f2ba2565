"""What the commands print, as pure functions of the objects read: tenant rows, ages, masked
tokens, kubectl-style tables, JSON and YAML. No cluster calls here."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import yaml

from ..tokens import parse_time

NONE = "-"


def age(delta: timedelta) -> str:
    """A duration the way kubectl prints ages: 45s, 12m, 5h, 3d (two units under a day)."""
    s = max(int(delta.total_seconds()), 0)
    if s < 120:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 8 * 3600:
        return f"{s // 3600}h{s % 3600 // 60}m" if s % 3600 // 60 else f"{s // 3600}h"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def since(text: str | None, now: datetime) -> str:
    """How long ago an RFC 3339 time was, or "-"."""
    t = parse_time(text)
    return NONE if t is None else age(now - t)


def until(text: str | None, now: datetime) -> str:
    """An RFC 3339 deadline with the time left, or "-"."""
    t = parse_time(text)
    if t is None:
        return NONE
    left = t - now
    return f"{text} (in {age(left)})" if left.total_seconds() > 0 else f"{text} (passed)"


def mask(token: str) -> str:
    """A token fit for a shared screen: its length and last 4 characters (24 of its 256
    bits), so a rep and an admin can tell which token they hold."""
    return f"****{token[-4:]} ({len(token)} characters; --reveal shows it)"


def condition(tenant: dict, type_: str) -> dict:
    for c in (tenant.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return {}


def tenant_row(tenant: dict, now: datetime) -> dict:
    """One tenant as the `tenants` listing shows it (keys are the JSON/YAML output's)."""
    status = tenant.get("status") or {}
    token = status.get("token") or {}
    activity = status.get("activity") or {}
    ready = condition(tenant, "Ready")
    return {
        "name": tenant["metadata"]["name"],
        "namespace": tenant["metadata"]["namespace"],
        "ready": ready.get("status", "Unknown"),
        "reason": ready.get("reason", "NotReconciled"),
        "message": ready.get("message"),
        "url": status.get("url"),
        "tokenIssuedAt": token.get("issuedAt"),
        "tokenRotatedAt": token.get("rotatedAt"),
        "previousValidUntil": token.get("previousValidUntil"),
        "lastRequestAt": activity.get("lastRequestAt"),
        "users": activity.get("users"),
        "groups": activity.get("groups"),
        "unauthorizedLastHour": activity.get("unauthorizedLastHour"),
    }


def _cell(value) -> str:
    return NONE if value is None or value == "" else str(value)


def tenants_table(rows: list[dict], now: datetime, namespaces: bool,
                  wide: bool = False) -> str:
    """kubectl's `-o wide`: the same columns and, last, the ones that make lines long."""
    head = ["NAME", *(["NAMESPACE"] if namespaces else []), "READY", "REASON", "URL",
            "TOKEN AGE", "PREVIOUS VALID UNTIL", "LAST REQUEST", "USERS", "GROUPS", "401/1H",
            *(["LAST ROTATED", "MESSAGE"] if wide else [])]
    body = [[r["name"], *([r["namespace"]] if namespaces else []), r["ready"], r["reason"],
             _cell(r["url"]), since(r["tokenIssuedAt"], now), _cell(r["previousValidUntil"]),
             since(r["lastRequestAt"], now) + (" ago" if r["lastRequestAt"] else ""),
             _cell(r["users"]), _cell(r["groups"]), _cell(r["unauthorizedLastHour"]),
             *([since(r["tokenRotatedAt"], now) + (" ago" if r["tokenRotatedAt"] else ""),
                _cell(r["message"])] if wide else [])]
            for r in rows]
    return table(head, body)


def table(head: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart, as kubectl prints them."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["   ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
             for row in (head, *rows)]
    return "\n".join(lines)


def dump(data, output: str) -> str:
    if output == "json":
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip()


# -- the event stream, as `kubectl joyn events` prints it ----------------------------------------

PROV = "urn:ietf:params:scim:event:prov:"
EVENT_HEAD = ["TIME", "TXN", "EVENT", "RESOURCE", "VERSION"]
_WIDTHS = (20, 8, 18, 44)  # a UTC time; a position; patch+deactivate; /Groups/<uuid>


def event_kind(uri: str) -> str:
    """An event URI's short name: create, put, patch, delete, activate, deactivate; a URI of
    another profile is shown whole."""
    if uri.startswith(PROV):
        return uri[len(PROV):].removesuffix(":full")
    return "resync" if uri.endswith("/resync") else uri


def event_row(claims: dict) -> list[str]:
    """One SET's claims as the columns of EVENT_HEAD."""
    events = claims.get("events") or {}
    iat = claims.get("iat")
    when = datetime.fromtimestamp(iat, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") \
        if isinstance(iat, int | float) else NONE
    version = next((p["version"] for p in events.values()
                    if isinstance(p, dict) and p.get("version")), NONE)
    sub = claims.get("sub_id") or {}
    return [when, _cell(claims.get("txn")), "+".join(event_kind(u) for u in events) or NONE,
            _cell(sub.get("uri") or sub.get("id")), str(version)]


def event_line(cells: list[str]) -> str:
    """A row padded to fixed widths: a followed stream cannot measure its columns first."""
    return "  ".join([*(c.ljust(w) for c, w in zip(cells, _WIDTHS, strict=False)),
                      *cells[len(_WIDTHS):]]).rstrip()


def tail_line(line: str) -> tuple[str | None, str | None]:
    """(what to print, a warning) for one NDJSON line of the server's /events/tail: a SET's
    claims, a resync notice ({"gap": claims}), a notice of events the server no longer holds
    in memory ({"missed": ...}), or a heartbeat (an empty line: nothing)."""
    line = line.strip()
    if not line:
        return None, None
    try:
        item = json.loads(line)
    except ValueError:
        return None, f"warning: not a JSON line from the server: {line[:80]}"
    if not isinstance(item, dict):
        return None, None
    if "gap" in item:
        detail = next(iter((item["gap"].get("events") or {}).values()), {})
        return None, (f"warning: RESYNC required: events through position "
                      f"{detail.get('through', '?')} are gone ({detail.get('reason', '?')}); "
                      "the receiver must read the snapshot (/events/snapshot)")
    if "missed" in item:
        return None, f"warning: {item['missed']}"
    return event_line(event_row(item)), None
