"""Prometheus metrics. Labels are bounded sets (method, resource type, status): never ids,
user names, filters or anything else a client chooses."""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# The resources Entra provisions: a request to them with a valid token is "activity".
ACTIVE_RESOURCES = frozenset({"Users", "Groups"})


class MinuteCounts:
    """Events counted per minute over the last `minutes`: a sliding window a scrape can read
    as one number (the operator's status shows it; Prometheus has the counter for rates)."""

    def __init__(self, minutes: int = 60) -> None:
        self.minutes = minutes
        self._buckets: deque[list[int]] = deque()  # [minute, count], oldest first

    def add(self, now: float) -> None:
        minute = int(now // 60)
        if self._buckets and self._buckets[-1][0] == minute:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([minute, 1])
            self._drop(minute)

    def _drop(self, minute: int) -> None:
        while self._buckets and self._buckets[0][0] <= minute - self.minutes:
            self._buckets.popleft()

    def total(self, now: float) -> int:
        self._drop(int(now // 60))
        return sum(count for _, count in self._buckets)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "scim_requests", "SCIM HTTP requests served.", ["method", "resource", "status"],
            registry=self.registry)
        self.latency = Histogram(
            "scim_request_duration_seconds", "Time to serve a request, by method and resource.",
            ["method", "resource"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.tokens = Gauge("scim_valid_tokens", "Bearer tokens currently accepted.",
                            registry=self.registry)
        self.resources = Gauge("scim_resources", "Stored resources, by type.", ["type"],
                               registry=self.registry)
        self.last_request = Gauge(
            "scim_last_request_timestamp_seconds", "Unix time of the last Users or Groups "
            "request with a valid token since the server started (0: none).",
            registry=self.registry)
        self.unauthorized_last_hour = Gauge(
            "scim_unauthorized_requests_last_hour", "Requests refused with 401 in the last 60 "
            "minutes (Entra holding a wrong or old token shows here).", registry=self.registry)
        self._last_request = 0.0
        self._refused = MinuteCounts(60)
        self._children: dict[tuple, tuple] = {}
        # The 401 series exist from the start, at 0: Prometheus sees no increase in a series
        # whose first sample is already 1, and the chart's stale-token alert counts the few
        # 401s Entra sends before it quarantines the job.
        for resource in ("Users", "Groups"):
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                self.requests.labels(method, resource, "401")

    def observe(self, method: str, resource: str, status: int, seconds: float) -> None:
        """Count one request. Label children are cached: `labels()` costs a lock and a tuple
        build per call, which is measurable at thousands of requests per second."""
        key = (method, resource, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, resource, str(status)),
                self.latency.labels(method, resource))
        children[0].inc()
        children[1].observe(seconds)
        if status == 401:
            self._refused.add(time.time())
        elif resource in ACTIVE_RESOURCES:
            self._last_request = time.time()

    def activity(self) -> None:
        """Sets the activity gauges, for a scrape (cheaper than a gauge write per request)."""
        self.last_request.set(self._last_request)
        self.unauthorized_last_hour.set(self._refused.total(time.time()))


class EventMetrics:
    """The event stream's metrics (only when the stream is on). The gauges a scrape reads from
    the outbox are set by `observe`; the operator turns them into the tenant's status.events."""

    # Why a push failed, as a label: a bounded set, never the endpoint's own words.
    PUSH_RESULTS = ("delivered", "rejected", "http_error", "redirect", "timeout", "connection")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivered = Counter("scim_events_delivered", "Events the receiver acknowledged.",
                                 ["via"], registry=registry)
        self.backlog = Gauge("scim_events_backlog", "Events recorded and not yet acknowledged.",
                             registry=registry)
        self.oldest_age = Gauge(
            "scim_events_oldest_unacked_age_seconds", "Age of the oldest event not yet "
            "acknowledged (0: none).", registry=registry)
        self.position = Gauge("scim_events_stream_position",
                              "Position of the last event recorded (its seq).", registry=registry)
        self.resync_required = Gauge(
            "scim_events_resync_required", "1 while the receiver must resync from a snapshot: "
            "events were discarded by the retention, rejected, or never recorded.",
            registry=registry)
        self.last_delivery = Gauge(
            "scim_events_last_delivery_timestamp_seconds", "Unix time the receiver last "
            "acknowledged an event (0: not since the server started).", registry=registry)
        self.push_attempts = Counter("scim_events_push_attempts", "SETs pushed, by result.",
                                     ["result"], registry=registry)
        self.push_failing_since = Gauge(
            "scim_events_push_failing_since_timestamp_seconds", "Unix time push delivery began "
            "failing (0: it is not failing).", registry=registry)
        self.push_last_error = Gauge(
            "scim_events_push_last_error_info", "1 for the reason the last push failed.",
            ["reason"], registry=registry)
        for via in ("poll", "push"):
            self.delivered.labels(via)
        for result in self.PUSH_RESULTS:
            self.push_attempts.labels(result)

    def events_delivered(self, n: int, via: str) -> None:
        if n:
            self.delivered.labels(via).inc(n)
            self.last_delivery.set(time.time())

    def observe(self, state) -> None:
        """Set the gauges from a storage.StreamState, at a scrape."""
        self.backlog.set(state.backlog)
        self.oldest_age.set(max(0.0, time.time() - state.oldest_iat) if state.oldest_iat
                            else 0)
        self.position.set(state.head)
        self.resync_required.set(1 if state.gap else 0)

    def push_failed(self, reason: str, since: float) -> None:
        self.push_attempts.labels(reason).inc()
        self.push_failing_since.set(since)
        self.push_last_error.clear()
        self.push_last_error.labels(reason).set(1)

    def push_delivered(self) -> None:
        self.push_attempts.labels("delivered").inc()
        self.push_failing_since.set(0)
