"""Push delivery (RFC 8935): each SET POSTed to the receiver's endpoint, in stream order.

One SET a request (`Content-Type: application/secevent+jwt`, `Accept: application/json`), with
the receiver's own `Authorization` header when the tenant names one. Only 202 is delivery (RFC
8935 §2.2): a 200 with a login page is not a receiver that stored the SET. Anything else is a
failure and the same SET is sent again, never skipped: a 400 with `err` (RFC 8935 §2.3),
another status, an HTML page, a redirect (not followed: the endpoint configured is the one that
must answer), a timeout, a refused connection. Retries back off exponentially, half of each
step random, from 1 s to 5 minutes, and honour `Retry-After`; they go on for as long as the
retention keeps the event, so a receiver down for hours catches up in order. Delivery state
lives in the outbox, so a restart loses nothing; a SET whose 202 was lost to a crash is sent
again (receivers drop it by jti).

Failures show in metrics, in one log line when delivery starts failing and one when it
recovers (never one per retry), and through the metrics in the tenant's status.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from dataclasses import dataclass

import aiohttp
import orjson

from ..metrics import EventMetrics
from ..watched import WatchedFiles
from .stream import EventStream

log = logging.getLogger("scim_server.events.push")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
_BATCH = 100  # SETs read and signed at once; each is still sent, and acknowledged, in order


@dataclass(frozen=True)
class Outcome:
    ok: bool
    reason: str  # an EventMetrics.PUSH_RESULTS label
    detail: str  # for the log: a status and the RFC 8935 err, never a body or a header
    retry_after: float | None = None


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP-date), if it has one."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def outcome(status: int, headers, body: bytes) -> Outcome:
    """What an answer means for the SET: only 202 delivers it."""
    if status == 202:
        return Outcome(True, "delivered", "HTTP 202")
    later = retry_after(headers.get("retry-after"), time.time())
    if 300 <= status < 400:
        return Outcome(False, "redirect", f"HTTP {status}: the endpoint redirects; configure "
                       "the address it redirects to", later)
    err = None
    if status == 400 and "json" in headers.get("content-type", ""):
        try:
            value = orjson.loads(body)
            err = value.get("err") if isinstance(value, dict) else None
        except orjson.JSONDecodeError:
            err = None
    if isinstance(err, str) and err.replace("_", "").isalnum():
        return Outcome(False, "rejected", f"HTTP 400, err {err[:40]}", later)
    if 200 <= status < 300:  # a login page, a proxy's answer: not the receiver's acceptance
        return Outcome(False, "http_error", f"HTTP {status}, not 202 Accepted (RFC 8935 "
                       "§2.2): the endpoint is not an RFC 8935 receiver", later)
    return Outcome(False, "http_error", f"HTTP {status}", later)


class PushSender:
    """The one task that pushes a tenant's stream, started and stopped by the app."""

    def __init__(self, stream: EventStream, metrics: EventMetrics) -> None:
        settings = stream.settings
        self.stream = stream
        self.metrics = metrics
        self.url = settings.push_url
        self.authorization = WatchedFiles(
            [settings.push_authorization_file] if settings.push_authorization_file else [],
            lambda data: data.strip().decode(), "", "push authorization")
        # aiohttp, not httpx (which the rest of the project uses): pushes go one at a time, in
        # order, so the client's cost per request is the rate; to a local receiver httpx sent
        # 1,200-1,500 requests/s, aiohttp 7,000 (bench/events.py's receiver, this machine).
        self.client: aiohttp.ClientSession | None = None  # made on the server's event loop
        self.timeout = aiohttp.ClientTimeout(total=settings.push_timeout)
        self.failing_since = 0.0
        self.attempt = 0  # failures in a row

    async def run(self) -> None:
        """Push while this replica is the tenant's one sender (storage.leadership): replicas
        on one PostgreSQL database would otherwise each push, out of order."""
        stream = self.stream
        while not stream.closing.is_set():
            async with stream.storage.leadership("push") as lost:
                await self._push_while(lambda: not (stream.closing.is_set() or lost.is_set()))

    async def _push_while(self, leading) -> None:
        stuck: str | None = None  # why the sender cannot even try, said once
        while leading():
            try:
                await self._push_batch()
                stuck = None
            except Exception as e:  # no key, a storage failure: the task must not end
                if stuck != type(e).__name__:
                    stuck = type(e).__name__
                    log.error("event push cannot run: retrying", exc_info=True)
                self.attempt += 1
                await self.back_off()

    async def _push_batch(self) -> None:
        stream = self.stream
        batch = await stream.batch(_BATCH)
        if not batch.sets:
            await stream.wait(batch.head, 30)
            return
        delivered: list[str] = []
        for jti, token in batch.sets.items():
            result = await self.send(token)
            if not result.ok:
                break
            delivered.append(jti)
        if delivered:
            n = await stream.acknowledge(delivered)
            self.metrics.events_delivered(n, "push")
        if len(delivered) < len(batch.sets):
            await self.back_off(result.retry_after)

    async def send(self, token: str) -> Outcome:
        headers = {"Content-Type": "application/secevent+jwt", "Accept": "application/json"}
        auth = next(iter(self.authorization.values), "")
        if auth:
            headers["Authorization"] = auth
        if self.client is None:
            self.client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1), timeout=self.timeout)
        try:
            async with self.client.post(self.url, data=token, headers=headers,
                                        allow_redirects=False) as r:
                result = outcome(r.status, r.headers, await r.read())
        except TimeoutError:
            result = Outcome(False, "timeout", f"no answer within "
                             f"{self.stream.settings.push_timeout:g} s")
        except aiohttp.ClientError as e:  # refused, reset, DNS, TLS: the class names which
            result = Outcome(False, "connection", type(e).__name__)
        self._record(result)
        return result

    def _record(self, result: Outcome) -> None:
        if result.ok:
            self.metrics.push_delivered()
            if self.failing_since:
                log.info("event push recovered", extra={
                    "endpoint": self.url, "failed_for_s": round(time.time() - self.failing_since),
                    "attempts": self.attempt})
            self.failing_since, self.attempt = 0.0, 0
            return
        if not self.failing_since:
            self.failing_since = time.time()
            log.warning("event push failing: retrying with back-off until it is delivered",
                        extra={"endpoint": self.url, "reason": result.reason,
                               "detail": result.detail})
        self.attempt += 1
        self.metrics.push_failed(result.reason, self.failing_since)

    async def back_off(self, retry_after: float | None = None) -> None:
        # Exponential, with half of each step random so many tenants' senders spread out.
        step = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(self.attempt - 1, 16))
        delay = step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not a secret
        if retry_after is not None:
            delay = max(delay, min(retry_after, BACKOFF_MAX))
        try:
            await asyncio.wait_for(self.stream.closing.wait(), delay)
        except TimeoutError:
            pass

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
