"""Server activity where reps look: each tenant's `status.activity` (the last SCIM request,
users, groups, 401s in the last hour) and, when its event stream is on, the stream's part of
`status.events` (backlog, oldest unacknowledged event, last delivery, push failing since and
why, resync required), read from its server's /metrics every minute.

The operator connects to the server pod's address directly (its NetworkPolicy admits the
operator's pods, docs/platform/install.md), so reps need no port-forward and no Prometheus.
Status is written only when a figure changed, or at the latest every STALE, so 500 quiet
tenants cost a few writes a minute. Entra sends nothing when nothing changed: an old
lastRequestAt is a hint.

`parse`, `next_activity` and `next_events` are pure; `poll` is the loop the operator runs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from scim_server.metrics import EventMetrics

from . import KIND
from .desired import SERVER
from .status import merge_patch
from .tokens import fmt, parse_time

log = logging.getLogger("joyn_operator")
STALE = timedelta(minutes=10)  # observedAt is refreshed at least this often
SCRAPE_TIMEOUT = 3.0  # seconds; a server busier than that is reported next round
CONCURRENT_SCRAPES = 8
# The keys of status.events this poll writes; the reconcile writes the others and leaves these.
EVENTS_OBSERVED = frozenset({"backlog", "oldestUnackedAt", "lastDeliveryAt", "failingSince",
                             "lastError", "resyncRequired", "observedAt"})
# Why a push failed, as the server names it: a bounded set, so status can only ever hold one
# of these words, never an endpoint's answer or a URL.
PUSH_ERRORS = frozenset(EventMetrics.PUSH_RESULTS) - {"delivered"}
_STREAM = ("scim_events_backlog", "scim_events_oldest_unacked_age_seconds",
           "scim_events_resync_required", "scim_events_last_delivery_timestamp_seconds",
           "scim_events_push_failing_since_timestamp_seconds")


@dataclass(frozen=True)
class Stream:
    """What a server's /metrics says of its event stream."""

    backlog: int  # events recorded and not yet acknowledged
    oldest_age: float  # seconds; 0: none
    resync_required: bool
    last_delivery: float  # Unix time the receiver last acknowledged; 0: not since the start
    failing_since: float  # Unix time push began failing; 0: it is not
    last_error: str | None  # why the last push failed (one of PUSH_ERRORS)


@dataclass(frozen=True)
class Sample:
    """What one scrape of a server's /metrics says."""

    last_request: float  # Unix time; 0: none since the server started
    users: int | None
    groups: int | None
    unauthorized_last_hour: int | None
    stream: Stream | None = None  # None: the server's event stream is off


def parse(text: str) -> Sample:
    values: dict[str, float] = {}
    resources: dict[str, float] = {}
    last_error = None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "scim_resources":
                resources[s.labels.get("type", "")] = s.value
            elif s.name in ("scim_last_request_timestamp_seconds",
                            "scim_unauthorized_requests_last_hour", *_STREAM):
                values[s.name] = s.value
            elif s.name == "scim_events_push_last_error_info" and s.value == 1 and \
                    s.labels.get("reason") in PUSH_ERRORS:
                last_error = s.labels["reason"]

    def count(v: float | None) -> int | None:
        return None if v is None else int(v)
    stream = None
    if "scim_events_backlog" in values:
        stream = Stream(
            backlog=int(values["scim_events_backlog"]),
            oldest_age=values.get("scim_events_oldest_unacked_age_seconds", 0.0),
            resync_required=values.get("scim_events_resync_required", 0.0) == 1,
            last_delivery=values.get("scim_events_last_delivery_timestamp_seconds", 0.0),
            failing_since=values.get("scim_events_push_failing_since_timestamp_seconds", 0.0),
            last_error=last_error)
    return Sample(last_request=values.get("scim_last_request_timestamp_seconds", 0.0),
                  users=count(resources.get("User")), groups=count(resources.get("Group")),
                  unauthorized_last_hour=count(values.get("scim_unauthorized_requests_last_hour")),
                  stream=stream)


def next_activity(sample: Sample, previous: dict | None, now: datetime) -> dict | None:
    """status.activity after this scrape, or None when nothing needs writing. The last
    request is kept across server restarts (the server only knows its own lifetime)."""
    previous = previous or {}
    last = parse_time(previous.get("lastRequestAt"))
    if sample.last_request:
        seen = datetime.fromtimestamp(int(sample.last_request), UTC)
        last = seen if last is None or seen > last else last
    new = {k: v for k, v in (("lastRequestAt", fmt(last)), ("users", sample.users),
                             ("groups", sample.groups),
                             ("unauthorizedLastHour", sample.unauthorized_last_hour))
           if v is not None}
    observed = parse_time(previous.get("observedAt"))
    same = {k: v for k, v in previous.items() if k != "observedAt"} == new
    if same and observed is not None and now - observed < STALE:
        return None
    return {**new, "observedAt": fmt(now)}


