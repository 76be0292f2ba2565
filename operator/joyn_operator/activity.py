"""Server activity where reps look: each tenant's `status.activity` (the last SCIM request,
users, groups, 401s in the last hour), read from its server's /metrics every minute.

The operator connects to the server pod's address directly (its NetworkPolicy admits the
operator's pods, README), so reps need no port-forward and no Prometheus. Status is written
only when a figure changed, or at the latest every STALE, so 500 quiet tenants cost a few
writes a minute. Entra sends nothing when nothing changed: an old lastRequestAt is a hint.

`parse` and `next_activity` are pure; `poll` is the loop the operator runs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from . import KIND
from .desired import SERVER
from .tokens import fmt, parse_time

log = logging.getLogger("joyn_operator")
STALE = timedelta(minutes=10)  # observedAt is refreshed at least this often
SCRAPE_TIMEOUT = 3.0  # seconds; a server busier than that is reported next round
CONCURRENT_SCRAPES = 8


@dataclass(frozen=True)
class Sample:
    """What one scrape of a server's /metrics says."""

    last_request: float  # Unix time; 0: none since the server started
    users: int | None
    groups: int | None
    unauthorized_last_hour: int | None


def parse(text: str) -> Sample:
    values: dict[str, float] = {}
    resources: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "scim_resources":
                resources[s.labels.get("type", "")] = s.value
            elif s.name in ("scim_last_request_timestamp_seconds",
                            "scim_unauthorized_requests_last_hour"):
                values[s.name] = s.value

    def count(v: float | None) -> int | None:
        return None if v is None else int(v)
    return Sample(last_request=values.get("scim_last_request_timestamp_seconds", 0.0),
                  users=count(resources.get("User")), groups=count(resources.get("Group")),
                  unauthorized_last_hour=count(values.get("scim_unauthorized_requests_last_hour")))


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
    activity = next_activity(sample, (tenant.get("status") or {}).get("activity"), now)
    if activity is not None:
        await kube.patch_status(KIND, meta["namespace"], meta["name"], {"activity": activity})


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
