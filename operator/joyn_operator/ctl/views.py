"""What the commands print, as pure functions of the objects read: tenant rows, ages, masked
tokens, kubectl-style tables, JSON and YAML. No cluster calls here."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

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
        "url": status.get("url"),
        "tokenIssuedAt": token.get("issuedAt"),
        "previousValidUntil": token.get("previousValidUntil"),
        "lastRequestAt": activity.get("lastRequestAt"),
        "users": activity.get("users"),
        "groups": activity.get("groups"),
        "unauthorizedLastHour": activity.get("unauthorizedLastHour"),
    }


def _cell(value) -> str:
    return NONE if value is None or value == "" else str(value)


def tenants_table(rows: list[dict], now: datetime, namespaces: bool) -> str:
    head = ["NAME", *(["NAMESPACE"] if namespaces else []), "READY", "REASON", "URL",
            "TOKEN AGE", "PREVIOUS VALID UNTIL", "LAST REQUEST", "USERS", "GROUPS", "401/1H"]
    body = [[r["name"], *([r["namespace"]] if namespaces else []), r["ready"], r["reason"],
             _cell(r["url"]), since(r["tokenIssuedAt"], now), _cell(r["previousValidUntil"]),
             since(r["lastRequestAt"], now) + (" ago" if r["lastRequestAt"] else ""),
             _cell(r["users"]), _cell(r["groups"]), _cell(r["unauthorizedLastHour"])]
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
