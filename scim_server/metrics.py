"""Prometheus metrics. Labels are bounded sets (method, resource type, status): never ids,
user names, filters or anything else a client chooses."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
