"""The operator's Prometheus metrics. Labels are namespace and tenant names at most; never a
token, a URL or anything a customer sends."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server

from scim_server import __version__

from .tokens import parse_time

RECONCILES = Counter("joyn_operator_reconciles", "Tenant reconciles, by result.", ["result"])
RESULTS = ("success", "error")
DURATION = Histogram("joyn_operator_reconcile_duration_seconds", "Time to reconcile a tenant.",
                     buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
TENANTS = Gauge("joyn_operator_tenants", "Tenants by their Ready condition.", ["ready"])
TOKEN_AGE = Gauge("joyn_operator_token_age_seconds",
                  "Age of each tenant's current token (rotate when it grows old).",
                  ["namespace", "tenant"])
TENANT_READY = Gauge("joyn_operator_tenant_ready", "1 when the tenant is Ready, else 0.",
                     ["namespace", "tenant"])
PREVIOUS_TOKEN_EXPIRY = Gauge(
    "joyn_operator_previous_token_expiry_timestamp_seconds",
    "When each tenant's previous token stops working (only during a rotation's overlap).",
    ["namespace", "tenant"])
INFO = Info("joyn_operator", "The operator's version.")
PER_TENANT = (TOKEN_AGE, TENANT_READY, PREVIOUS_TOKEN_EXPIRY)

_ready: dict[tuple[str, str], str] = {}


def _forget(gauge: Gauge, key: tuple[str, str]) -> None:
    with contextlib.suppress(KeyError):  # never set for this tenant
        gauge.remove(*key)


def serve(host: str, port: int) -> None:
    INFO.info({"version": __version__})
    for state in ("True", "False", "Unknown"):
        TENANTS.labels(state).set(0)
    # Born at 0: Prometheus sees no increase in a series whose first sample is already 1, and
    # the chart's reconcile-error alert would miss the first errors.
    for result in RESULTS:
        RECONCILES.labels(result)
    start_http_server(port, addr=host)


def observe(key: tuple[str, str], status: dict, started: float, ok: bool) -> None:
    DURATION.observe(time.perf_counter() - started)
    RECONCILES.labels(RESULTS[0] if ok else RESULTS[1]).inc()
    if not ok:
        return
    if not status:  # the tenant is gone
        _ready.pop(key, None)
        for gauge in PER_TENANT:
            _forget(gauge, key)
    else:
        ready = next((c["status"] for c in status.get("conditions", [])
                      if c["type"] == "Ready"), "Unknown")
        _ready[key] = ready
        TENANT_READY.labels(*key).set(1 if ready == "True" else 0)
        token = status.get("token") or {}
        if token.get("issuedAt"):
            age = datetime.now(UTC) - parse_time(token["issuedAt"])
            TOKEN_AGE.labels(*key).set(age.total_seconds())
        if token.get("previousValidUntil"):
            PREVIOUS_TOKEN_EXPIRY.labels(*key).set(
                parse_time(token["previousValidUntil"]).timestamp())
        else:
            _forget(PREVIOUS_TOKEN_EXPIRY, key)
    for state in ("True", "False", "Unknown"):
        TENANTS.labels(state).set(sum(1 for v in _ready.values() if v == state))