def _utc(unix: float) -> datetime | None:
    return datetime.fromtimestamp(int(unix), UTC) if unix else None


def next_events(stream: Stream, previous: dict | None, now: datetime) -> dict | None:
    """The merge patch of status.events (`previous`) for this scrape: only the keys this
    poll owns (EVENTS_OBSERVED), None when nothing needs writing. The oldest unacknowledged
    event is written as a time, not an age, so a backlog that waits is not a write a minute;
    the last delivery is kept across server restarts, like activity's last request."""
    old = {k: v for k, v in (previous or {}).items() if k in EVENTS_OBSERVED}
    last = parse_time(old.get("lastDeliveryAt"))
    seen = _utc(stream.last_delivery)
    if seen and (last is None or seen > last):
        last = seen
    oldest = None
    if stream.backlog and stream.oldest_age:
        oldest = (now - timedelta(seconds=stream.oldest_age)).replace(microsecond=0)
        before = parse_time(old.get("oldestUnackedAt"))
        # The same event read again: its age moved with the clock, and a second or two
        # either way is the scrape's timing, not a new oldest event.
        if before and abs((oldest - before).total_seconds()) <= 2:
            oldest = before
    failing = _utc(stream.failing_since)
    new = {k: v for k, v in (
        ("backlog", stream.backlog), ("oldestUnackedAt", fmt(oldest)),
        ("lastDeliveryAt", fmt(last)), ("failingSince", fmt(failing)),
        ("lastError", stream.last_error if failing else None),
        ("resyncRequired", stream.resync_required)) if v is not None}
    observed = parse_time(old.get("observedAt"))
    same = {k: v for k, v in old.items() if k != "observedAt"} == new
    if same and observed is not None and now - observed < STALE:
        return None
    return merge_patch(old, {**new, "observedAt": fmt(now)})


def server_address(pods: list[dict]) -> str | None:
    """The address of the tenant's ready server pod, if there is one."""
    for pod in pods:
        status = pod.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or [])
        if ready and status.get("podIP") and not pod["metadata"].get("deletionTimestamp"):
            return status["podIP"]
    return None


def metrics_url(address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{SERVER['port']}/metrics"


async def scrape_one(tenant: dict, pods: list[dict], http: aiohttp.ClientSession, kube,
                     now: datetime) -> None:
    meta = tenant["metadata"]
    address = server_address(pods)
    if address is None:
        return  # not running: the conditions say why
    async with http.get(metrics_url(address)) as r:
        r.raise_for_status()
        sample = parse(await r.text())
    status = tenant.get("status") or {}
    patch = {}
    activity = next_activity(sample, status.get("activity"), now)
    if activity is not None:
        patch["activity"] = activity
    # Only while the reconcile says the stream is on (it removes status.events when it goes
    # off, and an old pod may still report it for a moment).
    if sample.stream and (status.get("events") or {}).get("enabled"):
        events = next_events(sample.stream, status["events"], now)
        if events:
            patch["events"] = events
    if patch:
        await kube.patch_status(KIND, meta["namespace"], meta["name"], patch)


async def poll_once(memo, http: aiohttp.ClientSession, gate: asyncio.Semaphore) -> None:
    """One round: every cached tenant's server, `gate` limiting how many at once."""
    now = datetime.now(UTC)

    async def one(tenant: dict) -> None:
        meta = tenant["metadata"]
        async with gate:
            try:
                await scrape_one(tenant, memo.cache.pods(meta["namespace"], meta["name"]),
                                 http, memo.kube, now)
            except Exception as e:  # one unreachable server must not stop the rest
                log.info("activity not read", extra={
                    "tenant": f"{meta['namespace']}/{meta['name']}",
                    "error": f"{e.__class__.__name__}: {e}"})
    await asyncio.gather(*(one(t) for t in memo.cache.tenants()))


async def poll(memo) -> None:
    """Every `activity_seconds`, each watched tenant's server, a few at a time."""
    gate = asyncio.Semaphore(CONCURRENT_SCRAPES)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)) as http:
        while True:
            await asyncio.sleep(memo.config.activity_seconds)
            await poll_once(memo, http, gate)
