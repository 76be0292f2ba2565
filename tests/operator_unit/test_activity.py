"""status.activity (joyn_operator/activity.py), read from the real server's metrics output:
the server and the operator agree on the names, and status is written only when it says
something new."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from joyn_operator.activity import STALE, metrics_url, next_activity, parse, server_address
from prometheus_client import generate_latest

from scim_server.metrics import Metrics

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
