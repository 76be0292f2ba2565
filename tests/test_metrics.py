"""scim_server/metrics.py: the sliding window behind scim_unauthorized_requests_last_hour."""

from __future__ import annotations

from scim_server.metrics import MinuteCounts

T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)


def test_counts_fall_out_of_the_window_by_the_minute():
    w = MinuteCounts(60)
    w.add(T0)
    w.add(T0 + 30)
    w.add(T0 + 61)
    assert w.total(T0 + 61) == 3
    assert w.total(T0 + 59 * 60 + 59) == 3  # the first minute is still inside
    assert w.total(T0 + 60 * 60) == 1  # the first minute has left; minute 1 is still inside
    assert w.total(T0 + 61 * 60) == 0


def test_a_long_quiet_time_keeps_nothing():
    w = MinuteCounts(60)
    for i in range(1000):
        w.add(T0 + i)
    w.add(T0 + 86400)
    assert w.total(T0 + 86400) == 1 and len(w._buckets) == 1
