"""status.activity (joyn_operator/activity.py), read from the real server's metrics output:
the server and the operator agree on the names, and status is written only when it says
something new."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from joyn_operator.activity import (
    EVENTS_OBSERVED,
    PUSH_ERRORS,
    STALE,
    Stream,
    metrics_url,
    next_activity,
    next_events,
    parse,
    server_address,
)
from prometheus_client import generate_latest

from scim_server.metrics import EventMetrics, Metrics
from scim_server.storage import StreamState

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def server_metrics(users: int, groups: int, refused: int, requests: int) -> str:
    m = Metrics()
    m.resources.labels("User").set(users)
    m.resources.labels("Group").set(groups)
    for _ in range(refused):
        m.observe("GET", "Users", 401, 0.001)
    for _ in range(requests):
        m.observe("PATCH", "Users", 200, 0.001)
    m.activity()
    return generate_latest(m.registry).decode()


def test_a_scrape_of_the_servers_metrics_gives_the_figures():
    before = time.time()
    s = parse(server_metrics(users=12, groups=3, refused=2, requests=1))
    assert (s.users, s.groups, s.unauthorized_last_hour) == (12, 3, 2)
    assert before - 1 <= s.last_request <= time.time()
    idle = parse(server_metrics(users=0, groups=0, refused=0, requests=0))
    assert idle.last_request == 0 and idle.users == 0


def sample(last: datetime | None, users=12, groups=3, refused=0):
    text = server_metrics(users, groups, refused, 0)
    s = parse(text)
    return s.__class__(last.timestamp() if last else 0.0, s.users, s.groups,
                       s.unauthorized_last_hour)


def test_the_first_scrape_writes_everything():
    a = next_activity(sample(NOW - timedelta(minutes=5)), None, NOW)
    assert a == {"lastRequestAt": "2026-12-03T11:55:00Z", "users": 12, "groups": 3,
                 "unauthorizedLastHour": 0, "observedAt": "2026-12-03T12:00:00Z"}


def test_nothing_is_written_until_a_figure_changes_or_it_goes_stale():
    first = next_activity(sample(NOW - timedelta(minutes=5)), None, NOW)
    later = NOW + timedelta(minutes=3)
    assert next_activity(sample(NOW - timedelta(minutes=5)), first, later) is None
    assert next_activity(sample(NOW - timedelta(minutes=5), refused=4), first, later)[
        "unauthorizedLastHour"] == 4
    stale = next_activity(sample(NOW - timedelta(minutes=5)), first, NOW + STALE)
    assert stale["observedAt"] == "2026-12-03T12:10:00Z"


def test_the_last_request_survives_a_server_restart():
    first = next_activity(sample(NOW - timedelta(minutes=5)), None, NOW)
    restarted = next_activity(sample(None, users=12), first, NOW + STALE)
    assert restarted["lastRequestAt"] == "2026-12-03T11:55:00Z"


def pod(ip="10.1.0.7", ready="True", deleting=False):
    meta = {"name": "p", **({"deletionTimestamp": "2026-12-03T12:00:00Z"} if deleting else {})}
    return {"metadata": meta, "status": {"podIP": ip, "conditions": [
        {"type": "Ready", "status": ready}]}}


def test_only_a_ready_pod_that_is_not_going_is_asked():
    assert server_address([pod(ready="False"), pod(deleting=True), pod(ip="10.1.0.9")]) \
        == "10.1.0.9"
    assert server_address([pod(ready="False")]) is None
    assert metrics_url("10.1.0.9") == "http://10.1.0.9:8080/metrics"
    assert metrics_url("fd00::9") == "http://[fd00::9]:8080/metrics"


# -- status.events: the stream's figures, from the server's own EventMetrics ------------------

def stream_metrics(backlog=0, oldest_age=0.0, gap=False, delivered=0, push_error=None,
                   failing_since=0.0) -> str:
    m = Metrics()
    e = EventMetrics(m.registry)
    now = time.time()
    e.observe(StreamState(stream="s1", head=backlog, backlog=backlog,
                          oldest_iat=int(now - oldest_age) if backlog else None,
                          gap_through=3 if gap else 0))
    e.events_delivered(delivered, "poll")
    if push_error:
        e.push_failed(push_error, failing_since)
    return generate_latest(m.registry).decode()


def test_a_server_without_a_stream_reports_none():
    assert parse(server_metrics(users=1, groups=0, refused=0, requests=0)).stream is None


def test_a_scrape_of_the_servers_event_metrics_gives_the_streams_figures():
    before = time.time()
    s = parse(stream_metrics(backlog=4, oldest_age=90, delivered=2)).stream
    assert (s.backlog, s.resync_required, s.failing_since, s.last_error) == (4, False, 0, None)
    assert 89 <= s.oldest_age <= 92 and before - 1 <= s.last_delivery <= time.time()
    failing = parse(stream_metrics(gap=True, push_error="timeout",
                                   failing_since=1_700_000_000)).stream
    assert (failing.resync_required, failing.failing_since, failing.last_error) == (
        True, 1_700_000_000, "timeout")
    assert (failing.backlog, failing.oldest_age, failing.last_delivery) == (0, 0, 0)


def test_the_crd_takes_every_reason_the_server_names_and_no_other():
    """status.events.lastError is an enum in the CRD: a reason the server added without it
    would make the whole status write fail."""
    from pathlib import Path

    import yaml
    crd = yaml.safe_load((Path(__file__).parents[2] / "crds" /
                          "joynscimtenants.scim.sevenlakes.com.yaml").read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert set(status["properties"]["events"]["properties"]["lastError"]["enum"]) == PUSH_ERRORS
    assert EVENTS_OBSERVED <= set(status["properties"]["events"]["properties"])


def test_only_a_reason_the_server_names_reaches_status():
    text = stream_metrics() + 'scim_events_push_last_error_info{reason="Bearer abc"} 1.0\n'
    assert parse(text).stream.last_error is None


def stream(**kw) -> Stream:
    base = {"backlog": 0, "oldest_age": 0.0, "resync_required": False, "last_delivery": 0.0,
            "failing_since": 0.0, "last_error": None}
    return Stream(**{**base, **kw})


RECONCILED = {"enabled": True, "delivery": "poll",
              "receiverSecretRef": {"name": "acme-scim-events-token", "key": "token"}}


def test_the_first_scrape_writes_the_figures_and_only_them():
    patch = next_events(stream(backlog=3, oldest_age=120), RECONCILED, NOW)
    assert patch == {"backlog": 3, "oldestUnackedAt": "2026-12-03T11:58:00Z",
                     "resyncRequired": False, "observedAt": "2026-12-03T12:00:00Z"}
    assert set(patch) <= EVENTS_OBSERVED


def test_a_backlog_that_waits_is_not_rewritten_each_minute():
    first = {**RECONCILED, **next_events(stream(backlog=3, oldest_age=120), RECONCILED, NOW)}
    later = NOW + timedelta(minutes=3)
    # The same oldest event, three minutes older, read with a second of scrape jitter.
    assert next_events(stream(backlog=3, oldest_age=120 + 181), first, later) is None
    grown = next_events(stream(backlog=5, oldest_age=120 + 180), first, later)
    assert grown == {"backlog": 5, "observedAt": "2026-12-03T12:03:00Z"}
    assert next_events(stream(backlog=3, oldest_age=120), first, NOW + STALE)["observedAt"] \
        == "2026-12-03T12:10:00Z"


def test_a_drained_backlog_clears_the_oldest_and_keeps_the_last_delivery():
    first = {**RECONCILED, **next_events(stream(backlog=3, oldest_age=60), RECONCILED, NOW)}
    acked = NOW + timedelta(seconds=30)
    drained = next_events(stream(last_delivery=acked.timestamp()), first, NOW + timedelta(
        minutes=1))
    assert drained == {"backlog": 0, "oldestUnackedAt": None,
                       "lastDeliveryAt": "2026-12-03T12:00:30Z",
                       "observedAt": "2026-12-03T12:01:00Z"}
    state = applied(first, drained)
    assert "oldestUnackedAt" not in state and state["enabled"]  # the reconcile's keys stay
    # A restarted server knows no delivery yet: the last one stays.
    later = NOW + timedelta(minutes=1) + STALE
    assert next_events(stream(), state, later) == {"observedAt": "2026-12-03T12:11:00Z"}


def applied(state: dict, patch: dict) -> dict:
    """`state` after the merge patch `patch` (RFC 7386, one level: what status.events is)."""
    out = {**state, **patch}
    return {k: v for k, v in out.items() if v is not None}


def test_failing_push_shows_since_when_and_why_until_it_works_again():
    since = NOW - timedelta(minutes=20)
    failing = next_events(stream(backlog=1, oldest_age=1200, failing_since=since.timestamp(),
                                 last_error="http_error"), RECONCILED, NOW)
    assert (failing["failingSince"], failing["lastError"]) == ("2026-12-03T11:40:00Z",
                                                               "http_error")
    state = applied(RECONCILED, failing)
    works = next_events(stream(last_delivery=NOW.timestamp(), last_error="http_error"), state,
                        NOW + timedelta(minutes=1))
    assert works["failingSince"] is None and works["lastError"] is None


def test_resync_required_is_shown():
    assert next_events(stream(resync_required=True), RECONCILED, NOW)["resyncRequired"] is True
